// Temporary roots for tests: a sandbox laid out like a Debian system.
import { createHash } from 'node:crypto';
import { chmodSync, lstatSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const made: string[] = [];
// Temporary roots go when the test process ends (set OOTMOD_KEEP_ROOTS=1 to look at them).
process.on('exit', () => {
  if (process.env.OOTMOD_KEEP_ROOTS) return;
  for (const dir of made) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      // An exit handler must not throw (it would replace the run's own result): say it and go on.
      process.stderr.write(`test clean-up: ${dir} not removed: ${e instanceof Error ? e.message : String(e)}\n`);
    }
  }
});

/** A temporary dir removed when the test process ends. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function makeRoot(prefix = 'ootmod-test-'): string {
  const root = tempDir(prefix);
  // Builds run as the unprivileged build user (src/system/sandbox.ts), which must reach the root's files.
  chmodSync(root, 0o755);
  for (const d of ['usr/lib/modules', 'usr/src', 'var/lib', 'etc', 'boot']) mkdirSync(path.join(root, d), { recursive: true });
  // Debian has merged /usr; depmod -b looks under lib/modules.
  symlinkSync('usr/lib', path.join(root, 'lib'));
  return root;
}

/** A content hash of everything under these dirs: names, types, modes, sizes, times, contents, links. */
export function treeHash(root: string, dirs: string[]): string {
  const hash = createHash('sha256');
  const walk = (p: string) => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      hash.update(`${p} absent\n`);
      return;
    }
    hash.update(`${p} ${st.mode} ${st.size} ${st.mtimeMs}\n`);
    if (st.isSymbolicLink()) hash.update(readlinkSync(p));
    else if (st.isFile()) hash.update(readFileSync(p));
    else if (st.isDirectory()) for (const e of readdirSync(p).sort()) walk(path.join(p, e));
  };
  for (const d of dirs) walk(path.join(root, d));
  return hash.digest('hex');
}
