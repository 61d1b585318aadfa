// Roots for the fault suite: a fake kernel whose "kbuild" is instant (for the fuzzer and the sandbox
// escapes, where what matters is the source's own code, not the compiler), or the host's real headers.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { OOTMOD } from '../../support/host.js';

export const FAKE_KERNEL = '6.1.0-ootmodfault-amd64';

// Stands in for kbuild: "builds" every .c or .rs file of M into a small ELF .ko beside it.
const FAKE_MAKEFILE = `all modules:
\t@find $(M) -name '*.c' -o -name '*.rs' | while read -r f; do cp /usr/bin/true "$\${f%.*}.ko"; done
`;

/** A kernel with headers in `root` whose build is a copy of /usr/bin/true per source file (`config`: more .config lines). */
export function addFakeKernel(root: string, kver = FAKE_KERNEL, config = ''): void {
  const headers = path.join(root, 'usr/src', `linux-headers-${kver}`);
  const kbuild = path.join(root, 'usr/lib/linux-kbuild-ootmodfault');
  mkdirSync(path.join(kbuild, 'scripts/mod'), { recursive: true });
  mkdirSync(headers, { recursive: true });
  writeFileSync(path.join(headers, 'Makefile'), FAKE_MAKEFILE);
  writeFileSync(path.join(headers, '.config'), `CONFIG_MODULES=y\nCONFIG_CC_VERSION_TEXT="gcc (Debian 12.2.0-14) 12.2.0"\n${config}`);
  writeFileSync(path.join(headers, 'Module.symvers'), '');
  symlinkSync(path.join(kbuild, 'scripts'), path.join(headers, 'scripts'));
  mkdirSync(path.join(root, 'usr/lib/modules', kver), { recursive: true });
  symlinkSync(headers, path.join(root, 'usr/lib/modules', kver, 'build'));
}

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * A timer whose callback can never throw outside the test: every error it raises is kept and handed
 * to the test by stop(), which the test asserts on. (An exception thrown in a bare timer callback is
 * "uncaught" to vitest and fails the whole run, whatever the test itself found.)
 */
export function guardedTimer(fn: () => void, ms: number, repeat: boolean): { stop(): string[] } {
  const errors: string[] = [];
  const tick = () => {
    try {
      fn();
    } catch (e) {
      errors.push(e instanceof Error ? e.message : String(e));
    }
  };
  const timer = repeat ? setInterval(tick, ms) : setTimeout(tick, ms);
  return {
    stop() {
      clearInterval(timer);
      clearTimeout(timer);
      return errors;
    },
  };
}

/** Starts ootmod in its own process group (so it and everything it started can be killed together). */
export function startOotmod(root: string, args: string[], env: Record<string, string> = {}): Started {
  return startDetached(OOTMOD, ['--root', root, ...args], { ...process.env, LANG: 'C.UTF-8', ...env });
}

/** Starts `binary` (a path in the chroot) inside a chroot, in its own process group, with a clean environment. */
export function startOotmodIn(chrootRoot: string, binary: string, args: string[]): Started {
  return startDetached('chroot', [chrootRoot, binary, ...args], { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', HOME: '/root' });
}

/** A process started detached: `stderr()` is what it wrote to stderr so far. */
export interface Started {
  child: ChildProcess;
  done: Promise<Run>;
  stderr: () => string;
}

function startDetached(file: string, args: string[], env: NodeJS.ProcessEnv): Started {
  const child = spawn(file, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<Run>((resolve) => {
    // A spawn that fails ('error' with no 'close') is the case's result, not an uncaught exception.
    child.on('error', (e) => resolve({ code: 127, signal: null, stdout, stderr: `${stderr}spawn ${file} failed: ${e.message}\n` }));
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done, stderr: () => stderr };
}

export async function ootmodRun(root: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return startOotmod(root, args, env).done;
}

/** Every process below `pid` (children of children...), read from /proc. */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch {
      // Gone meanwhile.
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

/** Power loss for ootmod: SIGKILL to it, its process group and every process it started, at once. */
export function killAll(pid: number): void {
  const all = [pid, ...descendants(pid)];
  for (const p of all) {
    try {
      process.kill(p, 'SIGSTOP');
    } catch {
      // Already gone.
    }
  }
  for (const p of [...all, ...descendants(pid)]) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Group gone.
  }
}

export function walk(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

/** Files of the root with their size and mtime, but ootmod's own work and state. */
export function snapshot(root: string, ignore: RegExp): Map<string, string> {
  const m = new Map<string, string>();
  for (const f of walk(root)) {
    if (ignore.test(path.relative(root, f))) continue;
    const s = statSync(f, { throwIfNoEntry: false });
    m.set(f, s ? `${s.size}:${s.mtimeMs}` : 'gone');
  }
  return m;
}

export function changed(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [f, v] of after) if (before.get(f) !== v) out.push(f);
  for (const f of before.keys()) if (!after.has(f)) out.push(`${f} (removed)`);
  return out;
}

/** The .ko files ootmod installed for a kernel, and what is wrong with them (temporary or unreadable files). */
export function installedProblems(root: string, kver: string): { files: string[]; problems: string[] } {
  const dir = path.join(root, 'usr/lib/modules', kver, 'updates/ootmod');
  const files = existsSync(dir) ? readdirSync(dir) : [];
  const problems: string[] = [];
  for (const f of files) {
    if (!/\.ko(\.(xz|zst|gz))?$/.test(f)) {
      problems.push(`stray file ${f}`);
      continue;
    }
    try {
      execFileSync('modinfo', ['-F', 'vermagic', path.join(dir, f)], { stdio: 'pipe' });
    } catch {
      problems.push(`${f} is not a whole module`);
    }
  }
  return { files: files.filter((f) => /\.ko(\.\w+)?$/.test(f)), problems };
}

export function stateProblem(root: string): string | undefined {
  const file = path.join(root, 'var/lib/ootmod/state.json');
  if (!existsSync(file)) return undefined;
  try {
    const data = JSON.parse(readFileSync(file, 'utf8')) as { format: number };
    return data.format === 1 ? undefined : 'state.json has an unknown format';
  } catch (err) {
    return `state.json does not parse: ${String(err)}`;
  }
}
