// Every kind of job, in one place: what it needs (a CPU token, the global lock), how it is shown (what it
// acts on, its --dry-run line, its progress lines, its own fields of the plan JSON), how it runs, and how
// it counts in the summary and the exit status. KINDS has one entry per JobKind, so a new kind without
// one is a compile error; the executor, the runner, the progress lines, the plan JSON and the summary
// read only this.
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { clearRemoved, markRemoved, register, unregister } from '../dkms/registry.js';
import { dkmsAutoinstall, takeOverFromDkms } from './handover.js';
import { ensurePair } from './signing.js';
import type { Job, JobKind } from '../plan/jobs.js';
import { decideGuard, guardLine, type GuardDecision } from '../plan/bootguard.js';
import { buildRustTree, cleanRustTrees, removeStrayTrees } from '../rust/tree.js';
import { installedFilesPresent, type BuildRecord } from '../state/store.js';
import { run } from '../system/run.js';
import { USERADD_ARGS } from '../system/sandbox.js';
import { applyGuard, guardInput, readGuardState, realGrubTools } from './bootguard.js';
import { depmod } from './depmod.js';
import { runPostTransaction } from './posttransaction.js';
import { keepPerBuildDir, removeDkmsTree, writeDkmsTree } from './dkmstree.js';
import type { JobResult } from './executor.js';
import { requestInitramfs } from './initramfs.js';
import { buildModule, installModule, runScript, uninstallRecord } from './modulework.js';
import { updateBootNotices } from './notices.js';
import { placeSourceTree } from './placesource.js';
import type { KernelTarget } from '../kernel/inventory.js';
import type { InitramfsRef } from '../plan/jobs.js';
import type { ReadinessView } from '../plan/readiness.js';
import type { StateStore } from '../state/store.js';
import type { Layout } from '../system/layout.js';
import type { CommandLog } from '../system/run.js';
import type { Sandbox } from '../system/sandbox.js';
import type { GrubTools } from './bootguard.js';
import type { Jobserver } from './jobserver.js';
import type { KeyCreations } from './signing.js';

export const TRIGGER_NAME = 'ootmod-rebuild';

/** What the jobs of a run share. */
export interface StepContext {
  layout: Layout;
  kernels: ReadonlyMap<string, KernelTarget>;
  store: StateStore;
  timeoutMs: number;
  jobserver?: Jobserver;
  /** The run's sandbox: builds and Rust trees are confined through it; the build-user job creates its user. */
  sandbox: Sandbox;
  /** The run's signing key pairs being created (each once). */
  signingKeys: KeyCreations;
  /** Where removal steps write what they did (verbose output). */
  log: CommandLog;
  /** Reads every kernel's readiness now (for the boot-notice and boot-guard jobs, after the other jobs). */
  readiness?: (opts: InitramfsNews) => Promise<ReadinessView>;
  /** GRUB's tools for the boot guard (grub-editenv, update-grub); tests give their own. */
  grubTools?: GrubTools;
}

/** What this run's initramfs jobs did, for the readiness the boot jobs read. */
export interface InitramfsNews {
  /** Rebuilt later by initramfs-tools' trigger: still the old modules now, not checked. */
  initramfsPending: string[];
  /** Rebuilt by this run: checked for the critical modules. */
  initramfsRebuilt: string[];
}

function initramfsNews(job: { initramfsJobs: InitramfsRef[] }, results: ReadonlyMap<string, JobResult>): InitramfsNews {
  const done = job.initramfsJobs.filter((d) => results.get(d.job)?.status === 'done');
  return { initramfsPending: done.filter((d) => d.viaTrigger).map((d) => d.kernel), initramfsRebuilt: done.filter((d) => !d.viaTrigger).map((d) => d.kernel) };
}

export type JobOf<K extends JobKind> = Extract<Job, { kind: K }>;

/** How a job counts in the summary line and the exit status (src/pipeline/work.ts, summarize). */
export interface Counting {
  /**
   * What its failure is: a module's (a module counts once, its build and install together), a Rust
   * tree's (counted apart: "N Rust tree(s) failed"), or one more of the run's failures.
   */
  failure: 'module' | 'rust-tree' | 'other';
  /** What it adds to when done: installed; built (unless the same module is installed too); removed; touched (its kernel's module dir changed). */
  done?: 'installed' | 'built' | 'removed' | 'touched';
}

export interface KindSpec<K extends JobKind> {
  /** It compiles: holds a jobserver token while it runs, so all compilers of a run share --jobs. */
  cpu: boolean;
  /** Among the CPU jobs that are ready, it starts first (the Rust trees: the long pole). */
  first?: boolean;
  /** It runs under ootmod's global lock (the queue of deferred requests is dpkg's to order). */
  lock: boolean;
  /** What it acts on, for people. */
  target(job: JobOf<K>): string;
  /** How another job's plan line names it as a dependency (default: what its id says it acts on). */
  asDependency?: string;
  /** Its --dry-run line; `after` is ", after X, Y" (the jobs it needs, other than its own module's) or empty. */
  planLine(job: JobOf<K>, after: string): string;
  /** Its own fields of the plan JSON, between `reason` and `needs`. */
  json?(job: JobOf<K>): Record<string, unknown>;
  /** The line when it starts (progress). */
  startLine?(job: JobOf<K>): string;
  /** The live view on a terminal shows it while it runs, with this word. */
  live?: string;
  /** The line when it has finished (progress); none when there is nothing to say. */
  endLine(job: JobOf<K>, r: JobResult, verbose: boolean): string | undefined;
  /** Does it. `results` holds every job that finished before it. */
  run(job: JobOf<K>, ctx: StepContext, results: ReadonlyMap<string, JobResult>): Promise<JobResult>;
  /**
   * It does not run because `dependency` failed (`why`: that failure): what it records and says. Default:
   * "<the dependency> failed: <why>", nothing recorded.
   */
  blocked?(job: JobOf<K>, dependency: Job, why: string | undefined, ctx: StepContext): Promise<JobResult>;
  /** How a job it blocked names it (default: what it acts on). */
  blockedAs?: string;
  /** The jobs after it, when it fails, fail as the machine's fault (exit 5), not as theirs (no record). */
  failureIsFault?: boolean;
  counts: Counting;
}

export const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
const took = (r: JobResult) => seconds(r.elapsedMs ?? 0);
const logOf = (r: JobResult) => (r.record?.log ? ` (log: ${r.record.log})` : '');
const failed = (detail: string): JobResult => ({ status: 'failed', detail });
const moduleFor = (j: { module: string; version: string; kernel: string }) => `${j.module}/${j.version} for ${j.kernel}`;
const dkmsTreeJson = (j: { dkmsTree?: string }) => (j.dkmsTree ? { dkmsTree: j.dkmsTree } : {});

function recordResult(record: BuildRecord, touched = false): JobResult {
  return record.status === 'failed' ? { status: 'failed', detail: record.error, record, touched } : { status: 'done', record, touched };
}

/** Removes a job's files (the queue entries taken, the removed marks of sources now gone). */
async function removeFiles(job: { files: string[] }): Promise<JobResult> {
  for (const f of job.files) await rm(f, { force: true });
  return { status: 'done' };
}

/** The end line of a kind with nothing of its own to say: its failure, or (verbose) that it ran. */
function plainEnd<K extends JobKind>(job: JobOf<K>, r: JobResult, verbose: boolean): string | undefined {
  if (r.status === 'failed') return `failed   ${job.kind} ${jobTarget(job)}: ${r.detail}`;
  return verbose ? `${job.kind.padEnd(8)} ${jobTarget(job)}` : undefined;
}

/** depmod and initramfs: their failure with the kernel, else (verbose) what they did. */
function kernelStepEnd(job: JobOf<'depmod' | 'initramfs'>, r: JobResult, verbose: boolean): string | undefined {
  if (r.status === 'failed') return `${job.kind} failed for ${job.kernel}: ${r.detail}`;
  return verbose && r.status === 'done' ? `${job.kind.padEnd(8)} ${job.kernel}${r.detail ? ` (${r.detail})` : ''}` : undefined;
}

const loaderEntry = (loader: JobOf<'boot-guard'>['loader']) =>
  loader === 'systemd-boot' ? "systemd-boot's default entry" : loader === 'grub' ? "GRUB's default entry" : "the bootloader's default entry";

const isModuleJob = (j: Job): j is JobOf<'build' | 'install'> => j.kind === 'build' || j.kind === 'install';

/**
 * Records a module for a kernel as failed without a build of this run (blocked, or it cannot be built
 * now): what an older build installed stays installed and recorded, as after a failed build.
 */
async function putFailedRecord(ctx: Pick<StepContext, 'store' | 'kernels'>, t: { module: string; version: string; kernel: string }, error: string, inputsKey: string): Promise<BuildRecord> {
  const previous = ctx.store.get(t.module, t.version, t.kernel);
  const record: BuildRecord = {
    module: t.module, version: t.version, kernel: t.kernel, arch: ctx.kernels.get(t.kernel)?.arch.machine ?? previous?.arch ?? '',
    status: 'failed', inputsKey, built: [], installed: previous?.installed ?? [], error, updatedAt: new Date().toISOString(),
  };
  await ctx.store.put(record);
  return record;
}

/**
 * A build or install that cannot run: after its own module's failed build, nothing more to say (the
 * build's record says why); after another job (a BUILD_DEPENDS module, the Rust tree), a failed record
 * that names it, so `status` tells why the module is missing.
 */
async function moduleBlocked(job: JobOf<'build' | 'install'>, dependency: Job, why: string | undefined, ctx: StepContext): Promise<JobResult> {
  if (isModuleJob(dependency) && dependency.module === job.module && dependency.version === job.version && dependency.kernel === job.kernel) {
    return failed('its build failed');
  }
  const error = dependency.kind === 'rust-tree'
    ? `it has Rust code and the Rust tree of ${job.kernel} could not be built${why ? `: ${why}` : ''}`
    : `BUILD_DEPENDS: ${isModuleJob(dependency) ? dependency.module : jobTarget(dependency)} failed to build`;
  return { status: 'failed', detail: error, record: await putFailedRecord(ctx, job, error, 'blocked') };
}

export const KINDS: { [K in JobKind]: KindSpec<K> } = {
  'build-user': {
    cpu: false, lock: true, asDependency: 'the build user', failureIsFault: true,
    target: (job) => `the system user ${job.user}`,
    planLine: (job) => `would create the system user ${job.user} with useradd --system (${job.reason})`,
    endLine: (job, r) => (r.status === 'failed' ? `failed   to create ${jobTarget(job)}: ${r.detail}` : `created the system user ${job.user} for unprivileged module builds`),
    async run(_job, ctx) {
      await ctx.sandbox.createBuildUser(async () => void (await run('useradd', USERADD_ARGS, { log: ctx.log, step: 'useradd' })));
      return { status: 'done' };
    },
    counts: { failure: 'other' },
  },

  add: {
    cpu: false, lock: true,
    target: (job) => `${job.module}/${job.version} at ${job.dest}`,
    planLine: (job) => `would add ${job.module}/${job.version}: copy ${job.from} to ${job.dest}${job.postAdd ? ' and run its POST_ADD' : ''}`,
    endLine: (job, r) => (r.status === 'failed' ? `failed   to add ${jobTarget(job)}: ${r.detail}` : `added ${jobTarget(job)}`),
    async run(job, ctx) {
      await placeSourceTree(job.from, job.dest);
      if (job.postAdd) await runScript('POST_ADD', job.postAdd, job.dest, { module: job.module, module_version: job.version }, ctx.log, 600_000);
      return { status: 'done' };
    },
    counts: { failure: 'other' },
  },

  'rust-tree': {
    cpu: true, first: true, lock: true, live: 'building', blockedAs: 'the Rust tree',
    target: (job) => `the Rust tree of ${job.kernel}`,
    planLine: (job) => `would build the Rust tree of ${job.kernel} (${job.reason})`,
    startLine: (job) => `rust     building the Rust tree of ${job.kernel} (${job.reason})`,
    endLine: (job, r) => (r.status === 'failed' ? `rust     the Rust tree of ${job.kernel} failed: ${r.detail}` : `rust     built the Rust tree of ${job.kernel} in ${took(r)} (${r.detail})`),
    async run(job, ctx) {
      const tree = await buildRustTree({
        layout: ctx.layout, kernel: ctx.kernels.get(job.kernel)!, toolchain: job.toolchain, source: job.source, key: job.key, parts: job.parts, reason: job.reason,
        timeoutMs: ctx.timeoutMs, jobserver: ctx.jobserver?.client(), sandbox: ctx.sandbox,
      });
      const abi = tree.manifest.abi;
      return { status: 'done', treeDir: tree.dir, detail: `${(tree.manifest.bytes / 1e6).toFixed(0)} MB, ABI ${abi.ok ? 'ok' : 'refused'} (${abi.matched}/${abi.exported} symbols)` };
    },
    counts: { failure: 'rust-tree' },
  },

  build: {
    cpu: true, lock: true, live: 'build',
    target: moduleFor,
    planLine: (job, after) => `would build ${jobTarget(job)} (${job.reason}${after})`,
    json: dkmsTreeJson,
    startLine: (job) => `start    ${jobTarget(job)} (build: ${job.reason})`,
    endLine(job, r) {
      if (r.status === 'failed') return `failed   ${jobTarget(job)} after ${took(r)}: ${r.detail}${r.blocked ? '' : logOf(r)}`;
      return `built    ${jobTarget(job)} in ${took(r)}`;
    },
    async run(job, ctx, results) {
      const kernelBuildDir = job.rustTreeJob ? results.get(job.rustTreeJob)?.treeDir ?? job.kernelBuildDir : job.kernelBuildDir;
      const record = await buildModule(job, {
        layout: ctx.layout, kernel: ctx.kernels.get(job.kernel)!, kernelBuildDir, timeoutMs: ctx.timeoutMs, previous: ctx.store.get(job.module, job.version, job.kernel),
        jobserver: ctx.jobserver?.client(), sandbox: ctx.sandbox, signingKeys: ctx.signingKeys,
      });
      await ctx.store.put(record);
      return recordResult(record);
    },
    blocked: moduleBlocked,
    counts: { failure: 'module', done: 'built' },
  },

  install: {
    cpu: false, lock: true,
    target: moduleFor,
    planLine: (job, after) => `would install ${jobTarget(job)} (${job.reason}${after})`,
    json: dkmsTreeJson,
    endLine(job, r) {
      if (r.status === 'failed') return r.blocked && r.detail === 'its build failed' ? undefined : `failed   ${jobTarget(job)}: ${r.detail}${logOf(r)}`;
      return `installed ${jobTarget(job)}`;
    },
    async run(job, ctx) {
      const { store } = ctx;
      const { record, touched } = await installModule(job, {
        layout: ctx.layout, kernel: ctx.kernels.get(job.kernel)!, timeoutMs: ctx.timeoutMs,
        record: store.get(job.module, job.version, job.kernel),
        replaced: job.replaces.map((v) => store.get(job.module, v, job.kernel)).filter((r): r is BuildRecord => Boolean(r)),
        ownerOf: (p) => store.ownerOf(p),
      });
      await store.put(record);
      if (record.status === 'installed') for (const v of job.replaces) await store.delete(job.module, v, job.kernel);
      return recordResult(record, touched);
    },
    blocked: moduleBlocked,
    counts: { failure: 'module', done: 'installed' },
  },

  uninstall: {
    cpu: false, lock: true,
    target: moduleFor,
    planLine: (job, after) => `would uninstall ${jobTarget(job)} (${job.reason}${after})`,
    endLine(job, r) {
      if (r.status === 'failed') return `failed   to remove ${jobTarget(job)}: ${r.detail}`;
      return r.status === 'done' ? `removed ${job.module}/${job.version} from ${job.kernel} (${job.reason})` : undefined;
    },
    async run(job, ctx) {
      const record = ctx.store.get(job.module, job.version, job.kernel);
      if (!record) return { status: 'skipped', detail: 'not recorded any more' };
      const touched = await uninstallRecord(record, job.spec, ctx.layout, ctx.log);
      if (record.installed.length) {
        await ctx.store.put({ ...record, status: record.status === 'failed' ? 'failed' : 'built', installed: [], updatedAt: new Date().toISOString() });
      }
      return { status: 'done', touched };
    },
    counts: { failure: 'other', done: 'removed' },
  },

  forget: {
    cpu: false, lock: true,
    target: (job) => (job.module ? `${job.module}/${job.version} for ${job.kernel}` : `the build dirs of ${job.kernel}`),
    planLine: (job) => `would forget ${jobTarget(job)} (${job.reason})`,
    json: dkmsTreeJson,
    endLine: plainEnd,
    async run(job, { layout, store }) {
      if (job.module && job.version) {
        await rm(layout.builtDir(job.kernel, job.module, job.version), { recursive: true, force: true });
        await rm(path.dirname(layout.buildDir(job.kernel, job.module, job.version)), { recursive: true, force: true });
        if (job.dkmsTree) await removeDkmsTree(job.dkmsTree);
        await store.delete(job.module, job.version, job.kernel);
        return { status: 'done' };
      }
      for (const dir of [layout.buildTree(job.kernel), path.dirname(path.dirname(layout.builtDir(job.kernel, 'x', 'y')))]) {
        await rm(dir, { recursive: true, force: true });
      }
      const install = layout.installDir(job.kernel);
      if (existsSync(install) && (await readdir(install)).length === 0) await rm(install, { recursive: true });
      return { status: 'done' };
    },
    counts: { failure: 'other' },
  },

  'rust-clean': {
    cpu: false, lock: true,
    target: (job) => `the Rust tree of ${job.kernel}`,
    planLine: (job) => `would remove the Rust tree of ${job.kernel} (${job.reason})`,
    endLine: plainEnd,
    run: async (job, ctx) => ({ status: (await cleanRustTrees(ctx.layout, job.kernel)) ? 'done' : 'skipped' }),
    counts: { failure: 'other' },
  },

  'dkms-takeover': {
    cpu: false, lock: true,
    target: moduleFor,
    planLine: (job) => `would take over ${jobTarget(job)} from DKMS: remove ${[...job.copies, job.link].join(', ')} (${job.reason}${job.after.length ? ', after its install' : ''})`,
    json: (job) => ({ remove: [...job.copies, job.link] }),
    endLine(job, r) {
      if (r.status === 'failed') return `failed   to take over ${jobTarget(job)} from DKMS: ${r.detail}`;
      return r.status === 'done' ? `took over ${jobTarget(job)} from DKMS (removed its copy from updates/dkms)` : undefined;
    },
    async run(job, ctx) {
      // Only with ootmod's own copy in place (its install may have failed): else DKMS's stays in use.
      const ours = ctx.store.find({ module: job.module, kernel: job.kernel }).some(installedFilesPresent);
      if (!ours) return { status: 'skipped', detail: 'ootmod has not installed it' };
      return { status: 'done', touched: await takeOverFromDkms(job) };
    },
    counts: { failure: 'other' },
  },

  'dkms-tree': {
    cpu: false, lock: true,
    target: moduleFor,
    planLine: (job) => `would write ${job.dkmsTree} (${job.reason})`,
    json: dkmsTreeJson,
    endLine: plainEnd,
    async run(job, { layout, store }) {
      const record = store.get(job.module, job.version, job.kernel);
      if (!record?.built.length) return { status: 'skipped', detail: 'no kept build' };
      const perBuild = layout.perBuildDir(job.kernel, job.module, job.version, record.arch);
      await keepPerBuildDir(perBuild, { built: record.built, log: record.log });
      await writeDkmsTree(perBuild, job.dkmsTree);
      return { status: 'done' };
    },
    counts: { failure: 'other' },
  },

  'rust-stray': {
    cpu: false, lock: true,
    target: (job) => `what an interrupted build left beside ${job.tree}`,
    planLine: (job) => `would remove ${job.paths.length === 1 ? 'a build' : `${job.paths.length} builds`} interrupted before completion: ${job.paths.join(', ')} (${job.reason})`,
    json: (job) => ({ remove: job.paths }),
    endLine: plainEnd,
    async run(job) {
      const gone = await removeStrayTrees(job.tree);
      return gone.length ? { status: 'done', detail: gone.join(', ') } : { status: 'skipped', detail: 'nothing left there' };
    },
    counts: { failure: 'other' },
  },

  'dkms-register': {
    cpu: false, lock: true,
    target: (job) => `${job.module}/${job.version} in DKMS's registry`,
    planLine: (job) => `would register ${job.module}/${job.version} in DKMS's registry: ${job.link} -> ${job.source} (${job.reason})`,
    json: (job) => ({ link: job.link, source: job.source }),
    endLine: plainEnd,
    async run(job) {
      await register(job.registry, { name: job.module, version: job.version }, job.source);
      await clearRemoved(job.marker);
      return { status: 'done' };
    },
    counts: { failure: 'other' },
  },

  'dkms-unregister': {
    cpu: false, lock: true,
    target: (job) => `${job.module}/${job.version} in DKMS's registry`,
    planLine: (job) => `would remove ${job.module}/${job.version} from DKMS's registry ${job.registry}${job.marker ? ` and leave its source unbuilt until dkms add (${job.marker})` : ''} (${job.reason})`,
    json: (job) => ({ registry: job.registry, marker: job.marker ?? null }),
    endLine: plainEnd,
    async run(job) {
      await unregister(job.registry, { name: job.module, version: job.version });
      if (job.marker) await markRemoved(job.marker);
      return { status: 'done' };
    },
    counts: { failure: 'other' },
  },

  'dkms-autoinstall': {
    cpu: false, lock: true,
    target: (job) => `DKMS's modules for ${job.kernels.join(', ')}`,
    planLine: (job) => `would run dkms autoinstall -k KVER for ${job.kernels.join(', ')} (${job.reason})`,
    endLine: (job, r) => (r.status === 'failed' ? `failed   ${jobTarget(job)}: ${r.detail}` : r.detail ? `ootmod: ${r.detail}` : undefined),
    async run(job, ctx) {
      const lines = await dkmsAutoinstall(ctx.layout, job.kernels);
      return lines.length ? { status: 'done', detail: lines.join('; ') } : { status: 'skipped', detail: 'DKMS runs only on the real root' };
    },
    counts: { failure: 'other' },
  },

  'signing-key': {
    cpu: false, lock: true,
    target: (job) => `the signing key pair ${job.choice.key}, ${job.choice.cert}`,
    planLine: (job) => `would create ${jobTarget(job)} (${job.reason})`,
    endLine: plainEnd,
    async run(job, ctx) {
      await ensurePair(job.choice, ctx.signingKeys);
      return { status: 'done' };
    },
    counts: { failure: 'other' },
  },

  dequeue: {
    cpu: false, lock: true,
    target: (job) => `the queued requests ${job.files.map((f) => path.basename(f)).join(', ')}`,
    planLine: (job) => `would take ${jobTarget(job)} (${job.reason})`,
    json: (job) => ({ remove: job.files }),
    endLine: plainEnd,
    run: removeFiles,
    counts: { failure: 'other' },
  },

  'removed-marks': {
    cpu: false, lock: true,
    target: (job) => `the marks ${job.files.join(', ')}`,
    planLine: (job) => `would remove ${jobTarget(job)} (${job.reason})`,
    json: (job) => ({ remove: job.files }),
    endLine: plainEnd,
    run: removeFiles,
    counts: { failure: 'other' },
  },

  'record-failure': {
    cpu: false, lock: true,
    target: moduleFor,
    planLine: (job) => `would record ${jobTarget(job)} as failed: ${job.error}`,
    json: (job) => ({ error: job.error }),
    // The plan's failed line already said why.
    endLine: (job, r) => (r.status === 'failed' ? `failed   to record ${jobTarget(job)}: ${r.detail}` : undefined),
    async run(job, ctx) {
      // No inputs key: built as soon as it can be.
      await putFailedRecord(ctx, job, job.error, '');
      return { status: 'done' };
    },
    counts: { failure: 'other' },
  },

  'post-transaction': {
    cpu: false, lock: true,
    target: (job) => `framework.conf's post_transaction (${job.command})`,
    planLine: (job) => `would run ${jobTarget(job)} with kernelver=${job.kernel}, its output in ${job.log} (${job.reason})`,
    json: (job) => ({ command: job.command, log: job.log }),
    // The command prints DKMS's line (the result's detail) on stdout, as DKMS does.
    endLine: (job, r, verbose) => (verbose ? plainEnd(job, r, verbose) : undefined),
    run: (job) => runPostTransaction(job),
    counts: { failure: 'other' },
  },

  depmod: {
    cpu: false, lock: true,
    target: (job) => job.kernel,
    planLine: (job) => `would run depmod for ${job.kernel} (once, after its ${job.after.length} job(s), if one changed files)`,
    endLine: kernelStepEnd,
    async run(job, ctx, results) {
      // Once per kernel, and only if one of its jobs changed files under its module dir.
      if (!job.after.some((id) => results.get(id)?.touched)) return { status: 'skipped', detail: 'no module changed' };
      await depmod(ctx.layout, job.kernel, ctx.log);
      return { status: 'done' };
    },
    counts: { failure: 'other', done: 'touched' },
  },

  initramfs: {
    cpu: false, lock: true,
    target: (job) => job.kernel,
    planLine: (job) => `would update the initramfs of ${job.kernel}${job.tool === 'dracut' ? ' (dracut --force)' : job.viaTrigger ? " (through initramfs-tools' trigger)" : ''}`,
    endLine: kernelStepEnd,
    async run(job, ctx, results) {
      if (results.get(job.after[0]!)?.status !== 'done') return { status: 'skipped', detail: 'depmod did not run' };
      const error = await requestInitramfs(ctx.layout, job.kernel, job);
      return error ? failed(error) : { status: 'done', detail: job.tool === 'dracut' ? 'dracut --force' : job.viaTrigger ? 'through initramfs-tools\' trigger' : 'update-initramfs -u' };
    },
    counts: { failure: 'other' },
  },

  defer: {
    // Inside dpkg, a hook that queues its kernel does not wait for the lock: the trigger runs after it, under the lock.
    cpu: false, lock: false,
    target: (job) => job.what,
    planLine: (job) => `would queue ${job.what} and activate ootmod's dpkg trigger (${job.reason})`,
    endLine: plainEnd,
    async run(job, { layout }) {
      await mkdir(layout.queueDir, { recursive: true });
      await writeFile(path.join(layout.queueDir, job.entry.replaceAll('/', '_')), `${job.reason} ${new Date().toISOString()}\n`);
      const r = await run('dpkg-trigger', ['--no-await', TRIGGER_NAME], { allowFailure: true });
      return r.exitCode === 0 ? { status: 'done' } : failed(`dpkg-trigger ${TRIGGER_NAME} failed: ${r.stderr.trim().split('\n').pop() ?? r.exitCode}`);
    },
    counts: { failure: 'other' },
  },

  'boot-guard': {
    cpu: false, lock: true,
    target: (job) => loaderEntry(job.loader),
    planLine(job) {
      if (job.release) return `would give ${jobTarget(job)} back as the admin had it (${job.preview ?? job.reason})`;
      return `would run the boot guard after the other jobs (${job.reason})${job.preview ? `; as things are now it would ${job.preview}` : ''}`;
    },
    endLine(_job, r, verbose) {
      if (r.status === 'failed') return `failed   boot guard: ${r.detail}`;
      return r.status === 'done' || verbose ? `boot guard: ${r.detail}` : undefined;
    },
    async run(job, ctx, results) {
      const { layout } = ctx;
      if (!ctx.readiness) return { status: 'skipped', detail: 'no readiness reader' };
      const view = await ctx.readiness(initramfsNews(job, results));
      const state = readGuardState(layout);
      const decision: GuardDecision = job.release
        ? state ? { action: 'release', why: 'ootmod boot release', loader: state.bootloader } : { action: 'none', why: 'the guard holds nothing' }
        : decideGuard(guardInput(layout, job.mode, view, view.images ?? []));
      const after = await applyGuard(layout, decision, state, ctx.grubTools ?? realGrubTools(layout));
      const changed = decision.action === 'engage' || decision.action === 'release';
      const grubCfgAgain = layout.root !== '/' && ((decision.action === 'engage' && decision.savedMode === 'drop-in' && !state?.dropIn) || (decision.action === 'release' && state?.dropIn));
      const note = grubCfgAgain ? ' (update-grub is not run under --root: run it inside the root)' : '';
      return { status: changed ? 'done' : 'skipped', detail: `${guardLine(decision, true)}${note}`, guard: decision, readiness: { ...view, guard: after } };
    },
    counts: { failure: 'other' },
  },

  'boot-notice': {
    cpu: false, lock: true,
    target: (job) => job.files.join(', '),
    planLine: (job) => `would update the notices of the next boot's readiness after the other jobs: ${job.files.join(', ')} (${job.reason})`,
    json: (job) => ({ files: job.files }),
    endLine(_job, r, verbose) {
      if (r.status === 'failed') return `failed   to update the notices of the next boot's readiness: ${r.detail}`;
      return verbose && r.detail ? `notice   ${r.detail}` : undefined;
    },
    async run(job, ctx, results) {
      // The guard's job (when the plan has one) read the readiness after its change.
      const guarded = results.get('boot-guard')?.readiness;
      if (!guarded && !ctx.readiness) return { status: 'skipped', detail: 'no readiness reader' };
      const readiness = guarded ?? (await ctx.readiness!(initramfsNews(job, results)));
      return { status: 'done', detail: await updateBootNotices(ctx.layout, job.files, readiness), readiness };
    },
    counts: { failure: 'other' },
  },
};

/** The registry's entry for a job's kind, typed to take that job. */
export function kindOf(job: Job): KindSpec<JobKind> {
  return KINDS[job.kind] as unknown as KindSpec<JobKind>;
}

/** What a job acts on, for people. */
export function jobTarget(job: Job): string {
  return kindOf(job).target(job);
}
