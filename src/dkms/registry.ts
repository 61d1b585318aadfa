// DKMS's registry of module sources (/var/lib/dkms/<name>/<version>/source -> /usr/src/<name>-<version>),
// kept by ootmod-dkms so that DKMS finds the machine as it left it if it comes back, and the sources
// an admin removed with `dkms remove` (which ootmod then leaves alone until `dkms add`).
import { lstatSync } from 'node:fs';
import { mkdir, readdir, readlink, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { removedMarker } from '../modules/names.js';
import type { Layout } from '../system/layout.js';

export interface Registration {
  name: string;
  version: string;
}

/** /var/lib/dkms (or --dkmstree). */
export function registryDir(layout: Layout, dkmsTree?: string): string {
  return dkmsTree ? layout.at(dkmsTree) : layout.dkmsRegistry;
}

/** The registration link exists (its target, a system path, may lie outside a --root sandbox). */
export function isRegistered(dir: string, r: Registration): boolean {
  try {
    return lstatSync(path.join(dir, r.name, r.version, 'source')).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Registers a source as `dkms add` does: <dir>/<name>/<version>/source -> the source dir. */
export async function register(dir: string, r: Registration, sourceDir: string): Promise<void> {
  const vdir = path.join(dir, r.name, r.version);
  await mkdir(vdir, { recursive: true });
  const link = path.join(vdir, 'source');
  const current = await readlink(link).catch(() => undefined);
  if (current === sourceDir) return;
  await rm(link, { force: true });
  await symlink(sourceDir, link);
}

/**
 * Forgets a registration as `dkms remove --all` does: the version dir with DKMS's own builds in it, the
 * `kernel-<kver>-<arch>` links that pointed into it, and the module dir when nothing is left.
 */
export async function unregister(dir: string, r: Registration): Promise<void> {
  const mdir = path.join(dir, r.name);
  await rm(path.join(mdir, r.version), { recursive: true, force: true });
  for (const e of await readdir(mdir).catch(() => [] as string[])) {
    if (!e.startsWith('kernel-')) continue;
    const target = await readlink(path.join(mdir, e)).catch(() => '');
    if (target.startsWith(`${r.version}/`)) await rm(path.join(mdir, e), { force: true });
  }
  await rmdir(mdir).catch(() => undefined);
}

/** Marks a source `dkms remove` took away while its files stay in /usr/src: ootmod leaves it unbuilt. */
export async function markRemoved(layout: Layout, r: Registration): Promise<void> {
  const marker = removedMarker(layout, `${r.name}-${r.version}`);
  await mkdir(path.dirname(marker), { recursive: true });
  await writeFile(marker, `${new Date().toISOString()}\n`);
}

/** `dkms add`: the source is ootmod's to build again. */
export async function clearRemoved(layout: Layout, r: Registration): Promise<void> {
  await rm(removedMarker(layout, `${r.name}-${r.version}`), { force: true });
}
