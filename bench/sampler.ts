// Samples one process tree straight from /proc (no `ps` per sample): at each tick, the descendants of a
// root pid (found through /proc/PID/task/TID/children, so only the tree's own entries are read), how many
// of them are compilers, how many are running or runnable (state R), and the CPU time the tree has used.
//
// CPU time of the tree = the sum over its live (and zombie) members of utime+stime+cutime+cstime: a member
// that exits and is reaped by its parent moves its time into that parent's cutime/cstime, so nothing is
// lost or counted twice as long as reaping happens inside the tree (it does: make, bash, gcc all wait).
import { readdirSync, readFileSync } from 'node:fs';

/** The compiler processes the "never more than --jobs" goal counts (process names, as in /proc/PID/comm). */
export const COMPILERS = new Set(['cc1', 'cc1plus', 'rustc']);

/** USER_HZ: the unit of utime/stime in /proc/PID/stat on Linux. */
const HZ = 100;

export interface Tick {
  /** Seconds since the sampler started. */
  t: number;
  /** Processes in the tree, the root included. */
  procs: number;
  /** Compiler processes (COMPILERS) alive, zombies excluded. */
  compilers: number;
  /** Members in state R (running or waiting for a CPU). */
  running: number;
  /** CPU seconds the tree has used so far (see above). */
  cpu: number;
  /** CPU seconds the machine's cores have been idle so far (idle + iowait of /proc/stat, all cores; since boot). */
  idle?: number;
  /** When more compilers than the sampler's `limit` ran: their command lines (cut to 160 characters). */
  over?: string[];
}

interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ticks: number;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // gone between listing and reading
  }
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const f = text.slice(close + 2).split(' ');
  // After "state" (index 0): utime stime cutime cstime are fields 14-17 of proc(5), so 11-14 here.
  return { pid, comm: text.slice(open + 1, close), state: f[0]!, ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) if (c.trim()) out.push(Number(c));
    } catch {
      /* the thread ended */
    }
  }
  return out;
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().slice(0, 160);
  } catch {
    return '?';
  }
}

/** One reading of the tree under `root`; with `limit`, the compilers' command lines when more than that run. */
export function readTree(root: number, limit = Infinity): Omit<Tick, 't'> {
  const found: number[] = [];
  let procs = 0;
  let compilers = 0;
  let running = 0;
  let ticks = 0;
  // Each pid with its parent's process name: a compiler's child of the same name is a fork that has not
  // exec'd yet (rustc starting its linker, gcc), not a second compiler.
  const queue: [number, string][] = [[root, '']];
  const seen = new Set<number>();
  while (queue.length) {
    const [pid, parentComm] = queue.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const st = readStat(pid);
    if (!st) continue;
    procs++;
    ticks += st.ticks;
    if (st.state === 'R') running++;
    if (st.state !== 'Z' && COMPILERS.has(st.comm) && st.comm !== parentComm) {
      compilers++;
      found.push(st.pid);
    }
    if (st.state !== 'Z') for (const c of childrenOf(pid)) queue.push([c, st.comm]);
  }
  return { procs, compilers, running, cpu: ticks / HZ, over: compilers > limit ? found.map(commandLine) : undefined };
}

export interface TreeSampler {
  /** Stops sampling and returns every tick. */
  stop(): Tick[];
}

/** The machine's CPU time counters since boot, all cores (/proc/stat's first line, in USER_HZ): user nice system idle iowait irq softirq steal ... */
export function machineCpu(): number[] | undefined {
  try {
    return readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  } catch {
    return undefined;
  }
}

/** Idle + iowait seconds of all cores since boot. */
export function machineIdle(): number | undefined {
  const cpu = machineCpu();
  return cpu ? ((cpu[3] ?? 0) + (cpu[4] ?? 0)) / HZ : undefined;
}

/** Samples the tree under `root` every `intervalMs` until stopped (the first reading is immediate). */
export function sampleTree(root: number, intervalMs: number, limit = Infinity): TreeSampler {
  const started = process.hrtime.bigint();
  const ticks: Tick[] = [];
  const take = () => {
    const r = readTree(root, limit);
    if (r.procs) ticks.push({ t: Number(process.hrtime.bigint() - started) / 1e9, ...r, idle: machineIdle() });
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      return ticks;
    },
  };
}

export interface Window {
  /** Start of the window, seconds since the sampler started. */
  t: number;
  /** Its length in seconds (the readings' spacing: close to the one asked for). */
  length: number;
  /** Cores the tree kept busy during the window (CPU seconds / window length). */
  cores: number;
  /** Cores left idle during the window (the whole machine's idle + iowait / window length). */
  idleCores?: number;
  /** Most compilers seen at once in the window. */
  maxCompilers: number;
  /** Most members in state R seen at once in the window. */
  maxRunning: number;
}

/** Groups ticks into windows of `seconds` (the tree's CPU use per window from the cumulative counter). */
export function windows(ticks: readonly Tick[], seconds = 1): Window[] {
  const out: Window[] = [];
  if (ticks.length < 2) return out;
  let start = 0;
  for (let i = 1; i < ticks.length; i++) {
    const a = ticks[start]!;
    const b = ticks[i]!;
    // Timers wake a few ms early or late: readings 0.9x the length apart or more close a window.
    if (b.t - a.t < seconds * 0.9 && i < ticks.length - 1) continue;
    const inside = ticks.slice(start, i + 1);
    // cpu can step down when a member exits before its parent reaps it (its time is briefly nowhere): clamp.
    out.push({
      t: a.t,
      length: b.t - a.t,
      cores: Math.max(0, (b.cpu - a.cpu) / (b.t - a.t)),
      idleCores: a.idle === undefined || b.idle === undefined ? undefined : Math.max(0, (b.idle - a.idle) / (b.t - a.t)),
      maxCompilers: Math.max(...inside.map((x) => x.compilers)),
      maxRunning: Math.max(...inside.map((x) => x.running)),
    });
    start = i;
  }
  return out;
}
