// Debian package facts (versions, architectures) from dpkg's database, read with one dpkg-query.
import { existsSync } from 'node:fs';
import type { Layout } from '../system/layout.js';
import { run } from '../system/run.js';

export interface InstalledPackage {
  name: string;
  version: string;
  arch: string;
}

/** The kernel packages ootmod asks about: headers (versions, arch) and linux-source (for Rust trees). */
export const KERNEL_PACKAGES = ['linux-headers-*', 'linux-source-*'];

const memo = new Map<string, Promise<Map<string, InstalledPackage>>>();

/** Installed packages matching the patterns; one dpkg-query per process for the same question. */
export function installedPackages(layout: Layout, patterns: string[]): Promise<Map<string, InstalledPackage>> {
  const key = `${layout.root}\0${patterns.join('\0')}`;
  if (!memo.has(key)) memo.set(key, queryPackages(layout, patterns));
  return memo.get(key)!;
}

async function queryPackages(layout: Layout, patterns: string[]): Promise<Map<string, InstalledPackage>> {
  const admindir = layout.dpkgDir;
  const found = new Map<string, InstalledPackage>();
  if (!existsSync(`${admindir}/status`)) return found;
  const res = await run(
    'dpkg-query',
    [`--admindir=${admindir}`, '-W', '-f', '${Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\n', ...patterns],
    { allowFailure: true },
  ).catch(() => undefined);
  for (const line of res?.stdout.split('\n') ?? []) {
    const [name, version, arch, status] = line.split('\t');
    if (name && version && status?.startsWith('i')) found.set(name, { name, version, arch: arch ?? '' });
  }
  return found;
}
