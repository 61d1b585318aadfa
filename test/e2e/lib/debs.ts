/**
 * Debian packages for the end-to-end tests, built on the host: ootmod's own .debs from the work tree
 * (dpkg-buildpackage, as a user of the repository would run it), and small packages made with
 * dpkg-deb that ship a module source in /usr/src, or stand in for another package.
 *
 * ootmod's .debs are built once per source tree: kept under CACHE_ROOT/ootmod-debs/<hash of the tree>,
 * so the e2e files of one run (and runs on an unchanged tree) share one dpkg-buildpackage. A changed
 * file changes the hash: nothing stale is reused. The small packages are built anew on every call.
 */
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CACHE_ROOT, ensureHostPackages, exec, type Log } from './chroot.js';

export const REPO = path.resolve(__dirname, '../../..');

export interface OotmodDebs {
  /** The directory holding the .debs (remove it when done). */
  dir: string;
  /** ootmod_<version>_all.deb */
  ootmod: string;
  /** ootmod-static_<version>_amd64.deb */
  ootmodStatic: string;
  /** ootmod-dkms_<version>_all.deb: /usr/sbin/dkms and common.postinst, run by ootmod. */
  ootmodDkms: string;
  /** The version in debian/changelog. */
  version: string;
  /** Taken from OOTMOD_E2E_DEBS or the shared cache: not to be removed, nor written into. */
  prebuilt?: boolean;
  /** dpkg-buildpackage's output. */
  log: string;
}

/** Repository entries that are not part of a source tree to build from. */
const NOT_SOURCE = new Set(['.git', 'node_modules', 'dist', 'bench/results', 'debian/.debhelper', 'debian/ootmod', 'debian/ootmod-static', 'debian/ootmod-dkms', 'debian/build', 'debian/files', 'debian/debhelper-build-stamp']);

/** ootmod's arch-independent .debs: ootmod (on Debian's nodejs) and ootmod-dkms. */
export type OotmodIndepDebs = Omit<OotmodDebs, 'ootmodStatic'>;

/**
 * Builds ootmod's .debs with `dpkg-buildpackage -us -uc -b` from a copy of the work tree (so the
 * build neither writes into the work tree nor sees leftovers of an earlier build). node_modules is
 * the work tree's own (`npm ci` installs it before a package build; the build downloads nothing).
 */
export function buildOotmodDebs(log: Log): Promise<OotmodDebs> {
  return buildDebs(log, true) as Promise<OotmodDebs>;
}

/** The same with `-A`: only the arch-independent packages, without the slower self-contained ootmod-static. */
export function buildOotmodIndepDebs(log: Log): Promise<OotmodIndepDebs> {
  return buildDebs(log, false);
}

async function buildDebs(log: Log, withStatic: boolean): Promise<OotmodIndepDebs & { ootmodStatic?: string }> {
  // OOTMOD_E2E_DEBS=DIR: the .debs an earlier dpkg-buildpackage of this tree left in DIR (when iterating
  // on a test; the caller must not remove DIR then, see OotmodDebs.prebuilt).
  const prebuilt = process.env.OOTMOD_E2E_DEBS;
  if (prebuilt) {
    log(`host: using the .debs in ${prebuilt} (OOTMOD_E2E_DEBS), not building`);
    return debsIn(prebuilt, withStatic, '', true);
  }
  await ensureHostPackages(['dpkg-dev', 'debhelper', 'lintian', 'binutils'], log);
  if (!existsSync(path.join(REPO, 'node_modules/.bin/esbuild'))) throw new Error('node_modules is missing: run npm ci first');
  // A full build (-b) serves an arch-independent request too.
  const key = sourceTreeHash();
  const store = path.join(CACHE_ROOT, 'ootmod-debs');
  for (const kind of withStatic ? ['full'] : ['indep', 'full']) {
    const cached = path.join(store, `${key}-${kind}`);
    if (existsSync(path.join(cached, 'build.log'))) {
      log(`host: the .debs of this tree are built already (${cached})`);
      return debsIn(cached, withStatic, readFileSync(path.join(cached, 'build.log'), 'utf8'), true);
    }
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ootmod-e2e-debs-'));
  const src = path.join(dir, 'ootmod');
  cpSync(REPO, src, { recursive: true, filter: (from) => isSource(path.relative(REPO, from)) });
  symlinkSync(path.join(REPO, 'node_modules'), path.join(src, 'node_modules'));
  const args = ['-us', '-uc', withStatic ? '-b' : '-A'];
  log(`host: dpkg-buildpackage ${args.join(' ')} in ${src}`);
  const t0 = Date.now();
  const r = await exec('dpkg-buildpackage', args, { cwd: src, reject: false, env: { DEB_BUILD_OPTIONS: '' } });
  const output = `${r.stdout}\n${r.stderr}`;
  if (r.exitCode !== 0) throw new Error(`dpkg-buildpackage failed (${r.exitCode}):\n${output.split('\n').slice(-60).join('\n')}`);
  log(`host: .debs built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  rmSync(src, { recursive: true, force: true });
  writeFileSync(path.join(dir, 'build.log'), output);
  // Into the cache, whole (renamed when complete); another process of this run may have been first.
  const target = path.join(store, `${key}-${withStatic ? 'full' : 'indep'}`);
  mkdirSync(store, { recursive: true });
  try {
    renameSync(dir, target);
  } catch {
    rmSync(dir, { recursive: true, force: true });
  }
  pruneDebCache(store, 4);
  return debsIn(target, withStatic, output, true);
}

/** Repository entries that are part of the source tree dpkg-buildpackage builds from. */
function isSource(rel: string): boolean {
  return !NOT_SOURCE.has(rel) && !rel.startsWith('debian/.debhelper') && !/^debian\/[^/]+\.(substvars|log)$/.test(rel);
}

/** A hash of every file of the source tree (paths, modes, contents, link targets) and of node_modules' lock. */
function sourceTreeHash(): string {
  const h = createHash('sha256');
  const walk = (rel: string) => {
    const abs = path.join(REPO, rel);
    const st = lstatSync(abs);
    h.update(`${rel}\0${st.mode}\0`);
    if (st.isSymbolicLink()) h.update(readlinkSync(abs));
    else if (st.isDirectory()) for (const e of readdirSync(abs).sort()) walk(rel ? `${rel}/${e}` : e);
    else h.update(readFileSync(abs));
  };
  for (const e of readdirSync(REPO).sort()) if (e !== 'node_modules' && isSource(e)) walk(e);
  const lock = path.join(REPO, 'node_modules/.package-lock.json');
  if (existsSync(lock)) h.update(readFileSync(lock));
  return h.digest('hex').slice(0, 16);
}

/** Keeps the newest `keep` cached builds. */
function pruneDebCache(store: string, keep: number): void {
  const entries = readdirSync(store).map((e) => ({ e, t: statSync(path.join(store, e)).mtimeMs })).sort((a, b) => b.t - a.t);
  for (const { e } of entries.slice(keep)) rmSync(path.join(store, e), { recursive: true, force: true });
}

function debsIn(dir: string, withStatic: boolean, log: string, prebuilt: boolean): OotmodIndepDebs & { ootmodStatic?: string } {
  const find = (re: RegExp) => {
    const f = readdirSync(dir).find((n) => re.test(n));
    if (!f) throw new Error(`dpkg-buildpackage made no ${re} in ${dir}: ${readdirSync(dir).join(' ')}`);
    return path.join(dir, f);
  };
  const ootmod = find(/^ootmod_.*_all\.deb$/);
  const version = /^ootmod_(.+)_all\.deb$/.exec(path.basename(ootmod))![1]!;
  return {
    dir, prebuilt, ootmod, ootmodDkms: find(/^ootmod-dkms_.*_all\.deb$/), version, log,
    ...(withStatic ? { ootmodStatic: find(/^ootmod-static_.*_amd64\.deb$/) } : {}),
  };
}

/** lintian's tags of one .deb at error and warning level (lines like "E: ootmod: tag ..."). */
export async function lintianProblems(deb: string): Promise<string[]> {
  const r = await exec('lintian', ['--fail-on', 'none', deb], { reject: false });
  return r.stdout.split('\n').filter((l) => /^[EW]: /.test(l));
}

export interface DummyDeb {
  package: string;
  version: string;
  architecture?: string;
  description: string;
  depends?: string;
  /** Extra control fields (e.g. Provides, Conflicts). */
  fields?: Record<string, string>;
  /** Files of the package: path inside the system -> content (or a host file/directory to copy). */
  files?: Record<string, { content: string; mode?: number } | { from: string }>;
  /** Maintainer scripts: name (preinst, postinst, prerm, postrm) -> content. */
  scripts?: Record<string, string>;
}

/** Builds a small .deb with dpkg-deb (root-owned files, mode bits kept but never group/other-writable). */
export async function buildDeb(spec: DummyDeb, outDir: string): Promise<string> {
  const tree = mkdtempSync(path.join(os.tmpdir(), `deb-${spec.package}-`));
  try {
    for (const [target, what] of Object.entries(spec.files ?? {})) {
      const dest = path.join(tree, target);
      mkdirSync(path.dirname(dest), { recursive: true });
      if ('from' in what) cpSync(what.from, dest, { recursive: true });
      else writeFileSync(dest, what.content, { mode: what.mode ?? 0o644 });
    }
    // Module sources must not be group/other-writable (ootmod refuses them as root).
    const fix = (p: string) => {
      const s = statSync(p);
      chmodSync(p, s.mode & 0o7755);
      if (s.isDirectory()) for (const e of readdirSync(p)) fix(path.join(p, e));
    };
    chmodSync(tree, 0o755);
    fix(tree);
    mkdirSync(path.join(tree, 'DEBIAN'), { mode: 0o755 });
    const fields: Record<string, string> = {
      Package: spec.package,
      Version: spec.version,
      Architecture: spec.architecture ?? 'all',
      Maintainer: 'ootmod e2e tests <ootmod@example.org>',
      ...(spec.depends ? { Depends: spec.depends } : {}),
      ...spec.fields,
      Description: spec.description,
    };
    writeFileSync(path.join(tree, 'DEBIAN/control'), Object.entries(fields).map(([k, v]) => `${k}: ${v}\n`).join(''));
    for (const [name, content] of Object.entries(spec.scripts ?? {})) {
      writeFileSync(path.join(tree, 'DEBIAN', name), content, { mode: 0o755 });
    }
    mkdirSync(outDir, { recursive: true });
    const deb = path.join(outDir, `${spec.package}_${spec.version}_${fields.Architecture}.deb`);
    await exec('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', tree, deb]);
    return deb;
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
}

/**
 * A package that ships a test fixture as a module source, like a real *-dkms package does:
 * /usr/src/<name>-<version>/ with its dkms.conf (and no dkms dependency).
 */
export function fixtureDeb(fixture: string, outDir: string): Promise<string> {
  const m = /^(.+)-([^-]+)$/.exec(fixture);
  if (!m) throw new Error(`fixture directory ${fixture} is not <name>-<version>`);
  return buildDeb(
    {
      package: `${m[1]}-source`,
      version: m[2],
      description: `ootmod test module source ${fixture}`,
      files: { [`/usr/src/${fixture}`]: { from: path.join(REPO, 'test/fixtures', fixture) } },
    },
    outDir,
  );
}
