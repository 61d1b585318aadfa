// Debian package facts (versions, architectures) from dpkg's database, read with one dpkg-query.
import { existsSync } from 'node:fs';
import type { Layout } from '../system/layout.js';
import { run } from '../system/run.js';

export interface InstalledPackage {
  name: string;
  version: string;
  arch: string;
}

export async function installedPackages(layout: Layout, patterns: string[]): Promise<Map<string, InstalledPackage>> {
  const admindir = layout.at('/var/lib/dpkg');
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
