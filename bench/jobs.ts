// The rows that measure how ootmod spends its CPU budget (--jobs), on this machine's headers in a sandbox,
// with the three Debian sources plus bench/fixtures/ootmod-serial-1.0 (a long PRE_BUILD that compiles files
// one at a time), sampled from /proc (bench/sampler.ts):
//   busy-cores  -j CORES, sampled once a second: whenever at least --jobs builds are pending, the tree has at
//               least --jobs processes running or runnable (goal: >= 95% of those samples), and of the CPU
//               time nothing else on the machine took then, ootmod used >= 95% (its CPU / (its CPU + idle))
//   max-jobs    -j 1 and -j 4, sampled every 50 ms through the whole run: concurrent compilers (cc1, cc1plus,
//               rustc) never exceed --jobs
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ootmodAutoinstall, reps, type Env, type RealModule } from './host';
import { CORES, foreignLoad, median, removeTemp, secs, step, table, type Goal, type RowResult } from './lib';
import { sampleTree, windows, type Tick, type Window } from './sampler';

export const SERIAL_FIXTURE = path.resolve(__dirname, 'fixtures', 'ootmod-serial-1.0');
const SHARE_GOAL = 0.95;
const UTILISATION_GOAL = 0.95;

/**
 * The .ko names a source installs (DEST_MODULE_NAME[i], else BUILT_MODULE_NAME[i]; PACKAGE_NAME when it names
 * none, as DKMS does), from its dkms.conf text (good enough for the sources this benchmark uses).
 */
function moduleNames(src: string): string[] {
  const text = readFileSync(path.join(src, 'dkms.conf'), 'utf8');
  const pkgName = /^\s*PACKAGE_NAME=["']?([^"'\s]*)/m.exec(text)?.[1] ?? '';
  const unq = (s: string) => s.trim().replace(/^["']|["']$/g, '').replace(/\$\{?PACKAGE_NAME\}?/g, pkgName);
  const built = new Map([...text.matchAll(/^\s*BUILT_MODULE_NAME\[(\d+)\]=(.*)$/gm)].map((m) => [m[1]!, unq(m[2]!)]));
  const dest = new Map([...text.matchAll(/^\s*DEST_MODULE_NAME\[(\d+)\]=(.*)$/gm)].map((m) => [m[1]!, unq(m[2]!)]));
  if (!built.size) return [pkgName];
  return [...built.keys()].map((i) => dest.get(i) ?? built.get(i)!);
}

/** When each source's last module was installed (file mtime, ms since the epoch), from the sandbox's module dir. */
export function installTimes(dir: string, sources: string[]): Map<string, number | undefined> {
  const files = existsSync(dir) ? readdirSync(dir) : [];
  const out = new Map<string, number | undefined>();
  for (const src of sources) {
    const times = moduleNames(src).map((name) => {
      const f = files.find((x) => x === `${name}.ko` || x.startsWith(`${name}.ko.`));
      return f ? lstatSync(path.join(dir, f)).mtimeMs : undefined;
    });
    out.set(path.basename(src), times.some((t) => t === undefined) || !times.length ? undefined : Math.max(...(times as number[])));
  }
  return out;
}

interface SampledRun {
  seconds: number;
  exit: number;
  summary: string;
  ticks: Tick[];
  /** Per source: seconds after the start when its modules were installed (undefined: never). */
  finished: Record<string, number | undefined>;
  otherLoad?: number;
}

async function sampledAutoinstall(env: Env, sources: string[], jobs: number, intervalMs: number): Promise<SampledRun> {
  // (jobs is also the limit above which the sampler keeps the compilers' command lines, to see what they were.)
  let sampler: ReturnType<typeof sampleTree> | undefined;
  let t0 = 0;
  const load = foreignLoad();
  const x = await ootmodAutoinstall(env, sources, jobs, {
    onSpawn: (pid) => {
      t0 = Date.now();
      sampler = sampleTree(pid, intervalMs, jobs);
    },
  });
  const ticks = sampler?.stop() ?? [];
  const otherLoad = load();
  const times = installTimes(path.join(x.root, 'usr/lib/modules', env.kver, 'updates/ootmod'), sources);
  removeTemp(x.root);
  const finished = Object.fromEntries([...times].map(([k, v]) => [k, v === undefined ? undefined : (v - t0) / 1000]));
  return { seconds: x.seconds, exit: x.exit, summary: x.summary, ticks, finished, otherLoad };
}

/** Builds still pending at `t` seconds (not installed yet; a failed one counts as pending to the end). */
const pendingAt = (run: SampledRun, t: number) => Object.values(run.finished).filter((f) => f === undefined || f > t).length;

interface BusyFigures {
  /** Samples taken while at least --jobs builds were pending, and how many of them had >= --jobs running. */
  eligible: number;
  reached: number;
  /** Mean cores the tree kept busy over the 1-s windows with at least --jobs builds pending. */
  coresWhilePending?: number;
  /** Mean cores the machine left idle over those windows. */
  idleWhilePending?: number;
  /**
   * Over those windows: the tree's CPU time / (the tree's + the idle CPU time), i.e. the share of the
   * CPU time nothing else took that ootmod used (-j = all cores; kernel threads and other daemons
   * count neither for nor against it).
   */
  usedShare?: number;
  /** The whole run: tree CPU / wall. */
  coresOverall?: number;
}

/** Σ tree CPU / Σ (tree CPU + idle CPU) over windows (undefined without idle readings). */
export function usedShare(ws: Window[]): number | undefined {
  if (!ws.length || ws.some((w) => w.idleCores === undefined)) return undefined;
  const tree = ws.reduce((a, w) => a + w.cores, 0);
  const idle = ws.reduce((a, w) => a + w.idleCores!, 0);
  return tree + idle > 0 ? tree / (tree + idle) : undefined;
}

function busyFigures(run: SampledRun, jobs: number): BusyFigures {
  // The first reading, taken as ootmod is spawned, is the baseline of the CPU windows, not a sample of
  // the run: nothing of ootmod has run yet, so no build can be runnable. The samples are 1 s, 2 s, ...
  const eligibleTicks = run.ticks.slice(1).filter((t) => pendingAt(run, t.t) >= jobs);
  const ws = windows(run.ticks, 1).filter((w) => pendingAt(run, w.t + w.length) >= jobs);
  const last = run.ticks[run.ticks.length - 1];
  return {
    eligible: eligibleTicks.length,
    reached: eligibleTicks.filter((t) => t.running >= jobs).length,
    coresWhilePending: ws.length ? ws.reduce((a, w) => a + w.cores, 0) / ws.length : undefined,
    idleWhilePending: ws.length && ws.every((w) => w.idleCores !== undefined) ? ws.reduce((a, w) => a + w.idleCores!, 0) / ws.length : undefined,
    usedShare: usedShare(ws),
    coresOverall: last && last.t > 0 ? last.cpu / last.t : undefined,
  };
}

export async function busyCoresRow(env: Env, real: RealModule[]): Promise<RowResult> {
  const jobs = env.cores;
  const sources = [...real.map((m) => m.srcDir), SERIAL_FIXTURE];
  const n = reps(3);
  const runs: (SampledRun & BusyFigures)[] = [];
  for (let i = 0; i < n; i++) {
    step(`busy-cores: run ${i + 1}/${n}: autoinstall -j ${jobs} of the 3 Debian sources + ootmod-serial, sampled once a second`);
    const r = await sampledAutoinstall(env, sources, jobs, 1000);
    runs.push({ ...r, ...busyFigures(r, jobs) });
  }
  const share = (r: BusyFigures) => (r.eligible ? r.reached / r.eligible : undefined);
  const shares = runs.map(share).filter((x): x is number => x !== undefined);
  const utils = runs.map((r) => r.coresWhilePending).filter((x): x is number => x !== undefined);
  const used = runs.map((r) => r.usedShare).filter((x): x is number => x !== undefined);
  const shareMed = shares.length ? median(shares) : undefined;
  const utilMed = utils.length ? median(utils) / jobs : undefined;
  const usedMed = used.length ? median(used) : undefined;
  // Other processes that take the CPU leave no idle time: "free CPU used" then says nothing. Not judged.
  const noisyRuns = runs.filter((r) => (r.otherLoad ?? 0) > 0.2).length;
  const noisy = noisyRuns * 2 > runs.length;
  const pct = (x: number | undefined) => (x === undefined ? '-' : `${(x * 100).toFixed(0)}%`);
  const out = [`(-j ${jobs}; ${n} run${n > 1 ? 's' : ''}; "pending": builds not installed yet; "running": processes of ootmod's tree in state R at the sample)`];
  out.push(...table(
    ['run', 'wall', 'samples with >= jobs pending', 'of them >= jobs running', 'cores busy while pending', 'cores idle then', 'free CPU used', 'cores over the run', 'other load', 'finished (s after start)'],
    runs.map((r, i) => [
      `${i + 1}`, secs(r.seconds, 1), `${r.eligible}`, `${r.reached} (${pct(share(r))})`, r.coresWhilePending?.toFixed(2) ?? '-', r.idleWhilePending?.toFixed(2) ?? '-',
      r.usedShare === undefined ? '-' : `${(r.usedShare * 100).toFixed(1)}%`, r.coresOverall?.toFixed(2) ?? '-',
      r.otherLoad?.toFixed(2) ?? '-', Object.entries(r.finished).map(([k, v]) => `${k.replace(/-[^-]+$/, '')} ${v?.toFixed(0) ?? 'never'}`).join(', '),
    ]),
  ).map((l) => `   ${l}`));
  out.push(
    `"cores busy": CPU time of ootmod's process tree per 1-s window (/proc). "cores idle": the machine's idle + iowait time (/proc/stat) in the same windows. ` +
      `"free CPU used": busy / (busy + idle), the share of the CPU time that nothing else on the machine took which ootmod used. Kernel threads (rcu, kworkers, ` +
      `memory compaction) and the machine's own daemons take a few hundredths of a core that ootmod cannot have: they lower "cores busy" but not "free CPU used".`,
  );
  for (const r of runs) if (r.exit !== 0) out.push(`a run exited with ${r.exit}: ${r.summary}`);
  const goals: Goal[] = [
    {
      what: `busy-cores: >= ${jobs} running whenever >= ${jobs} builds are pending (1-s samples)`,
      value: pct(shareMed), baseline: `${runs.reduce((a, r) => a + r.eligible, 0)} samples`, limit: `>= ${pct(SHARE_GOAL)} of them`,
      pass: shareMed === undefined ? undefined : shareMed >= SHARE_GOAL,
    },
    {
      what: `busy-cores: CPU use while >= ${jobs} builds are pending (the free CPU time ootmod used; -j = all ${jobs} cores)${noisy ? ' (noisy: not judged)' : ''}`,
      value: usedMed === undefined ? '-' : `${(usedMed * 100).toFixed(1)}%`,
      baseline: utilMed === undefined ? '-' : `tree alone: ${(utilMed * jobs).toFixed(2)} of ${jobs} cores`, ratio: usedMed, limit: `>= ${pct(UTILISATION_GOAL)}`,
      pass: usedMed === undefined || jobs !== CORES || noisy ? undefined : usedMed >= UTILISATION_GOAL,
    },
  ];
  return { lines: out, goals, data: { jobs, runs } };
}

export async function maxJobsRow(env: Env, real: RealModule[]): Promise<RowResult> {
  const sources = [...real.map((m) => m.srcDir), SERIAL_FIXTURE];
  const results: { jobs: number; runs: { seconds: number; exit: number; samples: number; maxCompilers: number; over: number; overExample?: string[]; summary: string }[] }[] = [];
  for (const jobs of [1, 4]) {
    const n = reps(3) > 1 ? 2 : 1;
    const runs = [];
    for (let i = 0; i < n; i++) {
      step(`max-jobs: -j ${jobs}, run ${i + 1}/${n}: compilers counted every 50 ms`);
      const r = await sampledAutoinstall(env, sources, jobs, 50);
      runs.push({
        seconds: r.seconds, exit: r.exit, samples: r.ticks.length, summary: r.summary,
        maxCompilers: Math.max(0, ...r.ticks.map((t) => t.compilers)), over: r.ticks.filter((t) => t.compilers > jobs).length,
        overExample: r.ticks.find((t) => t.over)?.over,
      });
    }
    results.push({ jobs, runs });
  }
  const out = ['(3 Debian sources + ootmod-serial; compilers = cc1, cc1plus, rustc processes of ootmod\'s tree, read from /proc every 50 ms)'];
  out.push(...table(
    ['--jobs', 'run', 'wall', 'samples', 'most compilers at once', 'samples over --jobs', 'result'],
    results.flatMap((j) => j.runs.map((r, i) => [`${j.jobs}`, `${i + 1}`, secs(r.seconds, 1), `${r.samples}`, `${r.maxCompilers}`, `${r.over}`, r.summary.replace(/^autoinstall: /, '')])),
  ).map((l) => `   ${l}`));
  for (const j of results) for (const r of j.runs) if (r.overExample) out.push(`--jobs ${j.jobs}: compilers at a sample over the limit: ${r.overExample.join(' | ')}`);
  const goals: Goal[] = results.map((j) => {
    const most = Math.max(...j.runs.map((r) => r.maxCompilers));
    return {
      what: `max-jobs: concurrent compilers with --jobs ${j.jobs}`, value: `${most}`, baseline: `--jobs ${j.jobs}`, ratio: most / j.jobs,
      limit: `<= ${j.jobs}`, pass: j.runs.every((r) => r.samples > 0 && r.exit === 0) ? most <= j.jobs : undefined,
    };
  });
  return { lines: out, goals, data: results };
}

