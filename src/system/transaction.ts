// The package transaction ootmod runs in: the apt (or dpkg) run it is a part of, known from its
// ancestor processes in /proc. A build that failed inside one transaction is not tried again inside
// the same one when nothing it depends on changed (src/plan/planner.ts): one apt run of several module
// packages may run ootmod's trigger several times (apt's dpkg calls, a package's own dkms request),
// and a module such as NVIDIA's older branch takes ten minutes to fail each time.
import { readFileSync } from 'node:fs';

/** One process, as /proc/PID/stat tells it. */
export interface ProcessEntry {
  pid: number;
  /** The program's name (at most 15 characters: /proc's comm). */
  comm: string;
  ppid: number;
  /** Clock ticks after boot when it started: with the pid, it names one process for the whole boot. */
  start: string;
}

/**
 * The package managers that call dpkg several times in one run, each run one transaction: apt-get and
 * apt, aptitude, unattended-upgrades (/usr/bin/unattended-upgrade, a python script: its comm is the
 * script's name, cut at 15 characters; python-apt forks a child of it for each install step), nala,
 * synaptic. A long-running daemon (packagekitd, aptd) is none: its every dpkg run is a transaction.
 */
const FRONT_ENDS = new Set(['apt', 'apt-get', 'aptitude', 'aptitude-curses', 'unattended-upgr', 'nala', 'synaptic']);

/** Parses /proc/PID/stat (the name sits in parentheses and may hold spaces or parentheses). */
export function parseStat(text: string): ProcessEntry | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  // Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
  // utime stime cutime cstime priority nice threads itrealvalue starttime (field 22 of the line).
  const rest = text.slice(close + 2).split(' ');
  const pid = Number(text.slice(0, open).trim());
  const ppid = Number(rest[1]);
  const start = rest[19];
  if (!Number.isInteger(pid) || !Number.isInteger(ppid) || !start) return undefined;
  return { pid, comm: text.slice(open + 1, close), ppid, start };
}

/**
 * The transaction of a process chain (the process itself first, then its parent, up to init): the
 * nearest dpkg, or, when dpkg was started by a package manager, that manager's outermost process. So
 * every dpkg call of one `apt-get install` is one transaction, and each `dpkg -i` by hand (whose parent
 * is a shell) is one. Undefined outside dpkg (an admin's `dkms install`, `ootmod install`, a kernel
 * hook run by kernel-install).
 */
export function transactionOf(chain: readonly ProcessEntry[]): string | undefined {
  const dpkg = chain.findIndex((p) => p.comm === 'dpkg');
  if (dpkg < 0) return undefined;
  let holder = chain[dpkg]!;
  for (const p of chain.slice(dpkg + 1)) {
    if (!FRONT_ENDS.has(p.comm)) break;
    holder = p;
  }
  return `${holder.comm}:${holder.pid}:${holder.start}`;
}

/** This process and its ancestors, read from /proc (empty where /proc is not mounted). */
function processChain(pid: number): ProcessEntry[] {
  const chain: ProcessEntry[] = [];
  for (let next = pid; next > 0 && chain.length < 64; ) {
    let entry: ProcessEntry | undefined;
    try {
      entry = parseStat(readFileSync(`/proc/${next}/stat`, 'utf8'));
    } catch {
      break;
    }
    if (!entry) break;
    chain.push(entry);
    next = entry.ppid;
  }
  return chain;
}

/**
 * The package transaction this process runs in (see transactionOf), qualified by the boot (pids and
 * start times begin again after a reboot); undefined outside dpkg.
 */
export function currentTransaction(): string | undefined {
  const id = transactionOf(processChain(process.pid));
  if (!id) return undefined;
  let boot = '';
  try {
    boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    // Without it, pid and start time alone.
  }
  return boot ? `${id}@${boot}` : id;
}
