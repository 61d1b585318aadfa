// ootmod boot [status|apply|release]: the boot guard's state, and changing it. The mode is `guard =` in
// [boot] of ootmod.conf; apply runs the guard now (as the trigger does), release gives the bootloader's
// default (GRUB's or systemd-boot's) back.
import { ExitCode, usageError } from '../../errors.js';
import { guardStateFile } from '../../execute/bootguard.js';
import { guardLine, type GuardState } from '../../plan/bootguard.js';
import { missingList } from '../../plan/readiness.js';
import { guardDecisionNow } from '../../pipeline/readiness.js';
import { planBootGuard } from '../../pipeline/work.js';
import { json } from '../format.js';
import type { Session } from '../session.js';
import { runPlanned, withLock } from '../runplan.js';

const MODES = {
  auto: 'acts when a critical module (initramfs, root filesystem) is missing on the kernel the bootloader\'s setting boots',
  yes: 'acts when any needed module is missing on the kernel the bootloader\'s setting boots',
  no: 'only reports',
} as const;

/** What the guard holds, and what release undoes, in two lines. */
function heldLines(state: GuardState): string[] {
  if (state.bootloader === 'systemd-boot') {
    return [
      `held: systemd-boot's default is on ${state.kernel} (default ${state.entry} in ${state.loaderConf}) since ${state.since}, while ${state.heldBack} is not ready`,
      `      undone by release: ${state.createdLoaderConf ? `${state.loaderConf} removed (ootmod made it)` : state.previousDefaultLine == null ? 'the default line removed' : `the line back to '${state.previousDefaultLine}'`}`,
    ];
  }
  return [
    `held: GRUB's default is on ${state.kernel} (saved_entry=${state.entry}) since ${state.since}, while ${state.heldBack} is not ready`,
    `      undone by release: saved_entry ${state.previousSavedEntry === null ? 'unset' : `back to ${state.previousSavedEntry}`}${state.dropIn ? `, ${state.dropIn} removed and update-grub` : ''}`,
  ];
}

async function showGuard(s: Session): Promise<ExitCode> {
  const { view, decision } = await guardDecisionNow(s);
  const mode = s.config().boot.guard;
  const nb = view.nextBoot;
  const state = view.guard;
  if (s.opts.json) {
    s.out(json({
      mode, bootloader: nb.bootloader,
      intended: { kernel: nb.kernel ?? null, how: nb.how, ready: view.next?.ready ?? null, missing: view.next?.missing ?? [] },
      state: state ?? null, stateFile: guardStateFile(s.layout),
      now: { action: decision.action, why: decision.why, ...(decision.action === 'engage' ? { entry: decision.entry, kernel: decision.kernel, heldBack: decision.heldBack } : {}) },
    }));
    return ExitCode.Ok;
  }
  s.out(`guard: ${mode} (${MODES[mode]}; guard = in [boot] of ${s.layout.configFile})`);
  const readiness = view.next ? (view.next.ready ? 'ready' : `NOT READY: ${missingList(view.next.missing)}`) : nb.kernel ? 'not an installed kernel' : '';
  s.out(`bootloader: ${nb.bootloader}; its setting boots ${nb.kernel ? `${nb.kernel} (${nb.how}): ${readiness}` : nb.how}`);
  if (state) for (const line of heldLines(state)) s.out(line);
  else s.out(`held: nothing (${nb.bootloader === 'systemd-boot' ? "systemd-boot's" : nb.bootloader === 'grub' ? "GRUB's" : "the bootloader's"} settings are the admin's)`);
  s.out(`now the guard would ${guardLine(decision)}`);
  return ExitCode.Ok;
}

export async function bootCommand(s: Session, args: string[]): Promise<ExitCode> {
  const [sub = 'status', ...rest] = args;
  if (rest.length) throw usageError(`boot ${sub} takes no arguments: ootmod boot [status|apply|release]`);
  switch (sub) {
    case 'status':
      return showGuard(s);
    case 'apply':
    case 'release':
      return withLock(s, async () => {
        const outcome = await runPlanned(s, await planBootGuard(s, sub === 'release'), { quietSummary: true });
        const failed = outcome && [...outcome.results.values()].find((r) => r.status === 'failed');
        if (failed) return failed.fault ? ExitCode.Environment : ExitCode.Failed;
        const guard = outcome?.results.get('boot-guard');
        if (guard && !s.opts.json && guard.status !== 'done') s.out(`boot guard: ${guard.detail}`);
        return ExitCode.Ok;
      });
    default:
      throw usageError(`unknown boot command '${sub}': use ootmod boot [status|apply|release]`);
  }
}
