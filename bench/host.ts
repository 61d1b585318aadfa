// The rows measured on this machine's own kernel headers, in sandbox roots (and, for DKMS, on the real
// system, restored after each sample):
//   overhead     `ootmod install NAME -k KVER --force` in a fresh sandbox vs the same kbuild `make` run directly
//                on a fresh copy, alternating, minus one `depmod -b R -a KVER`          goal <= 0.3 s per module
//   autoinstall  three real Debian -dkms sources: ootmod vs the host's DKMS, alternating (A B A B), -j the same
//                for both, >= 3 samples each                                            goal <= 0.70x DKMS's median
//                and the peak RSS of the ootmod process in those runs                   goal <= 120 MB
//   status       `ootmod status` with 3 and 200+ records, interleaved with `node -e 0`   goal <= 0.15 s
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { extractDkmsSources, fetchDeb, type FetchedDeb } from '../test/support/debs';
import { dkmsSession, type DkmsSample } from './dkms';
import {
  CORES, FIXTURES, GNU_TIME, OOTMOD, QUICK, addSource, alternate, foreignLoad, makeSandbox, mb, median, must, onPath, ratio, removeTemp, run, sample,
  secs, signedSecs, step, table, tempDir, verdict, waitQuiet, type Goal, type RowResult,
} from './lib';

export const GOALS = { overheadSeconds: 0.3, autoinstallRatio: 0.7, statusRatio: 0.5, rssMb: 120 };
/** DKMS 3.2.2 on the three packages, measured elsewhere when the first goal was set: a label, never a goal. */
const DKMS_322_ELSEWHERE_SECONDS = 36;
const FIXTURE_MODULES = ['ootmod-hello-1.0', 'ootmod-pair-2.1', 'ootmod-patched-1.0'];
/** The three Debian -dkms sources (packaged from trixie on; not in bookworm), newest suite last. */
export const DEBIAN_PACKAGES = ['dkms-test-dkms', 'acpi-call-dkms', 'v4l2loopback-dkms'];

const intEnv = (name: string, def: number, min: number) => Math.max(min, Number(process.env[name] ?? def) || def);
/** Samples per side: 1 in quick mode, else BENCH_REPS (default 5 for the cheap rows, 3 for autoinstall; min 3). */
export const reps = (def: number) => (QUICK ? 1 : intEnv('BENCH_REPS', def, 3));
/** Repetitions beyond the third are skipped when the per-module phase would take longer than this. */
const PER_MODULE_BUDGET_SECONDS = intEnv('BENCH_PER_MODULE_BUDGET', 240, 0);
const STATUS_RUNS = QUICK ? 3 : intEnv('BENCH_STATUS_RUNS', 15, 10);
const FAKE_RECORDS = intEnv('BENCH_FAKE_RECORDS', 200, 1);

// ----------------------------------------------------------------------------------------------
// Environment

export interface Env {
  kver: string;
  /** Target of the real /usr/lib/modules/KVER/build link (what sandboxes link to). */
  buildLink: string;
  headersDir: string;
  cores: number;
  compiler?: string;
  node: string;
  dkms?: string;
  allKernels: string[];
}

function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, undefined, { numeric: true });
}

export async function environment(): Promise<Env> {
  const modules = '/usr/lib/modules';
  const kernels = (existsSync(modules) ? readdirSync(modules) : []).filter((k) => existsSync(path.join(modules, k, 'build'))).sort(compareVersions);
  const kver = kernels[kernels.length - 1];
  if (!kver) throw new Error('no kernel headers: no /usr/lib/modules/*/build (install linux-headers-amd64)');
  const link = path.join(modules, kver, 'build');
  const target = readlinkSync(link);
  const buildLink = path.isAbsolute(target) ? target : path.resolve(path.dirname(link), target);
  // ootmod's own view of the kernel: the compiler it exports as CC for make.
  const kj = await must(OOTMOD, ['kernels', '--json']);
  const info = (JSON.parse(kj.stdout) as { kernels: { release: string; compiler?: { command?: string } }[] }).kernels.find((k) => k.release === kver);
  const dkmsPath = onPath('dkms');
  const dkms = dkmsPath ? (await run('dkms', ['--version'])).stdout.trim().replace(/^dkms-?\s*/, '') : undefined;
  return {
    kver,
    buildLink,
    headersDir: realpathSync(link),
    cores: CORES,
    compiler: info?.compiler?.command,
    node: process.version,
    dkms,
    allKernels: kernels,
  };
}

export async function ensureGnuTime(): Promise<boolean> {
  if (existsSync(GNU_TIME)) return true;
  if (process.getuid?.() !== 0) return false;
  step('installing the time package (for /usr/bin/time -f %M)');
  await run('apt-get', ['install', '-y', '--no-install-recommends', 'time'], { env: { DEBIAN_FRONTEND: 'noninteractive' } });
  return existsSync(GNU_TIME);
}

// ----------------------------------------------------------------------------------------------
// 1. Per-module overhead

interface ConfBits {
  name: string;
  patches: string[];
  preBuild?: string;
}

/** The few dkms.conf directives the bare-make baseline must honour to build the same thing. */
function confBits(dir: string, kver: string): ConfBits {
  const text = readFileSync(path.join(dir, 'dkms.conf'), 'utf8');
  const get = (re: RegExp) => [...text.matchAll(re)].map((m) => [m[1]!, m[2]!] as const);
  const unq = (s: string) => s.replace(/^["']|["']$/g, '');
  const matches = new Map(get(/^PATCH_MATCH\[(\d+)\]=(.*)$/gm).map(([i, v]) => [i, unq(v)]));
  const patches = get(/^PATCH\[(\d+)\]=(.*)$/gm)
    .filter(([i]) => !matches.has(i) || new RegExp(matches.get(i)!).test(kver))
    .map(([, v]) => unq(v));
  const preBuild = /^PRE_BUILD=(.*)$/m.exec(text)?.[1];
  const name = unq(/^PACKAGE_NAME=(.*)$/m.exec(text)?.[1] ?? path.basename(dir).replace(/-[^-]+$/, ''));
  return { name, patches, preBuild: preBuild ? unq(preBuild).replaceAll('$kernelver', kver).replaceAll('${kernelver}', kver) : undefined };
}

function countKo(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) n += countKo(path.join(dir, e.name));
    else if (e.name.endsWith('.ko')) n++;
  }
  return n;
}

interface Timing {
  seconds: number;
  /** CPU seconds (user+system) of the process tree, when /usr/bin/time is there. */
  cpu?: number;
  /** Cores other processes kept busy during this sample. */
  otherLoad?: number;
}

/** Times one sample after waiting for a quiet machine, noting the other load during it. */
async function quietly<T extends { otherLoad?: number }>(fn: () => Promise<T>): Promise<T> {
  await waitQuiet();
  const load = foreignLoad();
  const t = await fn();
  t.otherLoad = load();
  return t;
}

const cores = (x: number | undefined) => (x === undefined ? '-' : `${x.toFixed(2)} cores`);
const unreliable = (m: { make: Timing[]; ootmod: Timing[] }) => noisy([...m.make, ...m.ootmod]) * 2 > m.make.length + m.ootmod.length;
const noisy = (ts: { otherLoad?: number }[]) => ts.filter((t) => (t.otherLoad ?? 0) > 0.2).length;

/** The kbuild make ootmod runs for a single job, on a fresh prepared copy, timed alone. */
async function bareMake(env: Env, fixture: string): Promise<Timing> {
  const dir = tempDir('ootmod-bench-make-');
  try {
    const copy = path.join(dir, path.basename(fixture));
    cpSync(fixture, copy, { recursive: true, preserveTimestamps: true });
    const bits = confBits(copy, env.kver);
    // Untimed preparation (ootmod does it inside its own time, so it counts as ootmod overhead).
    for (const p of bits.patches) await must('patch', ['-p1', '--batch', '--forward', '-i', path.join(copy, 'patches', p)], { cwd: copy });
    if (bits.preBuild) {
      const [script, ...args] = bits.preBuild.split(/\s+/);
      await must(path.join(copy, script!), args, { cwd: copy });
    }
    const r = await must('make', [`-j${env.cores}`, `KERNELRELEASE=${env.kver}`, '-C', env.headersDir, `M=${copy}`, 'modules'], {
      cwd: copy,
      measure: true,
      env: { CC: env.compiler, KERNEL_CC: env.compiler, CXX: undefined, CFLAGS: undefined, CXXFLAGS: undefined, LDFLAGS: undefined, MAKEFLAGS: undefined, MFLAGS: undefined },
    });
    if (!countKo(copy)) throw new Error(`bare make of ${path.basename(fixture)} built no .ko`);
    return { seconds: r.seconds, cpu: r.cpuSeconds };
  } finally {
    removeTemp(dir);
  }
}

interface OotmodInstall {
  ootmod: Timing;
  depmod: Timing;
  /** ootmod's own record of its make command's duration (make.log "# elapsed time"). */
  makeInLog?: number;
  otherLoad?: number;
}

/** The elapsed time make.log records for the make command (ootmod logs each command it runs). */
function makeElapsedFromLog(root: string, kver: string, name: string): number | undefined {
  const dir = path.join(root, 'var/lib/ootmod/built', kver.replaceAll('/', '_'), name);
  if (!existsSync(dir)) return undefined;
  for (const v of readdirSync(dir)) {
    const log = path.join(dir, v, 'make.log');
    if (!existsSync(log)) continue;
    let inMake = false;
    for (const line of readFileSync(log, 'utf8').split('\n')) {
      // ootmod's make: it injects KERNELRELEASE= right after `make` (and, before the jobserver, a -jN first).
      if (line.startsWith('# command: ')) inMake = /\bmake (-j\d+ )?KERNELRELEASE=/.test(line);
      const m = /^# elapsed time: ([\d.]+)s/.exec(line);
      if (m && inMake) return Number(m[1]);
    }
  }
  return undefined;
}

/** `ootmod install NAME -k KVER --force` in a fresh sandbox; then one depmod on that sandbox, timed alone. */
async function ootmodInstall(env: Env, fixture: string): Promise<OotmodInstall> {
  const root = makeSandbox(env.kver, env.buildLink);
  try {
    addSource(root, fixture);
    const { name } = confBits(fixture, env.kver);
    const r = await must(OOTMOD, ['--root', root, 'install', name, '-k', env.kver, '--force'], { measure: true });
    if (!/1 installed/.test(r.stdout)) throw new Error(`ootmod install ${name}: unexpected summary: ${r.stdout.trim()}`);
    const d = await must('depmod', ['-b', root, '-a', env.kver], { measure: true });
    return {
      ootmod: { seconds: r.seconds, cpu: r.cpuSeconds }, depmod: { seconds: d.seconds, cpu: d.cpuSeconds },
      makeInLog: makeElapsedFromLog(root, env.kver, name),
    };
  } finally {
    removeTemp(root);
  }
}

interface ModuleRow {
  module: string;
  make: Timing[];
  ootmod: Timing[];
  depmod: Timing[];
  makeMedian: number;
  ootmodMedian: number;
  depmodMedian: number;
  overhead: number;
  overheadExclKeygen: number;
  /** The same difference in CPU seconds (less sensitive to other load on the machine). */
  cpuOverhead?: number;
  /** Per sample: ootmod wall - the make time ootmod's make.log records - depmod (no separate baseline). */
  outsideMake: number[];
  outsideMakeMedian?: number;
  reps: number;
  pass: boolean;
}

async function perModule(env: Env, keygenMedian: number): Promise<ModuleRow[]> {
  const REPS = reps(5);
  if (!QUICK) {
    step(`per-module: warm-up (one bare make, one ootmod install; untimed)`);
    const first = path.join(FIXTURES, FIXTURE_MODULES[0]!);
    await bareMake(env, first);
    await ootmodInstall(env, first);
  }
  const samples = new Map(FIXTURE_MODULES.map((m) => [m, { make: [] as Timing[], ootmod: [] as Timing[], depmod: [] as Timing[], outsideMake: [] as number[] }]));
  const phaseStart = Date.now();
  let done = 0;
  for (let rep = 1; rep <= REPS; rep++) {
    // At least 3 repetitions; more only while the phase stays within its time budget (busy machines are slow).
    if (rep > 3 && (Date.now() - phaseStart) / 1000 > PER_MODULE_BUDGET_SECONDS * (rep - 1) / REPS) {
      step(`per-module: stopping after ${rep - 1} repetitions (time budget ${PER_MODULE_BUDGET_SECONDS} s)`);
      break;
    }
    done = rep;
    for (const m of FIXTURE_MODULES) {
      const fixture = path.join(FIXTURES, m);
      const s = samples.get(m)!;
      // Alternating, so drift (thermal, page cache, other load) hits both sides alike.
      step(`per-module: rep ${rep}/${REPS} ${m}: bare make -j${env.cores}`);
      s.make.push(await quietly(() => bareMake(env, fixture)));
      step(`per-module: rep ${rep}/${REPS} ${m}: ootmod install --force (fresh sandbox) + depmod`);
      const o = await quietly(() => ootmodInstall(env, fixture));
      o.ootmod.otherLoad = o.otherLoad;
      s.ootmod.push(o.ootmod);
      s.depmod.push(o.depmod);
      if (o.makeInLog !== undefined) s.outsideMake.push(o.ootmod.seconds - o.makeInLog - o.depmod.seconds);
    }
  }
  return FIXTURE_MODULES.map((m) => {
    const s = samples.get(m)!;
    const wall = (ts: Timing[]) => median(ts.map((t) => t.seconds));
    const cpu = (ts: Timing[]) => (ts.every((t) => t.cpu !== undefined) ? median(ts.map((t) => t.cpu!)) : undefined);
    const makeMedian = wall(s.make);
    const ootmodMedian = wall(s.ootmod);
    const depmodMedian = wall(s.depmod);
    const overhead = ootmodMedian - makeMedian - depmodMedian;
    const [cm, co, cd] = [cpu(s.make), cpu(s.ootmod), cpu(s.depmod)];
    return {
      module: m, ...s, makeMedian, ootmodMedian, depmodMedian, overhead,
      overheadExclKeygen: overhead - keygenMedian,
      cpuOverhead: cm !== undefined && co !== undefined && cd !== undefined ? co - cm - cd : undefined,
      outsideMakeMedian: s.outsideMake.length ? median(s.outsideMake) : undefined,
      reps: done,
      pass: overhead <= GOALS.overheadSeconds,
    };
  });
}

/** The MOK key generation a fresh sandbox pays once (the same openssl command ootmod runs). */
async function keygen(): Promise<number[]> {
  step('timing MOK key generation (openssl req -newkey rsa:2048, as ootmod runs it) x3');
  return sample(QUICK ? 1 : 3, async () => {
    const dir = tempDir('ootmod-bench-key-');
    try {
      const r = await must('openssl', [
        'req', '-new', '-x509', '-nodes', '-utf8', '-sha256', '-days', '36500', '-batch', '-newkey', 'rsa:2048', '-outform', 'DER',
        '-subj', '/CN=bench', '-addext', 'extendedKeyUsage=codeSigning', '-keyout', path.join(dir, 'k'), '-out', path.join(dir, 'c'),
      ], { env: { OPENSSL_CONF: '/dev/null' } });
      return r.seconds;
    } finally {
      removeTemp(dir);
    }
  });
}

// ----------------------------------------------------------------------------------------------
// 2. Real Debian packages

export interface RealModule {
  pkg: string;
  deb: FetchedDeb;
  name: string;
  version: string;
  srcDir: string;
}

/** The Debian sources from the first of `suites` that has them, extracted into a staging dir. */
export async function realPackages(suites: string[]): Promise<RealModule[]> {
  const staging = tempDir('ootmod-bench-debs-');
  const out: RealModule[] = [];
  for (const pkg of DEBIAN_PACKAGES) {
    const deb = await fetchDeb(pkg, suites, step);
    step(`${pkg}: ${deb.suite} ${deb.version}${deb.fromCache ? ' (cached)' : ' (downloaded)'}: dpkg-deb -x`);
    const dirs = await extractDkmsSources(deb.file, path.join(staging, pkg));
    if (!dirs.length) throw new Error(`${deb.file} has no /usr/src/<name>-<version>/dkms.conf`);
    for (const d of dirs) {
      const text = readFileSync(path.join(d, 'dkms.conf'), 'utf8');
      const unq = (s: string | undefined) => s?.trim().replace(/^["']|["']$/g, '');
      const base = path.basename(d);
      const name = unq(/^PACKAGE_NAME=(.*)$/m.exec(text)?.[1]) ?? base.replace(/-[^-]+$/, '');
      const version = base.startsWith(`${name}-`) ? base.slice(name.length + 1) : unq(/^PACKAGE_VERSION=(.*)$/m.exec(text)?.[1]) ?? '';
      out.push({ pkg, deb, name, version, srcDir: d });
    }
  }
  return out;
}

export interface AutoinstallResult {
  root: string;
  /** Date.now() when it was started. */
  started: number;
  seconds: number;
  /** CPU seconds of ootmod and everything it ran. */
  cpu?: number;
  exit: number;
  summary: string;
  /** /usr/bin/time %M: the largest max RSS among ootmod and the descendants it waited for (make, cc1...). */
  timeMaxRssKb?: number;
  /** VmHWM of the ootmod (node) process itself, sampled every 20 ms. */
  nodeHwmKb?: number;
  perJob: string[];
  otherLoad?: number;
}

/** `ootmod --root SANDBOX autoinstall -k KVER -j JOBS` on a fresh sandbox holding these sources. */
export async function ootmodAutoinstall(env: Env, sources: string[], jobs: number, opts: { onSpawn?: (pid: number) => void } = {}): Promise<AutoinstallResult> {
  const root = makeSandbox(env.kver, env.buildLink);
  for (const src of sources) addSource(root, src);
  const args = ['--root', root, 'autoinstall', '-k', env.kver, '-j', String(jobs)];
  step(`ootmod ${args.join(' ')} (${sources.map((m) => path.basename(m)).join(', ')})`);
  const started = Date.now();
  const r = await run(OOTMOD, args, { measure: true, peak: true, onSpawn: opts.onSpawn });
  const perJob = r.stderr.split('\n').filter((l) => /^(installed|failed|built)\s/.test(l));
  return {
    root, started, seconds: r.seconds, cpu: r.cpuSeconds, exit: r.code, summary: r.stdout.trim().split('\n').pop() ?? '',
    timeMaxRssKb: r.maxRssKb, nodeHwmKb: r.peakKb, perJob,
  };
}

// ----------------------------------------------------------------------------------------------
// 3. status

interface StatusResult {
  nodeStart: number[];
  version: number[];
  status3: number[];
  statusMany: number[];
  /** `dkms status` with DKMS holding the same 3 modules, interleaved with the rest (the baseline). */
  dkmsStatus: number[];
  rows3: number;
  rowsMany: number;
  records: number;
  /**
   * The same without NODE_EXTRA_CA_CERTS, when the benchmark's environment sets it: node then reads and parses
   * that CA bundle at every start, which a machine running ootmod from a dpkg trigger does not do.
   */
  clean?: { nodeStart: number[]; status3: number[]; statusMany: number[] };
}

interface RecordShape {
  module: string;
  version: string;
  kernel: string;
  arch: string;
  status: string;
  inputsKey: string;
  log?: string;
  built: string[];
  installed: { module: string; path: string }[];
  signed?: boolean;
  updatedAt: string;
  durationMs?: number;
}

/** A copy of `root` whose state file also holds `n` fake installed records (with their files present). */
function fakeStateRoot(env: Env, root: string, n: number): { root: string; records: number } {
  const fake = tempDir('ootmod-bench-fake-');
  rmSync(fake, { recursive: true, force: true });
  cpSync(root, fake, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  const stateFile = path.join(fake, 'var/lib/ootmod/state.json');
  const state = JSON.parse(readFileSync(stateFile, 'utf8').replaceAll(root, fake)) as { format: number; records: Record<string, RecordShape> };
  const template = Object.values(state.records)[0];
  if (!template) throw new Error(`no records in ${stateFile} after autoinstall`);
  // Several kernels, as a machine that keeps old kernels has; names derived from the real one.
  const kernels = [env.kver, ...[1, 2, 3].map((i) => `${env.kver}+fake${i}`)];
  for (let i = 0; i < n; i++) {
    const kernel = kernels[i % kernels.length]!;
    const module = `fake-module-${Math.floor(i / kernels.length)}`;
    const version = `1.${i % 7}.${Math.floor(i / kernels.length)}`;
    const ko = module.replaceAll('-', '_');
    const builtDir = path.join(fake, 'var/lib/ootmod/built', kernel, module, version);
    const installDir = path.join(fake, 'usr/lib/modules', kernel, 'updates/ootmod');
    mkdirSync(builtDir, { recursive: true });
    mkdirSync(installDir, { recursive: true });
    writeFileSync(path.join(builtDir, `${ko}.ko`), '');
    writeFileSync(path.join(installDir, `${ko}.ko`), '');
    state.records[`${module}/${version}/${kernel}`] = {
      ...template,
      module, version, kernel,
      inputsKey: (i * 2654435761 >>> 0).toString(16).padStart(8, '0').repeat(4),
      log: path.join(builtDir, 'make.log'),
      status: 'installed',
      built: [path.join(builtDir, `${ko}.ko`)],
      installed: [{ module: ko, path: path.join(installDir, `${ko}.ko`) }],
      updatedAt: new Date(Date.now() - i * 60_000).toISOString(),
      durationMs: 4000 + i,
    };
  }
  writeFileSync(stateFile, `${JSON.stringify(state, null, 1)}\n`);
  return { root: fake, records: Object.keys(state.records).length };
}

/** Every measure once per round, round after round (interleaved, so drift hits all of them alike). */
async function statusTimes(env: Env, root: string, withDkms: boolean): Promise<StatusResult> {
  const fake = fakeStateRoot(env, root, FAKE_RECORDS);
  const res: StatusResult = { nodeStart: [], version: [], status3: [], statusMany: [], dkmsStatus: [], rows3: 0, rowsMany: 0, records: fake.records };
  const clean = process.env.NODE_EXTRA_CA_CERTS ? { nodeStart: [] as number[], status3: [] as number[], statusMany: [] as number[] } : undefined;
  const noCa = { NODE_EXTRA_CA_CERTS: undefined };
  step(`status: ${STATUS_RUNS} rounds of node -e 0, ootmod --version, ootmod status (3 modules), ootmod status (${fake.records} records)${withDkms ? ', dkms status (the same 3 modules)' : ''}${clean ? ', and the same without NODE_EXTRA_CA_CERTS' : ''}`);
  await waitQuiet();
  for (let i = 0; i < STATUS_RUNS; i++) {
    res.nodeStart.push((await must(process.execPath, ['-e', '0'])).seconds);
    res.version.push((await must(OOTMOD, ['--version'])).seconds);
    const r3 = await must(OOTMOD, ['--root', root, 'status']);
    res.rows3 = r3.stdout.trim().split('\n').length - 1;
    res.status3.push(r3.seconds);
    const rm = await must(OOTMOD, ['--root', fake.root, 'status']);
    res.rowsMany = rm.stdout.trim().split('\n').length - 1;
    res.statusMany.push(rm.seconds);
    if (withDkms) res.dkmsStatus.push((await must('dkms', ['status'])).seconds);
    if (clean) {
      clean.nodeStart.push((await must(process.execPath, ['-e', '0'], { env: noCa })).seconds);
      clean.status3.push((await must(OOTMOD, ['--root', root, 'status'], { env: noCa })).seconds);
      clean.statusMany.push((await must(OOTMOD, ['--root', fake.root, 'status'], { env: noCa })).seconds);
    }
  }
  removeTemp(fake.root);
  return { ...res, clean };
}

// ----------------------------------------------------------------------------------------------
// Rows

const indent = (lines: string[]) => lines.map((l) => `   ${l}`);

export async function overheadRow(env: Env): Promise<RowResult> {
  const keygenSamples = await keygen();
  const keygenMedian = median(keygenSamples);
  const modules = await perModule(env, keygenMedian);
  const out: string[] = [];
  out.push(`(median of ${modules[0]?.reps ?? '?'} alternating repetitions; make -j${env.cores} as ootmod uses for a single job; overhead = ootmod - make - depmod)`);
  out.push(...indent(table(
    ['module', 'bare make', 'ootmod install', 'ootmod/make', 'depmod', 'overhead', 'excl. keygen', 'outside make', 'CPU overhead', 'noisy samples', 'goal'],
    modules.map((m) => [
      m.module, secs(m.makeMedian), secs(m.ootmodMedian), ratio(m.ootmodMedian, m.makeMedian), secs(m.depmodMedian, 3),
      signedSecs(m.overhead), signedSecs(m.overheadExclKeygen), signedSecs(m.outsideMakeMedian), signedSecs(m.cpuOverhead), `${noisy([...m.make, ...m.ootmod])}/${m.make.length + m.ootmod.length}`,
      `${verdict(m.pass)}${unreliable(m) ? '?' : ''} (<= ${GOALS.overheadSeconds} s)`,
    ]),
  )));
  out.push(`A fresh sandbox has no MOK key: each ootmod run includes generating one (openssl: median ${secs(keygenMedian)}); "excl. keygen" is the overhead once the key exists.`);
  out.push(`"outside make": ootmod wall - the make time ootmod's own make.log records - depmod, per run. "CPU overhead": the same in user+system CPU seconds.`);
  out.push(`"noisy samples": samples during which other processes kept more than 0.2 cores busy.`);
  out.push(`raw wall samples (make | ootmod): ${modules.map((m) => `${m.module.replace(/^ootmod-/, '')} ${m.make.map((t) => t.seconds.toFixed(2)).join('/')} | ${m.ootmod.map((t) => t.seconds.toFixed(2)).join('/')}`).join('; ')}`);
  const goals: Goal[] = modules.map((m) => ({
    what: `overhead of one install, ${m.module}${unreliable(m) ? ' (noisy)' : ''}`,
    value: signedSecs(m.overhead),
    baseline: `bare make ${secs(m.makeMedian)} + depmod ${secs(m.depmodMedian, 3)}`,
    ratio: m.ootmodMedian / (m.makeMedian + m.depmodMedian),
    limit: `<= +${GOALS.overheadSeconds} s`,
    pass: m.pass,
  }));
  return { lines: out, goals, data: { keygenSeconds: keygenSamples, modules } };
}

/** DKMS, the baseline of the autoinstall row: installed from the host's apt sources when missing (as root). */
async function ensureDkms(env: Env): Promise<void> {
  if (env.dkms || process.getuid?.() !== 0 || process.env.BENCH_SKIP_DKMS === '1') return;
  step('installing the dkms package (the baseline of the autoinstall row)');
  await run('apt-get', ['install', '-y', '--no-install-recommends', 'dkms'], { env: { DEBIAN_FRONTEND: 'noninteractive' } });
  if (onPath('dkms')) env.dkms = (await run('dkms', ['--version'])).stdout.trim().replace(/^dkms-?\s*/, '');
}

export async function autoinstallRow(env: Env, real: RealModule[], resultsDir: string): Promise<RowResult> {
  await ensureDkms(env);
  const n = reps(3);
  const jobs = env.cores;
  const sources = real.map((m) => m.srcDir);
  const dkms = env.dkms ? await dkmsSession(env.kver, real.map((m) => ({ name: m.name, version: m.version, srcDir: m.srcDir })), path.join(resultsDir, 'dkms.log')) : undefined;
  const dkmsSkip = !env.dkms ? 'dkms is not installed (apt-get install dkms)' : process.env.BENCH_SKIP_DKMS === '1' ? 'BENCH_SKIP_DKMS=1' : dkms?.skipped;
  if (!QUICK) {
    step('autoinstall: warm-up (one ootmod autoinstall, untimed: the headers into the page cache for both sides)');
    removeTemp((await ootmodAutoinstall(env, sources, jobs)).root);
  }
  const dkmsStatusRuns = QUICK ? 3 : 10;
  const { a: ours, b: theirs } = await alternate(
    n,
    async (i) => {
      step(`autoinstall: sample ${i + 1}/${n}: ootmod`);
      await waitQuiet();
      const load = foreignLoad();
      const x = await ootmodAutoinstall(env, sources, jobs);
      x.otherLoad = load();
      removeTemp(x.root);
      return x;
    },
    async (i): Promise<DkmsSample | undefined> => {
      if (dkmsSkip || !dkms) return undefined;
      step(`autoinstall: sample ${i + 1}/${n}: DKMS ${dkms.version}`);
      await waitQuiet();
      return dkms.sample({ jobs, statusRuns: i === n - 1 ? dkmsStatusRuns : 0 });
    },
  );
  const dk = theirs.filter((x): x is DkmsSample => x !== undefined);
  const oursMed = median(ours.map((x) => x.seconds));
  const dkMed = dk.length ? median(dk.map((x) => x.seconds)) : undefined;
  const oursOk = ours.every((x) => x.exit === 0);
  const dkOk = dk.every((x) => x.exit === 0);
  const r = dkMed ? oursMed / dkMed : undefined;
  const cpuMed = (xs: { cpu?: number }[]) => (xs.length && xs.every((x) => x.cpu !== undefined) ? median(xs.map((x) => x.cpu!)) : undefined);
  const out: string[] = [];
  out.push(`(${real.map((m) => `${m.pkg} ${m.deb.version} [${m.deb.suite}]`).join(', ')}; ${n} sample${n > 1 ? 's' : ''} each, alternating ootmod, DKMS; -j ${jobs} for both; each sample from a fresh state: a new sandbox for ootmod, a new dkms add for DKMS, removed after)`);
  out.push(...indent(table(
    ['side', 'median wall', 'samples', 'median CPU', 'other load (max)', 'result'],
    [
      ['ootmod autoinstall (sandbox)', secs(oursMed), ours.map((x) => x.seconds.toFixed(1)).join(' / '), secs(cpuMed(ours), 1), cores(Math.max(...ours.map((x) => x.otherLoad ?? 0))),
        `${ours[ours.length - 1]?.summary.replace(/^autoinstall: /, '') ?? ''}${oursOk ? '' : ' (a run failed)'}`],
      ...(dk.length && dkms
        ? [[`DKMS ${dkms.version} autoinstall (real /)`, secs(dkMed), dk.map((x) => x.seconds.toFixed(1)).join(' / '), secs(cpuMed(dk), 1), cores(Math.max(...dk.map((x) => x.otherLoad ?? 0))),
            `${dk[dk.length - 1]!.installedCount} installed${dkOk ? '' : ', a run failed'}`]]
        : []),
    ],
  )));
  if (dkmsSkip) out.push(`DKMS not measured: ${dkmsSkip}`);
  if (dk.length) {
    const st = dk[dk.length - 1]!.statusSamples;
    if (st.length) out.push(`dkms status with these 3 modules: median ${secs(median(st), 3)} (${st.length} runs; for the status row's comparison)`);
    if (dk[0]!.depmodNote) out.push(`note: ${dk[0]!.depmodNote}`);
    out.push(dkms!.restored ? 'host restored after every DKMS sample (dkms remove --all, /usr/src copies and every new file removed)'
      : `WARNING: host NOT fully restored: leftovers ${dkms!.leftovers.join(', ') || '-'}; missing ${dkms!.missing.join(', ') || '-'}`);
  }
  out.push(`For reference only, measured elsewhere (not this run): DKMS 3.2.2 took ${DKMS_322_ELSEWHERE_SECONDS} s on these three packages.`);
  for (const j of ours[ours.length - 1]?.perJob ?? []) out.push(`ootmod: ${j}`);
  // Memory, from the same ootmod runs.
  const maxOf = (xs: (number | undefined)[]) => (xs.some((x) => x !== undefined) ? Math.max(...xs.filter((x): x is number => x !== undefined)) : undefined);
  const nodeKb = maxOf(ours.map((x) => x.nodeHwmKb));
  const treeKb = maxOf(ours.map((x) => x.timeMaxRssKb));
  out.push(`memory in those ootmod runs: the ootmod (node) process ${mb(nodeKb)} (VmHWM sampled every 20 ms); largest process of its tree ${mb(treeKb)} (/usr/bin/time %M)`);
  const goals: Goal[] = [
    {
      what: 'autoinstall of the 3 Debian sources vs DKMS',
      value: secs(oursMed),
      baseline: dkMed !== undefined && dkms ? `DKMS ${dkms.version} ${secs(dkMed)}` : `DKMS not measured`,
      ratio: r,
      limit: `<= ${GOALS.autoinstallRatio.toFixed(2)}x DKMS`,
      pass: r === undefined ? undefined : r <= GOALS.autoinstallRatio && oursOk && dkOk,
    },
    { what: 'peak RSS of the ootmod process (autoinstall)', value: mb(nodeKb), baseline: '', limit: `<= ${GOALS.rssMb} MB`, pass: nodeKb === undefined ? undefined : nodeKb / 1024 <= GOALS.rssMb },
  ];
  return {
    lines: out, goals,
    data: { jobs, samples: n, ootmod: ours.map((x) => ({ ...x, root: undefined })), dkms: dk, dkmsVersion: dkms?.version, dkmsSkipped: dkmsSkip, dkms322ElsewhereSeconds: DKMS_322_ELSEWHERE_SECONDS },
  };
}

export async function statusRow(env: Env, real: RealModule[], resultsDir: string): Promise<RowResult> {
  step('status: one ootmod autoinstall to have 3 real records (untimed)');
  const x = await ootmodAutoinstall(env, real.map((m) => m.srcDir), env.cores);
  if (x.exit !== 0) throw new Error(`ootmod autoinstall failed: ${x.summary}`);
  try {
    // The baseline: `dkms status` while DKMS holds the same three modules, timed in the same rounds.
    await ensureDkms(env);
    const dkms = env.dkms && process.env.BENCH_SKIP_DKMS !== '1'
      ? await dkmsSession(env.kver, real.map((m) => ({ name: m.name, version: m.version, srcDir: m.srcDir })), path.join(resultsDir, 'dkms-status.log'))
      : undefined;
    let s: StatusResult | undefined;
    if (dkms && !dkms.skipped) {
      step(`status: DKMS ${dkms.version} builds the same 3 modules (untimed), then the rounds run while it holds them`);
      await dkms.sample({ jobs: env.cores, during: async () => void (s = await statusTimes(env, x.root, true)) });
    }
    s ??= await statusTimes(env, x.root, false);
    const nodeMed = median(s.nodeStart);
    const dkmsMed = s.dkmsStatus.length ? median(s.dkmsStatus) : undefined;
    const goal = (xs: number[]) => (dkmsMed === undefined ? 'n/a (no DKMS)' : `${verdict(median(xs) / dkmsMed <= GOALS.statusRatio)} (<= ${GOALS.statusRatio}x dkms status)`);
    const line = (label: string, xs: number[], g = '') => [label, secs(median(xs), 3), secs(Math.min(...xs), 3), ratio(median(xs), nodeMed), g];
    const rows = [
      line('node -e 0 (node start-up)', s.nodeStart),
      line('ootmod --version (bundle start-up)', s.version),
      ...(dkmsMed === undefined ? [] : [line(`dkms status (DKMS ${dkms!.version}, the same 3 modules): the baseline`, s.dkmsStatus)]),
      line(`ootmod status (${s.rows3} rows, 3 real modules)`, s.status3, goal(s.status3)),
      line(`ootmod status (${s.rowsMany} rows, ${s.records} records)`, s.statusMany, goal(s.statusMany)),
    ];
    if (s.clean) {
      rows.push(line('node -e 0, without NODE_EXTRA_CA_CERTS', s.clean.nodeStart), line('ootmod status (3), without it', s.clean.status3), line(`ootmod status (${s.records}), without it`, s.clean.statusMany));
    }
    const out = [`(median of ${STATUS_RUNS} interleaved rounds)`, ...indent(table(['command', 'median', 'min', 'vs node -e 0', 'goal'], rows))];
    out.push(`ootmod status minus node start-up: ${secs(median(s.status3) - nodeMed, 3)} (3 modules), ${secs(median(s.statusMany) - nodeMed, 3)} (${s.records} records)`);
    if (s.clean) out.push(`This environment sets NODE_EXTRA_CA_CERTS: every node start reads that bundle; a kernel hook's environment does not. Goal judged with it.`);
    if (dkms && !dkms.restored) out.push(`WARNING: host NOT fully restored after DKMS: leftovers ${dkms.leftovers.join(', ') || '-'}`);
    const judge = (what: string, xs: number[]): Goal => ({
      what, value: secs(median(xs), 3), baseline: dkmsMed === undefined ? 'dkms status not measured' : `dkms status ${secs(dkmsMed, 3)}`,
      ratio: dkmsMed === undefined ? undefined : median(xs) / dkmsMed, limit: `<= ${GOALS.statusRatio}x`, pass: dkmsMed === undefined ? undefined : median(xs) / dkmsMed <= GOALS.statusRatio,
    });
    const goals: Goal[] = [judge('status, 3 modules', s.status3), judge(`status, ${s.records} records`, s.statusMany)];
    return { lines: out, goals, data: s };
  } finally {
    removeTemp(x.root);
  }
}
