// The boot guard's decision, pure: keep the bootloader's default entry on the newest ready kernel while
// the kernel the admin's setting would boot lacks needed modules, and give the default back once it is
// ready. GRUB (saved_entry) and systemd-boot (loader.conf's `default`). src/execute/bootguard.ts carries
// the decision out.
import type { GrubEntry, LoaderEntry, NextBoot } from '../kernel/boot.js';
import { compareKernelVersions } from '../kernel/version.js';
import type { GuardMode } from '../system/config.js';
import type { KernelReadiness, ReadinessReport } from './readiness.js';

export type GuardedLoader = 'grub' | 'systemd-boot';

/** What the guard changed, kept in /var/lib/ootmod/boot-guard.json so that it can be undone exactly. */
export interface GuardState {
  bootloader: GuardedLoader;
  /** The entry the guard made the default (GRUB: saved_entry; systemd-boot: loader.conf's `default`, `ID.conf`). */
  entry: string;
  /** The ready kernel it keeps the default on. */
  kernel: string;
  /** The kernel the admin's setting would boot, held back. */
  heldBack: string;
  /** GRUB: saved_entry before the guard set it (null: there was none). */
  previousSavedEntry: string | null;
  /** GRUB: the drop-in the guard wrote for GRUB_DEFAULT=saved (the admin had GRUB_DEFAULT=0), if any. */
  dropIn: string | null;
  /** systemd-boot: the loader.conf it changed (a system path). */
  loaderConf?: string;
  /** systemd-boot: loader.conf's `default` line before, as written (null: there was none). */
  previousDefaultLine?: string | null;
  /** systemd-boot: loader.conf did not exist before. */
  createdLoaderConf?: boolean;
  since: string;
}

/** The bootloader's name in the guard's lines. */
export const loaderName = (l: GuardedLoader) => (l === 'grub' ? 'GRUB' : 'systemd-boot');

export interface GuardInput {
  mode: GuardMode;
  report: ReadinessReport;
  /** The kernel the admin's setting boots (without the guard's changes). */
  intended: NextBoot;
  /** GRUB's menu and the admin's settings; undefined when GRUB is not the bootloader. */
  grub?: { entries: GrubEntry[]; adminDefault: string; nextEntry?: string; savedEntryNow?: string };
  /**
   * systemd-boot's entries and settings; undefined when it is not the bootloader. `adminDefault`:
   * loader.conf's `default` as the admin has it; `defaultNow`: as it is now; the EFI variables
   * (running system only), which override loader.conf.
   */
  sdboot?: { entries: LoaderEntry[]; adminDefault?: string; defaultNow?: string; efiDefault?: string; oneShot?: string };
  /** Kernels with an image (they are in the boot menu). */
  images: readonly string[];
  state?: GuardState;
}

export type GuardDecision =
  | { action: 'none'; why: string }
  | { action: 'keep'; why: string; loader?: GuardedLoader }
  | { action: 'release'; why: string; loader?: GuardedLoader }
  | { action: 'engage'; entry: string; kernel: string; heldBack: string; savedMode: 'saved' | 'drop-in' | 'loader.conf'; why: string };

/** What holds a kernel back: `auto` only a missing critical module, `yes` any missing needed module. */
export function blocks(mode: GuardMode, k: KernelReadiness): boolean {
  return mode === 'yes' ? !k.ready : k.missing.some((m) => m.critical);
}

/** How a GRUB entry is named for saved_entry: its ids path (stable across update-grub), else its titles. */
export function entryName(e: GrubEntry): string {
  return e.ids.every(Boolean) ? e.ids.join('>') : e.titles.join('>');
}

/** A systemd-boot `default` that names one entry (no glob) or `@saved`: the admin's pick. */
const pinned = (d: string) => d === '@saved' || !/[*?[]/.test(d);

export function decideGuard(input: GuardInput): GuardDecision {
  const { state, mode } = input;
  const loader = input.intended.bootloader;
  const leave = (why: string): GuardDecision => (state ? { action: 'release', why, loader: state.bootloader } : { action: 'none', why });
  if (mode === 'no') return leave('guard = no: the guard only reports');
  if (state && state.bootloader !== loader) return leave(`the bootloader here is ${loader} now, not ${state.bootloader}`);
  if (loader === 'grub' && input.grub) return decideGrub(input, input.grub, leave);
  if (loader === 'systemd-boot' && input.sdboot) return decideSystemdBoot(input, input.sdboot, leave);
  return leave('no GRUB or systemd-boot configuration is here: the boot guard has no default entry to keep');
}

function decideGrub(input: GuardInput, grub: NonNullable<GuardInput['grub']>, leave: (why: string) => GuardDecision): GuardDecision {
  const { state } = input;
  // Someone set another entry since (grub-set-default, or GRUB_SAVEDEFAULT after a pick at the menu): theirs.
  if (state && grub.savedEntryNow !== state.entry) return { action: 'release', why: `saved_entry is ${grub.savedEntryNow ?? 'unset'} now, not the guard's: the admin's choice stays`, loader: 'grub' };
  if (grub.nextEntry) return state ? { action: 'keep', why: `grub-reboot chose the next boot (next_entry=${grub.nextEntry})`, loader: 'grub' } : { action: 'none', why: `grub-reboot chose the next boot (next_entry=${grub.nextEntry}): left as it is` };
  if (grub.adminDefault !== '0' && grub.adminDefault !== 'saved') return leave(`GRUB_DEFAULT=${grub.adminDefault} is the admin's choice: left as it is`);
  const candidates = grub.entries.filter((e) => e.kernel).map((e) => ({ kernel: e.kernel!, name: entryName(e), nested: e.titles.length > 1 }));
  // The entry in the submenu (its ids path is stable across update-grub) before the top one.
  candidates.sort((a, b) => Number(b.nested) - Number(a.nested));
  return holdBack(input, 'grub', candidates, leave, grub.adminDefault === 'saved' || state?.dropIn ? 'saved' : 'drop-in');
}

function decideSystemdBoot(input: GuardInput, sd: NonNullable<GuardInput['sdboot']>, leave: (why: string) => GuardDecision): GuardDecision {
  const { state } = input;
  // Someone edited loader.conf's default since: theirs.
  if (state && sd.defaultNow !== state.entry) return { action: 'release', why: `loader.conf's default is ${sd.defaultNow ?? 'unset'} now, not the guard's: the admin's choice stays`, loader: 'systemd-boot' };
  if (sd.oneShot) return state ? { action: 'keep', why: `LoaderEntryOneShot=${sd.oneShot} chose the next boot`, loader: 'systemd-boot' } : { action: 'none', why: `LoaderEntryOneShot=${sd.oneShot} chose the next boot: left as it is` };
  if (sd.efiDefault) return leave(`LoaderEntryDefault=${sd.efiDefault} (bootctl set-default, or d at the boot menu) is the admin's choice and overrides loader.conf: left as it is`);
  if (sd.adminDefault && pinned(sd.adminDefault)) return leave(`default ${sd.adminDefault} in loader.conf is the admin's choice: left as it is`);
  // An entry whose boot counter ran out failed to boot: never a fallback.
  const candidates = sd.entries.filter((e) => e.kernel && !e.bad).map((e) => ({ kernel: e.kernel!, name: `${e.id}.conf` }));
  return holdBack(input, 'systemd-boot', candidates, leave, 'loader.conf');
}

/** The common part: hold the intended kernel back when it is not ready, on the newest older ready kernel that has an entry. */
function holdBack(
  input: GuardInput, loader: GuardedLoader, candidates: { kernel: string; name: string }[],
  leave: (why: string) => GuardDecision, savedMode: 'saved' | 'drop-in' | 'loader.conf',
): GuardDecision {
  const { state, mode } = input;
  const setting = `${loaderName(loader)}'s setting`;
  const intended = input.intended.kernel;
  if (!intended) return state ? { action: 'keep', why: `the kernel ${setting} boots is ${input.intended.how}`, loader } : { action: 'none', why: `the kernel ${setting} boots is ${input.intended.how}` };
  const readiness = new Map(input.report.kernels.map((k) => [k.release, k]));
  const target = readiness.get(intended);
  if (!target || !blocks(mode, target)) return leave(`${intended}, which ${setting} boots, is ready${mode === 'auto' && target && !target.ready ? ' in what early boot needs (guard = auto)' : ''}`);
  const fallback = [...input.report.kernels]
    .filter((k) => k.release !== intended && input.images.includes(k.release) && !blocks(mode, k) && compareKernelVersions(k.release, intended) < 0)
    .sort((a, b) => compareKernelVersions(b.release, a.release))
    .map((k) => ({ k, entry: candidates.find((c) => c.kernel === k.release) }))
    .find((c) => c.entry);
  if (!fallback) return leave(`${intended} is not ready and no older ready kernel has ${loader === 'grub' ? 'a GRUB' : 'a systemd-boot'} entry to fall back on`);
  const entry = fallback.entry!.name;
  const missing = target.missing.filter((m) => mode === 'yes' || m.critical).map((m) => m.module).join(', ');
  if (state?.entry === entry && state.heldBack === intended) return { action: 'keep', why: `${loaderName(loader)}'s default stays on ${fallback.k.release}: ${intended} lacks ${missing}`, loader };
  return {
    action: 'engage', entry, kernel: fallback.k.release, heldBack: intended, savedMode,
    why: `${intended} lacks ${missing}: ${loaderName(loader)}'s default goes to ${fallback.k.release}, the newest ready kernel, until it is ready`,
  };
}

/** The decision in one line: what the guard would do (`ootmod boot`, dry runs), or did (`done`). */
export function guardLine(d: GuardDecision, done = false): string {
  switch (d.action) {
    case 'engage':
      if (d.savedMode === 'loader.conf') return `set default ${d.entry} in systemd-boot's loader.conf (${d.kernel}): ${d.why}`;
      return `${d.savedMode === 'drop-in' ? 'set GRUB_DEFAULT=saved (a drop-in, then update-grub) and ' : ''}set saved_entry=${d.entry} (${d.kernel}): ${d.why}`;
    case 'release':
      if (d.loader === 'systemd-boot') return `${done ? 'gave' : 'give'} systemd-boot's default back (loader.conf's default line as it was): ${d.why}`;
      return `${done ? 'gave' : 'give'} GRUB's default back (saved_entry as it was, the guard's drop-in removed): ${d.why}`;
    case 'keep':
      return `${done ? 'kept' : 'keep'} ${d.loader === 'systemd-boot' ? "systemd-boot's" : "GRUB's"} default as it is: ${d.why}`;
    case 'none':
      return `${done ? 'did' : 'do'} nothing: ${d.why}`;
  }
}
