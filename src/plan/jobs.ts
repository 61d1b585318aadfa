// The plan: a graph of typed jobs, the one description of every change a command makes. The executor
// runs any plan; --dry-run prints it; --json prints it for machines.
import type { ModuleSpec } from '../modules/spec.js';
import type { RustSource } from '../rust/kernelsource.js';
import type { RustToolchain } from '../rust/toolchain.js';
import type { RustTreeKey } from '../rust/tree.js';
import type { InitramfsTool } from '../kernel/initramfs.js';
import type { Bootloader } from '../kernel/boot.js';
import type { GuardMode } from '../system/config.js';
import type { KeyChoice } from '../dkms/mok.js';
import type { JobId } from './jobid.js';

export type JobKind = 'build-user' | 'add' | 'rust-tree' | 'build' | 'install' | 'uninstall' | 'forget' | 'rust-clean' | 'rust-stray' | 'dkms-takeover' | 'dkms-tree' | 'dkms-register' | 'dkms-unregister' | 'dkms-autoinstall' | 'signing-key' | 'dequeue' | 'removed-marks' | 'depmod' | 'initramfs' | 'defer' | 'boot-guard' | 'boot-notice' | 'post-transaction';

interface JobBase {
  /** Made by jobId (src/plan/jobid.ts), read back by parseJobId. */
  id: JobId;
  kind: JobKind;
  kernel?: string;
  /** Why the job is in the plan. */
  reason: string;
  /** Jobs that must succeed first: a failed one fails this one without running it. */
  needs: JobId[];
  /** Jobs that must have finished first, whatever their outcome. */
  after: JobId[];
}

/** Creates the system user that module builds run as (useradd --system), when it does not exist yet. */
export interface BuildUserJob extends JobBase {
  kind: 'build-user';
  user: string;
}

/** Places a module source at /usr/src/<name>-<version> and runs its POST_ADD. */
export interface AddJob extends JobBase {
  kind: 'add';
  from: string;
  dest: string;
  module: string;
  version: string;
  postAdd?: string;
}

/** Builds a kernel's Rust tree (rust/*.rmeta, proc macros) for this machine's build architecture. */
export interface RustTreeJob extends JobBase {
  kind: 'rust-tree';
  kernel: string;
  key: string;
  parts: RustTreeKey;
  toolchain: RustToolchain;
  source: RustSource;
}

interface ModuleJobBase extends JobBase {
  module: string;
  version: string;
  kernel: string;
}

/** Builds a module for a kernel and keeps the result (signed and compressed) under the built dir. */
export interface BuildJob extends ModuleJobBase {
  kind: 'build';
  spec: ModuleSpec;
  inputsKey: string;
  /** Recorded with the build: a failed build is retried when the programs it runs change. */
  toolsKey?: string;
  /** Recorded with the build: the package transaction it ran in (a failure is not retried inside it). */
  transaction?: string;
  /** The kernel build dir: the headers for C modules; for Rust modules the Rust tree, below. */
  kernelBuildDir: string;
  /** A Rust module: the Rust tree job it needs (its dir is known when it has run). */
  rustTreeJob?: string;
  /** A DKMS-registered source (ootmod-dkms): its build dir in DKMS's tree, /var/lib/dkms/<m>/<v>/<kver>/<arch>, written too. */
  dkmsTree?: string;
}

/** Installs a module's kept build under the kernel's module dir (replacing other versions). */
export interface InstallJob extends ModuleJobBase {
  kind: 'install';
  spec: ModuleSpec;
  inputsKey: string;
  /** Other versions of the module installed for this kernel, replaced by this one. */
  replaces: string[];
  /** As for BuildJob: DKMS's tree is brought up to date with what is installed. */
  dkmsTree?: string;
}

/** Removes a module's installed files (POST_REMOVE runs); keeps the build unless a forget follows. */
export interface UninstallJob extends ModuleJobBase {
  kind: 'uninstall';
  spec?: ModuleSpec;
}

/** Forgets what ootmod keeps: a module's builds and state record, or (no module) a kernel's build dirs. */
export interface ForgetJob extends JobBase {
  kind: 'forget';
  kernel: string;
  module?: string;
  version?: string;
  /** The module's build dir in DKMS's tree, removed too. */
  dkmsTree?: string;
}

/**
 * Take-over from DKMS (ootmod-dkms replaced it): once ootmod has the module installed for the kernel,
 * removes DKMS's copies of it from updates/dkms and DKMS's "installed" link. DKMS's builds stay.
 */
export interface DkmsTakeoverJob extends ModuleJobBase {
  kind: 'dkms-takeover';
  /** /var/lib/dkms/<name>/kernel-<kver>-<arch> */
  link: string;
  /** DKMS's installed files, under the kernel's updates/dkms. */
  copies: string[];
}

/**
 * With ootmod-dkms: writes DKMS's tree for a DKMS-registered module that is current but missing there
 * (registered after ootmod built it, or built by an older ootmod). Builds and installs write it themselves.
 */
export interface DkmsTreeJob extends ModuleJobBase {
  kind: 'dkms-tree';
  /** /var/lib/dkms/<name>/<version>/<kver>/<arch> */
  dkmsTree: string;
}

/** `dkms add` (ootmod-dkms): registers a source in DKMS's registry, `link` -> `source`, as DKMS does; the source is ootmod's to build again (its removed mark goes). */
export interface DkmsRegisterJob extends JobBase {
  kind: 'dkms-register';
  module: string;
  version: string;
  /** The registry dir (/var/lib/dkms, or --dkmstree). */
  registry: string;
  /** <registry>/<name>/<version>/source */
  link: string;
  /** The source dir as the system names it (also under --root). */
  source: string;
  /** The mark `dkms remove` left (removedMarker), removed. */
  marker: string;
}

/**
 * `dkms remove --all`: forgets the registration as DKMS does (the version dir, the kernel-<kver>-<arch>
 * links into it, the module dir when empty); a source still in /usr/src is marked removed, and ootmod
 * leaves it unbuilt until `dkms add`.
 */
export interface DkmsUnregisterJob extends JobBase {
  kind: 'dkms-unregister';
  module: string;
  version: string;
  /** The registry dir (/var/lib/dkms, or --dkmstree). */
  registry: string;
  /** The removed mark to write (the source stays in /usr/src). */
  marker?: string;
}

/** Hand-back (DKMS is back): DKMS's own `dkms autoinstall -k KVER` for these kernels, after ootmod's removals. */
export interface DkmsAutoinstallJob extends JobBase {
  kind: 'dkms-autoinstall';
  kernels: string[];
}

/** `dkms generate_mok`: the signing key pair DKMS's rules choose, created when missing. */
export interface SigningKeyJob extends JobBase {
  kind: 'signing-key';
  choice: KeyChoice;
}

/**
 * framework.conf's post_transaction (ootmod-dkms), as DKMS runs it at the end of a transaction that
 * changed modules: by bash, as root, with `kernelver` set, its output in `log`.
 */
export interface PostTransactionJob extends JobBase {
  kind: 'post-transaction';
  command: string;
  kernel: string;
  log: string;
}

/** The trigger takes the requests hooks and `dkms` queued inside dpkg: their entries go. */
export interface DequeueJob extends JobBase {
  kind: 'dequeue';
  files: string[];
}

/** The marks of sources `dkms remove` left unbuilt whose files are gone now: nothing to remember. */
export interface RemovedMarksJob extends JobBase {
  kind: 'removed-marks';
  files: string[];
}

/** What an interrupted build of a kernel's Rust tree left beside the current tree (half trees, unswitched links). */
export interface RustStrayJob extends JobBase {
  kind: 'rust-stray';
  kernel: string;
  /** The current tree, which stays. */
  tree: string;
  paths: string[];
}

export interface RustCleanJob extends JobBase {
  kind: 'rust-clean';
  kernel: string;
}

/** depmod, once per kernel, after all of that kernel's jobs; it runs only if one of them changed files. */
export interface DepmodJob extends JobBase {
  kind: 'depmod';
  kernel: string;
}

/** A new initramfs for a kernel whose modules changed (through initramfs-tools' trigger inside dpkg). */
export interface InitramfsJob extends JobBase {
  kind: 'initramfs';
  kernel: string;
  viaTrigger: boolean;
  /** How the new initramfs is asked for. */
  tool: InitramfsTool;
}

/** Inside dpkg: record the request and activate ootmod's trigger, so the work runs once at the end. */
export interface DeferJob extends JobBase {
  kind: 'defer';
  /** The queue entry's name (a kernel release, or a module request). */
  entry: string;
  what: string;
}

/**
 * After every other job of the plan: the notices that the kernel that boots next is not ready, written
 * when it lacks a needed module, removed when it is ready (src/execute/notices.ts). What it writes is
 * decided when it runs, from the state the other jobs left.
 */
export interface BootNoticeJob extends JobBase {
  kind: 'boot-notice';
  /** The notice files it writes or removes. */
  files: string[];
  /** The plan's initramfs jobs: once done, a kernel's initramfs is checked (rebuilt now) or not (`viaTrigger`: rebuilt later). */
  initramfsJobs: InitramfsRef[];
}

export interface InitramfsRef {
  job: JobId;
  kernel: string;
  viaTrigger: boolean;
}

/**
 * The boot guard (GRUB, systemd-boot): keeps the default entry on the newest ready kernel while the
 * kernel the bootloader's setting boots lacks needed modules, gives it back when that kernel is ready (src/execute/bootguard.ts).
 * Decided when it runs, after the other jobs; `release` undoes what the guard changed, whatever the state.
 */
export interface BootGuardJob extends JobBase {
  kind: 'boot-guard';
  mode: GuardMode;
  /** The bootloader it acts on, as read when planning. */
  loader: Bootloader;
  release: boolean;
  /** What it would do as the system is now (a dry run prints it). */
  preview?: string;
  initramfsJobs: InitramfsRef[];
}

export type Job = BuildUserJob | AddJob | RustTreeJob | BuildJob | InstallJob | UninstallJob | ForgetJob | RustCleanJob | RustStrayJob | DkmsTakeoverJob | DkmsTreeJob
  | DkmsRegisterJob | DkmsUnregisterJob | DkmsAutoinstallJob | SigningKeyJob | DequeueJob | RemovedMarksJob | DepmodJob | InitramfsJob | DeferJob | BootGuardJob | BootNoticeJob | PostTransactionJob;

/** A (module, kernel) that needs no job, with the reason. */
export interface PlanItem {
  module: string;
  version?: string;
  kernel?: string;
  reason: string;
  /**
   * A build that cannot run on this machine now (its kernel's compiler or kbuild missing, no Rust tree):
   * the run records it as failed with the reason, so status and dkms status say what to install.
   */
  cannotBuild?: boolean;
}

export interface WorkPlan {
  jobs: Job[];
  current: PlanItem[];
  skipped: PlanItem[];
  /** Modules that cannot be built now (failed before with the same inputs, no Rust tree, a clash). */
  failed: PlanItem[];
  invalid: PlanItem[];
  /** Rust trees that are current (kernel -> dir). */
  rustCurrent: { kernel: string; dir: string }[];
  /** Rust trees that cannot be prepared, with the reason (one line). */
  rustUnavailable: { kernel: string; reason: string; exitCode: number }[];
}

export function emptyPlan(): WorkPlan {
  return { jobs: [], current: [], skipped: [], failed: [], invalid: [], rustCurrent: [], rustUnavailable: [] };
}
