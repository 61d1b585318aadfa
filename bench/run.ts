// `npm run bench`: ootmod's performance goals, each against a baseline measured in the same run.
//
// The standard every row follows: a goal is a ratio to a baseline measured in the same run (or a hard limit,
// such as --jobs or a size), the two sides alternate (A B A B), each gets >= 3 samples and is judged on its
// median, and both start from the same machine state (caches, module tree, -j). A figure from elsewhere is
// labelled as such and never judged.
//
//   row          what (file)                                                               goal
//   overhead     one `ootmod install` vs the bare kbuild make (host.ts)                    <= +0.3 s per module
//   autoinstall  3 Debian -dkms sources: ootmod vs DKMS, and ootmod's peak RSS (host.ts)     <= 0.70x DKMS; <= 120 MB
//   status       `ootmod status`, 3 and 200+ records, vs `dkms status` of the same 3 (host.ts) <= 0.5x
//   busy-cores   --jobs kept busy while builds are pending (jobs.ts)                        >= 95%
//   max-jobs     concurrent compilers with -j 1 and -j 4 (jobs.ts)                          <= --jobs
//   rust-cold    cold `rust prepare` (metadata tree) vs the bare kbuild recipe; warm; size  <= 0.35x; <= 0.5 s; <= 160 MB
//   new-kernel   new CONFIG_RUST kernel: 3 C + 1 Rust module vs tree + Rust module (rust.ts) C first; <= 1.10x
//                and, with OOTMOD_BENCH_BEFORE_BIN=FILE, vs an older bundle's autoinstall    <= 0.5x
//   sandbox      confined autoinstall of the 3 Debian sources vs a root build (sandbox.ts)    <= 1.05x
//
// Usage: npm run bench [-- --only ROW[,ROW...]] [-- --list]
// Environment: OOTMOD_BENCH_QUICK=1 (one sample per side, no warm-up: proves the rows run, figures not
// judged meaningful), OOTMOD_BENCH_BIN=FILE (measure another ootmod bundle, e.g. an older build),
// OOTMOD_BENCH_BEFORE_BIN=FILE (new-kernel: also time an older bundle's autoinstall, alternated),
// BENCH_REPS, BENCH_RUST_REPS, BENCH_STATUS_RUNS, BENCH_MAX_WAIT, BENCH_SKIP_DKMS=1, BENCH_REFRESH_DEBS=1,
// BENCH_KEEP=1, OOTMOD_BENCH_RESULTS=FILE (instead of bench/results/latest.json).
// Prerequisites (root): the host's linux-headers (host rows), `dkms` and `time` (installed here when missing),
// network to the host's Debian mirror the first time (the Debian sources, the sid chroot of the Rust rows).
//
// A benchmark, not a test: a missed goal prints MISS and still exits 0; it exits 1 only when a row could not
// be measured. Progress goes to stderr, the report to stdout, and bench/results/latest.json keeps every row's
// samples (a row run alone with --only replaces only its own entry).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { autoinstallRow, ensureGnuTime, environment, overheadRow, realPackages, statusRow, type Env, type RealModule } from './host';
import { busyCoresRow, maxJobsRow } from './jobs';
import { OOTMOD, QUICK, REPO, foreignLoad, removeAllTemps, run, step, table, verdict, waitedSeconds, type RowResult } from './lib';
import { newKernelRow, rustColdRow } from './rust';
import { sandboxRow } from './sandbox';

interface Context {
  env(): Promise<Env>;
  /** The three Debian sources, from the first of `suites` that has each. */
  real(suites: string[]): Promise<RealModule[]>;
  resultsDir: string;
}

const ROWS: { name: string; run: (ctx: Context) => Promise<RowResult> }[] = [
  { name: 'overhead', run: async (ctx) => overheadRow(await ctx.env()) },
  { name: 'autoinstall', run: async (ctx) => autoinstallRow(await ctx.env(), await ctx.real(['trixie', 'sid']), ctx.resultsDir) },
  { name: 'status', run: async (ctx) => statusRow(await ctx.env(), await ctx.real(['trixie', 'sid']), ctx.resultsDir) },
  { name: 'busy-cores', run: async (ctx) => busyCoresRow(await ctx.env(), await ctx.real(['trixie', 'sid'])) },
  { name: 'max-jobs', run: async (ctx) => maxJobsRow(await ctx.env(), await ctx.real(['trixie', 'sid'])) },
  { name: 'rust-cold', run: () => rustColdRow() },
  // The sid kernel: the sid uploads of the sources.
  { name: 'new-kernel', run: async (ctx) => newKernelRow(await ctx.real(['sid', 'trixie'])) },
  { name: 'sandbox', run: async (ctx) => sandboxRow(await ctx.real(['trixie', 'sid'])) },
];

class UsageError extends Error {}

function parseArgs(argv: string[]): string[] {
  const only: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--list') {
      process.stdout.write(`${ROWS.map((r) => r.name).join('\n')}\n`);
      process.exit(0);
    } else if (a === '--only') only.push(...(argv[++i] ?? '').split(','));
    else if (a.startsWith('--only=')) only.push(...a.slice('--only='.length).split(','));
    else throw new UsageError(`unknown argument ${a} (use --only ROW[,ROW...] or --list)`);
  }
  const unknown = only.filter((o) => !ROWS.some((r) => r.name === o));
  if (unknown.length) throw new UsageError(`no such row: ${unknown.join(', ')} (rows: ${ROWS.map((r) => r.name).join(', ')})`);
  return only.length ? only : ROWS.map((r) => r.name);
}

function memo<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

async function main(): Promise<number> {
  const wanted = parseArgs(process.argv.slice(2));
  if (!existsSync(OOTMOD)) throw new Error(`${OOTMOD} is missing: run npm run build`);
  const resultsDir = path.join(REPO, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const git = (() => {
    try {
      return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).trim();
    } catch {
      return undefined;
    }
  })();
  const bundle = process.env.OOTMOD_BENCH_BIN ? OOTMOD : `dist/ootmod (${git ?? '?'})`;
  const bundleVersion = (await run(OOTMOD, ['--version'])).stdout.trim();
  const env = memo(async () => {
    const e = await environment();
    if (!(await ensureGnuTime())) step('/usr/bin/time unavailable: no CPU times and no %M; memory from VmHWM sampling only');
    return e;
  });
  const realBySuites = new Map<string, Promise<RealModule[]>>();
  const ctx: Context = {
    env,
    real: (suites) => {
      const key = suites.join(',');
      if (!realBySuites.has(key)) realBySuites.set(key, realPackages(suites));
      return realBySuites.get(key)!;
    },
    resultsDir,
  };

  const file = process.env.OOTMOD_BENCH_RESULTS ? path.resolve(process.env.OOTMOD_BENCH_RESULTS) : path.join(resultsDir, 'latest.json');
  const previous = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { rows?: Record<string, unknown> }) : {};
  const rows: Record<string, unknown> = { ...(previous.rows ?? {}) };
  const out: string[] = [`ootmod benchmark, ${new Date().toISOString()}: ${bundle}, ${bundleVersion}${QUICK ? ' -- QUICK MODE: 1 sample per side, figures are not results' : ''}`];
  const summary: string[][] = [];
  let failed = 0;
  for (const name of wanted) {
    const row = ROWS.find((r) => r.name === name)!;
    step(`=== ${name}`);
    const started = Date.now();
    const load = foreignLoad();
    let result: RowResult | undefined;
    let error: string | undefined;
    try {
      result = await row.run(ctx);
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
      step(`ERROR in ${name}: ${error}`);
      failed++;
    }
    const otherLoad = load();
    const seconds = (Date.now() - started) / 1000;
    out.push('', `${name} (${seconds.toFixed(0)} s; other processes kept ${otherLoad?.toFixed(2) ?? '?'} cores busy meanwhile${(otherLoad ?? 0) > 0.2 ? ': NOISY, times inflated' : ''})`);
    if (result) out.push(...result.lines.map((l) => `   ${l}`));
    else out.push(`   ERROR: not measured: ${error?.split('\n')[0]}`);
    for (const g of result?.goals ?? []) {
      summary.push([name, g.what, g.value, g.baseline, g.ratio === undefined ? '' : `${g.ratio.toFixed(2)}x`, g.limit, verdict(g.pass)]);
    }
    rows[name] = {
      date: new Date(started).toISOString(), git, bundle, bundleVersion, quick: QUICK, seconds, otherLoadCores: otherLoad,
      env: await env().catch(() => undefined), goals: result?.goals, error, table: result?.lines, data: result?.data,
    };
    // Written after every row, so a long run interrupted later keeps what it measured.
    writeFileSync(file, `${JSON.stringify({ updated: new Date().toISOString(), rows }, null, 2)}\n`);
  }
  removeAllTemps();
  out.push('', 'Goals');
  out.push(...table(['row', 'goal', 'value', 'baseline (same run)', 'ratio', 'limit', 'result'], summary).map((l) => `   ${l}`));
  const missed = summary.filter((s) => s[6] === 'MISS').length;
  out.push(`   ${summary.length - missed}/${summary.length} goals met${missed ? `, ${missed} MISS` : ''}${failed ? `; ${failed} row(s) not measured` : ''}`);
  out.push('', `(${waitedSeconds().toFixed(0)} s spent waiting for a quieter machine; results in ${path.relative(REPO, file)})`);
  process.stdout.write(`${out.join('\n')}\n`);
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    removeAllTemps();
    if (err instanceof UsageError) {
      process.stderr.write(`[bench] ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`[bench] fatal: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
