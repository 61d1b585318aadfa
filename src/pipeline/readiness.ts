// Reading what kernel-upgrade readiness needs (src/plan/readiness.ts computes it): the state, the
// installed kernels, the [boot] settings, the running kernel, what early boot needs (initramfs contents,
// the root filesystem), what the sources say about modules missing on a kernel, and which kernel boots
// next. Reading only: nothing changes.
import os from 'node:os';
import { errorLine } from '../errors.js';
import { readNextBoot, rootFsType } from '../kernel/boot.js';
import { cachedInitramfsModules, initramfsGenerator, initramfsModules } from '../kernel/initramfs.js';
import { listKernels, type KernelTarget } from '../kernel/inventory.js';
import { compareModuleVersions } from '../kernel/version.js';
import { exclusionReason } from '../modules/exclusive.js';
import { listSourceDirs, loadSpec } from '../modules/sourcedirs.js';
import {
  computeReadiness, earlyBootKernels, neededModules, pairKey, sourceQuestions,
  type ReadinessInput, type ReadinessView, type SourceVerdict,
} from '../plan/readiness.js';
import { StateStore, installedFilesPresent } from '../state/store.js';
import { adminSettings, guardInput, readGuardState } from '../execute/bootguard.js';
import { decideGuard, guardLine, type GuardDecision } from '../plan/bootguard.js';
import type { PipelineContext } from './work.js';

export type { ReadinessView };

export interface ReadinessOptions {
  /**
   * Read what early boot needs: the initramfs contents (lsinitramfs/lsinitrd) and the root
   * filesystem (findmnt). Without it (ootmod status: no subprocess) no module counts as critical.
   * `if-missing` (the trigger's jobs): only when the kernel that boots next misses a module (the cached
   * listings counted), the boot guard holds one back, or this run rebuilt an initramfs (so a run where all is ready and no
   * initramfs changed lists none). `cached` (ootmod status): only the initramfs listings cached for
   * files that have not changed since (no subprocess), no root filesystem.
   */
  early: boolean | 'if-missing' | 'cached';
  /** Kernels whose initramfs is being rebuilt after this run (initramfs-tools' trigger): not read. */
  initramfsPending?: readonly string[];
  /** Kernels whose initramfs this run rebuilt: with `if-missing`, early boot is checked for them too. */
  initramfsRebuilt?: readonly string[];
  /** Read the sources only for the missing modules of the kernel that boots next (the others are reported "not built"). */
  nextOnly?: boolean;
}

type Ctx = Pick<PipelineContext, 'layout' | 'config' | 'isRoot' | 'run'> & { opts: { jobs: number; dryRun?: boolean } };

/** What the newest source of `module` says about `kernel`. */
async function sourceVerdict(ctx: Ctx, module: string, kernel: KernelTarget, sources: Awaited<ReturnType<typeof listSourceDirs>>): Promise<SourceVerdict> {
  const candidates = sources.filter((s) => s.guessedName === module).sort((a, b) => compareModuleVersions(b.guessedVersion, a.guessedVersion));
  const src = candidates[0];
  if (!src) return { noSource: true };
  try {
    const spec = await loadSpec(src, { layout: ctx.layout, conf: ctx.run.dkmsConf, kernel, jobs: ctx.opts.jobs, checkOwnership: ctx.isRoot });
    const subject = { release: kernel.release, machine: kernel.arch.machine, config: kernel.config };
    const excluded = exclusionReason(spec.exclusive, subject);
    if (excluded) return { excluded };
    const perModule = spec.modules.map((m) => (m.exclusive ? exclusionReason(m.exclusive, subject) : undefined));
    if (perModule.every(Boolean)) return { excluded: perModule.join('; ') };
    return { notAutoinstall: !spec.autoinstall };
  } catch (err) {
    return { invalid: errorLine(err) };
  }
}

export async function readReadiness(ctx: Ctx, opts: ReadinessOptions): Promise<ReadinessView> {
  if (opts.early === 'if-missing') {
    // The quick look takes the cached listings of unchanged initramfs files: a module known to be missing from one counts.
    const quick = await readReadiness(ctx, { ...opts, early: 'cached' });
    const check = (quick.next && !quick.next.ready) || quick.guard || Boolean(opts.initramfsRebuilt?.length);
    return check ? readReadiness(ctx, { ...opts, early: true }) : quick;
  }
  const { layout } = ctx;
  const kernels = await listKernels(layout);
  // A user other than root reads the world-readable status.json (what status shows), as status does.
  const store = StateStore.loadForStatus(layout.stateFile);
  const boot = ctx.config().boot;
  const input: ReadinessInput = {
    kernels: kernels.map((k) => ({ release: k.release, headers: Boolean(k.headersDir), problem: k.problems[0] })),
    // Under --root the running kernel belongs to another system.
    running: layout.root === '/' ? os.release() : undefined,
    records: store.records().map((r) => ({
      module: r.module, version: r.version, kernel: r.kernel, status: r.status, error: r.error,
      installedModules: r.installed.map((f) => f.module),
      filesPresent: installedFilesPresent(r),
    })),
    declared: { needed: boot.needed, optional: boot.optional },
  };
  const notes: string[] = [];
  if (opts.early) {
    // Listings are cached by the initramfs file's size, mtime and inode (a dry run and other users keep nothing).
    const save = ctx.isRoot && !ctx.opts.dryRun;
    const cachedOnly = opts.early === 'cached';
    if (!cachedOnly) input.rootFsType = await rootFsType(layout);
    input.initramfsGenerator = initramfsGenerator(layout);
    const initramfs = new Map<string, ReadonlySet<string>>();
    input.initramfs = initramfs;
    const first = neededModules(input);
    const pending = (k: string) => opts.initramfsPending?.includes(k);
    const tried = new Set<string>();
    const read = async (k: string) => {
      tried.add(k);
      if (pending(k)) {
        notes.push(`the initramfs of ${k} is rebuilt by initramfs-tools' trigger after this run: checked then (its post-update hook runs ootmod hook initramfs)`);
        return;
      }
      if (cachedOnly) {
        const cached = cachedInitramfsModules(layout, k);
        if (cached?.modules) initramfs.set(k, cached.modules);
        return;
      }
      const listing = await initramfsModules(layout, k, { save });
      if (listing.modules) initramfs.set(k, listing.modules);
      else if (listing.file) notes.push(`the initramfs of ${k} was not read: ${listing.why}`);
    };
    // Which needed modules early boot needs (the running kernel's initramfs; in a chroot, the kernels').
    if (first.needed.length) for (const k of earlyBootKernels(input, first)) await read(k);
    // A critical module installed for another kernel must be in that kernel's initramfs too.
    const critical = neededModules(input).needed.filter((n) => n.critical);
    const others = kernels.filter((k) => !tried.has(k.release) && input.records.some((r) => r.kernel === k.release && critical.some((c) => c.module === r.module)));
    for (const k of others) await read(k.release);
  }
  // The boot menu lists kernels with an image; a root with none (headers only) is judged by its kernels.
  const bootable = kernels.filter((k) => k.image).map((k) => k.release);
  const guard = readGuardState(layout);
  const nextBoot = readNextBoot(layout, bootable.length ? bootable : kernels.map((k) => k.release), adminSettings(guard));
  const questions = sourceQuestions(input).filter((q) => !opts.nextOnly || q.kernel === nextBoot.kernel);
  if (questions.length) {
    const sources = await listSourceDirs(layout);
    const byRelease = new Map(kernels.map((k) => [k.release, k]));
    const verdicts = new Map<string, SourceVerdict>();
    for (const q of questions) verdicts.set(pairKey(q.module, q.kernel), await sourceVerdict(ctx, q.module, byRelease.get(q.kernel)!, sources));
    input.sources = verdicts;
  }
  const report = computeReadiness(input);
  return { report, nextBoot, guard, next: report.kernels.find((k) => k.release === nextBoot.kernel), notes, images: bootable };
}

/** What the boot guard would do as the system is now (`release`: undo what it holds). */
export async function guardDecisionNow(ctx: Ctx, release = false): Promise<{ decision: GuardDecision; view: ReadinessView }> {
  const view = await readReadiness(ctx, { early: true });
  const state = readGuardState(ctx.layout);
  if (release) return { view, decision: state ? { action: 'release', why: 'ootmod boot release', loader: state.bootloader } : { action: 'none', why: 'the guard holds nothing' } };
  return { view, decision: decideGuard(guardInput(ctx.layout, ctx.config().boot.guard, view, view.images ?? [])) };
}

/** The one-line preview a dry run prints. */
export async function guardPreview(ctx: Ctx, release = false): Promise<string> {
  return guardLine((await guardDecisionNow(ctx, release)).decision);
}
