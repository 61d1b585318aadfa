// The real Debian -dkms packages the benchmark builds, fetched with apt through a private configuration
// (the host's apt setup is never changed) and cached under /var/cache/ootmod-test/debs/<suite>.
// The cache layout is the one test/support/debs.ts uses, so tests and the benchmark share downloads.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { must, run, step } from './lib';

export const CACHE = process.env.OOTMOD_TEST_CACHE ?? '/var/cache/ootmod-test';

interface AptSource {
  types: string[];
  uris: string[];
  suites: string[];
  signedBy?: string;
}

function parseOneLine(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const m = /^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)/.exec(line);
    if (!m) continue;
    const signedBy = /signed-by=(\S+)/.exec(m[2] ?? '')?.[1];
    out.push({ types: [m[1]!], uris: [m[3]!], suites: [m[4]!], signedBy });
  }
  return out;
}

function parseDeb822(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let key: string | undefined;
    for (const line of stanza.split('\n')) {
      if (line.startsWith('#')) continue;
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (m) fields.set((key = m[1]!.toLowerCase()), m[2]!.trim());
      else if (key && /^\s/.test(line)) fields.set(key, `${fields.get(key)} ${line.trim()}`);
    }
    if (fields.get('enabled')?.toLowerCase() === 'no' || !fields.has('uris')) continue;
    const words = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
    const signedBy = fields.get('signed-by');
    out.push({ types: words('types'), uris: words('uris'), suites: words('suites'), signedBy: signedBy?.startsWith('/') ? signedBy : undefined });
  }
  return out;
}

/** The mirror of the host's first `deb` source for its own release (VERSION_CODENAME). */
export function hostMirror(): { uri: string; signedBy?: string } {
  const codename = /^VERSION_CODENAME=["']?([^"'\n]+)/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1];
  const sources: AptSource[] = [];
  if (existsSync('/etc/apt/sources.list')) sources.push(...parseOneLine(readFileSync('/etc/apt/sources.list', 'utf8')));
  const dir = '/etc/apt/sources.list.d';
  for (const name of existsSync(dir) ? readdirSync(dir).sort() : []) {
    const file = path.join(dir, name);
    if (name.endsWith('.list')) sources.push(...parseOneLine(readFileSync(file, 'utf8')));
    else if (name.endsWith('.sources')) sources.push(...parseDeb822(readFileSync(file, 'utf8')));
  }
  const debs = sources.filter((s) => s.types.includes('deb'));
  const entry = debs.find((s) => codename && s.suites.includes(codename)) ?? debs.find((s) => s.uris.some((u) => /\/debian\/?$/.test(u)));
  if (!entry?.uris[0]) throw new Error(`no Debian apt source${codename ? ` for ${codename}` : ''} in /etc/apt/sources.list(.d)`);
  return { uri: entry.uris[0].replace(/\/+$/, ''), signedBy: entry.signedBy };
}

function aptOptions(suite: string): string[] {
  const dir = path.join(CACHE, 'apt', suite);
  mkdirSync(path.join(dir, 'lists/partial'), { recursive: true });
  mkdirSync(path.join(dir, 'cache/archives/partial'), { recursive: true });
  const mirror = hostMirror();
  const keyring = mirror.signedBy ?? '/usr/share/keyrings/debian-archive-keyring.gpg';
  const list = path.join(dir, 'sources.list');
  writeFileSync(list, `deb [signed-by=${keyring}] ${mirror.uri} ${suite} main\n`);
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

function newest(debs: string[]): string | undefined {
  // dpkg --compare-versions signals "false" by exit status 1, which execFileSync throws for.
  let best: string | undefined;
  for (const d of debs) {
    if (!best) {
      best = d;
      continue;
    }
    try {
      execFileSync('dpkg', ['--compare-versions', debVersion(d), 'gt', debVersion(best)], { stdio: 'ignore' });
      best = d;
    } catch {
      /* not newer */
    }
  }
  return best;
}
const updated = new Set<string>();

export interface FetchedDeb {
  pkg: string;
  suite: string;
  file: string;
  version: string;
  fromCache: boolean;
}

/**
 * The .deb of `pkg` from the first of `suites` that has it: the cached one when there is one (no network;
 * set BENCH_REFRESH_DEBS=1 to look for a newer upload), else downloaded with apt-get download.
 */
export async function fetchDeb(pkg: string, suites: string[]): Promise<FetchedDeb> {
  const refresh = process.env.BENCH_REFRESH_DEBS === '1';
  if (!refresh) {
    for (const suite of suites) {
      const cached = newest(cachedDebs(pkg, suite));
      if (cached) return { pkg, suite, file: cached, version: debVersion(cached), fromCache: true };
    }
  }
  const errors: string[] = [];
  for (const suite of suites) {
    const opts = aptOptions(suite);
    if (!updated.has(suite)) {
      step(`apt-get update (private config, ${suite})`);
      const r = await run('apt-get', [...opts, 'update']);
      if (r.code !== 0) {
        errors.push(`${suite}: apt-get update failed: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`);
        continue;
      }
      updated.add(suite);
    }
    const show = await run('apt-cache', [...opts, 'show', '--no-all-versions', pkg]);
    const version = /^Version: (.+)$/m.exec(show.stdout)?.[1];
    if (show.code !== 0 || !version) {
      errors.push(`${pkg} is not in ${suite}`);
      continue;
    }
    const out = path.join(CACHE, 'debs', suite);
    mkdirSync(out, { recursive: true });
    const have = cachedDebs(pkg, suite).find((f) => debVersion(f) === version);
    if (have) return { pkg, suite, file: have, version, fromCache: true };
    step(`apt-get download ${pkg} (${suite} ${version}) into ${out}`);
    await must('apt-get', [...opts, 'download', pkg], { cwd: out });
    const got = cachedDebs(pkg, suite).find((f) => debVersion(f) === version);
    if (!got) throw new Error(`apt-get download ${pkg} from ${suite} left no .deb in ${out}`);
    return { pkg, suite, file: got, version, fromCache: false };
  }
  // Offline with a stale cache under BENCH_REFRESH_DEBS=1: use what is there.
  for (const suite of suites) {
    const cached = newest(cachedDebs(pkg, suite));
    if (cached) return { pkg, suite, file: cached, version: debVersion(cached), fromCache: true };
  }
  throw new Error(`cannot get ${pkg}: ${errors.join('; ')}`);
}

/** Extracts a -dkms package into `into`; returns its /usr/src/<name>-<version> dirs (those with a dkms.conf). */
export async function extractDkmsSources(deb: string, into: string): Promise<string[]> {
  mkdirSync(into, { recursive: true });
  await must('dpkg-deb', ['-x', deb, into]);
  const src = path.join(into, 'usr/src');
  return (existsSync(src) ? readdirSync(src) : []).filter((d) => existsSync(path.join(src, d, 'dkms.conf'))).map((d) => path.join(src, d));
}
