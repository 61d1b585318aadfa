// Carrying out the boot guard's decision (src/plan/bootguard.ts) with GRUB's own tools: grub-editenv
// sets saved_entry, a drop-in sets GRUB_DEFAULT=saved where the admin had the first entry, update-grub
// regenerates grub.cfg. Every change is recorded in /var/lib/ootmod/boot-guard.json and undone exactly
// on release: the drop-in goes, saved_entry gets its old value back (or is unset).
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { ExitCode, OotmodError } from '../errors.js';
import { GUARD_DROP_IN, findGrubEntry, grubDefault, grubPaths, parseGrubCfg, parseGrubenv, readGrubFiles } from '../kernel/boot.js';
import { findOnPath } from '../system/programs.js';
import type { GuardDecision, GuardInput, GuardState } from '../plan/bootguard.js';
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
    return s.bootloader === 'grub' && typeof s.entry === 'string' ? s : undefined;
  } catch {
    return undefined;
  }
}

/** The guard's inputs as read now: GRUB's menu and the admin's own settings (without the guard's changes). */
export function guardInput(layout: Layout, mode: GuardMode, view: ReadinessView, images: readonly string[]): GuardInput {
  const state = readGuardState(layout);
  const grub = view.nextBoot.bootloader === 'grub' ? readGrubFiles(layout, state ? { savedEntry: state.previousSavedEntry } : undefined) : undefined;
  return {
    mode, report: view.report, intended: view.nextBoot, images, state,
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
    // saved_entry goes back only if it is still the guard's: another value is someone's later choice.
    if (savedEntryNow(layout) === state.entry) await tools.setSavedEntry(state.previousSavedEntry);
    if (state.dropIn) {
      await rm(layout.at(state.dropIn), { force: true });
      await tools.updateGrub();
    }
    await rm(file, { force: true });
    return undefined;
  }
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

/** The kernel a saved entry names in grub.cfg (for `ootmod boot`). */
export function entryKernel(layout: Layout, entry: string): string | undefined {
  return findGrubEntry(parseGrubCfg(readGrubFiles(layout).grubCfg ?? ''), entry)?.kernel;
}
