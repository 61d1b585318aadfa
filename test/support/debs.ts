// Real Debian packages for tests and the benchmark: fetched with apt through a private configuration
// (the host's apt setup is never changed), cached under /var/cache/ootmod-test/debs/<suite>.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CACHE_ROOT, hostDebianMirror } from '../e2e/lib/chroot.js';

export const CACHE = CACHE_ROOT;

function aptOptions(suite: string, mirror: string, components: string[]): string[] {
  const dir = path.join(CACHE, 'apt', [suite, ...components.filter((c) => c !== 'main')].join('-'));
  mkdirSync(path.join(dir, 'lists/partial'), { recursive: true });
  mkdirSync(path.join(dir, 'cache/archives/partial'), { recursive: true });
  const list = path.join(dir, 'sources.list');
  writeFileSync(list, `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror} ${suite} ${components.join(' ')}\n`);
  return [
    '-q', '-o', `Dir::Etc::SourceList=${list}`, '-o', 'Dir::Etc::SourceParts=/dev/null', '-o', `Dir::State::Lists=${dir}/lists`,
    '-o', `Dir::Cache=${dir}/cache`, '-o', 'Acquire::Check-Valid-Until=false', '-o', 'APT::Get::List-Cleanup=false',
    '-o', 'Acquire::Languages=none',
    // The download dir belongs to root; without this apt warns that _apt cannot write there.
    '-o', 'APT::Sandbox::User=root',
  ];
}

function cachedDebs(pkg: string, suite: string): string[] {
  const out = path.join(CACHE, 'debs', suite);
  return existsSync(out) ? readdirSync(out).filter((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb')).map((f) => path.join(out, f)) : [];
}

function debVersion(deb: string): string {
  return execFileSync('dpkg-deb', ['-f', deb, 'Version'], { encoding: 'utf8' }).trim();
}

function newer(a: string, b: string): boolean {
  try {
    execFileSync('dpkg', ['--compare-versions', debVersion(a), 'gt', debVersion(b)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function newest(debs: string[]): string | undefined {
  return debs.reduce<string | undefined>((best, d) => (!best || newer(d, best) ? d : best), undefined);
}

export interface FetchedDeb {
  pkg: string;
  suite: string;
  file: string;
  version: string;
  fromCache: boolean;
}

const updated = new Set<string>();

/**
 * The .deb of `pkg` from the first of `suites` that has it (in `components` of the host's Debian mirror):
 * a cached one when there is one (no network; OOTMOD_REFRESH_DEBS=1 looks for a newer upload), else
 * downloaded with apt-get download.
 */
export async function fetchDeb(pkg: string, suites: string[], log: (msg: string) => void = () => {}, components = ['main']): Promise<FetchedDeb> {
  if (process.env.OOTMOD_REFRESH_DEBS !== '1' && process.env.BENCH_REFRESH_DEBS !== '1') {
    for (const suite of suites) {
      const cached = newest(cachedDebs(pkg, suite));
      if (cached) return { pkg, suite, file: cached, version: debVersion(cached), fromCache: true };
    }
  }
  const mirror = await hostDebianMirror();
  const errors: string[] = [];
  for (const suite of suites) {
    const opts = aptOptions(suite, mirror, components);
    const lists = `${suite} ${components.join(' ')}`;
    if (!updated.has(lists)) {
      log(`apt-get update (private config, ${lists})`);
      try {
        execFileSync('apt-get', [...opts, 'update'], { stdio: 'ignore', timeout: 600_000 });
      } catch {
        errors.push(`${suite}: apt-get update failed`);
        continue;
      }
      updated.add(lists);
    }
    let version: string | undefined;
    try {
      version = /^Version: (.+)$/m.exec(execFileSync('apt-cache', [...opts, 'show', '--no-all-versions', pkg], { encoding: 'utf8' }))?.[1];
    } catch {
      version = undefined;
    }
    if (!version) {
      errors.push(`${pkg} is not in ${suite}`);
      continue;
    }
    const out = path.join(CACHE, 'debs', suite);
    mkdirSync(out, { recursive: true });
    const have = cachedDebs(pkg, suite).find((f) => debVersion(f) === version);
    if (have) return { pkg, suite, file: have, version, fromCache: true };
    log(`apt-get download ${pkg} (${suite} ${version}) into ${out}`);
    execFileSync('apt-get', [...opts, 'download', pkg], { cwd: out, stdio: 'ignore', timeout: 600_000 });
    const got = cachedDebs(pkg, suite).find((f) => debVersion(f) === version);
    if (!got) throw new Error(`apt-get download ${pkg} from ${suite} left no .deb in ${out}`);
    return { pkg, suite, file: got, version, fromCache: false };
  }
  throw new Error(`cannot get ${pkg}: ${errors.join('; ')}`);
}

/** Extracts a -dkms package into `into`; returns its /usr/src/<name>-<version> dirs (those with a dkms.conf). */
export function extractDkmsSources(deb: string, into: string): string[] {
  mkdirSync(into, { recursive: true });
  execFileSync('dpkg-deb', ['-x', deb, into]);
  const src = path.join(into, 'usr/src');
  return (existsSync(src) ? readdirSync(src) : []).filter((d) => existsSync(path.join(src, d, 'dkms.conf'))).map((d) => path.join(src, d));
}
