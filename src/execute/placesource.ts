// Placing a module source at /usr/src/<name>-<version> (ootmod add, or a build of a dir elsewhere).
import { chownSync } from 'node:fs';
import { chmod, cp, lstat, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/** Makes a copied tree root-owned and not writable by group or others, as a root-built source must be. */
async function secureTree(dir: string): Promise<void> {
  const s = await lstat(dir);
  if (process.getuid?.() === 0) chownSync(dir, 0, 0);
  if (!s.isSymbolicLink()) await chmod(dir, s.mode & 0o7755);
  if (s.isDirectory()) for (const e of await readdir(dir)) await secureTree(path.join(dir, e));
}

/** Copies `from` to `dest` through a temporary sibling, so `dest` is never half there. */
export async function placeSourceTree(from: string, dest: string): Promise<void> {
  if (path.resolve(from) === dest) return;
  const tmp = `${dest}.ootmod-new`;
  await rm(tmp, { recursive: true, force: true });
  await cp(from, tmp, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  await secureTree(tmp);
  await rm(dest, { recursive: true, force: true });
  await rename(tmp, dest);
}
