// Carrying out the boot guard's decision (src/plan/bootguard.ts). GRUB, with its own tools: grub-editenv
// sets saved_entry, a drop-in sets GRUB_DEFAULT=saved where the admin had the first entry, update-grub
// regenerates grub.cfg. systemd-boot, through loader.conf's `default` line (a file on the ESP: no EFI
// variable, so it works in a chroot and an image build too). Every change is recorded in
// /var/lib/ootmod/boot-guard.json and undone exactly on release: the drop-in goes, saved_entry gets its
// old value back (or is unset); loader.conf gets the admin's line back (or none, or no file).
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { ExitCode, OotmodError } from '../errors.js';
import {
  GUARD_DROP_IN, LOADER_GUARD_MARK, findGrubEntry, grubDefault, grubPaths, loaderConfDefault, loaderConfPath, loaderEfiVars,
  parseGrubCfg, parseGrubenv, readGrubFiles, readLoaderConf, readLoaderEntries, withoutGuardLine,
} from '../kernel/boot.js';
import { findOnPath } from '../system/programs.js';
import type { GuardDecision, GuardInput, GuardState } from '../plan/bootguard.js';
import type { AdminSettings } from '../kernel/boot.js';
import type { ReadinessView } from '../plan/readiness.js';
import type { GuardMode } from '../system/config.js';
import { writeFileAtomic } from '../system/files.js';
import type { Layout } from '../system/layout.js';
import { run } from '../system/run.js';

export const guardStateFile = (layout: Layout) => path.join(layout.stateDir, 'boot-guard.json');

/** saved_entry in grubenv as it is now. */
function savedEntryNow(layout: Layout): string | undefined {
  return parseGrubenv(readGrubFiles(layout).grubenv ?? '').get('saved_entry') || undefined;
}

export function readGuardState(layout: Layout): GuardState | undefined {
  try {
    const s = JSON.parse(readFileSync(guardStateFile(layout), 'utf8')) as GuardState;
    return (s.bootloader === 'grub' || s.bootloader === 'systemd-boot') && typeof s.entry === 'string' ? s : undefined;
  } catch {
    return undefined;
  }
}

/** The guard's inputs as read now: GRUB's menu and the admin's own settings (without the guard's changes). */
/** The bootloader's settings as the admin has them, for the readers (undefined: the guard holds nothing). */
export function adminSettings(state: GuardState | undefined): AdminSettings | undefined {
  if (!state) return undefined;
  return state.bootloader === 'grub' ? { savedEntry: state.previousSavedEntry } : { loaderDefaultLine: state.previousDefaultLine ?? null };
}

export function guardInput(layout: Layout, mode: GuardMode, view: ReadinessView, images: readonly string[]): GuardInput {
  const state = readGuardState(layout);
  const grub = view.nextBoot.bootloader === 'grub' ? readGrubFiles(layout, state?.bootloader === 'grub' ? { savedEntry: state.previousSavedEntry } : undefined) : undefined;
  const sd = view.nextBoot.bootloader === 'systemd-boot';
  const efi = sd ? loaderEfiVars(layout) : {};
  return {
    mode, report: view.report, intended: view.nextBoot, images, state,
    sdboot: sd ? {
      entries: readLoaderEntries(layout, images),
      adminDefault: loaderConfDefault(readLoaderConf(layout, adminSettings(state))),
      defaultNow: loaderConfDefault(readLoaderConf(layout)),
      efiDefault: efi.default, oneShot: efi.oneShot,
    } : undefined,
    grub: grub && {
      entries: parseGrubCfg(grub.grubCfg ?? ''),
      adminDefault: grubDefault(grub.defaults) ?? '0',
      nextEntry: parseGrubenv(grub.grubenv ?? '').get('next_entry') || undefined,
      savedEntryNow: savedEntryNow(layout),
    },
  };
}

/** GRUB's tools, as the guard uses them (tests give their own). */
export interface GrubTools {
  /** grub-editenv FILE set saved_entry=ENTRY, or unset it (null). */
  setSavedEntry(entry: string | null): Promise<void>;
  /** update-grub: grub.cfg again from /etc/default/grub and its drop-ins. */
  updateGrub(): Promise<void>;
}

export function realGrubTools(layout: Layout): GrubTools {
  const grubenv = grubPaths(layout).grubenv;
  return {
    async setSavedEntry(entry) {
      if (!findOnPath('grub-editenv')) throw new OotmodError('grub-editenv is not installed, so GRUB\'s saved entry cannot be set', 'install grub-common', ExitCode.Environment);
      if (!existsSync(grubenv)) await run('grub-editenv', [grubenv, 'create']);
      await run('grub-editenv', entry === null ? [grubenv, 'unset', 'saved_entry'] : [grubenv, 'set', `saved_entry=${entry}`]);
    },
    async updateGrub() {
      // A root that is another system's (--root) has its own update-grub, run inside it.
      if (layout.root !== '/') return;
      if (!findOnPath('update-grub')) throw new OotmodError('update-grub is not installed, so GRUB_DEFAULT=saved cannot take effect', 'install grub2-common, or set GRUB_DEFAULT=saved yourself', ExitCode.Environment);
      await run('update-grub', [], { timeoutMs: 300_000 });
    },
  };
}

const DROP_IN_TEXT = `# Written by ootmod's boot guard (ootmod boot): GRUB boots the saved entry, which the guard keeps on
# the newest kernel that has this machine's out-of-tree modules. Removed when the kernel GRUB would
# otherwise boot is ready, by \`ootmod boot release\`, and when ootmod is removed.
GRUB_DEFAULT=saved
`;

/** Does what the decision says; returns the state now (undefined when the guard holds nothing). */
export async function applyGuard(layout: Layout, decision: GuardDecision, state: GuardState | undefined, tools: GrubTools): Promise<GuardState | undefined> {
  const file = guardStateFile(layout);
  if (decision.action === 'none' || decision.action === 'keep') return state;
  if (decision.action === 'release') {
    if (!state) return undefined;
    if (state.bootloader === 'systemd-boot') await releaseLoaderConf(layout, state);
    else {
      // saved_entry goes back only if it is still the guard's: another value is someone's later choice.
      if (savedEntryNow(layout) === state.entry) await tools.setSavedEntry(state.previousSavedEntry);
      if (state.dropIn) {
        await rm(layout.at(state.dropIn), { force: true });
        await tools.updateGrub();
      }
    }
    await rm(file, { force: true });
    return undefined;
  }
  if (decision.savedMode === 'loader.conf') return engageLoaderConf(layout, decision, state);
  const previousSavedEntry = state ? state.previousSavedEntry : savedEntryNow(layout) ?? null;
  let dropIn = state?.dropIn ?? null;
  // Record first: an interrupted engage is still undone by the next release.
  const next: GuardState = { bootloader: 'grub', entry: decision.entry, kernel: decision.kernel, heldBack: decision.heldBack, previousSavedEntry, dropIn, since: state?.since ?? new Date().toISOString() };
  if (decision.savedMode === 'drop-in' && !dropIn) {
    dropIn = GUARD_DROP_IN;
    next.dropIn = dropIn;
    await writeFileAtomic(file, `${JSON.stringify(next, null, 1)}\n`, 0o644);
    await writeFileAtomic(layout.at(GUARD_DROP_IN), DROP_IN_TEXT, 0o644);
    await tools.updateGrub();
  } else {
    await writeFileAtomic(file, `${JSON.stringify(next, null, 1)}\n`, 0o644);
  }
  await tools.setSavedEntry(decision.entry);
  return next;
}

/**
 * systemd-boot: loader.conf's `default` line becomes the guard's entry, under a comment that keeps the
 * admin's line (so the file says what the line is, and the package's postrm can undo it without ootmod):
 *
 *     #ootmod-boot-guard: default debian-*        (or `#ootmod-boot-guard:` when there was none)
 *     default 0123abcd-6.1.0-30-amd64.conf
 *
 * The admin's `default` line (the last one, which systemd-boot uses) is replaced in place; without
 * one the two lines are appended; without loader.conf it is created.
 */
async function engageLoaderConf(layout: Layout, decision: Extract<GuardDecision, { action: 'engage' }>, state: GuardState | undefined): Promise<GuardState> {
  const loaderConf = state?.loaderConf ?? loaderConfPath(layout);
  const target = layout.at(loaderConf);
  const now = existsSync(target) ? readFileSync(target, 'utf8') : undefined;
  const previousDefaultLine = state ? state.previousDefaultLine ?? null : adminDefaultLine(now);
  const next: GuardState = {
    bootloader: 'systemd-boot', entry: decision.entry, kernel: decision.kernel, heldBack: decision.heldBack,
    previousSavedEntry: null, dropIn: null, loaderConf, previousDefaultLine, createdLoaderConf: state?.createdLoaderConf ?? now === undefined,
    since: state?.since ?? new Date().toISOString(),
  };
  // Record first: an interrupted engage is still undone by the next release.
  await writeFileAtomic(guardStateFile(layout), `${JSON.stringify(next, null, 1)}\n`, 0o644);
  const admin = now === undefined ? '' : withoutGuardLine(now, previousDefaultLine);
  const guardLines = [`${LOADER_GUARD_MARK}${previousDefaultLine === null ? '' : ` ${previousDefaultLine}`}`, `default ${decision.entry}`];
  const lines = admin === '' ? [] : admin.split('\n');
  const at = previousDefaultLine === null ? -1 : lines.lastIndexOf(previousDefaultLine);
  if (at >= 0) lines.splice(at, 1, ...guardLines);
  else {
    if (lines.length && lines.at(-1) === '') lines.pop();
    lines.push(...guardLines, '');
  }
  await writeFileAtomic(target, lines.join('\n'), 0o644);
  return next;
}

/** The admin's `default` line of loader.conf as written (the last one), or null. */
function adminDefaultLine(text: string | undefined): string | null {
  return (text ?? '').split('\n').filter((l) => /^[ \t]*default[ \t]/.test(l)).pop() ?? null;
}

/** systemd-boot: the admin's line back in place of the guard's two (or none, or no file), if the guard's line is still there. */
async function releaseLoaderConf(layout: Layout, state: GuardState): Promise<void> {
  const target = layout.at(state.loaderConf ?? loaderConfPath(layout));
  if (!existsSync(target)) return;
  const now = readFileSync(target, 'utf8');
  // Someone changed the default since: theirs stays (only the guard's comment goes).
  if (loaderConfDefault(now) !== state.entry) {
    const cleaned = now.split('\n').filter((l) => !l.startsWith(LOADER_GUARD_MARK)).join('\n');
    if (cleaned !== now) await writeFileAtomic(target, cleaned, 0o644);
    return;
  }
  let text = withoutGuardLine(now, state.previousDefaultLine ?? null);
  // No marker (edited away): the guard's own line gives way all the same.
  if (text === now) text = now.split('\n').flatMap((l) => (l === `default ${state.entry}` ? (state.previousDefaultLine == null ? [] : [state.previousDefaultLine]) : [l])).join('\n');
  if (state.createdLoaderConf && text.trim() === '') await rm(target, { force: true });
  else await writeFileAtomic(target, text, 0o644);
}

/** The kernel a guard's entry names (GRUB: in grub.cfg; systemd-boot: its entry file), for `ootmod boot`. */
export function entryKernel(layout: Layout, state: GuardState): string | undefined {
  if (state.bootloader === 'systemd-boot') return readLoaderEntries(layout, []).find((e) => `${e.id}.conf` === state.entry)?.kernel;
  return findGrubEntry(parseGrubCfg(readGrubFiles(layout).grubCfg ?? ''), state.entry)?.kernel;
}
