// A kernel's initramfs: which tool makes it on this machine (initramfs-tools or dracut), which modules
// it holds (listed read-only with lsinitramfs or lsinitrd), and a cache of those listings keyed by the
// file's size, mtime and inode, so that an initramfs rebuilt by anyone (ootmod's job, initramfs-tools'
// own trigger, dracut's kernel hook, the admin) is listed again, and an unchanged one is not.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../system/files.js';
import type { Layout } from '../system/layout.js';
import { run } from '../system/run.js';
import { findOnPath } from '../system/programs.js';

export type InitramfsGenerator = 'initramfs-tools' | 'dracut';

/** How ootmod asks for a new initramfs: `update-initramfs` (initramfs-tools', and the one newer dracut packages ship, both with the `update-initramfs` dpkg trigger), else `dracut --force`. */
export type InitramfsTool = 'update-initramfs' | 'dracut';

/**
 * What makes the initramfs on this root: Debian's initramfs-tools or dracut (the two packages
 * conflict), told by the kernel hook each installs (/etc/kernel/postinst.d/initramfs-tools or
 * /etc/kernel/postinst.d/dracut), else by their programs (update-initramfs: initramfs-tools', or the
 * one newer dracut packages ship; dracut's kernel-install plugin). dracut-core or
 * initramfs-tools-core alone (their listing tools, no hook) make no initramfs: undefined then.
 */
export function initramfsGenerator(layout: Layout): InitramfsGenerator | undefined {
  if (existsSync(layout.at('/etc/kernel/postinst.d/initramfs-tools'))) return 'initramfs-tools';
  if (existsSync(layout.at('/etc/kernel/postinst.d/dracut'))) return 'dracut';
  if (existsSync(layout.at('/usr/sbin/update-initramfs'))) return 'initramfs-tools';
  if (existsSync(layout.at('/usr/lib/kernel/install.d/50-dracut.install'))) return 'dracut';
  return undefined;
}

/** The listing tools, the generator's own first (each reads the other's images too). */
export function listingTools(generator: InitramfsGenerator | undefined): string[] {
  return generator === 'dracut' ? ['lsinitrd', 'lsinitramfs'] : ['lsinitramfs', 'lsinitrd'];
}

/** The initramfs of a kernel: Debian's name (initramfs-tools and dracut), else dracut's own. */
export function initramfsFile(layout: Layout, kver: string): string | undefined {
  return [layout.initramfs(kver), path.join(layout.bootDir, `initramfs-${kver}.img`)].find((f) => existsSync(f));
}

/** Module names (.ko, .ko.xz, .ko.zst, .ko.gz files; `-` as `_`) in a listing of lsinitramfs or lsinitrd. */
export function modulesInListing(listing: string): Set<string> {
  const names = new Set<string>();
  for (const m of listing.matchAll(/([^/\s]+)\.ko(?:\.(?:xz|zst|gz))?(?=\s|$)/gm)) names.add(m[1]!.replaceAll('-', '_'));
  return names;
}

interface CacheEntry {
  size: number;
  mtimeMs: number;
  ino: number;
  tool: string;
  modules: string[];
}

const cacheFile = (layout: Layout) => path.join(layout.stateDir, 'cache', 'initramfs.json');

function readCache(layout: Layout): Record<string, CacheEntry> {
  try {
    const c = JSON.parse(readFileSync(cacheFile(layout), 'utf8')) as { format?: number; files?: Record<string, CacheEntry> };
    return c.format === 1 && c.files ? c.files : {};
  } catch {
    return {};
  }
}

const same = (e: CacheEntry | undefined, st: { size: number; mtimeMs: number; ino: number }) => e !== undefined && e.size === st.size && e.mtimeMs === st.mtimeMs && e.ino === st.ino && Array.isArray(e.modules);

export interface InitramfsListing {
  modules?: Set<string>;
  /** Why it could not be listed. */
  why?: string;
  /** The file listed. */
  file?: string;
  /** Taken from the cache (the file has not changed since it was listed). */
  cached?: boolean;
}

/** The cached listing of a kernel's initramfs when the file is unchanged since: a read, no subprocess. */
export function cachedInitramfsModules(layout: Layout, kver: string): InitramfsListing | undefined {
  const file = initramfsFile(layout, kver);
  if (!file) return undefined;
  const e = readCache(layout)[file];
  const st = statSync(file, { throwIfNoEntry: false });
  return st && same(e, st) ? { modules: new Set(e!.modules), file, cached: true } : undefined;
}

/**
 * The modules in a kernel's initramfs: from the cache when the file is unchanged, else listed with the
 * generator's tool (lsinitramfs or lsinitrd) and, with `save` (root, not a dry run), cached.
 */
export async function initramfsModules(layout: Layout, kver: string, opts: { save?: boolean } = {}): Promise<InitramfsListing> {
  const file = initramfsFile(layout, kver);
  if (!file) return { why: `${kver} has no initramfs` };
  const before = statSync(file, { throwIfNoEntry: false });
  if (!before) return { why: `${kver} has no initramfs` };
  const cache = readCache(layout);
  if (same(cache[file], before)) return { modules: new Set(cache[file]!.modules), file, cached: true };
  const tool = listingTools(initramfsGenerator(layout)).find((t) => findOnPath(t));
  if (!tool) return { why: 'neither lsinitramfs (initramfs-tools-core) nor lsinitrd (dracut-core) is installed', file };
  const res = await run(tool, [file], { allowFailure: true, timeoutMs: 120_000 });
  if (res.exitCode !== 0) return { why: `${tool} ${file} failed: ${res.stderr.trim().split('\n').pop() || `exit ${res.exitCode}`}`, file };
  const modules = modulesInListing(res.stdout);
  const after = statSync(file, { throwIfNoEntry: false });
  // Rewritten while it was listed: the listing is used once, not kept.
  if (opts.save && after && same({ ...before, tool, modules: [] }, after)) {
    const kept = Object.fromEntries(Object.entries(cache).filter(([f]) => f !== file && existsSync(f)));
    kept[file] = { size: after.size, mtimeMs: after.mtimeMs, ino: after.ino, tool, modules: [...modules].sort() };
    await writeFileAtomic(cacheFile(layout), `${JSON.stringify({ format: 1, files: kept })}\n`, 0o644).catch(() => undefined);
  }
  return { modules, file };
}
