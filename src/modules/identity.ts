// A content hash of a module source tree: part of the key that says whether a build is still current.
import { createHash } from 'node:crypto';
import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import path from 'node:path';

const CONTENT_LIMIT = 4 * 1024 * 1024;

export interface TreeIdentity {
  hash: string;
  /** The tree holds Rust source files (*.rs). */
  hasRust: boolean;
}

export async function hashTree(dir: string): Promise<TreeIdentity> {
  const hash = createHash('sha256');
  let hasRust = false;
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
        if (e.name.endsWith('.rs')) hasRust = true;
        const s = await stat(full);
        // Huge blobs (firmware, prebuilt objects) are identified by size and mtime, not read.
        const body = s.size > CONTENT_LIMIT ? `${s.size}:${s.mtimeMs}` : createHash('sha256').update(await readFile(full)).digest('hex');
        hash.update(`f ${relPath} ${s.mode & 0o111 ? 'x' : '-'} ${body}\0`);
      }
    }
  }
  await walk('');
  return { hash: hash.digest('hex'), hasRust };
}

export function hashParts(parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 32);
}
