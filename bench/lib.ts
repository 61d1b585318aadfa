// Small helpers for the benchmark: running and timing commands, sandboxes, statistics, formatting.
import { spawn } from 'node:child_process';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { machineCpu } from './sampler';

export const REPO = path.resolve(__dirname, '..');
/** The bundle measured: dist/ootmod, or OOTMOD_BENCH_BIN (e.g. an older build, for a "before" figure). */
export const OOTMOD = process.env.OOTMOD_BENCH_BIN ? path.resolve(process.env.OOTMOD_BENCH_BIN) : path.join(REPO, 'dist', 'ootmod');
/** OOTMOD_BENCH_QUICK=1: one sample per side, no warm-up: proves every row runs; its figures are not goals met. */
export const QUICK = process.env.OOTMOD_BENCH_QUICK === '1';
export const CORES = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
export const FIXTURES = path.join(REPO, 'test', 'fixtures');

/** Progress for the reader, on stderr (stdout carries only the table). */
export function step(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall-clock time from spawn to exit, in seconds. */
  seconds: number;
  /** Peak VmHWM (kB) of the measured process itself (not its children), sampled every 20 ms. */
  peakKb?: number;
  /** With `measure`: user+system CPU seconds of the process and every descendant it waited for. */
  cpuSeconds?: number;
  /** With `measure`: /usr/bin/time's %M, the largest max RSS (kB) among the process and those descendants. */
  maxRssKb?: number;
}

export interface RunOptions {
  cwd?: string;
  /** Variables to set (undefined removes one), over process.env. */
  env?: Record<string, string | undefined>;
  /** Run under /usr/bin/time (when installed) for CPU time and %M; the wall time stays ours. */
  measure?: boolean;
  /** Sample the VmHWM of the measured process while it runs. */
  peak?: boolean;
  /** Called with the pid right after the spawn (e.g. to sample its process tree). */
  onSpawn?: (pid: number) => void;
}

export const GNU_TIME = '/usr/bin/time';

function mergedEnv(extra?: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries(extra ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

function readHwmKb(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function firstChild(pid: number): number | undefined {
  try {
    const first = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0];
    return first ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}

let timeFiles = 0;
/** Process groups of the commands running now, and the /usr/bin/time output files they will write. */
const active = new Set<number>();
const pendingTimeFiles = new Set<string>();
const interruptHooks: (() => void)[] = [];

/** Registers a synchronous clean-up for Ctrl-C / SIGTERM; returns a function that unregisters it. */
export function onInterrupt(fn: () => void): () => void {
  interruptHooks.push(fn);
  return () => {
    const i = interruptHooks.indexOf(fn);
    if (i >= 0) interruptHooks.splice(i, 1);
  };
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Whether any non-zombie process is in one of these process groups. */
function liveInGroups(groups: Set<number>): boolean {
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state !== 'Z' && groups.has(Number(pgrp))) return true;
    } catch {
      /* gone */
    }
  }
  return false;
}

let interrupted = false;
function interrupt(sig: NodeJS.Signals): void {
  if (interrupted) return;
  interrupted = true;
  step(`${sig}: stopping the commands this benchmark started, then cleaning up`);
  for (const pgid of active) {
    try {
      process.kill(-pgid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  // Up to 10 s for them to go (zombies do not count: nothing reaps them while this runs synchronously).
  for (let i = 0; i < 100 && liveInGroups(active); i++) sleepSync(100);
  for (const fn of interruptHooks.splice(0).reverse()) {
    try {
      fn();
    } catch (e) {
      step(`clean-up failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  for (const f of pendingTimeFiles) rmSync(f, { force: true });
  removeAllTemps();
  process.exit(130);
}
process.on('SIGINT', interrupt);
process.on('SIGTERM', interrupt);

/** Runs a command to completion, timing it; never throws for a non-zero exit. */
export function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const wrapped = opts.measure && existsSync(GNU_TIME);
  const timeFile = wrapped ? path.join(os.tmpdir(), `ootmod-bench-time-${process.pid}-${++timeFiles}`) : undefined;
  const [cmd, argv] = timeFile ? [GNU_TIME, ['-f', '%U %S %M', '-o', timeFile, file, ...args]] : [file, [...args]];
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    // Its own process group, so an interrupted benchmark can stop the whole tree (make, dkms...) it started.
    if (timeFile) pendingTimeFiles.add(timeFile);
    const child = spawn(cmd, argv, { cwd: opts.cwd, env: mergedEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    if (child.pid) active.add(child.pid);
    if (child.pid) opts.onSpawn?.(child.pid);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    let peak: number | undefined;
    let target: number | undefined;
    const timer = opts.peak
      ? setInterval(() => {
          if (!child.pid) return;
          // Under /usr/bin/time the measured program is time's child (it keeps its pid across exec).
          target ??= timeFile ? firstChild(child.pid) : child.pid;
          if (target === undefined) return;
          const kb = readHwmKb(target);
          if (kb !== undefined) peak = Math.max(peak ?? 0, kb);
        }, 20)
      : undefined;
    child.on('error', (e) => {
      if (timer) clearInterval(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      if (child.pid) active.delete(child.pid);
      if (timer) clearInterval(timer);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      let cpuSeconds: number | undefined;
      let maxRssKb: number | undefined;
      if (timeFile) {
        // The last line: time writes "Command exited with non-zero status N" before it on failure.
        const last = (existsSync(timeFile) ? readFileSync(timeFile, 'utf8') : '').trim().split('\n').pop() ?? '';
        const m = /^([\d.]+) ([\d.]+) (\d+)$/.exec(last);
        if (m) {
          cpuSeconds = Number(m[1]) + Number(m[2]);
          maxRssKb = Number(m[3]);
        }
        rmSync(timeFile, { force: true });
        pendingTimeFiles.delete(timeFile);
      }
      resolve({
        code: code ?? (signal ? 128 : -1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        seconds,
        peakKb: peak,
        cpuSeconds,
        maxRssKb,
      });
    });
  });
}
/** Runs a command that must succeed; throws with its output otherwise. */
export async function must(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(file, args, opts);
  if (r.code !== 0) {
    const tail = `${r.stderr}\n${r.stdout}`.trim().split('\n').slice(-15).join('\n');
    throw new Error(`${[file, ...args].join(' ')} exited with ${r.code}:\n${tail}`);
  }
  return r;
}

export function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const p = path.join(dir, command);
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

export function median(xs: readonly number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The benchmark's standard for a goal against a baseline: `n` rounds of A then B (A B A B ...), the same
 * machine state for both (each side's `fn` sets it up itself, untimed), medians compared by the caller.
 */
export async function alternate<A, B>(n: number, a: (i: number) => Promise<A>, b: (i: number) => Promise<B>): Promise<{ a: A[]; b: B[] }> {
  const out = { a: [] as A[], b: [] as B[] };
  for (let i = 0; i < n; i++) {
    out.a.push(await a(i));
    out.b.push(await b(i));
  }
  return out;
}

/** Runs `fn` n times and returns the samples (seconds). */
export async function sample(n: number, fn: (i: number) => Promise<number>): Promise<number[]> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) xs.push(await fn(i));
  return xs;
}

// ----------------------------------------------------------------------------------------------
// Other load on the machine: CPU time used by processes that are not this benchmark or its children

interface CpuSnapshot {
  at: bigint;
  /** Busy ticks of the whole machine (/proc/stat). */
  busy: number;
  /** Ticks of this process and its waited-for descendants (/proc/self/stat utime+stime+cutime+cstime). */
  ours: number;
}

function cpuSnapshot(): CpuSnapshot | undefined {
  const cpu = machineCpu();
  if (!cpu) return undefined;
  try {
    // Busy: all but idle and iowait.
    const busy = cpu.reduce((a, b) => a + b, 0) - (cpu[3] ?? 0) - (cpu[4] ?? 0);
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    // Fields 14-17 of proc(5) (utime stime cutime cstime) are 11-14 after "state".
    const ours = f[11]! + f[12]! + f[13]! + f[14]!;
    return { at: process.hrtime.bigint(), busy, ours };
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) of this process's waited-for children so far (/proc/self/stat cutime + cstime). */
export function childrenCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  return (f[13]! + f[14]!) / 100; // USER_HZ
}

/** Starts measuring; the returned function gives the average number of cores other processes kept busy. */
export function foreignLoad(): () => number | undefined {
  const a = cpuSnapshot();
  return () => {
    const b = cpuSnapshot();
    if (!a || !b) return undefined;
    const wall = Number(b.at - a.at) / 1e9;
    const hz = 100; // USER_HZ, the unit of both files on Linux
    const foreign = (b.busy - a.busy - (b.ours - a.ours)) / hz;
    return wall > 0 ? Math.max(0, foreign / wall) : undefined;
  };
}

const QUIET_CORES = 0.15;
const MAX_WAIT_PER_SAMPLE = 10;
let waitBudget = Number(process.env.BENCH_MAX_WAIT ?? 90);
let waited = 0;

/**
 * Waits (up to 10 s per call, BENCH_MAX_WAIT = 90 s in all) until other processes use less than 0.15 cores,
 * so samples are taken on a quiet machine when there is one. Returns the other load seen last.
 */
export async function waitQuiet(): Promise<number | undefined> {
  const started = Date.now();
  let announced = false;
  for (;;) {
    const load = foreignLoad();
    await new Promise((r) => setTimeout(r, 500));
    const l = load();
    const spent = (Date.now() - started) / 1000;
    if (l === undefined || l < QUIET_CORES || spent >= Math.min(MAX_WAIT_PER_SAMPLE, waitBudget)) {
      waitBudget -= spent;
      waited += spent;
      return l;
    }
    if (!announced) step(`  waiting for a quieter machine (other processes use ${l.toFixed(2)} cores)`);
    announced = true;
  }
}

/** Seconds spent in waitQuiet so far. */
export function waitedSeconds(): number {
  return waited;
}

// ----------------------------------------------------------------------------------------------
// Sandboxes

const created: string[] = [];

/** A sandbox root laid out like the brief's working example, with `kver`'s headers linked in. */
export function makeSandbox(kver: string, headersDir: string, prefix = 'ootmod-bench-'): string {
  const root = mkdtempSync(path.join(os.tmpdir(), prefix));
  // Builds run as the unprivileged build user, which must reach the sandbox's files.
  chmodSync(root, 0o755);
  created.push(root);
  mkdirSync(path.join(root, 'usr/lib/modules', kver), { recursive: true });
  mkdirSync(path.join(root, 'usr/src'), { recursive: true });
  mkdirSync(path.join(root, 'var/lib'), { recursive: true });
  symlinkSync('usr/lib', path.join(root, 'lib'));
  symlinkSync(headersDir, path.join(root, 'usr/lib/modules', kver, 'build'));
  return root;
}

/** Copies a module source into a sandbox's /usr/src as root-owned, not group/other-writable. */
export function addSource(root: string, srcDir: string, name = path.basename(srcDir)): string {
  const dest = path.join(root, 'usr/src', name);
  cpSync(srcDir, dest, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  goMinusW(dest);
  return dest;
}

export function goMinusW(p: string): void {
  const st = lstatSync(p);
  if (st.isSymbolicLink()) return;
  chmodSync(p, st.mode & 0o7755);
  if (st.isDirectory()) for (const e of readdirSync(p)) goMinusW(path.join(p, e));
}

export function tempDir(prefix: string): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  created.push(d);
  return d;
}

export function removeTemp(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  const i = created.indexOf(dir);
  if (i >= 0) created.splice(i, 1);
}

/** Removes every sandbox and temp dir still around (unless BENCH_KEEP=1). */
export function removeAllTemps(): void {
  if (process.env.BENCH_KEEP === '1') {
    if (created.length) step(`BENCH_KEEP=1: kept ${created.join(' ')}`);
    return;
  }
  for (const d of created.splice(0)) rmSync(d, { recursive: true, force: true });
}

// ----------------------------------------------------------------------------------------------
// Formatting

export function secs(x: number | undefined, digits = 2): string {
  return x === undefined || Number.isNaN(x) ? '-' : `${x.toFixed(digits)} s`;
}

export function signedSecs(x: number | undefined, digits = 2): string {
  return x === undefined || Number.isNaN(x) ? '-' : `${x >= 0 ? '+' : ''}${x.toFixed(digits)} s`;
}

export function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || !b || Number.isNaN(a) || Number.isNaN(b) ? '-' : `${(a / b).toFixed(2)}x`;
}

export function mb(kb: number | undefined): string {
  return kb === undefined ? '-' : `${(kb / 1024).toFixed(1)} MB`;
}

/** Left-aligned text table with a rule under the header. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}

// ----------------------------------------------------------------------------------------------
// Rows and goals

/** One goal of a row: PASS/MISS, with the value, its baseline from the same run and their ratio. */
export interface Goal {
  what: string;
  /** The measured figure (seconds, a share, a count...) as text. */
  value: string;
  /** The baseline measured in the same run, labelled ('' when the goal has none, e.g. a count limit). */
  baseline: string;
  /** value / baseline when there is a baseline. */
  ratio?: number;
  /** The goal as text, e.g. "<= 0.70x DKMS". */
  limit: string;
  /** undefined: could not be judged. */
  pass?: boolean;
}

export interface RowResult {
  /** Lines of the human report (the row's table and notes). */
  lines: string[];
  goals: Goal[];
  /** Everything for bench/results/latest.json (raw samples included). */
  data: unknown;
}

export const verdict = (ok: boolean | undefined) => (ok === undefined ? 'n/a' : ok ? 'PASS' : 'MISS');
