// Confinement of everything that runs a module source's code (dkms.conf, PATCH, PRE_BUILD, make,
// POST_BUILD, the Rust tree's make): as the unprivileged system user _ootmod, in new network, mount
// and pid namespaces, with every mount read-only except the job's own dirs. util-linux's unshare and
// setpriv are Essential on Debian, so this needs nothing more. Install steps stay root.
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { chown, lchown, lstat, mkdir, readdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import { ExitCode, OotmodError } from '../errors.js';
import { findOnPath } from './programs.js';
import { HOST_PASSWD as PASSWD } from './layout.js';

export const SANDBOX_USER = '_ootmod';

export interface SandboxUser {
  name: string;
  uid: number;
  gid: number;
}

/** What one confined command may write: its dirs (made the user's), and a scratch dir for TMPDIR/HOME. */
export interface Confinement {
  writable: string[];
  tmpDir: string;
  /**
   * A driver (see confineDriver): the command stays root inside the namespaces and read-only mounts,
   * and drops to the build user itself for each command it starts; these dirs are writable by root only.
   */
  driver?: { rootDirs: string[] };
  /** The module (or "the Rust tree") it builds, for the one-line refusal. */
  name: string;
  /** Who the command runs as: the build user (or nobody standing in for it, for reading dkms.conf). */
  user: SandboxUser;
  /** Whether / is a mount point (see Sandbox.rootIsMountPoint): else no mount namespace. */
  rootIsMount: boolean;
}

export interface SandboxPolicy {
  /** Confine at all: only root can drop to another user. */
  enabled: boolean;
  /** Module names the admin lets build as root with network (ootmod.conf [build] unconfined). */
  unconfined: string[];
  /** Where scratch dirs of commands without a build dir (dkms.conf evaluation) go. */
  scratchBase?: string;
  /** The account database the build user is looked up in: the host's, unless a test gives its own. */
  passwd?: string;
}

/** The account database's entry of `name`, or undefined (also when the file cannot be read). */
function lookupIn(passwd: string, name: string): SandboxUser | undefined {
  let text = '';
  try {
    text = readFileSync(passwd, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 4) return { name, uid: Number(f[2]), gid: Number(f[3]) };
  }
  return undefined;
}

/** useradd's arguments that create the build user (the package's postinst creates it the same way). */
export const USERADD_ARGS = ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--comment', 'ootmod unprivileged module builds', SANDBOX_USER];

/**
 * The sandbox of one run: its policy, the build user once found, and the scratch dirs of commands
 * without a build dir. The pipeline's run context holds one (src/pipeline/context.ts); every job and
 * read that runs a module source's code is confined through it.
 */
export class Sandbox {
  private user: SandboxUser | undefined;
  private scratchCount = 0;
  private processScratch: string | undefined;
  private rootIsMount: boolean | undefined;

  constructor(readonly policy: SandboxPolicy) {}

  /** The account database the build user is looked up in. */
  private get passwd(): string {
    return this.policy.passwd ?? PASSWD;
  }

  lookupUser(name = SANDBOX_USER): SandboxUser | undefined {
    return lookupIn(this.passwd, name);
  }

  /**
   * The build-user job: `create` runs useradd --system (through ootmod's runner), then the user is
   * looked up. A failure is the machine's: one line with the fix, exit 5.
   */
  async createBuildUser(create: () => Promise<void>): Promise<SandboxUser> {
    try {
      await create();
    } catch (err) {
      const why = (err as { result?: { stderr?: string } }).result?.stderr?.trim().split('\n')[0] || (err as Error).message;
      throw new OotmodError(`cannot create the build user ${SANDBOX_USER} (${why})`, `create it: useradd --system --user-group --no-create-home ${SANDBOX_USER}`, ExitCode.Environment);
    }
    const made = this.lookupUser();
    if (!made) throw new OotmodError(`useradd created no ${SANDBOX_USER} in ${this.passwd}`, `create it: useradd --system --user-group ${SANDBOX_USER}`, ExitCode.Environment);
    return made;
  }

  /**
   * What a plan needs to create the build user first: builds are confined and the user does not exist
   * (ootmod run from a source tree, or the user was deleted). Undefined when it exists or is not needed.
   */
  missingBuildUser(): { name: string; confines: (name: string) => boolean } | undefined {
    if (!this.policy.enabled || this.lookupUser()) return undefined;
    return { name: SANDBOX_USER, confines: (name) => this.isConfined(name) };
  }

  /**
   * The user confined commands run as: the build user. Until a plan has created it, nobody (as
   * unprivileged) stands in for reading dkms.conf, which planning does before any job runs; a command
   * that writes (a build) needs the build user itself (confineTo).
   */
  sandboxUser(): SandboxUser & { standIn?: boolean } {
    if (this.user) return this.user;
    const found = this.lookupUser();
    if (found) return (this.user = found);
    return { ...(this.lookupUser('nobody') ?? { name: 'nobody', uid: 65534, gid: 65534 }), standIn: true };
  }

  /** One line for `ootmod kernels` and `status --verbose`: how builds are confined on this machine. */
  describe(): string {
    if (!this.policy.enabled) return 'builds run as the invoking user, unconfined (ootmod is not running as root)';
    const u = this.lookupUser();
    const who = u ? `${SANDBOX_USER} (uid ${u.uid})` : `${SANDBOX_USER} (created on the first build)`;
    const allowed = this.policy.unconfined.length ? `; unconfined by ootmod.conf: ${this.policy.unconfined.join(', ')}` : '';
    const files = this.rootIsMountPoint() ? 'read-only system except the build dir' : 'files guarded by permissions only (/ is not a mount point here, e.g. a chroot)';
    return `builds run as ${who}, no network, ${files} (unshare + setpriv)${allowed}`;
  }

  /**
   * Scratch dirs of commands that have no build dir (dkms.conf evaluation) go under a private temporary
   * dir of this process, outside the tree ootmod manages (a dry run reads dkms.conf too and must change
   * nothing there); it goes when the process ends.
   */
  private scratchRoot(): string {
    if (!this.processScratch) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'ootmod-scratch-'));
      // The build user must reach its own dir inside, and list nothing else.
      chmodSync(dir, 0o711);
      this.processScratch = dir;
      process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    }
    return this.processScratch;
  }

  /** Whether commands for `name` run confined (root, and the admin has not allowed it by name). */
  isConfined(name: string): boolean {
    return this.policy.enabled && !this.policy.unconfined.includes(name);
  }

  /**
   * The confinement for a job that may write `dirs` (created if needed and given to the build user), or
   * undefined when builds run unconfined (not root, or the module is allowed by name).
   */
  async confineTo(dirs: string[], tmpDir: string | undefined, name: string): Promise<Confinement | undefined> {
    if (!this.isConfined(name)) return undefined;
    tmpDir ??= path.join(this.policy.scratchBase ?? this.scratchRoot(), `${process.pid}-${++this.scratchCount}`);
    const u = this.sandboxUser();
    if (u.standIn && dirs.length) {
      throw new OotmodError(`the build user ${SANDBOX_USER} does not exist`, `create it: useradd --system --user-group --no-create-home ${SANDBOX_USER} (a plan that builds creates it first)`, ExitCode.Environment);
    }
    const writable: string[] = [];
    for (const d of [...dirs, tmpDir]) {
      await mkdir(d, { recursive: true });
      await chownTree(d, u.uid, u.gid);
      writable.push(await realpath(d));
    }
    return { writable: writable.slice(0, dirs.length), tmpDir: writable[writable.length - 1]!, name, user: { name: u.name, uid: u.uid, gid: u.gid }, rootIsMount: this.rootIsMountPoint() };
  }

  /**
   * The confinement for a driver that starts many confined commands in one sandbox (the dkms.conf reads of
   * a plan): one set of namespaces and read-only mounts; the driver keeps root in them, and runs each
   * command through `drop` (a pid namespace of its own, then the build user with no capabilities), so the
   * commands cannot signal or trace each other. `outDir` is writable by root only, for their outputs.
   */
  async confineDriver(name: string): Promise<{ confine: Confinement; outDir: string; drop: string[] } | undefined> {
    const base = await this.confineTo([], undefined, name);
    if (!base) return undefined;
    const outDir = `${base.tmpDir}.out`;
    await mkdir(outDir, { mode: 0o700 });
    return {
      confine: { ...base, driver: { rootDirs: [await realpath(outDir)] } },
      outDir,
      // By path: the driver starts each command with an empty environment.
      drop: ['unshare', '--pid', '--fork', '--kill-child', '--', ...dropTo(base.user)].map((w) => (w === 'unshare' || w === 'setpriv' ? findOnPath(w) ?? w : w)),
    };
  }

  /**
   * Whether / is a mount point here. In a chroot it usually is not: its mounts cannot then be made
   * private (unshare --propagation fails with EINVAL) nor read-only without reaching the host's, so
   * there builds get the network and pid namespaces and the build user, and permissions alone guard files.
   */
  private rootIsMountPoint(): boolean {
    if (this.rootIsMount === undefined) {
      try {
        this.rootIsMount = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === '/');
      } catch {
        this.rootIsMount = false;
      }
    }
    return this.rootIsMount;
  }
}

/** Gives a tree to the build user (or back to root); never follows a symlink. */
export async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  const st = await lstat(dir);
  if (st.uid !== uid || st.gid !== gid) await chown(dir, uid, gid);
  if (!st.isDirectory()) return;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await chownTree(p, uid, gid);
    else if (e.isSymbolicLink()) await lchown(p, uid, gid);
    else await chown(p, uid, gid);
  }
}

// Runs in the new namespaces as root: binds the writable dirs onto themselves, makes every mount
// read-only, makes the binds writable again, then drops to the build user for good. One mount process
// for all the mounts (`mount --all -o remount` applies its -t filter to the mounted table; libmount keeps
// each mount's other flags, nosuid, nodev and the rest) and two per writable dir: one `mount` per mount
// point cost 3-5 ms each, and a machine with containers or chroots has dozens. The kernel's own
// filesystems are left alone: they check permissions per file (root's only). The writable dirs are
// ootmod's own, which it has just created and given to the build user, so their mount is writable.
const SETUP = String.raw`
n=$1; shift
i=0
for d do
  [ "$i" -lt "$n" ] || break
  mount --bind -- "$d" "$d" || { echo "ootmod sandbox: cannot bind $d" >&2; exit 125; }
  i=$((i+1))
done
if ! err=$(mount --all -o remount,bind,ro -t noproc,sysfs,cgroup,cgroup2,devpts,devtmpfs,mqueue,securityfs,debugfs,tracefs,bpf,pstore,configfs,fusectl,binfmt_misc,autofs,hugetlbfs,efivarfs 2>&1); then
  echo "ootmod sandbox: cannot make the mounts read-only: $(printf '%s\n' "$err" | head -n 1)" >&2; exit 125
fi
while [ "$n" -gt 0 ]; do
  mount -o remount,bind,rw -- "$1" || { echo "ootmod sandbox: cannot make $1 writable" >&2; exit 125; }
  shift; n=$((n-1))
done
uid=$1; gid=$2; shift 2
# The working dir was entered before the binds: enter it again through them.
cd -- "$(pwd -P)" || exit 125
# A driver (empty uid) drops to the build user itself, per command it starts.
[ -n "$uid" ] || exec "$@"
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"
`;

/** The command line that runs `file args` confined. */
export function confinedCommand(file: string, args: readonly string[], c: Confinement): { file: string; args: string[] } {
  const u = c.user;
  const drop = c.driver ? [] : dropTo(u);
  if (!c.rootIsMount) return { file: 'unshare', args: ['--net', '--pid', '--fork', '--kill-child', '--', ...drop, file, ...args] };
  const writable = [...c.writable, c.tmpDir, ...(c.driver?.rootDirs ?? [])];
  const [uid, gid] = c.driver ? ['', ''] : [String(u.uid), String(u.gid)];
  return {
    file: 'unshare',
    args: [
      '--net', '--mount', '--pid', '--fork', '--kill-child', '--propagation', 'private', '--',
      'sh', '-c', SETUP, 'ootmod-sandbox', String(writable.length), ...writable, uid, gid, file, ...args,
    ],
  };
}

/** setpriv's words that drop to the build user for good: no groups, no capabilities, no new privileges. */
function dropTo(u: SandboxUser): string[] {
  return ['setpriv', `--reuid=${u.uid}`, `--regid=${u.gid}`, '--clear-groups', '--no-new-privs', '--inh-caps=-all', '--bounding-set=-all', '--'];
}

/** The environment a confined command gets on top of its own. */
export function confinedEnv(c: Confinement): Record<string, string> {
  return { HOME: c.tmpDir, TMPDIR: c.tmpDir, USER: SANDBOX_USER, LOGNAME: SANDBOX_USER };
}

/** Lines of a failed confined command's output that say the sandbox stopped it: no network or no write access. */
export function sandboxDenial(output: string): string | undefined {
  const line = output.split('\n').find((l) =>
    /Read-only file system|Could not resolve host|Temporary failure in name resolution|Network is unreachable|Operation not permitted|must be run as root|Permission denied/i.test(l),
  );
  return line?.trim().slice(0, 160);
}
