/**
 * Debian chroots for ootmod's end-to-end tests.
 *
 * A chroot per suite is debootstrapped once and cached under CACHE_ROOT/chroots/<suite>. Downloaded
 * .debs live outside it (CACHE_ROOT/apt-archives/<suite>, bind-mounted while the chroot is in use), so
 * they survive a chroot rebuild. Kernel and toolchain versions are always derived from the chroot's
 * apt lists at run time: sid moves weekly.
 *
 * Everything here needs root.
 */
import type { Options } from 'execa';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

export type Suite = 'sid' | 'trixie';

export const CACHE_ROOT = process.env.OOTMOD_TEST_CACHE ?? '/var/cache/ootmod-test';

/** Written last into a finished chroot; a directory without it is never used. */
const COMPLETE_MARKER = '.ootmod-chroot-complete';
/** A cached chroot older than this is rebuilt, so kernels and packages from old sid uploads don't pile up. */
const DEFAULT_MAX_AGE_DAYS = 30;
const CHROOT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Set OOTMOD_E2E_VERBOSE=1 to see the output of commands run in chroots as they run. */
const VERBOSE = process.env.OOTMOD_E2E_VERBOSE === '1';

export type Log = (msg: string) => void;
const defaultLog: Log = (msg) => process.stderr.write(`[e2e] ${msg}\n`);

// ---------------------------------------------------------------------------------------------
// Host helpers

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export type ExecOptions = Pick<
  Options,
  'cwd' | 'env' | 'extendEnv' | 'input' | 'stdin' | 'stdout' | 'stderr' | 'reject' | 'timeout'
>;

/**
 * execa, loaded with import(): execa is ESM-only and this package is CommonJS, so under
 * `npx tsx` a static import would become a failing require().
 */
export async function exec(file: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const { execa, ExecaError } = await import('execa');
  let r;
  try {
    r = await execa(file, args, opts);
  } catch (e) {
    // execa's own message carries the whole output (thousands of lines for apt or debootstrap).
    if (!(e instanceof ExecaError)) throw e;
    const tail = (v: unknown) => (typeof v === 'string' ? v.split('\n').slice(-40).join('\n') : '');
    const output = `--- stdout (tail) ---\n${tail(e.stdout)}\n--- stderr (tail) ---\n${tail(e.stderr)}`;
    throw new Error(`${e.shortMessage}\n${output}`, { cause: e });
  }
  // Always strings here (no transforms, no `lines`/`buffer`), whatever execa's generic type says.
  const text = (v: unknown) => (typeof v === 'string' ? v : '');
  return { exitCode: r.exitCode ?? -1, stdout: text(r.stdout), stderr: text(r.stderr), timedOut: r.timedOut };
}

/** Installs the host packages that are not installed yet (apt-get update only if the install fails). */
export async function ensureHostPackages(pkgs: string[], log: Log = defaultLog): Promise<void> {
  const missing: string[] = [];
  for (const pkg of pkgs) {
    const r = await exec('dpkg-query', ['-W', '-f=${Status}', pkg], { reject: false });
    if (r.stdout !== 'install ok installed') missing.push(pkg);
  }
  if (missing.length === 0) return;
  log(`host: apt-get install ${missing.join(' ')}`);
  const install = () =>
    exec(
      'apt-get',
      ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '--no-install-recommends', ...missing],
      { env: { DEBIAN_FRONTEND: 'noninteractive' }, reject: false },
    );
  if ((await install()).exitCode === 0) return;
  await exec('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'update']);
  const r = await install();
  if (r.exitCode !== 0) throw new Error(`host apt-get install ${missing.join(' ')} failed:\n${r.stderr}`);
}

interface AptSource {
  types: string[];
  uris: string[];
  suites: string[];
}

/** Parses one-line style (sources.list) entries. */
export function parseOneLineSources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    // deb [ option=value ... ] uri suite [component ...]; the option block may contain spaces.
    const m = /^(deb|deb-src)\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
    if (m) out.push({ types: [m[1]], uris: [m[2]], suites: [m[3]] });
  }
  return out;
}

/** Parses deb822 style (*.sources) stanzas; stanzas with `Enabled: no` are skipped. */
export function parseDeb822Sources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let key: string | undefined;
    for (const line of stanza.split('\n')) {
      if (line.startsWith('#')) continue;
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (m) {
        key = m[1].toLowerCase();
        fields.set(key, m[2].trim());
      } else if (key && /^\s/.test(line)) {
        fields.set(key, `${fields.get(key)} ${line.trim()}`);
      }
    }
    if (fields.get('enabled')?.toLowerCase() === 'no') continue;
    const words = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
    if (fields.has('uris')) out.push({ types: words('types'), uris: words('uris'), suites: words('suites') });
  }
  return out;
}

/**
 * The Debian mirror the host's apt uses: the URI of the first `deb` entry for the host's own release
 * (VERSION_CODENAME in /etc/os-release, e.g. bookworm). The mirror also serves trixie and sid.
 */
export async function hostDebianMirror(): Promise<string> {
  const osRelease = await fs.readFile('/etc/os-release', 'utf8');
  const codename = /^VERSION_CODENAME=["']?([^"'\n]+)/m.exec(osRelease)?.[1];
  if (!codename) throw new Error('no VERSION_CODENAME in /etc/os-release');

  const sources: AptSource[] = [];
  if (existsSync('/etc/apt/sources.list')) {
    sources.push(...parseOneLineSources(await fs.readFile('/etc/apt/sources.list', 'utf8')));
  }
  const dir = '/etc/apt/sources.list.d';
  for (const name of existsSync(dir) ? (await fs.readdir(dir)).sort() : []) {
    const text = () => fs.readFile(path.join(dir, name), 'utf8');
    if (name.endsWith('.list')) sources.push(...parseOneLineSources(await text()));
    else if (name.endsWith('.sources')) sources.push(...parseDeb822Sources(await text()));
  }
  const entry = sources.find((s) => s.types.includes('deb') && s.suites.includes(codename));
  if (!entry) throw new Error(`no apt source for ${codename} in the host's apt sources`);
  return entry.uris[0].replace(/\/+$/, '');
}

// ---------------------------------------------------------------------------------------------
// Locking and mounts

/**
 * A cross-process lock (a file holding the owner's pid), re-entrant within a process. A lock whose
 * owner is dead is taken over: that is how a crashed run is detected.
 */
class PidLock {
  private depth = 0;
  private taken: Promise<void> = Promise.resolve();

  constructor(readonly file: string) {}

  /** Resolves once this process holds the lock; nested calls share the first call's acquisition. */
  acquire(log: Log): Promise<void> {
    if (this.depth++ === 0) {
      this.taken = this.take(log).catch((e) => {
        this.depth = 0;
        throw e;
      });
    }
    return this.taken;
  }

  private async take(log: Log): Promise<void> {
    let waiting = false;
    for (;;) {
      try {
        await fs.writeFile(this.file, String(process.pid), { flag: 'wx' });
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const owner = Number((await fs.readFile(this.file, 'utf8').catch(() => '')).trim());
      if (!owner || !isAlive(owner)) {
        await fs.rm(this.file, { force: true });
        continue;
      }
      if (!waiting) log(`waiting for ${this.file} (held by pid ${owner})`);
      waiting = true;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  async release(): Promise<void> {
    if (--this.depth === 0) await fs.rm(this.file, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Mount points at or below `dir`, deepest first (from /proc/self/mountinfo). */
async function mountsUnder(dir: string): Promise<string[]> {
  const info = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const points = info
    .split('\n')
    .filter(Boolean)
    // Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
    .map((l) => l.split(' ')[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Unmounts one mount point and everything below it, falling back to a lazy unmount. */
async function unmountTree(point: string): Promise<void> {
  if ((await exec('umount', ['-R', point], { reject: false })).exitCode === 0) return;
  // umount -R can fail after it unmounted the point itself (a submount busy a moment): nothing left, done.
  if (!(await mountsUnder(point)).length) return;
  await exec('umount', ['-R', '-l', point]);
}

/**
 * Deletes a directory tree that may still have something mounted in it (e.g. a debootstrap that
 * was killed). Unmounting first, and --one-file-system as a second guard, keep `rm` from descending
 * into a bind-mounted host /dev.
 */
async function removeTree(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const point of await mountsUnder(dir)) await unmountTree(point);
  await exec('rm', ['-rf', '--one-file-system', dir]);
}

const locks = new Map<string, PidLock>();
function lockFor(root: string): PidLock {
  let lock = locks.get(root);
  if (!lock) locks.set(root, (lock = new PidLock(`${root}.lock`)));
  return lock;
}

// ---------------------------------------------------------------------------------------------
// Chroot

export interface RunOptions {
  /** Working directory inside the chroot (default /). */
  cwd?: string;
  /** Added to the clean environment. */
  env?: Record<string, string>;
  input?: string;
  /** Throw on a non-zero exit (default true). */
  reject?: boolean;
  timeoutMs?: number;
  /** Also copy the output to this process's stdout/stderr (default: OOTMOD_E2E_VERBOSE=1). */
  echo?: boolean;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

const aptUpdated = new Set<string>();

export class Chroot {
  private users = 0;
  /** Serialises mount and unmount transitions when withMounts calls overlap. */
  private transition: Promise<void> = Promise.resolve();
  private mounted: string[] = [];

  constructor(
    readonly suite: Suite,
    readonly root: string,
    private readonly archives: string,
    private readonly log: Log,
  ) {}

  /** The host path of a path inside the chroot. */
  path(p: string): string {
    return path.join(this.root, p);
  }

  /**
   * Runs fn with /proc, /dev, /sys and the apt archive cache mounted in the chroot, and unmounts
   * them afterwards, also when fn throws. Calls may nest or overlap; the mounts stay until the last
   * one ends. Across processes, a chroot is used by one process at a time (the others wait).
   */
  async withMounts<T>(fn: () => Promise<T>): Promise<T> {
    if (this.users++ === 0) this.transition = this.transition.catch(() => {}).then(() => this.mountAll());
    try {
      await this.transition;
      return await fn();
    } finally {
      if (--this.users === 0) {
        this.transition = this.transition.catch(() => {}).then(() => this.unmountAll());
        await this.transition;
      }
    }
  }

  private async mountAll(): Promise<void> {
    await lockFor(this.root).acquire(this.log);
    try {
      // We hold the lock and have nothing mounted: whatever is mounted here was left by a dead run. The
      // root itself may be a mount point: a disk image's filesystem worked in as a chroot (lib/disk.ts).
      for (const point of (await mountsUnder(this.root)).filter((p) => p !== this.root)) {
        this.log(`unmounting stale ${point}`);
        await unmountTree(point);
      }
      await this.mount(['-t', 'proc', 'proc'], '/proc');
      await this.mount(['--rbind', '/dev'], '/dev');
      // Without rslave, unmounting the chroot's /dev/pts etc. would propagate back to the host.
      await exec('mount', ['--make-rslave', this.path('/dev')]);
      await this.mount(['-t', 'sysfs', 'sys'], '/sys');
      await fs.mkdir(path.join(this.archives, 'partial'), { recursive: true });
      await this.mount(['--bind', this.archives], '/var/cache/apt/archives');
      await fs.copyFile('/etc/resolv.conf', this.path('/etc/resolv.conf'));
    } catch (e) {
      await this.unmountAll();
      throw e;
    }
  }

  private async mount(args: string[], inside: string): Promise<void> {
    await exec('mount', [...args, this.path(inside)]);
    this.mounted.push(this.path(inside));
  }

  private async unmountAll(): Promise<void> {
    try {
      while (this.mounted.length > 0) await unmountTree(this.mounted.pop()!);
    } finally {
      await lockFor(this.root).release();
    }
  }

  /** Runs a command inside the chroot with a clean environment (mounting what it needs meanwhile). */
  run(cmd: string[], opts: RunOptions = {}): Promise<RunResult> {
    const echo = opts.echo ?? VERBOSE;
    return this.withMounts(async () => {
      // coreutils env -C sets the working directory; chroot(8) itself always starts in /.
      const r = await exec('chroot', [this.root, '/usr/bin/env', '-C', opts.cwd ?? '/', ...cmd], {
        extendEnv: false,
        env: {
          PATH: CHROOT_PATH,
          LANG: 'C.UTF-8',
          DEBIAN_FRONTEND: 'noninteractive',
          HOME: '/root',
          ...opts.env,
        },
        input: opts.input,
        stdin: opts.input === undefined ? 'ignore' : undefined,
        stdout: echo ? ['pipe', 'inherit'] : 'pipe',
        stderr: echo ? ['pipe', 'inherit'] : 'pipe',
        reject: opts.reject ?? true,
        timeout: opts.timeoutMs,
      });
      return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
    });
  }

  /**
   * apt-get update, at most once per process and chroot unless forced. Then autoclean, which drops
   * cached .debs that the archive no longer has, so the archive cache stays bounded.
   */
  async aptUpdate(force = false): Promise<void> {
    if (aptUpdated.has(this.root) && !force) return;
    await this.withMounts(async () => {
      await this.run(['apt-get', 'update']);
      await this.run(['apt-get', 'autoclean']);
    });
    aptUpdated.add(this.root);
  }

  /** apt-get install without recommends; `target` is passed as -t (e.g. trixie-backports). */
  async aptInstall(pkgs: string[], opts: { target?: string } = {}): Promise<void> {
    const target = opts.target ? ['-t', opts.target] : [];
    this.log(`${this.suite}: apt-get install ${[...target, ...pkgs].join(' ')}`);
    await this.withMounts(async () => {
      await this.aptUpdate();
      // An earlier run killed mid-install leaves packages unpacked but not configured: finish them first.
      await this.run(['dpkg', '--configure', '-a'], { reject: false });
      await this.run(['apt-get', 'install', '-y', '--no-install-recommends', '-f', ...target, ...pkgs]);
    });
  }
}

export interface EnsureChrootOptions {
  cacheRoot?: string;
  /** Debian mirror URI (default: derived from the host's apt sources). */
  mirror?: string;
  /** Rebuild a cached chroot older than this many days (default 30). */
  maxAgeDays?: number;
  log?: Log;
  /**
   * Directory name under <cacheRoot>/chroots (default: the suite). A chroot with another name is
   * separate from the suite's usual one: its own tree, lock and apt archive cache (seeded with hard
   * links to the suite's cached .debs, so nothing is downloaded twice).
   */
  name?: string;
  /**
   * Debian architecture of the chroot (default: the host's). A foreign one (arm64 on amd64) runs
   * through qemu-user binfmt: the host needs qemu-user-static and binfmt-support.
   */
  arch?: string;
  /**
   * Archive areas of the chroot's apt source (default: main). contrib, non-free and
   * non-free-firmware come from the same mirror (zfs-dkms, nvidia-kernel-dkms and their firmware).
   */
  components?: string[];
}

interface Marker {
  created: string;
  mirror: string;
}

const chroots = new Map<string, Chroot>();

/** Returns the cached chroot for a suite, debootstrapping it first if it is missing or too old. */
export async function ensureChroot(suite: Suite, opts: EnsureChrootOptions = {}): Promise<Chroot> {
  const cacheRoot = opts.cacheRoot ?? CACHE_ROOT;
  const log = opts.log ?? defaultLog;
  const name = opts.name ?? suite;
  const root = path.join(cacheRoot, 'chroots', name);
  // Checked once per process: a rebuild must not pull the tree from under mounts or running commands.
  const known = chroots.get(root);
  if (known) return known;
  await fs.mkdir(path.dirname(root), { recursive: true });
  if (opts.arch) await ensureForeignExecution(opts.arch, log);

  const lock = lockFor(root);
  await lock.acquire(log);
  try {
    const mirror = opts.mirror ?? (await hostDebianMirror());
    const maxAgeMs = (opts.maxAgeDays ?? DEFAULT_MAX_AGE_DAYS) * 86_400_000;
    const marker = await readMarker(root);
    if (!marker || Date.now() - Date.parse(marker.created) > maxAgeMs) {
      if (marker) log(`${suite}: cached chroot from ${marker.created} is too old, rebuilding`);
      await buildChroot(suite, root, mirror, log, opts.arch);
    }
    // Rewritten every time (cheap), so a changed mirror or apt setting needs no rebuild.
    await configureApt(root, suite, mirror, opts.components);
  } finally {
    await lock.release();
  }

  const archives = await archivesFor(cacheRoot, suite, name);
  const chroot = chroots.get(root) ?? new Chroot(suite, root, archives, log);
  chroots.set(root, chroot);
  return chroot;
}

/** The apt archive cache of a chroot; one with its own name starts with links to the suite's .debs. */
async function archivesFor(cacheRoot: string, suite: Suite, name: string): Promise<string> {
  const archives = path.join(cacheRoot, 'apt-archives', name);
  if (name !== suite && !existsSync(archives)) {
    const shared = path.join(cacheRoot, 'apt-archives', suite);
    await fs.mkdir(archives, { recursive: true });
    for (const f of existsSync(shared) ? await fs.readdir(shared) : []) {
      // Complete .debs only (apt moves them in from partial/ when verified); a copy if not linkable.
      if (f.endsWith('.deb')) await fs.link(path.join(shared, f), path.join(archives, f)).catch(() => fs.copyFile(path.join(shared, f), path.join(archives, f)));
    }
  }
  await fs.mkdir(archives, { recursive: true });
  return archives;
}

/**
 * A fresh system for a test that changes it deeply (installs and removes kernels, its own packages):
 * a copy of a pristine cached chroot (`<name>-base`, debootstrapped once and never used itself),
 * made anew at <cacheRoot>/chroots/<name> on every call, so nothing is left from an earlier run.
 */
export async function freshChroot(suite: Suite, name: string, opts: Omit<EnsureChrootOptions, 'name'> & { base?: string } = {}): Promise<Chroot> {
  const cacheRoot = opts.cacheRoot ?? CACHE_ROOT;
  const log = opts.log ?? defaultLog;
  if (name === suite) throw new Error(`freshChroot: the name must differ from the suite's own chroot (${suite})`);
  // Several fresh systems of one test file may share a pristine base (`base`, default `<name>-base`).
  const base = await ensureChroot(suite, { ...opts, name: opts.base ?? `${name}-base` });
  const root = path.join(cacheRoot, 'chroots', name);
  const lock = lockFor(root);
  const baseLock = lockFor(base.root);
  await lock.acquire(log);
  try {
    await baseLock.acquire(log);
    try {
      const t0 = Date.now();
      await removeTree(root);
      await removeTree(`${root}.tmp`);
      await exec('cp', ['-a', '--reflink=auto', base.root, `${root}.tmp`]);
      await fs.rename(`${root}.tmp`, root);
      log(`${name}: fresh copy of ${path.basename(base.root)} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    } finally {
      await baseLock.release();
    }
  } finally {
    await lock.release();
  }
  aptUpdated.delete(root);
  const chroot = new Chroot(suite, root, await archivesFor(cacheRoot, suite, name), log);
  chroots.set(root, chroot);
  return chroot;
}

let binfmtMountedHere = false;

/** Unmounts binfmt_misc if ensureForeignExecution mounted it. */
export async function releaseForeignExecution(): Promise<void> {
  if (!binfmtMountedHere) return;
  binfmtMountedHere = false;
  await exec('umount', ['/proc/sys/fs/binfmt_misc'], { reject: false });
}

/** Whether this machine runs `arch` binaries natively (dpkg --print-architecture). */
export async function isHostArch(arch: string): Promise<boolean> {
  return (await exec('dpkg', ['--print-architecture'])).stdout.trim() === arch;
}

/**
 * Makes binaries of a foreign Debian architecture run here through qemu-user (binfmt_misc with the
 * fix-binary flag, so they also run in chroots). Mounts binfmt_misc if it is not mounted; call
 * releaseForeignExecution() when done to unmount it again.
 */
export async function ensureForeignExecution(arch: string, log: Log = defaultLog): Promise<void> {
  if (await isHostArch(arch)) return;
  await ensureHostPackages(['qemu-user-static', 'binfmt-support'], log);
  const dir = '/proc/sys/fs/binfmt_misc';
  if (!existsSync(path.join(dir, 'status'))) {
    await exec('mount', ['-t', 'binfmt_misc', 'binfmt_misc', dir]);
    binfmtMountedHere = true;
  }
  const cpu = (await exec('dpkg-architecture', ['-a', arch, '-qDEB_HOST_GNU_CPU'], { reject: false })).stdout.trim();
  const entry = `qemu-${cpu}`;
  if (!existsSync(path.join(dir, entry))) await exec('update-binfmts', ['--enable', entry]);
  if (!existsSync(path.join(dir, entry))) throw new Error(`binfmt_misc has no ${entry} after update-binfmts --enable ${entry}`);
}

async function readMarker(root: string): Promise<Marker | undefined> {
  try {
    return JSON.parse(await fs.readFile(path.join(root, COMPLETE_MARKER), 'utf8')) as Marker;
  } catch {
    return undefined;
  }
}

/**
 * Makes a chroot at <root> (through <root>.tmp, renamed into place once complete) as a copy of the
 * suite's pristine debootstrap. Caller holds the chroot's lock.
 */
async function buildChroot(suite: Suite, root: string, mirror: string, log: Log, arch?: string): Promise<void> {
  const tmp = `${root}.tmp`;
  await removeTree(tmp); // left by an interrupted build
  const t0 = Date.now();
  try {
    const pristine = await pristineChroot(suite, path.dirname(root), mirror, log, arch);
    await exec('cp', ['-a', '--reflink=auto', pristine, tmp]);
    // Keep services from starting when packages are installed in the chroot.
    await fs.writeFile(path.join(tmp, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
    const marker: Marker = { created: new Date().toISOString(), mirror };
    await fs.writeFile(path.join(tmp, COMPLETE_MARKER), `${JSON.stringify(marker)}\n`);
    await removeTree(root);
    await fs.rename(tmp, root);
  } catch (e) {
    await removeTree(tmp);
    throw e;
  }
  log(`${suite}: chroot ready in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

/** A pristine debootstrap older than this is made anew (sid moves every day). */
const PRISTINE_MAX_AGE_MS = 86_400_000;

/**
 * One debootstrap of a suite (and architecture) that every chroot of that suite starts as a copy of,
 * never used itself: <chroots>/.pristine/<suite>-<arch>, made again when older than a day or from
 * another mirror. Chroots made at the same time wait for it on its lock.
 */
async function pristineChroot(suite: Suite, chrootsDir: string, mirror: string, log: Log, arch?: string): Promise<string> {
  const dir = path.join(chrootsDir, '.pristine', `${suite}-${arch ?? 'host'}`);
  await fs.mkdir(path.dirname(dir), { recursive: true });
  const lock = lockFor(dir);
  await lock.acquire(log);
  try {
    const marker = await readMarker(dir);
    if (marker && marker.mirror === mirror && Date.now() - Date.parse(marker.created) < PRISTINE_MAX_AGE_MS) return dir;
    await ensureHostPackages(['debootstrap'], log);
    const tmp = `${dir}.tmp`;
    await removeTree(tmp);
    log(`${suite}: debootstrap --variant=minbase${arch ? ` --arch=${arch}` : ''} from ${mirror} (takes a few minutes; once a day, then copied)`);
    try {
      await exec('debootstrap', [...(arch ? [`--arch=${arch}`] : []), '--variant=minbase', '--include=make', suite, tmp, mirror], {
        stdin: 'ignore',
        stdout: VERBOSE ? ['pipe', 'inherit'] : 'pipe',
        stderr: VERBOSE ? ['pipe', 'inherit'] : 'pipe',
      });
      const made: Marker = { created: new Date().toISOString(), mirror };
      await fs.writeFile(path.join(tmp, COMPLETE_MARKER), `${JSON.stringify(made)}\n`);
      await removeTree(dir);
      await fs.rename(tmp, dir);
    } catch (e) {
      await removeTree(tmp);
      throw e;
    }
    return dir;
  } finally {
    await lock.release();
  }
}

/** main, and for the contrib/non-free tests the other archive areas Debian has. */
export const ALL_COMPONENTS = ['main', 'contrib', 'non-free', 'non-free-firmware'];

async function configureApt(root: string, suite: Suite, mirror: string, components = ['main']): Promise<void> {
  // The host clock is ahead of the archive's Release files' Valid-Until: without this apt refuses
  // them as expired.
  await fs.writeFile(
    path.join(root, 'etc/apt/apt.conf.d/99ootmod-test'),
    'Acquire::Check-Valid-Until "false";\nAcquire::Languages "none";\nAPT::Install-Recommends "false";\n',
  );
  const areas = components.join(' ');
  const lines = [`deb ${mirror} ${suite} ${areas}`];
  if (suite === 'trixie') lines.push(`deb ${mirror} trixie-backports ${areas}`);
  await fs.writeFile(path.join(root, 'etc/apt/sources.list'), `${lines.join('\n')}\n`);
}

// ---------------------------------------------------------------------------------------------
// Versions, derived from the chroot's apt lists and installed headers

interface MadisonEntry {
  version: string;
  suite: string;
}

/** `apt-cache madison PKG`: every available version with the suite that carries it. */
async function madison(chroot: Chroot, pkg: string): Promise<MadisonEntry[]> {
  const { stdout } = await chroot.run(['apt-cache', 'madison', pkg]);
  // "   rustc | 1.85.0+dfsg1-1 | <the mirror URL> trixie/main amd64 Packages"
  return stdout
    .split('\n')
    .map((l) => l.split('|').map((f) => f.trim()))
    .filter((f) => f.length === 3 && f[0] === pkg && / Packages$/.test(f[2]))
    .map((f) => ({ version: f[1], suite: f[2].split(/\s+/)[1].split('/')[0] }));
}

/** The dependency of PKG=VERSION whose name starts with `prefix`, with its pinned version if any. */
async function dependency(
  chroot: Chroot,
  pkg: string,
  version: string,
  prefix: string,
): Promise<{ name: string; version?: string }> {
  const { stdout } = await chroot.run(['apt-cache', 'show', `${pkg}=${version}`]);
  const depends = /^Depends: (.*)$/m.exec(stdout)?.[1] ?? '';
  for (const alt of depends.split(/[,|]/)) {
    const m = /^\s*(\S+)(?:\s*\(\s*=\s*([^)\s]+)\s*\))?/.exec(alt);
    if (m && m[1].startsWith(prefix)) return { name: m[1], version: m[2] };
  }
  throw new Error(`${pkg}=${version} has no ${prefix}* dependency (Depends: ${depends})`);
}

/** The version `pkg` has in `suite`, or an error naming what is available. */
async function versionIn(chroot: Chroot, pkg: string, suite: string): Promise<string> {
  const entries = await madison(chroot, pkg);
  const hit = entries.find((e) => e.suite === suite);
  if (!hit) throw new Error(`${pkg} not in ${suite} (have: ${JSON.stringify(entries)})`);
  return hit.version;
}

/** Upstream part of a Debian version: "1:21.1.8-14" -> "21.1.8", "1.85.0+dfsg1-1" -> "1.85.0". */
function upstreamOf(debVersion: string): string {
  return debVersion.replace(/^\d+:/, '').replace(/[+~-].*$/, '');
}

export interface KernelInfo {
  /** ABI release, the `uname -r` of the kernel, e.g. "8.1.4+deb15-amd64". */
  kver: string;
  /** Debian version of the kernel binary packages, e.g. "8.1.4-1". */
  version: string;
  /** Upstream X.Y, e.g. "7.2". */
  upstream: string;
  /** The suite the kernel comes from; pass it as aptInstall's `target`. */
  suite: string;
  headersPackage: string;
  /** What linux-image-<flavour> depends on (the signed linux-image-KVER, or -unsigned). */
  imagePackage: string;
  /** linux-source-X.Y; install it pinned to `version` so it matches the headers. */
  sourcePackage: string;
}

/**
 * The current kernel of a suite, resolved through the linux-headers-<flavour> and
 * linux-image-<flavour> metapackages. For a trixie chroot the default suite is trixie-backports
 * (trixie's own 6.12 kernel has no CONFIG_RUST).
 */
export function currentKernel(
  chroot: Chroot,
  opts: { suite?: string; flavour?: string; /** A foreign Debian architecture (multiarch), e.g. arm64. */ arch?: string } = {},
): Promise<KernelInfo> {
  const suite = opts.suite ?? (chroot.suite === 'trixie' ? 'trixie-backports' : chroot.suite);
  const flavour = opts.flavour ?? 'amd64';
  const qual = opts.arch ? `:${opts.arch}` : '';
  // One mount cycle for all the apt queries.
  return chroot.withMounts(async () => {
    await chroot.aptUpdate();
    const metaDependency = async (kind: 'headers' | 'image') => {
      const meta = `linux-${kind}-${flavour}${qual}`;
      return dependency(chroot, meta, await versionIn(chroot, meta, suite), `linux-${kind}-`);
    };
    const headers = await metaDependency('headers');
    const image = await metaDependency('image');

    const version = headers.version ?? (await versionIn(chroot, `${headers.name}${qual}`, suite));
    const upstream = /^(?:\d+:)?(\d+\.\d+)/.exec(version)?.[1];
    if (!upstream) throw new Error(`cannot parse upstream version of ${headers.name} ${version}`);
    return {
      kver: headers.name.slice('linux-headers-'.length),
      version,
      upstream,
      suite,
      headersPackage: `${headers.name}${qual}`,
      imagePackage: `${image.name}${qual}`,
      sourcePackage: `linux-source-${upstream}`,
    };
  });
}

/** Parses a kernel .config into a map of CONFIG_* -> value (quotes removed). */
export function parseKernelConfig(text: string): Map<string, string> {
  const config = new Map<string, string>();
  for (const m of text.matchAll(/^(CONFIG_\w+)=(.*)$/gm)) config.set(m[1], m[2].replace(/^"(.*)"$/, '$1'));
  return config;
}

/** Reads the installed headers' .config into a map of CONFIG_* -> value (quotes removed). */
export async function kernelConfig(chroot: Chroot, kver: string): Promise<Map<string, string>> {
  return parseKernelConfig(await fs.readFile(chroot.path(`/usr/src/linux-headers-${kver}/.config`), 'utf8'));
}

/**
 * The gcc package the kernel was built with, from CONFIG_CC_VERSION_TEXT
 * (e.g. "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0" -> "gcc-14").
 */
export async function kernelGccPackage(chroot: Chroot, kver: string): Promise<string> {
  const text = (await kernelConfig(chroot, kver)).get('CONFIG_CC_VERSION_TEXT') ?? '';
  const m = /\bgcc-(\d+)\b/.exec(text);
  if (!m) throw new Error(`kernel ${kver} was not built by a versioned gcc: "${text}"`);
  return `gcc-${m[1]}`;
}

export type RustToolchain =
  | {
      ok: true;
      /** Suite to install the toolchain from, as aptInstall's `target`, in its own transaction. */
      suite: string;
      /** Pinned packages to install: rustc, rust-src, bindgen, libclang-dev. */
      packages: string[];
      /** What `rustc --version` must print after installing. */
      rustcText: string;
      bindgenText: string;
      /** Non-fatal differences (a bindgen version other than the kernel's). */
      warnings: string[];
    }
  | { ok: false; reason: string };

/**
 * Finds the Debian rustc that built the kernel (CONFIG_RUSTC_VERSION_TEXT of the installed headers)
 * in the chroot's apt lists. A suite can have no match at all: sid between a rustc and a kernel
 * upload, or trixie-backports, whose own rustc is newer than the one its kernel was built with.
 */
export async function kernelRustToolchain(
  chroot: Chroot,
  kver: string,
  /** The kernel's .config, when its headers are not installed yet (default: the installed headers'). */
  knownConfig?: Map<string, string>,
): Promise<RustToolchain> {
  const config = knownConfig ?? (await kernelConfig(chroot, kver));
  if (config.get('CONFIG_RUST') !== 'y') return { ok: false, reason: `CONFIG_RUST is not enabled in ${kver}` };
  const rustcText = config.get('CONFIG_RUSTC_VERSION_TEXT') ?? '';
  const bindgenText = config.get('CONFIG_BINDGEN_VERSION_TEXT') ?? '';
  const want = /^rustc (\d+\.\d+\.\d+)/.exec(rustcText)?.[1];
  if (!want) return { ok: false, reason: `cannot parse CONFIG_RUSTC_VERSION_TEXT "${rustcText}"` };

  // One mount cycle for all the apt queries.
  return chroot.withMounts(async (): Promise<RustToolchain> => {
    await chroot.aptUpdate();
    const rustcs = await madison(chroot, 'rustc');
    const matches = rustcs.filter((e) => upstreamOf(e.version) === want);
    // Prefer the chroot's own suite (trixie's kernel in backports is built with trixie's rustc).
    const rustc = matches.find((e) => e.suite === chroot.suite) ?? matches[0];
    if (!rustc) {
      const have = rustcs.map((e) => `${e.version} (${e.suite})`).join(', ') || 'none';
      return { ok: false, reason: `kernel ${kver} needs "${rustcText}"; apt has rustc ${have}` };
    }
    const inSuite = async (pkg: string) => (await madison(chroot, pkg)).filter((e) => e.suite === rustc.suite);
    if (!(await inSuite('rust-src')).some((e) => e.version === rustc.version)) {
      return { ok: false, reason: `no rust-src ${rustc.version} in ${rustc.suite}` };
    }
    const bindgen = (await inSuite('bindgen'))[0]?.version;
    if (!bindgen) return { ok: false, reason: `no bindgen in ${rustc.suite}` };

    const warnings: string[] = [];
    const wantBindgen = /^bindgen (\S+)/.exec(bindgenText)?.[1];
    if (wantBindgen && upstreamOf(bindgen) !== wantBindgen) {
      warnings.push(`kernel was built with "${bindgenText}", ${rustc.suite} has bindgen ${bindgen}`);
    }
    return {
      ok: true,
      suite: rustc.suite,
      packages: [`rustc=${rustc.version}`, `rust-src=${rustc.version}`, `bindgen=${bindgen}`, 'libclang-dev'],
      rustcText,
      bindgenText,
      warnings,
    };
  });
}

/**
 * Installs what building a CONFIG_RUST kernel's Rust tree needs in the chroot: the kernel, its headers,
 * the linux-source of exactly the headers' Debian version, its gcc, and the rustc it was built with.
 * Returns why it cannot (no matching rustc in the archive), or undefined.
 */
export async function installRustKernel(chroot: Chroot, kernel: KernelInfo): Promise<string | undefined> {
  return chroot.withMounts(async () => {
    await chroot.aptInstall(['nodejs', 'make', 'binutils', 'kmod', 'openssl', 'xz-utils', 'zstd', 'patch', 'ca-certificates']);
    await chroot.aptInstall([`${kernel.headersPackage}=${kernel.version}`, kernel.imagePackage, `${kernel.sourcePackage}=${kernel.version}`], { target: kernel.suite });
    await chroot.aptInstall([await kernelGccPackage(chroot, kernel.kver)]);
    const toolchain = await kernelRustToolchain(chroot, kernel.kver);
    if (!toolchain.ok) return `no rustc matching ${kernel.kver} in the archive: ${toolchain.reason}`;
    // In its own transaction, from the suite that has the kernel's rustc (trixie, not backports).
    await chroot.aptInstall(toolchain.packages, { target: toolchain.suite });
    return undefined;
  });
}
