// A content hash of a module source tree: part of the key that says whether a build is still current.
import { createHash } from 'node:crypto';
import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import path from 'node:path';

const CONTENT_LIMIT = 4 * 1024 * 1024;

export async function hashTree(dir: string): Promise<string> {
  const hash = createHash('sha256');
  async function walk(rel: string): Promise<void> {
    const entries = await readdir(path.join(dir, rel), { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const relPath = path.join(rel, e.name);
      const full = path.join(dir, relPath);
      if (e.isDirectory()) {
        hash.update(`d ${relPath}\0`);
        await walk(relPath);
      } else if (e.isSymbolicLink()) {
        hash.update(`l ${relPath} ${await readlink(full)}\0`);
      } else if (e.isFile()) {
        const s = await stat(full);
        // Huge blobs (firmware, prebuilt objects) are identified by size and mtime, not read.
        const body = s.size > CONTENT_LIMIT ? `${s.size}:${s.mtimeMs}` : createHash('sha256').update(await readFile(full)).digest('hex');
        hash.update(`f ${relPath} ${s.mode & 0o111 ? 'x' : '-'} ${body}\0`);
      }
    }
  }
  await walk('');
  return hash.digest('hex');
}

export function hashParts(parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 32);
}
