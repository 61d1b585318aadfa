// The pipeline every command that changes the system goes through: read the system (facts), plan
// (a graph of typed jobs), execute the plan, and sum up. The CLI parses, calls these, and renders; a
// dry run stops after the plan, so what it prints is exactly what a real run would do.
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { ootmodFramework } from '../dkms/framework.js';
import { readDkmsInstalls } from '../dkms/handover.js';
import { isRegistered } from '../dkms/registry.js';
import { ExitCode, OotmodError } from '../errors.js';
import { executePlan, isCpuJob, type JobResult, type ProgressReporter } from '../execute/executor.js';
import { kindOf, type Counting } from '../execute/kinds.js';
import { initramfsKernels } from '../execute/initramfs.js';
import { noticeExists, noticeFiles } from '../execute/notices.js';
import { Jobserver } from '../execute/jobserver.js';
import { jobRunner } from '../execute/steps.js';
import { listKernels, readKernel, type KernelTarget } from '../kernel/inventory.js';
import { dkmsIsInstalled, removedMarker } from '../modules/names.js';
import { loadSpec, type SourceDir } from '../modules/sourcedirs.js';
import type { ModuleSpec } from '../modules/spec.js';
import { composePlan, type ComposeInput, type RemovalRequest } from '../plan/compose.js';
import { readFacts, type Facts } from '../plan/facts.js';
import { guardPreview, readReadiness } from './readiness.js';
import { readGuardState } from '../execute/bootguard.js';
import { bootloaderOf } from '../kernel/boot.js';
import type { AddJob, Job, WorkPlan } from '../plan/jobs.js';
import { moduleTarget, parseJobId, type ModuleTarget } from '../plan/jobid.js';
import { planModules, type Action } from '../plan/planner.js';
import { readRustFacts, rustKernels, type RustTreeFact } from '../rust/prepare.js';
import { strayTrees } from '../rust/tree.js';
import { StateStore, installedFilesPresent, type BuildRecord } from '../state/store.js';
import type { OotmodConfig } from '../system/config.js';
import type { Layout } from '../system/layout.js';
import { currentTransaction } from '../system/transaction.js';
import type { RunContext } from './context.js';

export interface ModuleRef {
  name: string;
  version?: string;
}

/** What the pipeline needs from its caller (the CLI's session provides it). */
export interface PipelineContext {
  layout: Layout;
  opts: { jobs: number; force: boolean; dryRun: boolean; kernels: string[]; kernelSource?: string; verbose: boolean };
  config(): OotmodConfig;
  isRoot: boolean;
  /** The sandbox, dkms.conf reader and caches of this run. */
  run: RunContext;
  /** Where --verbose shows the commands removals and depmod run. */
  stderr: NodeJS.WritableStream;
}

/** A plan with what was read to make it (the executor needs the kernels and the state). */
export interface Planned {
  plan: WorkPlan;
  kernels: KernelTarget[];
  store: StateStore;
  /** The label of the summary line. */
  label: string;
  /** Named modules (build/install NAME): their invalid sources and skips decide the exit code. */
  named: boolean;
  /** Lines for the admin, printed before the run (e.g. no kernel headers at all). */
  notes: string[];
  /** How the boot jobs read what early boot needs (default: only when something is missing, see readReadiness). */
  earlyBoot?: true;
}

export interface WorkOutcome {
  results: Map<string, JobResult>;
  summary: string;
  exit: ExitCode;
  /** A failure of the machine (disk full, a missing tool) that stopped jobs: one line, exit 5. */
  fault?: string;
  /** Kernels whose module dir changed (depmod ran). */
  touchedKernels: string[];
}

function requireKernels(ctx: PipelineContext): void {
  for (const k of ctx.opts.kernels) {
    if (!existsSync(ctx.layout.kernelDir(k)) && !existsSync(ctx.layout.headersDir(k))) {
      throw new OotmodError(`kernel ${k} is not installed`, `install linux-headers-${k}, or see ootmod kernels`, ExitCode.NotFound);
    }
  }
}

function readRust(ctx: PipelineContext, kernels: KernelTarget[], force = false): Promise<RustTreeFact[]> {
  if (!ctx.config().rust) return Promise.resolve([]);
  return readRustFacts(kernels, { layout: ctx.layout, config: ctx.config(), kernelSource: ctx.opts.kernelSource, force, saveProbes: !ctx.opts.dryRun });
}

function depmodKernels(ctx: PipelineContext, kernels: KernelTarget[]): Set<string> {
  return new Set(kernels.filter((k) => existsSync(ctx.layout.kernelDir(k.release))).map((k) => k.release));
}

/**
 * With ootmod-dkms (no DKMS of its own on the machine), the builds of sources registered in DKMS's
 * registry are kept in DKMS's tree too (/var/lib/dkms/<m>/<v>/<kver>/<arch>), where DKMS's readers look.
 * Other sources are not: a dir there without its `source` link is what DKMS calls broken.
 */
function dkmsTreeOf(ctx: PipelineContext, kernels: KernelTarget[]): ComposeInput['dkmsTree'] {
  if (dkmsIsInstalled(ctx.layout)) return undefined;
  const arch = new Map(kernels.map((k) => [k.release, k.arch.machine]));
  return (name, version, kernel) => (arch.has(kernel) && isRegistered(ctx.layout.dkmsRegistry, { name, version }) ? ctx.layout.dkmsBuildDir(name, version, kernel, arch.get(kernel)!) : undefined);
}

/** A current module's build dir in DKMS's tree is missing (for the dkms-tree job). */
function dkmsTreeMissing(ctx: PipelineContext, kernels: KernelTarget[]): ComposeInput['dkmsTreeMissing'] {
  const arch = new Map(kernels.map((k) => [k.release, k.arch.machine]));
  return (name, version, kernel) => !existsSync(path.join(ctx.layout.dkmsBuildDir(name, version, kernel, arch.get(kernel) ?? ''), 'module'));
}

/** A removal of a record, with its build dir in DKMS's tree if ootmod-dkms wrote one. */
function removal(ctx: PipelineContext, record: BuildRecord, forget: boolean, reason: string, spec?: ModuleSpec): RemovalRequest {
  const dkmsTree = ctx.layout.dkmsBuildDir(record.module, record.version, record.kernel, record.arch);
  return { record, forget, spec, reason, ...(forget && record.arch && existsSync(dkmsTree) ? { dkmsTree } : {}) };
}

function unavailableRust(rust: RustTreeFact[]): Map<string, string> {
  return new Map(rust.flatMap((r) => (r.state === 'unavailable' ? [[r.kernel, r.error] as const] : [])));
}

export interface ModuleWorkRequest {
  action: Action;
  /** Sources placed under /usr/src first (a build of a dir elsewhere): their builds need the placement. */
  adds?: AddRequest[];
  /** Named modules; all AUTOINSTALL=yes modules when absent. */
  refs?: ModuleRef[];
  /** Only these source dirs. */
  sources?: SourceDir[];
  /** Modules whose failed build is retried though nothing changed (see PlanRequest.retry). */
  retry?: ReadonlySet<string>;
  /** Modules whose current build is built again (see PlanRequest.rebuild). */
  rebuild?: ReadonlySet<string>;
  label: string;
  /** Run from a maintainer script: the newest kernel's initramfs is asked for through initramfs-tools' trigger. */
  inDpkg?: boolean;
}

async function moduleInputs(ctx: PipelineContext, store: StateStore, kernels: KernelTarget[], rust: RustTreeFact[], req: ModuleWorkRequest): Promise<{ facts: Facts; compose: Pick<ComposeInput, 'modules' | 'headersDir'> }> {
  const placed = new Map((req.adds ?? []).map((a) => [a.from, a.dest]));
  const facts = await readFacts({ layout: ctx.layout, conf: ctx.run.dkmsConf, store, kernels, sources: req.sources, jobs: ctx.opts.jobs, checkOwnership: ctx.isRoot, rust, placed });
  const modules = planModules({
    kernels: facts.kernels, candidates: facts.candidates, records: facts.records,
    // Inside dpkg, the apt or dpkg run this is part of: a failure of this run is not built again in it.
    request: { action: req.action, modules: req.refs, force: ctx.opts.force, retry: req.retry, rebuild: req.rebuild, transaction: currentTransaction() }, rustUnavailable: unavailableRust(rust),
  });
  const headersDir = new Map(kernels.flatMap((k) => (k.headersDir ? [[k.release, k.headersDir] as const] : [])));
  return { facts, compose: { modules, headersDir } };
}

/**
 * Runs a planning function with what overlaps it started first: the jobserver's question to make
 * (which form it takes), and the sandbox that reads dkms.conf, closed when the plan is made.
 */
async function planning<T>(ctx: PipelineContext, plan: () => Promise<T>): Promise<T> {
  if (!ctx.opts.dryRun) void ctx.run.makeFifo();
  ctx.run.dkmsConf.open();
  try {
    return await plan();
  } finally {
    await ctx.run.dkmsConf.close();
  }
}

/** build, install, autoinstall. */
export async function planModuleWork(ctx: PipelineContext, req: ModuleWorkRequest): Promise<Planned> {
  requireKernels(ctx);
  return planning(ctx, () => planModuleWorkNow(ctx, req));
}

async function planModuleWorkNow(ctx: PipelineContext, req: ModuleWorkRequest): Promise<Planned> {
  const store = StateStore.load(ctx.layout.stateFile, { recover: !ctx.opts.dryRun });
  const kernels = await listKernels(ctx.layout, ctx.opts.kernels.length ? ctx.opts.kernels : undefined);
  const rust = await readRust(ctx, kernels);
  const { facts, compose } = await moduleInputs(ctx, store, kernels, rust, req);
  for (const ref of req.refs ?? []) {
    const known = facts.candidates.some((c) => c.spec?.name === ref.name && (!ref.version || c.spec.version === ref.version));
    const invalid = facts.candidates.find((c) => !c.spec && req.sources?.some((d) => d.dir === c.sourceDir && d.guessedName === ref.name));
    if (!known && invalid) throw new OotmodError(invalid.error ?? 'invalid module source', undefined, ExitCode.InvalidSource);
    if (!known) {
      const what = ref.version ? `${ref.name}/${ref.version}` : ref.name;
      throw new OotmodError(`no module source ${what} under ${ctx.layout.srcDir}`, 'ootmod add <dir> first, or see ootmod status', ExitCode.NotFound);
    }
  }
  const notes: string[] = [];
  if (!kernels.some((k) => k.headersDir)) {
    const line = `no kernel headers found under ${ctx.layout.modulesDir}`;
    const fix = 'install linux-headers-<flavour> (e.g. linux-headers-amd64)';
    if (req.refs) throw new OotmodError(line, fix, ExitCode.NotFound);
    notes.push(`ootmod: ${line}: ${fix}`);
  }
  // An install can make the kernel the boot guard holds back ready: the guard (and the notices) follow
  // in the same run, as after a trigger, not only at the next apt run.
  const boot = req.action === 'install'
    ? { bootNotice: { files: noticeFiles(ctx.layout), always: noticeExists(ctx.layout) || Boolean(readGuardState(ctx.layout)) }, bootGuard: await bootGuardJob(ctx) }
    : {};
  // An install changes what a kernel's initramfs should hold (zfs, a storage driver): a new initramfs
  // for the kernels it touched, as after the trigger (DKMS leaves that to the next kernel install).
  // The newest kernel of all, not of -k, is the one initramfs-tools' trigger updates.
  const initramfs = req.action === 'install'
    ? { initramfs: { ...initramfsKernels(ctx.layout, (ctx.opts.kernels.length && req.inDpkg ? await listKernels(ctx.layout) : kernels).map((k) => k.release)), inDpkg: Boolean(req.inDpkg) } }
    : {};
  const plan = composePlan({ ...compose, adds: req.adds, rust, rustWanted: req.refs ? 'needed' : 'all', depmodKernels: depmodKernels(ctx, kernels), buildUser: ctx.run.sandbox.missingBuildUser(), dkmsTree: dkmsTreeOf(ctx, kernels), dkmsTreeMissing: dkmsTreeMissing(ctx, kernels), ...initramfs, ...boot });
  return { plan, kernels, store, label: req.label, named: Boolean(req.refs), notes };
}

async function specOf(ctx: PipelineContext, r: BuildRecord, kernel?: KernelTarget): Promise<ModuleSpec | undefined> {
  const dir = ctx.layout.moduleSource(r.module, r.version);
  if (!existsSync(dir)) return undefined;
  const k = kernel ?? (await readKernel(ctx.layout, r.kernel).catch(() => undefined));
  return loadSpec({ dir, guessedName: r.module, guessedVersion: r.version }, { layout: ctx.layout, conf: ctx.run.dkmsConf, kernel: k, jobs: ctx.opts.jobs, checkOwnership: ctx.isRoot }).catch(() => undefined);
}

/** uninstall and remove of a module (all kernels, or -k). */
export async function planRemoval(ctx: PipelineContext, ref: ModuleRef, forget: boolean): Promise<Planned> {
  const store = StateStore.load(ctx.layout.stateFile, { recover: !ctx.opts.dryRun });
  const records = store.find({ module: ref.name, version: ref.version }).filter((r) => !ctx.opts.kernels.length || ctx.opts.kernels.includes(r.kernel));
  const what = ref.version ? `${ref.name}/${ref.version}` : ref.name;
  if (!records.length) throw new OotmodError(`${what} is not built for ${ctx.opts.kernels.join(', ') || 'any kernel'}`, 'see ootmod status', ExitCode.NotFound);
  const kernels = await listKernels(ctx.layout);
  const removals: RemovalRequest[] = [];
  for (const r of records) removals.push(removal(ctx, r, forget, forget ? 'ootmod remove' : 'ootmod uninstall', await specOf(ctx, r, kernels.find((k) => k.release === r.kernel))));
  const plan = composePlan({ removals, depmodKernels: depmodKernels(ctx, kernels) });
  return { plan, kernels, store, label: forget ? 'remove' : 'uninstall', named: true, notes: [] };
}

/** Before a kernel's files go (its prerm hook): what ootmod built and installed for it, and its Rust tree. */
export async function planKernelRemoval(ctx: PipelineContext, kver: string): Promise<Planned> {
  const store = StateStore.load(ctx.layout.stateFile, { recover: !ctx.opts.dryRun });
  const removals = store.find({ kernel: kver }).map((record) => removal(ctx, record, true, `kernel ${kver} is removed`));
  const plan = composePlan({
    removals, forgetKernels: [kver], depmodKernels: new Set(),
    rustClean: existsSync(ctx.layout.rustKernelDir(kver)) ? [{ kernel: kver, reason: `kernel ${kver} is removed` }] : [],
  });
  return { plan, kernels: [], store, label: `prerm ${kver}`, named: false, notes: [] };
}

/** DKMS replaced (ootmod-dkms) or removed: what it installed, for the plan to take over. */
async function dkmsTakeover(ctx: PipelineContext, store: StateStore, gone: string[]): Promise<ComposeInput['dkmsTakeover']> {
  if (dkmsIsInstalled(ctx.layout)) return undefined;
  const installs = (await readDkmsInstalls(ctx.layout)).filter((d) => !gone.includes(d.kernel));
  if (!installs.length) return undefined;
  const installedByOotmod = new Set(
    store.records().filter(installedFilesPresent).map((r) => `${r.module}@${r.kernel}`),
  );
  return { installs, installedByOotmod };
}

/**
 * The trigger: forget what was built for removed kernels and removed sources, drop the Rust trees of
 * kernels whose headers are gone, then bring every kernel up to date (Rust trees, autoinstall) and ask
 * for a new initramfs where modules changed. With DKMS replaced, DKMS's copies of what ootmod installs go.
 */
export interface TriggerPlanOptions {
  inDpkg: boolean;
  label: string;
  /** Modules asked for explicitly (queued `dkms build|install`, a package's postinst): a failed build is retried. */
  retry?: ReadonlySet<string>;
  /** Modules whose current build is built again: a package's postinst asked (see PlanRequest.rebuild). */
  rebuild?: ReadonlySet<string>;
  /**
   * /etc/dkms/no-autoinstall with ootmod-dkms (DKMS's autoinstall is off): no module and no Rust tree is
   * built for being out of date; removals and what hooks and packages asked for by name still are.
   */
  noAutoinstall?: boolean;
  /** Kernels were installed or removed (hooks ran): the next boot's readiness is checked even with nothing to build. */
  kernelsChanged?: boolean;
  /** The queue entries (files) this run takes: a dequeue job removes them. */
  queued?: string[];
  /** DKMS is back and ootmod handed its modules back: DKMS's own autoinstall follows (a dkms-autoinstall job). */
  handedBack?: boolean;
}

/** The marks of sources `dkms remove` left unbuilt whose files are gone: nothing to remember. */
async function goneRemovedMarks(ctx: PipelineContext): Promise<string[]> {
  const dir = path.dirname(removedMarker(ctx.layout, 'x'));
  return (await readdir(dir).catch(() => [] as string[])).filter((name) => !existsSync(path.join(ctx.layout.srcDir, name))).map((name) => path.join(dir, name));
}

export async function planTrigger(ctx: PipelineContext, opts: TriggerPlanOptions): Promise<Planned> {
  return planning(ctx, () => planTriggerWork(ctx, opts));
}

async function planTriggerWork(ctx: PipelineContext, opts: TriggerPlanOptions): Promise<Planned> {
  const store = StateStore.load(ctx.layout.stateFile, { recover: !ctx.opts.dryRun });
  const kernels = await listKernels(ctx.layout);
  const present = new Map(kernels.map((k) => [k.release, k]));
  const gone = [...new Set(store.records().map((r) => r.kernel))].filter((k) => !present.has(k) || !existsSync(ctx.layout.kernelDir(k)));
  const removals: RemovalRequest[] = store.records().filter((r) => gone.includes(r.kernel)).map((record) => removal(ctx, record, true, `kernel ${record.kernel} is removed`));
  for (const r of store.records()) {
    if (gone.includes(r.kernel) || existsSync(ctx.layout.moduleSource(r.module, r.version))) continue;
    removals.push(removal(ctx, r, true, 'its source is gone'));
  }
  const rustClean: { kernel: string; reason: string }[] = gone.filter((k) => existsSync(ctx.layout.rustKernelDir(k))).map((kernel) => ({ kernel, reason: 'its kernel is removed' }));
  for (const entry of await readdir(path.join(ctx.layout.stateDir, 'rust'), { withFileTypes: true }).catch(() => [])) {
    // Kernel dirs only: the dir also holds ootmod's cache of toolchain probes.
    if (!entry.isDirectory() || gone.includes(entry.name) || present.get(entry.name)?.headersDir) continue;
    rustClean.push({ kernel: entry.name, reason: 'its headers are gone' });
  }
  const rust = await readRust(ctx, kernels);
  // No autoinstall: no module is wanted (an empty list of named ones); the queued requests follow the plan.
  const { compose } = await moduleInputs(ctx, store, kernels, rust, { action: 'install', label: opts.label, retry: opts.retry, rebuild: opts.rebuild, ...(opts.noAutoinstall ? { refs: [] } : {}) });
  const initramfs = initramfsKernels(ctx.layout, kernels.map((k) => k.release));
  const plan = composePlan({
    ...compose, rust, rustWanted: opts.noAutoinstall ? 'needed' : 'all', removals, forgetKernels: gone, rustClean,
    depmodKernels: depmodKernels(ctx, kernels), buildUser: ctx.run.sandbox.missingBuildUser(), initramfs: { ...initramfs, inDpkg: opts.inDpkg }, dkmsTree: dkmsTreeOf(ctx, kernels), dkmsTreeMissing: dkmsTreeMissing(ctx, kernels),
    dkmsTakeover: await dkmsTakeover(ctx, store, gone),
    dequeue: { files: opts.queued ?? [], reason: 'the requests are this run\'s now' },
    removedMarks: { files: await goneRemovedMarks(ctx), reason: 'dkms remove left these sources unbuilt, and their files are gone' },
    ...(opts.handedBack ? { dkmsAutoinstall: { kernels: kernels.filter((k) => k.headersDir).map((k) => k.release), reason: 'DKMS is back: it installs its modules again, as its kernel hook would' } } : {}),
    // The readiness notices: after any change, after a kernel event, and while one is up (to take it down).
    bootNotice: { files: noticeFiles(ctx.layout), always: Boolean(opts.kernelsChanged) || noticeExists(ctx.layout) || Boolean(readGuardState(ctx.layout)) },
    bootGuard: await bootGuardJob(ctx),
  });
  return { plan, kernels, store, label: opts.label, named: false, notes: [] };
}

/**
 * The boot guard's job: for the trigger with GRUB or systemd-boot and a guard that acts, or while it holds something (to
 * give it back); always for `ootmod boot apply|release` (`asked`), which then says why it does nothing.
 */
async function bootGuardJob(ctx: PipelineContext, asked = false, release = false): Promise<ComposeInput['bootGuard']> {
  const mode = ctx.config().boot.guard;
  const loader = bootloaderOf(ctx.layout);
  if (!asked && !((mode !== 'no' && loader !== 'none') || readGuardState(ctx.layout))) return undefined;
  return { mode, loader, release, preview: ctx.opts.dryRun ? await guardPreview(ctx, release) : undefined };
}

/** ootmod boot apply|release: the boot guard now, then the notices. */
export async function planBootGuard(ctx: PipelineContext, release: boolean): Promise<Planned> {
  const plan = composePlan({ depmodKernels: new Set(), bootNotice: { files: noticeFiles(ctx.layout), always: true }, bootGuard: await bootGuardJob(ctx, true, release) });
  return { plan, kernels: [], store: StateStore.load(ctx.layout.stateFile, { recover: !ctx.opts.dryRun }), label: release ? 'boot release' : 'boot apply', named: false, notes: [] };
}

/**
 * ootmod hook initramfs KVER: an initramfs was rebuilt by someone else (initramfs-tools' own trigger,
 * the admin): the next boot checked again with every initramfs read (the new one is not in the cache),
 * the boot guard, the notices.
 */
export async function planInitramfsCheck(ctx: PipelineContext, kver: string): Promise<Planned> {
  const plan = composePlan({ depmodKernels: new Set(), bootNotice: { files: noticeFiles(ctx.layout), always: true }, bootGuard: await bootGuardJob(ctx) });
  const store = StateStore.load(ctx.layout.stateFile, { recover: !ctx.opts.dryRun });
  return { plan, kernels: [], store, label: `initramfs of ${kver}`, named: false, notes: [], earlyBoot: true };
}

/** rust prepare: the Rust trees of the CONFIG_RUST kernels (-k, or all with headers). */
export async function planRustPrepare(ctx: PipelineContext): Promise<Planned> {
  const kernels = await listKernels(ctx.layout, ctx.opts.kernels.length ? ctx.opts.kernels : undefined);
  for (const k of ctx.opts.kernels) {
    const kernel = kernels.find((x) => x.release === k);
    if (!kernel?.headersDir) throw new OotmodError(`no headers for ${k}`, `install linux-headers-${k}`, ExitCode.NotFound);
    if (!kernel.rust.enabled) throw new OotmodError(`${k} is not built with CONFIG_RUST`, 'it needs no Rust tree', ExitCode.NotFound);
  }
  const rust = await readRustFacts(rustKernels(kernels), {
    layout: ctx.layout, config: ctx.config(), kernelSource: ctx.opts.kernelSource, force: ctx.opts.force, saveProbes: !ctx.opts.dryRun,
  });
  // A build killed before it switched `current` left its half tree: it goes under the lock.
  const rustStray = rust
    .flatMap((r) => (r.state === 'current' ? [{ kernel: r.kernel, tree: r.tree.dir, paths: strayTrees(r.tree.dir), reason: 'left by a build interrupted before completion' }] : []))
    .filter((r) => r.paths.length);
  const plan = composePlan({ rust, rustWanted: 'all', rustStray, depmodKernels: new Set(), buildUser: ctx.run.sandbox.missingBuildUser() });
  return { plan, kernels, store: StateStore.load(ctx.layout.stateFile, { recover: !ctx.opts.dryRun }), label: 'rust prepare', named: false, notes: [] };
}

export function planRustClean(ctx: PipelineContext, kernels: string[]): Planned {
  const plan = composePlan({
    rustClean: kernels.filter((k) => existsSync(ctx.layout.rustKernelDir(k))).map((kernel) => ({ kernel, reason: 'ootmod rust clean' })),
    depmodKernels: new Set(),
  });
  return { plan, kernels: [], store: StateStore.load(ctx.layout.stateFile, { recover: !ctx.opts.dryRun }), label: 'rust clean', named: true, notes: [] };
}

export type AddRequest = Omit<AddJob, 'kind' | 'needs' | 'after' | 'id'>;

/** ootmod add: place sources under /usr/src and run their POST_ADD. */
export function planAdd(ctx: PipelineContext, adds: AddRequest[]): Planned {
  const plan = composePlan({ adds, depmodKernels: new Set() });
  return { plan, kernels: [], store: StateStore.load(ctx.layout.stateFile, { recover: !ctx.opts.dryRun }), label: 'add', named: true, notes: [] };
}

/** ootmod-dkms's writes of DKMS's registry (`dkms add`, `dkms remove --all`) and its key pair (`dkms generate_mok`). */
export function planDkmsRegistry(ctx: PipelineContext, input: Pick<ComposeInput, 'dkmsRegister' | 'dkmsUnregister' | 'signingKey'>, label: string): Planned {
  const plan = composePlan({ ...input, depmodKernels: new Set() });
  return { plan, kernels: [], store: StateStore.load(ctx.layout.stateFile, { recover: !ctx.opts.dryRun }), label, named: false, notes: [] };
}

/**
 * ootmod-dkms: framework.conf's post_transaction after a transaction that changed modules (DKMS runs it
 * then), as a plan of its own; undefined when ootmod-dkms is not installed or none is set.
 */
export function planPostTransaction(ctx: PipelineContext, kver: string, reason: string): Planned | undefined {
  const command = ootmodFramework(ctx.layout)?.get('post_transaction');
  if (!command) return undefined;
  const postTransaction = { command, kernel: kver, log: path.join(ctx.layout.dkmsRegistry, 'post_transaction.log'), reason };
  const plan = composePlan({ postTransaction, depmodKernels: new Set() });
  return { plan, kernels: [], store: StateStore.load(ctx.layout.stateFile, { recover: !ctx.opts.dryRun }), label: 'post_transaction', named: false, notes: [] };
}

/** Inside dpkg: record a request and activate ootmod's trigger, so the work runs once, at the end. */
export function planDefer(ctx: PipelineContext, entry: string, what: string, reason: string): Planned {
  const plan = composePlan({ defer: [{ entry, what, reason }], depmodKernels: new Set() });
  return { plan, kernels: [], store: StateStore.load(ctx.layout.stateFile, { recover: !ctx.opts.dryRun }), label: 'defer', named: false, notes: [] };
}

/** Runs a plan: the jobserver with --jobs tokens, the executor, then the summary and exit status. */
export async function executeWork(ctx: PipelineContext, planned: Planned, reporter: ProgressReporter): Promise<WorkOutcome> {
  const { plan } = planned;
  const needsCpu = plan.jobs.some(isCpuJob);
  const jobserver = needsCpu ? await Jobserver.create(ctx.opts.jobs, { fifoForm: ctx.run.makeFifo() }) : undefined;
  await recordCannotBuild(planned);
  let results: Map<string, JobResult>;
  try {
    const runner = jobRunner({
      layout: ctx.layout,
      kernels: new Map(planned.kernels.map((k) => [k.release, k])),
      store: planned.store,
      timeoutMs: ctx.config().buildTimeout * 1000,
      jobserver,
      sandbox: ctx.run.sandbox,
      signingKeys: ctx.run.signingKeys,
      log: { write: async (t) => void (ctx.opts.verbose && ctx.stderr.write(t)) },
      readiness: (news) => readReadiness(ctx, { early: planned.earlyBoot ?? 'if-missing', ...news }),
    });
    results = await executePlan(plan, runner, { jobserver, reporter });
  } finally {
    await jobserver?.close();
  }
  return summarize(planned, results);
}

/**
 * Builds that cannot run now (the kernel's compiler or kbuild missing, no Rust tree) are recorded as
 * failed with the reason, before the jobs run (the boot notices read it): status, dkms status and the
 * not-ready block then say what to install. No inputs key: tried again as soon as the build can run.
 * What an older build installed stays installed, and recorded, as after a failed build.
 */
async function recordCannotBuild(planned: Planned): Promise<void> {
  const kernels = new Map(planned.kernels.map((k) => [k.release, k]));
  for (const f of planned.plan.failed) {
    if (!f.cannotBuild || !f.version || !f.kernel) continue;
    const previous = planned.store.get(f.module, f.version, f.kernel);
    await planned.store.put({
      module: f.module, version: f.version, kernel: f.kernel, arch: kernels.get(f.kernel)?.arch.machine ?? previous?.arch ?? '',
      status: 'failed', inputsKey: '', built: [], installed: previous?.installed ?? [], error: f.reason, updatedAt: new Date().toISOString(),
    });
  }
}

/** The module a job acts on (builds, installs, removals: their id names it). */
function moduleOf(job: Job): ModuleTarget | undefined {
  const ref = parseJobId(job.id);
  return ref && 'module' in ref && 'kernel' in ref ? ref : undefined;
}

/** The summary line and the exit status, each job counting as its kind says (src/execute/kinds.ts). */
export function summarize(planned: Planned, results: Map<string, JobResult>): WorkOutcome {
  const { plan } = planned;
  const having = (status: JobResult['status'], role: (c: Counting) => boolean) => plan.jobs.filter((j) => role(kindOf(j).counts) && results.get(j.id)?.status === status);
  const targets = (jobs: Job[]) => jobs.map((j) => moduleTarget(moduleOf(j)!));
  // A module counts once: an install blocked by its own failed build is the build's failure.
  const failedModules = new Set(targets(having('failed', (c) => c.failure === 'module')));
  const installedTargets = new Set(targets(having('done', (c) => c.done === 'installed')));
  const built = targets(having('done', (c) => c.done === 'built')).filter((t) => !installedTargets.has(t)).length;
  const otherFailures = having('failed', (c) => c.failure === 'other').length;
  const rustFailures = having('failed', (c) => c.failure === 'rust-tree').length;
  const removed = having('done', (c) => c.done === 'removed').length;
  const failed = failedModules.size + plan.failed.length + otherFailures;
  const invalid = new Set(plan.invalid.map((i) => i.module + i.reason)).size;
  const parts = [
    `${installedTargets.size} installed`, `${built} built`, `${plan.current.length} current`, `${plan.skipped.length} skipped`, `${failed} failed`,
    ...(removed ? [`${removed} removed`] : []),
    ...(invalid ? [`${invalid} invalid`] : []),
    ...(rustFailures ? [`${rustFailures} Rust tree(s) failed`] : []),
  ];
  const summary = `${planned.label}: ${parts.join(', ')}`;
  let exit: ExitCode = ExitCode.Ok;
  if (failed) exit = ExitCode.Failed;
  // An invalid source is a failed module for autoinstall, a bad argument for a named one.
  else if (invalid) exit = planned.named ? ExitCode.InvalidSource : ExitCode.Failed;
  else if (planned.named && plan.skipped.length && !plan.jobs.some((j) => kindOf(j).counts.failure === 'module') && !plan.current.length) exit = ExitCode.Skipped;
  const touchedKernels = having('done', (c) => c.done === 'touched').map((j) => j.kernel!);
  // The machine failed, not a module (disk full, a tool missing): exit 5; the next run completes the work.
  const faulty = [...results.values()].find((r) => r.fault || r.record?.fault);
  const fault = faulty ? (faulty.fault ? faulty.detail : faulty.record?.error) : undefined;
  if (fault) exit = ExitCode.Environment;
  return { results, summary, exit, touchedKernels, fault };
}

/** The exit status of `rust prepare`: the first failed tree's own error class. */
export function rustPrepareExit(planned: Planned, results: Map<string, JobResult>): ExitCode {
  if (planned.plan.rustUnavailable.length) return planned.plan.rustUnavailable[0]!.exitCode as ExitCode;
  return planned.plan.jobs.some((j) => results.get(j.id)?.status === 'failed') ? ExitCode.Failed : ExitCode.Ok;
}

