// The pure module planner: from what was read (kernels, module specs, state) to which modules to build
// or install for which kernel, and why the others need nothing. compose.ts turns it into the job graph.
import type { KernelTarget } from '../kernel/inventory.js';
import { compareModuleVersions } from '../kernel/version.js';
import { exclusionReason } from '../modules/exclusive.js';
import type { ModuleSpec } from '../modules/spec.js';
import type { BuildRecord } from '../state/store.js';
import type { PlanItem } from './jobs.js';
import { moduleTarget } from './jobid.js';

/** One module source evaluated for one kernel. */
export interface ModuleCandidate {
  sourceDir: string;
  kernel: string;
  spec?: ModuleSpec;
  /** Why the source is invalid for this kernel (one line). */
  error?: string;
  inputsKey?: string;
  /**
   * The programs its build runs (compiler, linker, strip, make; rustc and bindgen for Rust), as found now:
   * not part of what makes a build current, but a failed build is retried when they change.
   */
  toolsKey?: string;
  /** The source has Rust files: it needs the kernel's Rust tree. */
  usesRust?: boolean;
  /** The kernel build dir its build uses (the headers, or for Rust modules the Rust tree). */
  kernelBuildDir?: string;
}

export interface RecordView extends BuildRecord {
  /** The installed files are all still on disk. */
  filesPresent: boolean;
}

export type Action = 'build' | 'install';

export interface ModuleJob {
  /** Its module target (moduleTarget): compose.ts makes the build and install job ids from it. */
  id: string;
  action: Action;
  module: string;
  version: string;
  kernel: string;
  spec: ModuleSpec;
  inputsKey: string;
  toolsKey?: string;
  /** Ids of jobs that must finish first (BUILD_DEPENDS on the same kernel). */
  after: string[];
  /** True when a built copy with the same inputs can be installed without building again. */
  reuseBuilt: boolean;
  /** Other versions of the module installed for this kernel, replaced by this job. */
  replaces: string[];
  reason: string;
  usesRust?: boolean;
  kernelBuildDir?: string;
  /** The package transaction the build runs in (PlanRequest.transaction), kept in its record. */
  transaction?: string;
}

export type { PlanItem };

export interface ModulePlan {
  jobs: ModuleJob[];
  skipped: PlanItem[];
  current: PlanItem[];
  /**
   * Builds that cannot run now (the kernel's compiler missing, no Rust tree), and builds that failed
   * before from the very same inputs and tools: not retried unless asked for by name or --force.
   */
  failed: PlanItem[];
  invalid: PlanItem[];
}

export interface PlanRequest {
  action: Action;
  /** Restrict to these modules (name, optionally version); all AUTOINSTALL=yes modules when absent. */
  modules?: { name: string; version?: string }[];
  force: boolean;
  /**
   * Modules ("name" or "name/version") whose failed build is retried though nothing changed: asked for
   * explicitly. Absent: the named modules (build/install NAME); autoinstall retries none.
   */
  retry?: ReadonlySet<string>;
  /**
   * The package transaction (apt or dpkg run, src/system/transaction.ts) this plan runs in; absent
   * outside dpkg. A failure recorded in the same transaction with the same inputs and tools is not
   * retried even when asked for: each request of one apt run would build it again.
   */
  transaction?: string;
  /**
   * Modules ("name/version") whose current build is built again: their package was configured again
   * (installed, reinstalled, reconfigured), as DKMS's common.postinst removes and rebuilds them. Not a
   * build that failed (the retry rules decide) nor one made in this same package transaction.
   */
  rebuild?: ReadonlySet<string>;
}

/**
 * Whether a failed build with the same inputs and tools is tried again: when asked for (by name, the
 * trigger's retry set, --force, a rebuilt BUILD_DEPENDS), except a request from the package
 * transaction the failure happened in. A later apt run, or an admin's command outside dpkg, retries.
 */
export function retriesSameFailure(asked: boolean, recordTransaction: string | undefined, transaction: string | undefined, forced: boolean): boolean {
  if (forced) return true;
  if (!asked) return false;
  return transaction === undefined || recordTransaction !== transaction;
}

export interface PlanInput {
  kernels: KernelTarget[];
  candidates: ModuleCandidate[];
  records: RecordView[];
  request: PlanRequest;
  /** CONFIG_RUST kernels whose Rust tree could not be prepared, with the reason. */
  rustUnavailable?: ReadonlyMap<string, string>;
}


function isCurrent(record: RecordView | undefined, inputsKey: string, action: Action): boolean {
  if (!record || record.inputsKey !== inputsKey) return false;
  if (action === 'install') return record.status === 'installed' && record.filesPresent;
  return record.status === 'built' || (record.status === 'installed' && record.filesPresent);
}

type ValidCandidate = ModuleCandidate & { spec: ModuleSpec; inputsKey: string };

/** What planning one kernel shares between its steps. */
interface KernelPlanning {
  input: PlanInput;
  kernel: KernelTarget;
  records: ReadonlyMap<string, RecordView>;
  explicit: boolean;
  out: ModulePlan;
  /** The jobs planned for this kernel so far, by module name. */
  planned: Map<string, ModuleJob>;
}

/**
 * The pure planner: for every kernel, which wanted sources to build or install (jobs), and why the
 * others need nothing (skipped, current, failed, invalid). Each step is a function below.
 */
export function planModules(input: PlanInput): ModulePlan {
  const out: ModulePlan = { jobs: [], skipped: [], current: [], failed: [], invalid: [] };
  const records = new Map(input.records.map((r) => [`${r.module}/${r.version}/${r.kernel}`, r]));
  const explicit = input.request.modules !== undefined;

  // Sources read without any kernel (none is installed): only their validity is known.
  for (const c of input.candidates.filter((c) => c.kernel === '' && c.error)) out.invalid.push({ module: c.sourceDir, reason: c.error! });
  for (const kernel of input.kernels) {
    const forKernel = input.candidates.filter((c) => c.kernel === kernel.release);
    for (const c of forKernel.filter((c) => !c.spec)) out.invalid.push({ module: c.sourceDir, kernel: kernel.release, reason: c.error ?? 'invalid' });
    const valid = forKernel.filter((c): c is ValidCandidate => Boolean(c.spec && c.inputsKey));
    const k: KernelPlanning = { input, kernel, records, explicit, out, planned: new Map() };
    for (const c of wantedVersions(valid, input.request, explicit)) consider(k, c, packageRebuild(k, c));
    rebuildDependants(k, valid);
    dropClashes(k);
    orderAndBlock(k);
  }
  return out;
}

/** Which versions are wanted: the named ones, or the newest version of every AUTOINSTALL=yes module. */
function wantedVersions(valid: ValidCandidate[], request: PlanRequest, explicit: boolean): ValidCandidate[] {
  const byName = new Map<string, ValidCandidate[]>();
  for (const c of valid) byName.set(c.spec.name, [...(byName.get(c.spec.name) ?? []), c]);
  const wanted: ValidCandidate[] = [];
  for (const [name, versions] of byName) {
    versions.sort((a, b) => compareModuleVersions(b.spec.version, a.spec.version));
    if (explicit) {
      const req = request.modules!.find((m) => m.name === name);
      if (!req) continue;
      const pick = req.version ? versions.find((v) => v.spec.version === req.version) : versions[0];
      if (pick) wanted.push(pick);
    } else if (versions[0]!.spec.autoinstall) {
      wanted.push(versions[0]!);
    }
  }
  return wanted;
}

/** The reason to rebuild a current build its package's postinst asked for again (PlanRequest.rebuild), if it is one. */
function packageRebuild(k: KernelPlanning, c: ValidCandidate): string | undefined {
  const { request } = k.input;
  if (!request.rebuild?.has(`${c.spec.name}/${c.spec.version}`)) return undefined;
  const record = k.records.get(`${c.spec.name}/${c.spec.version}/${k.kernel.release}`);
  if (!record || record.status === 'failed') return undefined;
  // A kernel that cannot build now (its compiler is missing) keeps the build it has.
  if (k.kernel.problems.length || (c.usesRust && rustBlocker(k.kernel, k.input.rustUnavailable))) return undefined;
  if (request.transaction !== undefined && record.transaction === request.transaction) return undefined;
  return 'its package was configured again (installed, reinstalled or reconfigured): rebuilt, as DKMS does';
}

/**
 * Plans one wanted source for this kernel, or says why it needs nothing (skipped, current, failed).
 * `rebuild`: the reason it must be rebuilt and installed whatever its record says
 * (BUILD_DEPENDS_REBUILD: a module it depends on is rebuilt).
 */
function consider(k: KernelPlanning, c: ValidCandidate, rebuild?: string): void {
  const { kernel, out, input } = k;
  const { request } = input;
  const { spec } = c;
  const item = { module: spec.name, version: spec.version, kernel: kernel.release };
  if (!kernel.headersDir) {
    out.skipped.push({ ...item, reason: `no headers for ${kernel.release}: install linux-headers-${kernel.release}` });
    return;
  }
  const kernelSpec = specForKernel(spec, kernel);
  if (typeof kernelSpec === 'string') {
    out.skipped.push({ ...item, reason: kernelSpec });
    return;
  }
  const record = k.records.get(`${spec.name}/${spec.version}/${kernel.release}`);
  if (!rebuild && !request.force && isCurrent(record, c.inputsKey, request.action)) {
    out.current.push({ ...item, reason: record!.status === 'installed' ? 'installed and current' : 'built and current' });
    return;
  }
  const action: Action = rebuild ? 'install' : request.action;
  const reuseBuilt = !rebuild && !request.force && action === 'install' && record?.status === 'built' && record.inputsKey === c.inputsKey;
  // Only a module that must be (re)built needs the kernel's compiler and a usable Rust tree; a current one stays as it is.
  const cannot = reuseBuilt ? undefined : kernel.problems[0] ?? (c.usesRust ? rustBlocker(kernel, input.rustUnavailable) : undefined);
  if (cannot) {
    out.failed.push({ ...item, reason: cannot, cannotBuild: true });
    return;
  }
  // A failure is retried when its inputs or tools changed, or when the module is asked for by name.
  const asked = request.retry ? request.retry.has(spec.name) || request.retry.has(`${spec.name}/${spec.version}`) : k.explicit;
  const sameFailure = record?.status === 'failed' && record.inputsKey === c.inputsKey && record.toolsKey === c.toolsKey;
  if (sameFailure && !retriesSameFailure(asked, record.transaction, request.transaction, Boolean(rebuild) || request.force)) {
    out.failed.push({
      ...item,
      reason: asked
        ? `failed earlier in this package run with the same inputs and tools (${record.error ?? 'see its log'}); not built twice in one run: retried when they change, by the next apt run that asks for it, or by ootmod install ${spec.name}`
        : `failed before with the same inputs and tools (${record.error ?? 'see its log'}); retried when they change, or by ootmod install ${spec.name}`,
    });
    return;
  }
  const replaces = input.records
    .filter((r) => r.module === spec.name && r.kernel === kernel.release && r.version !== spec.version && r.status === 'installed')
    .map((r) => r.version);
  k.planned.set(spec.name, {
    id: moduleTarget({ module: spec.name, version: spec.version, kernel: kernel.release }),
    action,
    ...item,
    spec: kernelSpec,
    inputsKey: c.inputsKey,
    toolsKey: c.toolsKey,
    after: [],
    reuseBuilt,
    replaces,
    usesRust: c.usesRust,
    kernelBuildDir: c.kernelBuildDir,
    transaction: request.transaction,
    reason: rebuild ?? (!record ? 'not built yet' : record.status === 'failed' && !record.inputsKey ? 'failed before because of the machine, not the module'
      : record.inputsKey !== c.inputsKey ? 'inputs changed' : request.force ? 'forced'
      : record.status === 'failed' ? (sameFailure ? 'failed before, asked for again' : 'failed before; its compiler or build tools changed') : 'files missing'),
  });
}

/**
 * The spec as built for this kernel: BUILD_EXCLUSIVE_* of the source and of each module
 * (BUILD_EXCLUSIVE_*[#]: a module excluded for this kernel is neither built nor installed), or why
 * nothing of it is built here.
 */
function specForKernel(spec: ModuleSpec, kernel: KernelTarget): ModuleSpec | string {
  const subject = { release: kernel.release, machine: kernel.arch.machine, config: kernel.config };
  const excluded = exclusionReason(spec.exclusive, subject);
  if (excluded) return excluded;
  const modules = spec.modules.filter((m) => !m.exclusive || !exclusionReason(m.exclusive, subject));
  if (!modules.length) return `${spec.modules.map((m) => `${m.builtName}: ${exclusionReason(m.exclusive!, subject)}`).join('; ')}`;
  return modules.length === spec.modules.length ? spec : { ...spec, modules };
}

/**
 * BUILD_DEPENDS_REBUILD=yes (DKMS 3.2): a module installed for this kernel is rebuilt and installed
 * again when a module it BUILD_DEPENDS on is rebuilt, transitively (a filesystem on top of ZFS).
 */
function rebuildDependants(k: KernelPlanning, valid: ValidCandidate[]): void {
  const release = k.kernel.release;
  const rebuilt = (name: string) => k.planned.has(name) && !k.planned.get(name)!.reuseBuilt;
  for (let grew = true; grew; ) {
    grew = false;
    for (const r of k.input.records) {
      if (r.kernel !== release || r.status !== 'installed' || k.planned.has(r.module)) continue;
      const c = valid.find((v) => v.spec.name === r.module && v.spec.version === r.version);
      const dep = c?.spec.buildDependsRebuild ? c.spec.buildDepends.find(rebuilt) : undefined;
      if (!c || !dep) continue;
      k.out.current = k.out.current.filter((i) => !(i.module === r.module && i.kernel === release));
      consider(k, c, `BUILD_DEPENDS_REBUILD: ${dep} is rebuilt`);
      grew ||= k.planned.has(r.module);
    }
  }
}

/**
 * Two sources that would install the same module file for this kernel: found now, not after a build.
 * A module installed by a source that is not planned keeps its file; otherwise the first by name does.
 */
function dropClashes(k: KernelPlanning): void {
  const release = k.kernel.release;
  const owners = new Map<string, string>();
  for (const r of k.input.records) {
    if (r.kernel !== release || r.status !== 'installed' || k.planned.has(r.module)) continue;
    for (const f of r.installed) owners.set(normalizedModule(f.module), `${r.module}/${r.version}`);
  }
  for (const job of k.input.request.action === 'install' ? [...k.planned.values()].sort((a, b) => a.module.localeCompare(b.module)) : []) {
    const clash = job.spec.modules.find((m) => owners.has(normalizedModule(m.destName)));
    if (clash) {
      const other = owners.get(normalizedModule(clash.destName))!;
      k.out.failed.push({
        module: job.module, version: job.version, kernel: release,
        reason: `${clash.destName}.ko would be installed by both ${other} and ${job.module}/${job.version}: remove one of the two sources, or rename the module in one dkms.conf`,
      });
      k.planned.delete(job.module);
      continue;
    }
    for (const m of job.spec.modules) owners.set(normalizedModule(m.destName), `${job.module}/${job.version}`);
  }
}

/**
 * BUILD_DEPENDS: orders the kernel's jobs; a dependency neither planned nor installed stops the
 * dependant, and so does a cycle; a job whose dependency is stopped is stopped too. The rest are jobs.
 */
function orderAndBlock(k: KernelPlanning): void {
  const release = k.kernel.release;
  const installedHere = new Set(k.input.records.filter((r) => r.kernel === release && r.status === 'installed' && r.filesPresent).map((r) => r.module));
  const blocked = new Map<string, string>();
  for (const job of k.planned.values()) {
    for (const dep of job.spec.buildDepends) {
      const depJob = k.planned.get(dep);
      if (depJob) job.after.push(depJob.id);
      else if (!installedHere.has(dep)) blocked.set(job.module, `BUILD_DEPENDS: ${dep} is not installed for ${release} and not being built`);
    }
  }
  for (const cycle of findCycles([...k.planned.values()])) {
    for (const name of cycle) blocked.set(name, `BUILD_DEPENDS cycle: ${cycle.join(' -> ')}`);
  }
  for (let changed = true; changed; ) {
    changed = false;
    for (const job of k.planned.values()) {
      if (blocked.has(job.module)) continue;
      const dep = job.spec.buildDepends.find((d) => blocked.has(d));
      if (dep) {
        blocked.set(job.module, `BUILD_DEPENDS: ${dep} cannot be built`);
        changed = true;
      }
    }
  }
  for (const job of k.planned.values()) {
    if (blocked.has(job.module)) k.out.skipped.push({ module: job.module, version: job.version, kernel: release, reason: blocked.get(job.module)! });
    else k.out.jobs.push(job);
  }
}

/** modprobe treats - and _ in module names alike. */
function normalizedModule(name: string): string {
  return name.replace(/\.ko(\.\w+)?$/, '').replaceAll('-', '_');
}

function rustBlocker(kernel: KernelTarget, unavailable: ReadonlyMap<string, string> | undefined): string | undefined {
  if (!kernel.rust.enabled) return `it has Rust code and ${kernel.release} is not built with CONFIG_RUST`;
  const why = unavailable?.get(kernel.release);
  return why ? `it has Rust code and the Rust tree of ${kernel.release} is unavailable: ${why}` : undefined;
}

function findCycles(jobs: ModuleJob[]): string[][] {
  const byName = new Map(jobs.map((j) => [j.module, j]));
  const cycles: string[][] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  function visit(name: string): void {
    if (state.get(name) === 'done') return;
    if (state.get(name) === 'visiting') {
      cycles.push([...stack.slice(stack.indexOf(name)), name]);
      return;
    }
    state.set(name, 'visiting');
    stack.push(name);
    for (const dep of byName.get(name)?.spec.buildDepends ?? []) if (byName.has(dep)) visit(dep);
    stack.pop();
    state.set(name, 'done');
  }
  for (const name of byName.keys()) visit(name);
  return cycles;
}
