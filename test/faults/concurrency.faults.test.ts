// Eight ootmod commands of different kinds started at once on one root. The writers serialise on the
// global lock, each waiting one says which run it waits for, and the state is consistent at the end.
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES, hostKernel, linkHostKernel, placeSource } from '../support/host.js';
import { makeRoot, tempDir } from '../support/roots.js';
import { recordRow } from './lib/table.js';
import { installedProblems, ootmodRun, startOotmod, stateProblem } from './lib/system.js';

const IS_ROOT = process.getuid?.() === 0;

describe.skipIf(!IS_ROOT)('eight commands at once', () => {
  it('serialises the writers, says what each waits for, and ends consistent', async () => {
    const { release, headers } = hostKernel();
    const root = makeRoot('ootmod-faults-8way-');
    linkHostKernel(root, release, headers);
    for (const f of ['ootmod-hello-1.0', 'ootmod-pair-2.1', 'ootmod-patched-1.0']) placeSource(root, path.join(FIXTURES, f));
    const first = await ootmodRun(root, ['autoinstall']);
    expect(first.code, first.stderr).toBe(0);
    const outside = tempDir('ootmod-faults-add-');
    chmodSync(outside, 0o755);
    const added = placeSource(outside, path.join(FIXTURES, 'ootmod-exclusive-1.0'), 'ootmod-exclusive-1.0');
    const commands: { args: string[]; writer: boolean }[] = [
      { args: ['install', 'ootmod-hello', '--force'], writer: true },
      { args: ['remove', 'ootmod-pair'], writer: true },
      { args: ['autoinstall', '--force'], writer: true },
      // With no CONFIG_RUST kernel (as on Debian 12) it has nothing to write and takes no lock.
      { args: ['rust', 'prepare'], writer: false },
      { args: ['status'], writer: false },
      { args: ['trigger'], writer: true },
      { args: ['uninstall', 'ootmod-patched'], writer: true },
      { args: ['add', added], writer: true },
    ];
    const runs = await Promise.all(commands.map((c) => startOotmod(root, c.args).done));
    const failures: string[] = [];
    const waitLine = /^ootmod: waiting for another ootmod run to finish \(pid \d+: .+\)$/;
    let waited = 0;
    runs.forEach((r, i) => {
      const name = commands[i]!.args.join(' ');
      if (r.code === 70 || r.code === null) failures.push(`${name}: exit ${r.code}: ${r.stderr.trim()}`);
      const waits = r.stderr.split('\n').filter((l) => l.includes('waiting for'));
      if (waits.some((l) => !waitLine.test(l))) failures.push(`${name}: unclear wait line ${JSON.stringify(waits)}`);
      if (waits.length) waited++;
      if (!commands[i]!.writer && waits.length && name === 'status') failures.push(`${name} is a reader but waited`);
    });
    const writers = commands.filter((c) => c.writer).length;
    // All start at once: every writer but the first to take the lock must have waited, and said so.
    if (waited < writers - 1) {
      const silent = runs.map((r, i) => ({ r, c: commands[i]! })).filter(({ r, c }) => c.writer && !r.stderr.includes('waiting for'));
      failures.push(`only ${waited} of ${writers} writers said they waited; not: ${silent.map(({ r, c }) => `${c.args.join(' ')} (${r.stderr.trim().split('\n').slice(0, 2).join(' | ')})`).join('; ')}`);
    }
    const st = stateProblem(root);
    if (st) failures.push(st);
    const state = JSON.parse(readFileSync(path.join(root, 'var/lib/ootmod/state.json'), 'utf8')) as { records: Record<string, { module: string; status: string; installed: { path: string }[] }> };
    const recorded = new Set<string>();
    for (const r of Object.values(state.records)) {
      for (const f of r.installed) {
        recorded.add(path.basename(f.path));
        if (!existsSync(f.path)) failures.push(`${r.module}: recorded ${f.path} is missing`);
      }
    }
    const { files, problems } = installedProblems(root, release);
    failures.push(...problems);
    for (const f of files) if (!recorded.has(f)) failures.push(`${f} is installed but no record has it`);
    const dep = readFileSync(path.join(root, 'usr/lib/modules', release, 'modules.dep'), 'utf8');
    for (const f of files) if (!dep.includes(`updates/ootmod/${f}:`)) failures.push(`modules.dep does not list ${f}`);
    for (const line of dep.split('\n').filter((l) => l.startsWith('updates/ootmod/'))) {
      if (!files.includes(path.basename(line.split(':')[0]!))) failures.push(`modules.dep lists a removed ${line.split(':')[0]}`);
    }
    const next = await ootmodRun(root, ['autoinstall']);
    if (next.code !== 0) failures.push(`the next autoinstall exited ${next.code}: ${next.stderr.trim().split('\n').pop()}`);
    recordRow({
      fault: '8 commands at once',
      tried: 1,
      held: failures.length ? 0 : 1,
      detail: `${commands.map((c) => c.args[0] === 'rust' ? 'rust prepare' : c.args[0]).join(', ')}; ${waited} of ${writers} writers waited, naming the holder; exits ${runs.map((r) => r.code).join(',')}`,
    });
    expect(failures).toEqual([]);
  });
});
