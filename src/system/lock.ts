// The global lock: two ootmod runs never interleave; the second waits and says so.
// proper-lockfile gives an atomic mkdir lock whose holder refreshes its mtime, so a crashed holder's
// lock goes stale by itself.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { ExitCode, OotmodError } from '../errors.js';

export interface LockOptions {
  /** Called once when the lock is busy and we start waiting. */
  onWait?: (holder: string) => void;
  /** Give up after this long (default: wait for ever, as a dpkg trigger must). */
  timeoutMs?: number;
}

const STALE_MS = 20_000;

export async function acquireLock(lockFile: string, opts: LockOptions = {}): Promise<() => Promise<void>> {
  await mkdir(path.dirname(lockFile), { recursive: true });
  const ownerFile = `${lockFile}.owner`;
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
          process.stderr.write('ootmod: lost the global lock (the system was suspended or overloaded); stopping\n');
          process.exit(ExitCode.Environment);
        },
      });
      await writeFile(ownerFile, `pid ${process.pid}: ${process.argv.slice(2).join(' ')}\n`).catch(() => undefined);
      return release;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
    }
    if (!announced) {
      announced = true;
      const holder = (await readFile(ownerFile, 'utf8').catch(() => 'another ootmod run')).trim();
      opts.onWait?.(holder);
    }
    if (opts.timeoutMs !== undefined && Date.now() - started > opts.timeoutMs) {
      throw new OotmodError(`another ootmod run holds ${lockFile}`, 'wait for it to finish and retry', ExitCode.Environment);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
