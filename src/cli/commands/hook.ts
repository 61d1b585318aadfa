// hook: the logic of the kernel hooks in /etc/kernel/*.d/ootmod (called as `ootmod hook NAME KVER [IMAGE]`).
// Inside a dpkg run the work is deferred to ootmod's trigger, so it runs once, at the end, when the
// headers, rustc, rust-src and linux-source of the same transaction are all configured.
import { readdir } from 'node:fs/promises';
import { findOnPath } from '../../system/programs.js';
import { run } from '../../system/run.js';
import { ExitCode, OotmodError, errorLine } from '../../errors.js';
import { INITRAMFS_JOB_ENV } from '../../execute/initramfs.js';
import { notReadyBlock } from '../../plan/readiness.js';
import { planDefer, planInitramfsCheck, planKernelRemoval } from '../../pipeline/work.js';
import type { Session } from '../session.js';
import { runPlanned, withLock } from '../runplan.js';
import { triggerRun } from './trigger.js';

/** DEB_MAINT_PARAMS: the maintainer script's arguments, joined by spaces (possibly single-quoted). */
export function maintParams(value: string | undefined): string[] {
  return (value ?? '').trim().split(/\s+/).filter(Boolean).map((w) => w.replace(/^'(.*)'$/, '$1'));
}

/** Inside dpkg: queue the kernel and activate the trigger. False when not in dpkg or the trigger failed. */
async function deferToTrigger(s: Session, kver: string, why: string): Promise<boolean> {
  if (!process.env.DPKG_MAINTSCRIPT_PACKAGE) return false;
  const outcome = await runPlanned(s, planDefer(s, kver, `kernel ${kver}`, why), { quietSummary: true });
  if (!outcome) return true;
  if ([...outcome.results.values()].every((r) => r.status === 'done')) {
    s.err(`ootmod: ${kver} queued; its modules are built at the end of this dpkg run`);
    return true;
  }
  return false;
}

export async function hookCommand(s: Session, args: string[]): Promise<ExitCode> {
  const [name, kver] = args;
  if (!name || !kver) throw new OotmodError('hook needs a hook name and a kernel release', 'ootmod hook header_postinst|postinst|prerm|postrm KVER [IMAGE], ootmod hook initramfs KVER [FILE], ootmod hook boot-entry KVER', ExitCode.Usage);
  const action = maintParams(process.env.DEB_MAINT_PARAMS)[0];
  try {
    switch (name) {
      case 'header_postinst':
      case 'postinst':
        // The image postinst runs hooks for configure only; kernel-install and admins pass nothing.
        if (action && action !== 'configure') return ExitCode.Ok;
        if (await deferToTrigger(s, kver, name)) return ExitCode.Ok;
        return await triggerRun(s, { inDpkg: false, label: `ootmod ${name} ${kver}`, kernelHook: true });
      case 'prerm':
        if (action && action !== 'remove') return ExitCode.Ok;
        return await removeKernel(s, kver);
      case 'postrm':
        // The kernel is gone (prerm removed ootmod's builds for it): the next boot is checked again
        // (readiness notices, the boot guard, which may have held GRUB's default on that kernel).
        if (action && action !== 'remove' && action !== 'purge') return ExitCode.Ok;
        if (await deferToTrigger(s, kver, name)) return ExitCode.Ok;
        return await triggerRun(s, { inDpkg: false, label: `ootmod ${name} ${kver}`, kernelHook: true });
      case 'initramfs':
        // initramfs-tools' post-update hook: KVER's initramfs was rebuilt (its own trigger, the admin).
        // One that ootmod's own job asked for is checked by that run.
        if (process.env[INITRAMFS_JOB_ENV]) return ExitCode.Ok;
        // Inside dpkg, while ootmod's trigger is still to run, the trigger checks at the end. That is so
        // in a kernel package's postinst: initramfs-tools' kernel hook makes the new initramfs before
        // ootmod's hook queues the kernel (and before its modules are built). The update-initramfs
        // triggers of initramfs-tools and dracut clear DPKG_MAINTSCRIPT_PACKAGE; dpkg's
        // DPKG_RUNNING_VERSION stays.
        if ((process.env.DPKG_MAINTSCRIPT_PACKAGE ?? '').startsWith('linux-image-')) return ExitCode.Ok;
        if ((process.env.DPKG_MAINTSCRIPT_PACKAGE || process.env.DPKG_RUNNING_VERSION) && (await triggerPending(s))) return ExitCode.Ok;
        return await initramfsRebuilt(s, kver);
      case 'boot-entry':
        // kernel-install's last plugin: KVER's initramfs and boot entry are written. Inside dpkg the trigger checks at the end.
        if (process.env.DPKG_MAINTSCRIPT_PACKAGE) return ExitCode.Ok;
        return await initramfsRebuilt(s, kver);
      default:
        throw new OotmodError(`unknown hook '${name}'`, 'use header_postinst, postinst, prerm, postrm, initramfs or boot-entry', ExitCode.Usage);
    }
  } catch (err) {
    if (err instanceof OotmodError && err.exitCode === ExitCode.Usage) throw err;
    // A hook runs inside the kernel's maintainer script: never fail the kernel install.
    s.err(`ootmod: hook ${name} ${kver}: ${errorLine(err)}`);
    return s.config().strict ? ExitCode.Failed : ExitCode.Ok;
  }
}

/** Before a kernel's files go: what ootmod built and installed for it, and its Rust tree. */
async function removeKernel(s: Session, kver: string): Promise<ExitCode> {
  return withLock(s, async () => {
    const planned = await planKernelRemoval(s, kver);
    const outcome = await runPlanned(s, planned, { quietSummary: true });
    if (!outcome || s.opts.json) return outcome?.exit ?? ExitCode.Ok;
    const builds = planned.plan.jobs.filter((j) => j.kind === 'forget' && j.module).length;
    const tree = planned.plan.jobs.some((j) => j.kind === 'rust-clean' && outcome.results.get(j.id)?.status === 'done');
    s.err(`ootmod: removed ${builds} module build(s)${tree ? ' and the Rust tree' : ''} of ${kver}`);
    return [...outcome.results.values()].some((r) => r.status === 'failed') ? ExitCode.Failed : ExitCode.Ok;
  });
}

/** ootmod's trigger is still to run in this dpkg run: hooks queued work for it, or dpkg has it pending (file triggers). */
async function triggerPending(s: Session): Promise<boolean> {
  if ((await readdir(s.layout.queueDir).catch(() => [] as string[])).length > 0) return true;
  if (s.layout.root !== '/' || !findOnPath('dpkg-query')) return false;
  const r = await run('dpkg-query', ['-W', '-f', '${db:Status-Status}\n', 'ootmod', 'ootmod-static'], { allowFailure: true });
  return /^triggers-(pending|awaited)$/m.test(r.stdout);
}

/** A new initramfs of KVER: the next boot checked again (the guard, the notices); the end-of-apt block when it is not ready. */
async function initramfsRebuilt(s: Session, kver: string): Promise<ExitCode> {
  return withLock(s, async () => {
    const outcome = await runPlanned(s, await planInitramfsCheck(s, kver), { quietSummary: true });
    if (!outcome || s.opts.json) return ExitCode.Ok;
    const readiness = outcome.results.get('boot-notice')?.readiness;
    for (const line of (readiness && notReadyBlock(readiness)) ?? []) s.err(line);
    return ExitCode.Ok;
  });
}
