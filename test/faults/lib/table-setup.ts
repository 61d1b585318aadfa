// Collects the cases each fault test tried and held, and prints them as one table at the end.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FaultRow } from './table.js';

export default function setup(): () => void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ootmod-faults-'));
  const file = path.join(dir, 'rows.jsonl');
  process.env.OOTMOD_FAULTS_TABLE = file;
  return () => {
    const rows: FaultRow[] = existsSync(file)
      ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as FaultRow)
      : [];
    const head = ['fault', 'tried', 'held', 'detail'];
    const cells = rows.map((r) => [r.fault, String(r.tried), String(r.held), r.detail]);
    const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
    const line = (c: string[]) => `| ${c.map((x, i) => x.padEnd(widths[i]!)).join(' | ')} |`;
    const tier = process.env.OOTMOD_FAULTS_TIER === 'quick' ? 'quick' : 'full';
    process.stdout.write(`\nootmod fault suite (${tier} tier), ${new Date().toISOString()}, ${os.cpus().length} cores\n`);
    process.stdout.write(`${line(head)}\n| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |\n`);
    for (const c of cells) process.stdout.write(`${line(c)}\n`);
    const bad = rows.filter((r) => r.held !== r.tried);
    const tried = rows.reduce((n, r) => n + r.tried, 0);
    const held = rows.reduce((n, r) => n + r.held, 0);
    if (!tried) process.stdout.write('no fault case ran (every fault test was skipped: the suite needs root)\n');
    else process.stdout.write(bad.length ? `${held} of ${tried} cases held; NOT HELD: ${bad.map((r) => `${r.fault} (${r.tried - r.held} of ${r.tried})`).join(', ')}\n` : `all ${tried} cases held\n`);
    rmSync(dir, { recursive: true, force: true });
  };
}
