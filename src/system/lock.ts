// The global lock: two ootmod runs never interleave; the second waits and says so.
// proper-lockfile gives an atomic mkdir lock whose holder refreshes its mtime, so a crashed holder's
// lock goes stale by itself.
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { ExitCode, OotmodError } from '../errors.js';
import { writeFileAtomic } from './files.js';

export interface LockOptions {
  /** Called once when the lock is busy and we start waiting. */
  onWait?: (holder: string) => void;
  /** Told the one line before the process exits, when another run took the lock (stderr by default). */
  onLost?: (line: string) => void;
  /** Give up after this long (default: wait for ever, as a dpkg trigger must). */
  timeoutMs?: number;
}

const STALE_MS = 20_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A holder killed (SIGKILL, power loss) leaves its lock dir, whose mtime goes stale only after 20 s.
 * The owner file names the holder's pid and its lock dir's inode: when that process is gone and the
 * dir is still the one it made (and was not just made again), the lock is broken at once.
 */
async function breakDeadHolder(lockDir: string, ownerFile: string): Promise<boolean> {
  const m = /^pid (\d+) lock (\d+):/.exec(await readFile(ownerFile, 'utf8').catch(() => ''));
  const pid = Number(m?.[1]);
  if (!pid || pid === process.pid || alive(pid)) return false;
  const st = await stat(lockDir).catch(() => undefined);
  if (!st || String(st.ino) !== m![2] || Date.now() - st.mtimeMs < 2000) return false;
  await rm(lockDir, { recursive: true, force: true });
  return true;
}

/** The file naming the lock's holder (its pid and command), beside the lock. */
export function lockOwnerFile(lockFile: string): string {
  return `${lockFile}.owner`;
}

export async function acquireLock(lockFile: string, opts: LockOptions = {}): Promise<() => Promise<void>> {
  await mkdir(path.dirname(lockFile), { recursive: true });
  const ownerFile = lockOwnerFile(lockFile);
  const started = Date.now();
  let announced = false;
  for (;;) {
    try {
      const release = await lockfile.lock(lockFile, {
        realpath: false,
        stale: STALE_MS,
        update: STALE_MS / 4,
        onCompromised: () => {
          // Another run took the lock after ours went stale; carrying on would interleave the two.
          const line = 'ootmod: lost the global lock (the system was suspended or overloaded); stopping';
          if (opts.onLost) opts.onLost(line);
          else process.stderr.write(`${line}\n`);
          process.exit(ExitCode.Environment);
        },
      });
      const ino = (await stat(`${lockFile}.lock`).catch(() => undefined))?.ino ?? 0;
      // Atomically: a waiter reading it at that moment sees the old holder or the new one, never nothing.
      await writeFileAtomic(ownerFile, `pid ${process.pid} lock ${ino}: ${process.argv.slice(2).join(' ')}\n`).catch(() => undefined);
      return release;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
    }
    if (await breakDeadHolder(`${lockFile}.lock`, ownerFile)) continue;
    if (!announced) {
      announced = true;
      const holder = (await readFile(ownerFile, 'utf8').catch(() => 'another ootmod run')).trim().replace(/ lock \d+:/, ':');
      opts.onWait?.(holder);
    }
    if (opts.timeoutMs !== undefined && Date.now() - started > opts.timeoutMs) {
      throw new OotmodError(`another ootmod run holds ${lockFile}`, 'wait for it to finish and retry', ExitCode.Environment);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
