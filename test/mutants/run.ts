// `npm run test:mutants`: shows that the tests named in test/mutants/list.ts can fail. Each mutant is a
// deliberate break of the code (one exact text replaced by another); the test that claims to guard that
// behaviour must then fail, and must pass on the unbroken code. Runs in a copy of the working tree (the
// checkout is never edited), one mutant at a time; prints a table and exits 1 when a mutant survives,
// a test fails on the unbroken code, or a mutant's text is no longer in its file (the list needs
// updating after a refactor).
//
//   npm run test:mutants                  the quick tier (unit and integration tests)
//   npm run test:mutants -- --tier all    also the fault-suite mutants (root; several minutes each)
//   npm run test:mutants -- ID...         only these mutants
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MUTANTS, type Mutant } from './list.js';

const REPO = path.resolve(import.meta.dirname, '../..');

interface Outcome {
  id: string;
  test: string;
  result: 'killed' | 'SURVIVED' | 'NOT APPLIED' | 'TEST FAILS UNBROKEN';
  detail: string;
}

function parseArgs(argv: string[]): { tier: 'quick' | 'all'; ids: string[] } {
  let tier: 'quick' | 'all' = 'quick';
  const ids: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--tier') {
      const t = argv[++i];
      if (t !== 'quick' && t !== 'all') throw new Error(`--tier takes quick or all, not ${t ?? 'nothing'}`);
      tier = t;
    } else ids.push(a);
  }
  const unknown = ids.filter((id) => !MUTANTS.some((m) => m.id === id));
  if (unknown.length) throw new Error(`unknown mutant ${unknown.join(', ')}: see test/mutants/list.ts`);
  return { tier, ids };
}

/** A copy of the working tree as it is (tracked and new files, not ignored ones), node_modules linked. */
function copyTree(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ootmod-mutants-'));
  const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: REPO, encoding: 'utf8' }).split('\0').filter(Boolean);
  for (const f of files) {
    const to = path.join(dir, f);
    mkdirSync(path.dirname(to), { recursive: true });
    try {
      cpSync(path.join(REPO, f), to, { verbatimSymlinks: true });
    } catch (err) {
      // A file deleted in the working tree but still tracked.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  symlinkSync(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

function run(dir: string, cmd: string, args: string[]): { ok: boolean; output: string } {
  const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' } });
  return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

function build(dir: string): void {
  const b = run(dir, 'node', ['scripts/build.mjs']);
  if (!b.ok) throw new Error(`the build failed in ${dir}:\n${b.output}`);
}

function runTest(dir: string, m: Mutant): { ok: boolean; output: string } {
  const args = ['vitest', 'run'];
  if (m.config) args.push('--config', m.config);
  args.push(m.test);
  if (m.filter) args.push('-t', m.filter);
  return run(dir, 'npx', args);
}

/** The first line of a failing run that says what failed (an assertion, or the failing test's name). */
function firstFailure(output: string): string {
  const lines = output.split('\n').map((l) => l.trim());
  const at = lines.findIndex((l) => /AssertionError|Error:|expected /.test(l));
  let line = lines[at] ?? lines.find((l) => /FAIL|✗|×/.test(l)) ?? '(no failure line found)';
  // A list of problems compared with []: the first problem, from the diff's received side.
  const problem = at >= 0 ? lines.slice(at, at + 40).find((l) => /^\+\s+["'{]/.test(l)) : undefined;
  if (problem) line = `${line} ${problem.replace(/^\+\s+/, '')}`;
  return line.length > 240 ? `${line.slice(0, 237)}...` : line;
}

function testKey(m: Mutant): string {
  return `${m.test}${m.filter ? ` -t "${m.filter}"` : ''}`;
}

function main(): number {
  const { tier, ids } = parseArgs(process.argv.slice(2));
  const chosen = MUTANTS.filter((m) => (ids.length ? ids.includes(m.id) : tier === 'all' || m.tier === 'quick'));
  const dir = copyTree();
  const outcomes: Outcome[] = [];
  try {
    build(dir);
    // Each test passes on the unbroken code first: a test that always fails would "kill" every mutant.
    const unbroken = new Map<string, { ok: boolean; output: string }>();
    for (const m of chosen) {
      const key = testKey(m);
      if (unbroken.has(key)) continue;
      console.log(`unbroken: ${key}`);
      unbroken.set(key, runTest(dir, m));
    }
    for (const m of chosen) {
      const base = unbroken.get(testKey(m))!;
      if (!base.ok) {
        outcomes.push({ id: m.id, test: testKey(m), result: 'TEST FAILS UNBROKEN', detail: firstFailure(base.output) });
        continue;
      }
      const file = path.join(dir, m.file);
      const original = readFileSync(file, 'utf8');
      const count = original.split(m.find).length - 1;
      if (count !== 1) {
        outcomes.push({ id: m.id, test: testKey(m), result: 'NOT APPLIED', detail: `${m.file}: the text to break occurs ${count} times (must be once)` });
        continue;
      }
      console.log(`mutant ${m.id}: ${m.break}`);
      writeFileSync(file, original.replace(m.find, () => m.replace));
      try {
        if (m.file.startsWith('src/')) build(dir);
        const r = runTest(dir, m);
        outcomes.push({ id: m.id, test: testKey(m), result: r.ok ? 'SURVIVED' : 'killed', detail: r.ok ? `${m.break}: the test still passes` : firstFailure(r.output) });
      } finally {
        writeFileSync(file, original);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log('\nmutant | test | result | first failure');
  console.log('--- | --- | --- | ---');
  for (const o of outcomes) console.log(`${o.id} | ${o.test} | ${o.result} | ${o.detail.replaceAll('|', '\\|')}`);
  const bad = outcomes.filter((o) => o.result !== 'killed');
  console.log(`\n${outcomes.length - bad.length} of ${outcomes.length} mutants killed by their tests`);
  return bad.length ? 1 : 0;
}

try {
  process.exitCode = main();
} catch (err) {
  console.error(`test:mutants: ${(err as Error).message}`);
  process.exitCode = 2;
}
