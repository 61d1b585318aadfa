// Real Debian packages for tests and the benchmark: downloaded with apt through a private configuration
// (the host's apt setup is never changed), cached under /var/cache/ootmod-test/debs.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const CACHE = '/var/cache/ootmod-test';

/** The Debian mirror the host's apt sources name (deb822 or one-line format). */
export function hostMirror(): string {
  const files = ['/etc/apt/sources.list', ...listDir('/etc/apt/sources.list.d').map((f) => path.join('/etc/apt/sources.list.d', f))];
  for (const file of files.filter((f) => /\.(list|sources)$/.test(f) && existsSync(f))) {
    const text = readFileSync(file, 'utf8');
    const uri = /^URIs:\s*(\S+\/debian)\/?\s*$/m.exec(text)?.[1] ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s/m.exec(text)?.[1];
    if (uri) return uri;
  }
  throw new Error('no Debian mirror in the host apt sources');
}

function listDir(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

function aptOptions(suite: string): string[] {
  const dir = path.join(CACHE, 'apt', suite);
  mkdirSync(path.join(dir, 'lists/partial'), { recursive: true });
  mkdirSync(path.join(dir, 'cache/archives/partial'), { recursive: true });
  const list = path.join(dir, 'sources.list');
  writeFileSync(list, `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${hostMirror()} ${suite} main\n`);
  return [
    '-q', '-o', `Dir::Etc::SourceList=${list}`, '-o', 'Dir::Etc::SourceParts=/dev/null', '-o', `Dir::State::Lists=${dir}/lists`,
    '-o', `Dir::Cache=${dir}/cache`, '-o', 'Acquire::Check-Valid-Until=false', '-o', 'APT::Get::List-Cleanup=false',
  ];
}

const updated = new Set<string>();

/** Downloads (or reuses) the current .deb of `pkg` from `suite`; returns its path. */
export function fetchDeb(pkg: string, suite: string): string {
  const opts = aptOptions(suite);
  const out = path.join(CACHE, 'debs', suite);
  mkdirSync(out, { recursive: true });
  if (!updated.has(suite)) {
    execFileSync('apt-get', [...opts, 'update'], { stdio: 'ignore', timeout: 600_000 });
    updated.add(suite);
  }
  const version = execFileSync('apt-cache', [...opts, 'show', '--no-all-versions', pkg], { encoding: 'utf8' }).match(/^Version: (.+)$/m)?.[1];
  if (!version) throw new Error(`${pkg} is not in ${suite}`);
  const encoded = version.replace(/:/g, '%3a');
  const existing = listDir(out).find((f) => f.startsWith(`${pkg}_${encoded}_`) && f.endsWith('.deb'));
  if (existing) return path.join(out, existing);
  execFileSync('apt-get', [...opts, 'download', pkg], { cwd: out, stdio: 'ignore', timeout: 600_000 });
  const got = listDir(out).find((f) => f.startsWith(`${pkg}_${encoded}_`) && f.endsWith('.deb'));
  if (!got) throw new Error(`apt-get download ${pkg} from ${suite} left no .deb`);
  return path.join(out, got);
}

/** Extracts a -dkms package and returns its /usr/src/<name>-<version> dirs (no dkms, no maintainer scripts). */
export function extractDkmsSources(deb: string, into: string): string[] {
  mkdirSync(into, { recursive: true });
  execFileSync('dpkg-deb', ['-x', deb, into]);
  const src = path.join(into, 'usr/src');
  return listDir(src).filter((d) => existsSync(path.join(src, d, 'dkms.conf'))).map((d) => path.join(src, d));
}
