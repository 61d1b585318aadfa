// Kernel-upgrade readiness, pure: from what ootmod recorded per (module, kernel), the installed kernels,
// the admin's [boot] settings and what early boot needs, which kernels have every module this machine
// needs. The reads are in src/pipeline/readiness.ts.
import type { NextBoot } from '../kernel/boot.js';
import { loaderName, type GuardState } from './bootguard.js';
import { compareKernelVersions } from '../kernel/version.js';

export interface ReadinessKernel {
  release: string;
  /** Its headers are installed (modules can be built for it). */
  headers: boolean;
  /** What stops builds for it (the first of the inventory's problems), if anything. */
  problem?: string;
}

export interface ReadinessRecord {
  module: string;
  version: string;
  kernel: string;
  status: 'built' | 'installed' | 'failed';
  error?: string;
  /** Names of the .ko files it installed (DEST_MODULE_NAME). */
  installedModules: string[];
  /** It installed files and they are all still there. */
  filesPresent: boolean;
}

/** What the module sources say about a needed module for a kernel it has nothing installed for. */
export interface SourceVerdict {
  /** BUILD_EXCLUSIVE_* (or OBSOLETE_BY) excludes the kernel: the module is not needed there. */
  excluded?: string;
  /** No source of the module is left under /usr/src. */
  noSource?: boolean;
  /** Its source is not AUTOINSTALL=yes: new kernels do not get it without `ootmod install`. */
  notAutoinstall?: boolean;
  /** Its dkms.conf could not be read for this kernel (one line). */
  invalid?: string;
}

export interface ReadinessInput {
  /** Installed kernels, any order. */
  kernels: ReadinessKernel[];
  /** The running kernel (uname -r) when it is one of these kernels' system (not under --root). */
  running?: string;
  records: ReadinessRecord[];
  declared: { needed: readonly string[]; optional: readonly string[] };
  /** Module names (`_` for `-`) in the initramfs of the kernels whose initramfs was read. */
  initramfs?: ReadonlyMap<string, ReadonlySet<string>>;
  /** The root filesystem's type (findmnt), e.g. zfs. */
  rootFsType?: string;
  /** What makes the initramfs here (for the command that rebuilds one); initramfs-tools when unknown. */
  initramfsGenerator?: 'initramfs-tools' | 'dracut';
  /** Keyed by pairKey(module, kernel): for the pairs `sourceQuestions` asks about. */
  sources?: ReadonlyMap<string, SourceVerdict>;
}

export interface NeededModule {
  module: string;
  /** The version installed on the kernel the needed set comes from. */
  version?: string;
  critical: boolean;
  /** Why it is needed (and why critical). */
  because: string;
}

export interface MissingModule {
  module: string;
  version: string | null;
  why: string;
  critical: boolean;
}

export interface KernelReadiness {
  release: string;
  ready: boolean;
  missing: MissingModule[];
  /** Needed modules BUILD_EXCLUSIVE excludes on this kernel: not needed there. */
  excluded: { module: string; why: string }[];
}

export interface ReadinessReport {
  /** The kernel whose installed modules make the needed set, and how it was chosen. */
  basis: { kernel?: string; how: string; earlyBoot?: string };
  needed: NeededModule[];
  /** In the order of input.kernels. */
  kernels: KernelReadiness[];
}

export const pairKey = (module: string, kernel: string) => `${module}@${kernel}`;
const norm = (name: string) => name.replace(/\.ko(\.\w+)?$/, '').replaceAll('-', '_');
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function present(r: ReadinessRecord): boolean {
  return r.installedModules.length > 0 && r.filesPresent;
}

/** Whether a declared name (PACKAGE_NAME or a module's name) names this module. */
function names(declared: string, module: string, records: ReadinessRecord[]): boolean {
  if (declared === module) return true;
  return records.some((r) => r.module === module && r.installedModules.some((m) => norm(m) === norm(declared)));
}

/** The kernel whose installed modules are the needed set: the running one, else the newest kernel that has all its modules. */
function chooseBasis(input: ReadinessInput, sorted: ReadinessKernel[]): { kernel?: string; how: string } {
  if (input.running && sorted.some((k) => k.release === input.running)) return { kernel: input.running, how: `what is installed for the running kernel ${input.running}` };
  const complete = sorted.find((k) => {
    const own = input.records.filter((r) => r.kernel === k.release);
    return own.length > 0 && own.every(present) && own.every((r) => r.status !== 'failed');
  });
  const where = input.running ? `the running kernel ${input.running} is not installed here` : 'under --root the running kernel is not this system\'s';
  if (complete) return { kernel: complete.release, how: `${where}: what is installed for ${complete.release}, the newest kernel that has all its modules` };
  return { how: `${where}, and no kernel has all its modules: every module installed for some kernel` };
}

/** The needed set, with each module's criticality. */
export function neededModules(input: ReadinessInput): { basis: ReadinessReport['basis']; needed: NeededModule[] } {
  const sorted = sortedKernels(input.kernels);
  const chosen = chooseBasis(input, sorted);
  // Whose initramfs tells what early boot needs: that kernel's, else the newest with a module installed.
  const earlyBoot = chosen.kernel ?? sorted.find((k) => input.records.some((r) => r.kernel === k.release && present(r)))?.release;
  const basis = { ...chosen, earlyBoot };
  const installedOn = (r: ReadinessRecord) => present(r) && (basis.kernel ? r.kernel === basis.kernel : true);
  const found = new Map<string, { version?: string; because: string }>();
  for (const r of input.records.filter(installedOn)) {
    if (!found.has(r.module)) found.set(r.module, { version: r.version, because: `installed for ${r.kernel}` });
  }
  for (const d of input.declared.needed) {
    const module = [...new Set(input.records.map((r) => r.module))].find((m) => names(d, m, input.records)) ?? d;
    if (!found.has(module)) found.set(module, { because: 'needed = in [boot] of ootmod.conf' });
    else found.get(module)!.because += ', and named in needed = of [boot]';
  }
  for (const o of input.declared.optional) for (const m of [...found.keys()]) if (names(o, m, input.records)) found.delete(m);

  // The running kernel's initramfs tells what early boot needs; without one, any installed kernel's that has the module in it.
  const tellers = earlyBootKernels(input, { basis, needed: [...found.keys()] });
  const rootFs = input.rootFsType ? norm(input.rootFsType) : undefined;
  const needed: NeededModule[] = [];
  for (const [module, { version, because }] of [...found].sort(([a], [b]) => cmp(a, b))) {
    const koNames = new Set([norm(module), ...input.records.filter((r) => r.module === module).flatMap((r) => r.installedModules.map(norm))]);
    const inInitramfs = tellers.find((k) => [...koNames].some((n) => input.initramfs?.get(k)?.has(n)));
    const providesRoot = rootFs !== undefined && koNames.has(rootFs);
    const critical = Boolean(inInitramfs || providesRoot);
    const why = [because, ...(inInitramfs ? [`in the initramfs of ${inInitramfs}`] : []), ...(providesRoot ? [`provides the root filesystem (${input.rootFsType})`] : [])];
    needed.push({ module, version, critical, because: why.join('; ') });
  }
  return { basis, needed };
}

/**
 * The kernels whose initramfs tells which needed modules early boot needs: the running kernel's (the
 * basis); in a chroot, an image build or under --root, where no installed kernel runs, the basis
 * kernel's and every kernel's that has a needed module installed (newest first).
 */
export function earlyBootKernels(input: ReadinessInput, chosen: { basis: ReadinessReport['basis']; needed: readonly (NeededModule | string)[] } = neededModules(input)): string[] {
  const first = chosen.basis.earlyBoot;
  if (input.running && chosen.basis.kernel === input.running) return first ? [first] : [];
  const needed = new Set(chosen.needed.map((n) => (typeof n === 'string' ? n : n.module)));
  const others = sortedKernels(input.kernels).map((k) => k.release).filter((k) => k !== first && input.records.some((r) => r.kernel === k && needed.has(r.module) && present(r)));
  return [...(first ? [first] : []), ...others];
}

function sortedKernels(kernels: ReadinessKernel[]): ReadinessKernel[] {
  return [...kernels].sort((a, b) => compareKernelVersions(b.release, a.release));
}

/** The (module, kernel) pairs with nothing recorded whose sources must be read to tell why (excluded or not built). */
export function sourceQuestions(input: ReadinessInput, needed = neededModules(input).needed): { module: string; kernel: string }[] {
  const out: { module: string; kernel: string }[] = [];
  for (const k of input.kernels) {
    if (!k.headers || k.problem) continue;
    for (const n of needed) if (!input.records.some((r) => r.module === n.module && r.kernel === k.release)) out.push({ module: n.module, kernel: k.release });
  }
  return out;
}

/** Why a needed module is not usable on a kernel, or undefined when it is there; `excluded` when it is not needed there. */
function verdict(input: ReadinessInput, n: NeededModule, k: ReadinessKernel): { missing?: string; excluded?: string } {
  const records = input.records.filter((r) => r.module === n.module && r.kernel === k.release);
  const installed = records.find(present);
  if (installed) {
    const early = input.initramfs?.get(k.release);
    if (n.critical && early && !installed.installedModules.some((m) => early.has(norm(m)))) {
      const fix = input.initramfsGenerator === 'dracut' ? `dracut --force /boot/initrd.img-${k.release} ${k.release}` : `update-initramfs -u -k ${k.release}`;
      return { missing: `not in the initramfs of ${k.release} (${fix})` };
    }
    return {};
  }
  const failed = records.find((r) => r.status === 'failed');
  if (failed) return { missing: `failed: ${failed.error?.split('\n')[0] || 'see ootmod status'}` };
  if (records.some((r) => r.status === 'built')) return { missing: `built, not installed (ootmod install ${n.module} -k ${k.release})` };
  if (records.some((r) => r.installedModules.length)) return { missing: 'its installed files are missing' };
  if (!k.headers) return { missing: `skipped: no headers for ${k.release}: install linux-headers-${k.release}` };
  if (k.problem) return { missing: `skipped: ${k.problem}` };
  const src = input.sources?.get(pairKey(n.module, k.release));
  if (src?.excluded) return { excluded: src.excluded };
  if (src?.noSource) return { missing: `not built: no source of ${n.module} under /usr/src` };
  if (src?.invalid) return { missing: `not built: ${src.invalid}` };
  if (src?.notAutoinstall) return { missing: `not built: its dkms.conf does not say AUTOINSTALL=yes (ootmod install ${n.module} -k ${k.release})` };
  return { missing: 'not built' };
}

/** Every kernel's readiness: ready when each needed module is installed for it or excluded there. */
export function computeReadiness(input: ReadinessInput): ReadinessReport {
  const { basis, needed } = neededModules(input);
  const kernels = input.kernels.map((k): KernelReadiness => {
    const missing: MissingModule[] = [];
    const excluded: KernelReadiness['excluded'] = [];
    for (const n of needed) {
      const v = verdict(input, n, k);
      const version = input.records.find((r) => r.module === n.module && r.kernel === k.release)?.version ?? n.version ?? null;
      if (v.excluded) excluded.push({ module: n.module, why: v.excluded });
      else if (v.missing) missing.push({ module: n.module, version, why: v.missing, critical: n.critical });
    }
    return { release: k.release, ready: missing.length === 0, missing, excluded };
  });
  return { basis, needed, kernels };
}

/** `zfs (failed: ...), nvidia-current (not built)` */
export function missingList(missing: readonly MissingModule[]): string {
  return missing.map((m) => `${m.module} (${m.why})`).join(', ');
}

export interface ReadinessView {
  report: ReadinessReport;
  /** The kernel GRUB's (or systemd-boot's) setting boots, as the admin has it: without the boot guard's changes. */
  nextBoot: NextBoot;
  /** The boot guard holds that kernel back and keeps the default on an older, ready one. */
  guard?: GuardState;
  /** The readiness of the kernel that boots next, when that kernel is known and installed. */
  next?: KernelReadiness;
  /** Why parts of the early-boot check could not be made (one line each). */
  notes: string[];
  /** Kernels with an image (in the boot menu). */
  images?: string[];
}

/**
 * What the end of an apt run says when the kernel that boots next lacks a needed module (and what the
 * notice in /run/ootmod holds): the kernel, each missing module with its first error, the command that
 * shows more. Undefined when that kernel is ready or unknown.
 */
export function notReadyBlock(view: ReadinessView): string[] | undefined {
  const next = view.next;
  if (!next || next.ready) return undefined;
  const loader = view.nextBoot.bootloader === 'none' ? view.nextBoot.how : `${view.nextBoot.bootloader}: ${view.nextBoot.how}`;
  return [
    `ootmod: the kernel that boots next, ${next.release}, is not ready (${loader}):`,
    ...next.missing.map((m) => `  ${m.module}${m.version ? `/${m.version}` : ''}${m.critical ? ' (critical: needed in early boot)' : ''}: ${m.why}`),
    heldBack(view)
      ? `ootmod: the boot guard keeps ${loaderName(view.guard!.bootloader)}'s default on ${view.guard!.kernel} until ${next.release} is ready (ootmod boot); see ootmod kernels (and ootmod status for the build logs)`
      : `ootmod: a reboot now starts ${next.release} without ${next.missing.length === 1 ? 'it' : 'them'}; see ootmod kernels (and ootmod status for the build logs)`,
  ];
}

/** The kernel that boots next: the guard's when it holds the admin's back. */
export function bootsNext(view: ReadinessView): { kernel?: string; ready: boolean | null; heldBack?: string } {
  if (heldBack(view)) {
    const kernel = view.guard!.kernel;
    return { kernel, ready: view.report.kernels.find((k) => k.release === kernel)?.ready ?? null, heldBack: view.next!.release };
  }
  return { kernel: view.nextBoot.kernel, ready: view.next?.ready ?? null };
}

/** The boot guard holds back the kernel the admin's setting boots. */
export function heldBack(view: ReadinessView): boolean {
  return Boolean(view.guard && view.next && view.guard.heldBack === view.next.release);
}
