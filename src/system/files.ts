// Atomic file writes: a final path never holds a partial file.
import { constants } from 'node:fs';
import { copyFile, mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

let counter = 0;

/** A name beside the target no other writer uses: pid and a counter (node:crypto costs ~7 ms to load). */
function tempNameFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.ootmod-${process.pid}-${++counter}`);
}

/** Writes `data` to a temporary file beside `target`, syncs it, then renames it over `target`. */
export async function writeFileAtomic(target: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true });
  const tmp = tempNameFor(target);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Copies `source` to `target` through a synced temporary file and a rename. */
export async function copyFileAtomic(source: string, target: string, mode = 0o644): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true });
  const tmp = tempNameFor(target);
  try {
    await copyFile(source, tmp, constants.COPYFILE_EXCL);
    const fh = await open(tmp, 'r+');
    try {
      await fh.chmod(mode);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
