// The boot guard's decision, pure: keep GRUB's default entry on the newest ready kernel while the kernel
// the admin's setting would boot lacks needed modules, and give the default back once it is ready.
// src/execute/bootguard.ts carries the decision out with GRUB's own tools.
import type { GrubEntry, NextBoot } from '../kernel/boot.js';
import { compareKernelVersions } from '../kernel/version.js';
import type { GuardMode } from '../system/config.js';
import type { KernelReadiness, ReadinessReport } from './readiness.js';

/** What the guard changed, kept in /var/lib/ootmod/boot-guard.json so that it can be undone exactly. */
export interface GuardState {
  bootloader: 'grub';
  /** The saved_entry the guard set (the ready kernel's entry). */
  entry: string;
  /** The ready kernel it keeps the default on. */
  kernel: string;
  /** The kernel the admin's setting would boot, held back. */
  heldBack: string;
  /** saved_entry before the guard set it (null: there was none). */
  previousSavedEntry: string | null;
  /** The drop-in the guard wrote for GRUB_DEFAULT=saved (the admin had GRUB_DEFAULT=0), if any. */
  dropIn: string | null;
  since: string;
}

export interface GuardInput {
  mode: GuardMode;
  report: ReadinessReport;
  /** The kernel the admin's setting boots (without the guard's changes). */
  intended: NextBoot;
  /** GRUB's menu and the admin's settings; undefined when GRUB is not the bootloader. */
  grub?: { entries: GrubEntry[]; adminDefault: string; nextEntry?: string; savedEntryNow?: string };
  /** Kernels with an image (they are in the boot menu). */
  images: readonly string[];
  state?: GuardState;
}

export type GuardDecision =
  | { action: 'none'; why: string }
  | { action: 'keep'; why: string }
  | { action: 'release'; why: string }
  | { action: 'engage'; entry: string; kernel: string; heldBack: string; savedMode: 'saved' | 'drop-in'; why: string };

/** What holds a kernel back: `auto` only a missing critical module, `yes` any missing needed module. */
export function blocks(mode: GuardMode, k: KernelReadiness): boolean {
  return mode === 'yes' ? !k.ready : k.missing.some((m) => m.critical);
}

/** How a GRUB entry is named for saved_entry: its ids path (stable across update-grub), else its titles. */
export function entryName(e: GrubEntry): string {
  return e.ids.every(Boolean) ? e.ids.join('>') : e.titles.join('>');
}

export function decideGuard(input: GuardInput): GuardDecision {
  const { state, mode } = input;
  const leave = (why: string): GuardDecision => (state ? { action: 'release', why } : { action: 'none', why });
  if (mode === 'no') return leave('guard = no: the guard only reports');
  if (!input.grub || input.intended.bootloader !== 'grub') {
    return leave(`the boot guard acts on GRUB only, and the bootloader here is ${input.intended.bootloader === 'none' ? 'neither GRUB nor systemd-boot' : input.intended.bootloader}`);
  }
  const { grub } = input;
  // Someone set another entry since (grub-set-default, or GRUB_SAVEDEFAULT after a pick at the menu): theirs.
  if (state && grub.savedEntryNow !== state.entry) return { action: 'release', why: `saved_entry is ${grub.savedEntryNow ?? 'unset'} now, not the guard's: the admin's choice stays` };
  if (grub.nextEntry) return state ? { action: 'keep', why: `grub-reboot chose the next boot (next_entry=${grub.nextEntry})` } : { action: 'none', why: `grub-reboot chose the next boot (next_entry=${grub.nextEntry}): left as it is` };
  if (grub.adminDefault !== '0' && grub.adminDefault !== 'saved') return leave(`GRUB_DEFAULT=${grub.adminDefault} is the admin's choice: left as it is`);
  const intended = input.intended.kernel;
  if (!intended) return state ? { action: 'keep', why: `the kernel GRUB's setting boots is ${input.intended.how}` } : { action: 'none', why: `the kernel GRUB's setting boots is ${input.intended.how}` };
  const readiness = new Map(input.report.kernels.map((k) => [k.release, k]));
  const target = readiness.get(intended);
  if (!target || !blocks(mode, target)) return leave(`${intended}, which GRUB's setting boots, is ready${mode === 'auto' && target && !target.ready ? ' in what early boot needs (guard = auto)' : ''}`);
  const fallback = [...input.report.kernels]
    .filter((k) => k.release !== intended && input.images.includes(k.release) && !blocks(mode, k) && compareKernelVersions(k.release, intended) < 0)
    .sort((a, b) => compareKernelVersions(b.release, a.release))
    .map((k) => ({ k, entry: grub.entries.find((e) => e.kernel === k.release && e.titles.length > 1) ?? grub.entries.find((e) => e.kernel === k.release) }))
    .find((c) => c.entry);
  if (!fallback) return leave(`${intended} is not ready and no older ready kernel has a GRUB entry to fall back on`);
  const entry = entryName(fallback.entry!);
  const missing = target.missing.filter((m) => mode === 'yes' || m.critical).map((m) => m.module).join(', ');
  if (state?.entry === entry && state.heldBack === intended) return { action: 'keep', why: `GRUB's default stays on ${fallback.k.release}: ${intended} lacks ${missing}` };
  return {
    action: 'engage', entry, kernel: fallback.k.release, heldBack: intended,
    savedMode: grub.adminDefault === 'saved' || state?.dropIn ? 'saved' : 'drop-in',
    why: `${intended} lacks ${missing}: GRUB's default goes to ${fallback.k.release}, the newest ready kernel, until it is ready`,
  };
}

/** The decision in one line: what the guard would do (`ootmod boot`, dry runs), or did (`done`). */
export function guardLine(d: GuardDecision, done = false): string {
  switch (d.action) {
    case 'engage':
      return `${d.savedMode === 'drop-in' ? 'set GRUB_DEFAULT=saved (a drop-in, then update-grub) and ' : ''}set saved_entry=${d.entry} (${d.kernel}): ${d.why}`;
    case 'release':
      return `${done ? 'gave' : 'give'} GRUB's default back (saved_entry as it was, the guard's drop-in removed): ${d.why}`;
    case 'keep':
      return `${done ? 'kept' : 'keep'} GRUB's default as it is: ${d.why}`;
    case 'none':
      return `${done ? 'did' : 'do'} nothing: ${d.why}`;
  }
}
