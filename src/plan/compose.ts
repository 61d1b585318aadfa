// Composes the job graph from what was read and the module planner's decisions. Pure.
import type { DkmsInstall } from '../dkms/handover.js';
import type { ModuleSpec } from '../modules/spec.js';
import type { RustTreeFact } from '../rust/prepare.js';
import type { BuildRecord } from '../state/store.js';
import { emptyPlan, type AddJob, type BuildJob, type DeferJob, type DkmsRegisterJob, type DkmsUnregisterJob, type InstallJob, type Job, type PostTransactionJob, type RustStrayJob, type WorkPlan } from './jobs.js';
import type { KeyChoice } from '../dkms/mok.js';
import type { ModuleJob, ModulePlan } from './planner.js';
import type { GuardMode } from '../system/config.js';
import type { InitramfsTool } from '../kernel/initramfs.js';
import type { Bootloader } from '../kernel/boot.js';
import { jobId, type JobId } from './jobid.js';

export interface RemovalRequest {
  record: BuildRecord;
  /** Also forget the builds and the record (remove), not only the installed files (uninstall). */
  forget: boolean;
  spec?: ModuleSpec;
  reason: string;
  /** Its build dir in DKMS's tree (ootmod-dkms wrote it), removed with the build. */
  dkmsTree?: string;
}

export interface ComposeInput {
  /** Module builds and installs, as the module planner decided them. */
  modules?: ModulePlan;
  /** The Rust trees as read; `rustWanted` says which of those that must be built become jobs. */
  rust?: RustTreeFact[];
  /** all: every CONFIG_RUST kernel's tree (autoinstall, trigger, rust prepare); needed: only for planned Rust modules. */
  rustWanted?: 'all' | 'needed';
  /** Kernel build dirs, for C module builds (the headers). */
  headersDir?: ReadonlyMap<string, string>;
  removals?: RemovalRequest[];
  /** Kernels being removed: forget everything ootmod keeps for them (no depmod: their dir goes). */
  forgetKernels?: string[];
  rustClean?: { kernel: string; reason: string }[];
  /** Kernels whose module dir exists: depmod runs for those that jobs touch. */
  depmodKernels: ReadonlySet<string>;
  /** Ask for a new initramfs for touched kernels that have one; inside dpkg the newest goes through the trigger. */
  initramfs?: { kernels: ReadonlySet<string>; newest?: string; inDpkg: boolean; tool?: InitramfsTool };
  defer?: Omit<DeferJob, 'kind' | 'needs' | 'after' | 'id'>[];
  /** Sources to place under /usr/src first; builds of those modules need the placement. */
  adds?: Omit<AddJob, 'kind' | 'needs' | 'after' | 'id'>[];
  /**
   * Take-over from DKMS (ootmod-dkms replaced it): what DKMS installed, and the modules ootmod has
   * installed (`<module>@<kernel>`). DKMS's copy of a module goes once ootmod's is in place: now, or
   * after this plan's install of it.
   */
  dkmsTakeover?: { installs: DkmsInstall[]; installedByOotmod: ReadonlySet<string> };
  /**
   * The build user does not exist yet (root, confined builds): create it before the builds that run as
   * it, those `confines` says yes to (by module name; "rust-tree" for the Rust trees).
   */
  buildUser?: { name: string; confines: (name: string) => boolean };
  /** With ootmod-dkms: a DKMS-registered source's build dir in DKMS's tree, which its build and install write. */
  dkmsTree?: (module: string, version: string, kernel: string) => string | undefined;
  /** Current modules whose build dir in DKMS's tree is missing: a dkms-tree job writes it. */
  dkmsTreeMissing?: (module: string, version: string, kernel: string) => boolean;
  /** The notices of the next boot's readiness (these files), updated after every other job: when there are other jobs, or `always`. */
  bootNotice?: { files: string[]; always: boolean };
  /** DKMS's registry: `dkms add` registers a source, `dkms remove --all` forgets it. */
  dkmsRegister?: Omit<DkmsRegisterJob, 'kind' | 'needs' | 'after' | 'id'>[];
  dkmsUnregister?: Omit<DkmsUnregisterJob, 'kind' | 'needs' | 'after' | 'id'>[];
  /** `dkms generate_mok`: the key pair to create. */
  signingKey?: { choice: KeyChoice; reason: string };
  /** The trigger: the queue entries it takes, and the removed marks of sources now gone. */
  dequeue?: { files: string[]; reason: string };
  removedMarks?: { files: string[]; reason: string };
  /** ootmod-dkms: framework.conf's post_transaction, once the rest of the run changed modules. */
  postTransaction?: Omit<PostTransactionJob, 'kind' | 'needs' | 'after' | 'id'>;
  /** `rust prepare`: what interrupted builds left beside current trees. */
  rustStray?: Omit<RustStrayJob, 'kind' | 'needs' | 'after' | 'id'>[];
  /** Hand-back: DKMS's own autoinstall for these kernels, after every other job but the boot ones. */
  dkmsAutoinstall?: { kernels: string[]; reason: string };
  /** The boot guard, before the notices (which then tell what it did); with the notice job only. */
  bootGuard?: { mode: GuardMode; loader: Bootloader; release?: boolean; preview?: string };
}

const id = {
  build: (j: ModuleJob) => jobId({ kind: 'build', module: j.module, version: j.version, kernel: j.kernel }),
  install: (j: ModuleJob) => jobId({ kind: 'install', module: j.module, version: j.version, kernel: j.kernel }),
  rust: (kernel: string) => jobId({ kind: 'rust-tree', kernel }),
};

/** The plan being composed, with what its steps tell each other. */
interface Draft {
  input: ComposeInput;
  plan: WorkPlan;
  jobs: Job[];
  /** Jobs that change a kernel's module dir: depmod comes after them. */
  changing: Map<string, JobId[]>;
  /** A kernel's removals: its installs come after them. */
  removalsOn: Map<string, JobId[]>;
  /** The add job of a source (`module/version`): its builds need it. */
  addOf: Map<string, JobId>;
  /** Kernels whose Rust tree this plan builds. */
  rustJobs: Set<string>;
}

const append = <K, V>(map: Map<K, V[]>, key: K, value: V) => map.set(key, [...(map.get(key) ?? []), value]);

export function composePlan(input: ComposeInput): WorkPlan {
  const plan = emptyPlan();
  const d: Draft = { input, plan, jobs: plan.jobs, changing: new Map(), removalsOn: new Map(), addOf: new Map(), rustJobs: new Set() };
  addsAndDefers(d);
  registryAndQueue(d);
  removals(d);
  rustTrees(d);
  moduleJobs(d);
  dkmsTrees(d);
  dkmsTakeover(d);
  buildUser(d);
  depmodAndInitramfs(d);
  if (input.dkmsAutoinstall?.kernels.length) {
    d.jobs.push({ kind: 'dkms-autoinstall', id: 'dkms-autoinstall', kernels: input.dkmsAutoinstall.kernels, reason: input.dkmsAutoinstall.reason, needs: [], after: d.jobs.map((j) => j.id) });
  }
  bootJobs(d);
  // Last: after every other job of the plan.
  if (input.postTransaction) d.jobs.push({ ...input.postTransaction, kind: 'post-transaction', id: 'post-transaction', needs: [], after: d.jobs.map((j) => j.id) });
  return plan;
}

function addsAndDefers({ input, jobs, addOf }: Draft): void {
  for (const a of input.adds ?? []) {
    const addId = jobId({ kind: 'add', module: a.module, version: a.version });
    jobs.push({ ...a, kind: 'add', id: addId, needs: [], after: [] });
    addOf.set(`${a.module}/${a.version}`, addId);
  }
  for (const d of input.defer ?? []) jobs.push({ ...d, kind: 'defer', id: jobId({ kind: 'defer', entry: d.entry }), needs: [], after: [] });
}

/** What changes no module: DKMS's registry, the signing key pair, the trigger's queue and marks, stray Rust builds. */
function registryAndQueue({ input, jobs, addOf }: Draft): void {
  for (const r of input.dkmsRegister ?? []) {
    // After the add job of the same source, when the plan places it.
    const added = addOf.get(`${r.module}/${r.version}`);
    jobs.push({ ...r, kind: 'dkms-register', id: jobId({ kind: 'dkms-register', module: r.module, version: r.version }), needs: added ? [added] : [], after: [] });
  }
  for (const r of input.dkmsUnregister ?? []) jobs.push({ ...r, kind: 'dkms-unregister', id: jobId({ kind: 'dkms-unregister', module: r.module, version: r.version }), needs: [], after: [] });
  if (input.signingKey) jobs.push({ ...input.signingKey, kind: 'signing-key', id: 'signing-key', needs: [], after: [] });
  if (input.dequeue?.files.length) jobs.push({ ...input.dequeue, kind: 'dequeue', id: 'dequeue', needs: [], after: [] });
  if (input.removedMarks?.files.length) jobs.push({ ...input.removedMarks, kind: 'removed-marks', id: 'removed-marks', needs: [], after: [] });
  for (const r of input.rustStray ?? []) jobs.push({ ...r, kind: 'rust-stray', id: jobId({ kind: 'rust-stray', kernel: r.kernel }), needs: [], after: [] });
}

function removals({ input, jobs, changing, removalsOn }: Draft): void {
  for (const r of input.removals ?? []) {
    const { module, version, kernel } = r.record;
    const uninstallId = jobId({ kind: 'uninstall', module, version, kernel });
    const forgetId = jobId({ kind: 'forget', module, version, kernel });
    jobs.push({ kind: 'uninstall', id: uninstallId, module, version, kernel, spec: r.spec, reason: r.reason, needs: [], after: [] });
    append(changing, kernel, uninstallId);
    append(removalsOn, kernel, uninstallId);
    if (r.forget) {
      jobs.push({ kind: 'forget', id: forgetId, kernel, module, version, dkmsTree: r.dkmsTree, reason: r.reason, needs: [uninstallId], after: [] });
      append(removalsOn, kernel, forgetId);
    }
  }
  for (const kernel of input.forgetKernels ?? []) {
    // What the kernel's records installed goes with the records (removals above); then its build dirs.
    const own = (input.removals ?? []).filter((r) => r.record.kernel === kernel).map((r) => jobId({ kind: 'forget', module: r.record.module, version: r.record.version, kernel }));
    jobs.push({ kind: 'forget', id: jobId({ kind: 'forget', kernel }), kernel, reason: 'its kernel is removed', needs: [], after: own });
  }
  for (const c of input.rustClean ?? []) jobs.push({ kind: 'rust-clean', id: jobId({ kind: 'rust-clean', kernel: c.kernel }), kernel: c.kernel, reason: c.reason, needs: [], after: [] });
}

function rustTrees({ input, plan, jobs, rustJobs }: Draft): void {
  const rustNeeded = new Set(input.modules?.jobs.filter((j) => !j.reuseBuilt && j.usesRust).map((j) => j.kernel) ?? []);
  for (const fact of input.rust ?? []) {
    if (fact.state === 'current') plan.rustCurrent.push({ kernel: fact.kernel, dir: fact.tree.dir });
    else if (fact.state === 'unavailable') {
      // Building named modules ('needed'): a Rust module of that kernel already fails with this reason; a C module needs no tree.
      if (input.rustWanted !== 'needed') plan.rustUnavailable.push({ kernel: fact.kernel, reason: fact.error, exitCode: fact.exitCode });
    }
    else if (input.rustWanted === 'all' || rustNeeded.has(fact.kernel)) {
      const a = fact.assessment;
      jobs.push({
        kind: 'rust-tree', id: id.rust(fact.kernel), kernel: fact.kernel, key: a.key, parts: a.parts,
        toolchain: fact.toolchain, source: fact.source, reason: a.buildReason ?? 'forced', needs: [], after: [],
      });
      rustJobs.add(fact.kernel);
    }
  }
}

/** Module builds and installs, as the module planner decided them. */
function moduleJobs({ input, plan, jobs, changing, removalsOn, addOf, rustJobs }: Draft): void {
  const modulePlan = input.modules;
  if (!modulePlan) return;
  plan.current.push(...modulePlan.current);
  plan.skipped.push(...modulePlan.skipped);
  plan.failed.push(...modulePlan.failed);
  for (const f of modulePlan.failed) {
    if (!f.cannotBuild || !f.version || !f.kernel) continue;
    const t = { module: f.module, version: f.version, kernel: f.kernel };
    jobs.push({ ...t, kind: 'record-failure', id: jobId({ kind: 'record-failure', ...t }), error: f.reason, reason: 'it cannot be built on this machine now', needs: [], after: [] });
  }
  plan.invalid.push(...modulePlan.invalid);
  const byId = new Map(modulePlan.jobs.map((j) => [j.id, j]));
  for (const j of modulePlan.jobs) {
    const deps = j.after.map((d) => byId.get(d)).filter((d): d is ModuleJob => Boolean(d));
    const dkmsTree = input.dkmsTree?.(j.module, j.version, j.kernel);
    const base = { module: j.module, version: j.version, kernel: j.kernel, spec: j.spec, inputsKey: j.inputsKey, reason: j.reason, ...(dkmsTree ? { dkmsTree } : {}) };
    const added = addOf.get(`${j.module}/${j.version}`);
    let buildId: JobId | undefined;
    if (!j.reuseBuilt) {
      buildId = id.build(j);
      const rustTreeJob = j.usesRust && rustJobs.has(j.kernel) ? id.rust(j.kernel) : undefined;
      const build: BuildJob = {
        ...base, kind: 'build', id: buildId, toolsKey: j.toolsKey, ...(j.transaction ? { transaction: j.transaction } : {}),
        kernelBuildDir: j.kernelBuildDir ?? input.headersDir?.get(j.kernel) ?? '',
        rustTreeJob,
        // BUILD_DEPENDS: the dependency is installed first (its Module.symvers is part of this build).
        needs: [...(added ? [added] : []), ...(rustTreeJob ? [rustTreeJob] : []), ...deps.map((d) => (d.action === 'install' ? id.install(d) : id.build(d)))],
        after: [],
      };
      jobs.push(build);
    }
    if (j.action === 'install') {
      const install: InstallJob = {
        ...base, kind: 'install', id: id.install(j), replaces: j.replaces,
        reason: j.reuseBuilt ? 'built and current, not installed' : j.reason,
        needs: [...(buildId ? [buildId] : []), ...(j.reuseBuilt ? deps.map((d) => id.install(d)) : [])],
        // Removals on the same kernel first: they may take back files this one replaces.
        after: removalsOn.get(j.kernel) ?? [],
      };
      jobs.push(install);
      append(changing, j.kernel, install.id);
    }
  }
}

/** DKMS's tree of current modules that lack it. */
function dkmsTrees({ input, jobs }: Draft): void {
  for (const c of input.modules?.current ?? []) {
    const dkmsTree = c.version && c.kernel ? input.dkmsTree?.(c.module, c.version, c.kernel) : undefined;
    if (!dkmsTree || !input.dkmsTreeMissing?.(c.module, c.version!, c.kernel!)) continue;
    jobs.push({
      kind: 'dkms-tree', id: jobId({ kind: 'dkms-tree', module: c.module, version: c.version!, kernel: c.kernel! }), module: c.module, version: c.version!, kernel: c.kernel!, dkmsTree,
      reason: 'registered with DKMS and current, but missing from its tree', needs: [], after: [],
    });
  }
}

/** Take-over from DKMS: before the kernel's one depmod, after ootmod's install of the module. */
function dkmsTakeover({ input, jobs, changing }: Draft): void {
  for (const d of input.dkmsTakeover?.installs ?? []) {
    const install = jobs.find((j) => j.kind === 'install' && j.module === d.module && j.kernel === d.kernel);
    if (!install && !input.dkmsTakeover!.installedByOotmod.has(`${d.module}@${d.kernel}`)) continue;
    const takeoverId = jobId({ kind: 'dkms-takeover', module: d.module, version: d.version, kernel: d.kernel });
    jobs.push({
      kind: 'dkms-takeover', id: takeoverId, module: d.module, version: d.version, kernel: d.kernel, link: d.link, copies: d.copies,
      reason: `DKMS installed it and ootmod-dkms replaced DKMS: ootmod ${install ? 'installs' : 'has installed'} it`,
      needs: [], after: install ? [install.id] : [],
    });
    append(changing, d.kernel, takeoverId);
  }
}

/** The build user, before the first build that runs as it. */
function buildUser({ input, jobs }: Draft): void {
  if (!input.buildUser) return;
  const { name, confines } = input.buildUser;
  const users = jobs.filter((j) => (j.kind === 'build' && confines(j.module)) || (j.kind === 'rust-tree' && confines('rust-tree')));
  if (!users.length) return;
  jobs.unshift({ kind: 'build-user', id: 'build-user', user: name, reason: 'module builds run as this unprivileged user, and it does not exist yet', needs: [], after: [] });
  for (const j of users) j.needs.unshift('build-user');
}

/** depmod once per touched kernel, after all of its jobs; then its initramfs. */
function depmodAndInitramfs({ input, jobs, changing }: Draft): void {
  for (const [kernel, after] of changing) {
    if (!input.depmodKernels.has(kernel)) continue;
    const depmodId = jobId({ kind: 'depmod', kernel });
    jobs.push({ kind: 'depmod', id: depmodId, kernel, reason: 'modules changed', needs: [], after });
    if (input.initramfs?.kernels.has(kernel)) {
      const viaTrigger = input.initramfs.inDpkg && kernel === input.initramfs.newest;
      jobs.push({ kind: 'initramfs', id: jobId({ kind: 'initramfs', kernel }), kernel, viaTrigger, tool: input.initramfs.tool ?? 'update-initramfs', reason: 'modules changed', needs: [], after: [depmodId] });
    }
  }
}

/** The boot guard and the readiness notices, after every other job. */
function bootJobs({ input, jobs }: Draft): void {
  if (!input.bootNotice || !(jobs.length || input.bootNotice.always)) return;
  const initramfsJobs = jobs.flatMap((j) => (j.kind === 'initramfs' ? [{ job: j.id, kernel: j.kernel, viaTrigger: j.viaTrigger }] : []));
  if (input.bootGuard) {
    const { mode, loader, release = false, preview } = input.bootGuard;
    const setting = loader === 'systemd-boot' ? "systemd-boot's setting" : loader === 'grub' ? "GRUB's setting" : "the bootloader's setting";
    jobs.push({
      kind: 'boot-guard', id: 'boot-guard', mode, loader, release, preview, initramfsJobs, needs: [], after: jobs.map((j) => j.id),
      reason: release ? 'ootmod boot release' : `guard = ${mode}: ${mode === 'yes' ? 'any needed module' : mode === 'auto' ? 'a critical module' : 'nothing'} missing on the kernel ${setting} boots holds it back`,
    });
  }
  jobs.push({
    kind: 'boot-notice', id: 'boot-notice', files: input.bootNotice.files, initramfsJobs, needs: [], after: jobs.map((j) => j.id),
    reason: 'written when the kernel that boots next lacks a needed module, removed when it is ready',
  });
}
