// DKMS's registry of module sources (/var/lib/dkms/<name>/<version>/source -> /usr/src/<name>-<version>),
// kept by ootmod-dkms so that DKMS finds the machine as it left it if it comes back, and the sources
// an admin removed with `dkms remove` (which ootmod then leaves alone until `dkms add`).
import { existsSync, lstatSync, readdirSync, readlinkSync } from 'node:fs';
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

/** The mark of a source `dkms remove` took away while its files stay in /usr/src: ootmod leaves it unbuilt. */
export function removedMark(layout: Layout, r: Registration): string {
  return removedMarker(layout, `${r.name}-${r.version}`);
}

/** Writes a removed mark (removedMark). */
export async function markRemoved(marker: string): Promise<void> {
  await mkdir(path.dirname(marker), { recursive: true });
  await writeFile(marker, `${new Date().toISOString()}\n`);
}

/** `dkms add`: the source is ootmod's to build again. */
export async function clearRemoved(marker: string): Promise<void> {
  await rm(marker, { force: true });
}

/** The dirs in a dir, sorted (none when it is missing or unreadable). */
function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch {
    return [];
  }
}

/** A build in DKMS's tree: <dir>/<name>/<version>/<kver>/<arch>/module with a module file in it. */
export interface DkmsTreeBuild {
  kernel: string;
  arch: string;
  /** DKMS's `kernel-<kver>-<arch>` link in <dir>/<name> points at it: DKMS installed it. */
  installed: boolean;
}

/**
 * The builds DKMS's status finds for a registered module version (DKMS 3.2.2's module_status_built):
 * every <kver>/<arch> whose `module` dir holds a .ko (also .ko.xz/.zst/.gz), `installed` when DKMS's
 * `kernel-<kver>-<arch>` link names `<version>/<kver>/<arch>`, else `built`. Kernel dirs start with a
 * digit, as DKMS's glob has them.
 */
export function dkmsTreeBuilds(dir: string, r: Registration): DkmsTreeBuild[] {
  const out: DkmsTreeBuild[] = [];
  const vdir = path.join(dir, r.name, r.version);
  for (const kernel of subdirs(vdir).filter((k) => /^\d+\./.test(k))) {
    for (const arch of subdirs(path.join(vdir, kernel))) {
      let files: string[];
      try {
        files = readdirSync(path.join(vdir, kernel, arch, 'module'));
      } catch {
        continue;
      }
      if (!files.some((f) => /\.ko(\.(xz|zst|gz))?$/.test(f))) continue;
      let link = '';
      try {
        link = readlinkSync(path.join(dir, r.name, `kernel-${kernel}-${arch}`));
      } catch {
        // No link: built, not installed.
      }
      out.push({ kernel, arch, installed: link.replace(/\/+$/, '') === `${r.version}/${kernel}/${arch}` });
    }
  }
  return out;
}

/** A module/version in DKMS's registry, as DKMS's status lists it: added, or broken (source or link gone). */
export interface RegistryEntry extends Registration {
  broken: boolean;
}

/**
 * What DKMS's `status` lists: every <dir>/<name>/<version> with a source link to a dir (added), or
 * whose link or source is gone (broken: the link dangles, or there is no link while /usr/src has the
 * source); other dirs (DKMS's kernel-<kver>-<arch> links, original_module) are not module versions.
 */
export function listRegistry(layout: Layout, dir: string, filter: { name?: string; version?: string } = {}): RegistryEntry[] {
  const out: RegistryEntry[] = [];
  for (const name of subdirs(dir)) {
    if (filter.name && name !== filter.name) continue;
    for (const version of subdirs(path.join(dir, name))) {
      if (filter.version && version !== filter.version) continue;
      const link = path.join(dir, name, version, 'source');
      if (isRegistered(dir, { name, version })) {
        const target = layout.resolveLink(link);
        out.push({ name, version, broken: !target || !existsSync(target) });
      } else if (existsSync(layout.moduleSource(name, version))) {
        out.push({ name, version, broken: true });
      }
    }
  }
  return out;
}
