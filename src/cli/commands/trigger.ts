// trigger: what ootmod's triggered postinst runs at the end of a dpkg run, and what the kernel hooks run
// outside dpkg: forget removed kernels and sources, then bring every kernel up to date. With DKMS on the
// machine or just gone, it also hands modules between the two (src/dkms/handover.ts).
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { autoinstallDisabled } from '../../dkms/framework.js';
import { dkmsRegisteredRecords } from '../../dkms/handover.js';
import { describeQueued, parseQueued, type QueuedRequest } from '../../dkms/requests.js';
import { ExitCode } from '../../errors.js';
import { dkmsIsInstalled } from '../../modules/names.js';
import type { Job } from '../../plan/jobs.js';
import { notReadyBlock } from '../../plan/readiness.js';
import { planModuleWork, planRemoval, planTrigger } from '../../pipeline/work.js';
import type { Session } from '../session.js';
import { endTransaction, runPlanned, withLock } from '../runplan.js';

/** The entries hooks and deferred requests queued inside dpkg: taken by the trigger's plan (a dequeue job), and named in the summary. */
async function readQueue(s: Session): Promise<string[]> {
  return readdir(s.layout.queueDir).catch(() => [] as string[]);
}

export interface TriggerOptions {
  /** Running inside dpkg (a triggered postinst, or a hook that could not defer). */
  inDpkg: boolean;
  /** What started it, for the summary. */
  label: string;
  /** A kernel hook started it (a kernel was installed or removed). */
  kernelHook?: boolean;
}

/** Worst of two exit statuses (a skip is not a failure). */
const worse = (a: ExitCode, b: ExitCode | undefined): ExitCode => (b !== undefined && b !== ExitCode.Ok && b !== ExitCode.Skipped ? b : a);

/** DKMS is back (dkms installed again): uninstall and forget what ootmod built from its sources, one plan per module. */
async function handBack(s: Session): Promise<{ exit: ExitCode; handedBack: boolean }> {
  let exit: ExitCode = ExitCode.Ok;
  const modules = dkmsRegisteredRecords(s.layout);
  for (const ref of modules) {
    const outcome = await runPlanned(s, await planRemoval({ ...s, opts: { ...s.opts, kernels: [] } }, ref, true), { quietSummary: true });
    exit = worse(exit, outcome?.exit);
    s.err(`ootmod: ${s.opts.dryRun ? 'would hand' : 'handed'} ${ref.name}/${ref.version} back to DKMS`);
  }
  return { exit, handedBack: modules.length > 0 };
}

export async function triggerRun(s: Session, opts: TriggerOptions): Promise<ExitCode> {
  const exit = await withLock(s, async () => {
    const queued = await readQueue(s);
    let exit: ExitCode = ExitCode.Ok;
    const dkms = dkmsIsInstalled(s.layout);
    const back = dkms ? await handBack(s) : { exit: ExitCode.Ok, handedBack: false };
    exit = worse(exit, back.exit);
    // A module asked for explicitly inside dpkg (dkms build|install, a package's postinst: installed,
    // reinstalled, reconfigured) is built even if it failed before from the same inputs.
    const requests = queued.map(parseQueued).filter((r): r is QueuedRequest => r !== undefined);
    // A package's postinst (reinstalled, reconfigured) rebuilds its module, as DKMS's common.postinst.
    const rebuild = new Set(requests.filter((r) => r.rebuild).map((r) => `${r.module}/${r.version}`));
    // DKMS's /etc/dkms/no-autoinstall, with ootmod-dkms: nothing is built for being out of date.
    const noAutoinstall = autoinstallDisabled(s.layout);
    if (noAutoinstall && !s.opts.json) s.err(`ootmod: automatic installation of modules has been disabled (/etc/dkms/no-autoinstall, as DKMS's autoinstall): only modules asked for by name are built`);
    const planned = await planTrigger(s, {
      ...opts, retry: new Set(requests.map((r) => `${r.module}/${r.version}`)), rebuild, noAutoinstall, kernelsChanged: opts.kernelHook || queued.length > 0,
      queued: queued.map((n) => path.join(s.layout.queueDir, n)), handedBack: back.handedBack,
    });
    const outcome = await runPlanned(s, planned, { quietSummary: true });
    // --json changes only what is printed: every follow-up below still runs, each plan run printing its
    // own JSON document (jq reads them in turn). A dry run prints the explicit requests' plans too, then stops.
    if (outcome) exit = worse(exit, outcome.exit);

    // `dkms build|install NAME` from a maintainer script, for a module autoinstall does not cover
    // (AUTOINSTALL is not yes): done now; a module the trigger just built is current, a no-op.
    // One attempt per module and run: a module the plan above built, or the install follow-up (a
    // package script that ran both dkms build and dkms install), is not built again here.
    // A module the plan recorded as failed because this machine cannot build it now (its compiler is
    // missing) is not planned again: the follow-up would only record and print the same failure.
    const tried = new Set(planned.plan.jobs.flatMap((j) => (j.kind === 'build' ? [`${j.module}/${j.version}`] : [])));
    const cannotBuild = new Set(planned.plan.jobs.flatMap((j) => (j.kind === 'record-failure' ? [`${j.module}/${j.version}`] : [])));
    for (const action of ['install', 'build'] as const) {
      const refs = requests
        .filter((r) => r.action === action && !cannotBuild.has(`${r.module}/${r.version}`) && existsSync(s.layout.moduleSource(r.module, r.version)))
        .map((r) => ({ name: r.module, version: r.version }));
      if (!refs.length) continue;
      const retry = new Set(refs.map((r) => `${r.name}/${r.version}`).filter((r) => !tried.has(r)));
      const followUp = await planModuleWork(s, { action, refs, retry, rebuild: new Set([...rebuild].filter((r) => retry.has(r))), label: `${opts.label} (dkms ${action})`, inDpkg: opts.inDpkg });
      for (const j of followUp.plan.jobs) if (j.kind === 'build') tried.add(`${j.module}/${j.version}`);
      const explicit = await runPlanned(s, followUp, { quietSummary: true });
      exit = worse(exit, explicit?.exit);
    }
    // With ootmod-dkms, framework.conf's post_transaction ends a run that installed or removed modules, as
    // DKMS's (a dry run: one that would).
    const modulesChanged = planned.plan.jobs.some((j) => ['install', 'uninstall'].includes(j.kind) && (!outcome || outcome.results.get(j.id)?.status === 'done'));
    if (modulesChanged && exit === ExitCode.Ok) await endTransaction(s, planned.kernels[0]?.release ?? '', `${opts.label} changed modules`);
    if (!outcome) return ExitCode.Ok;

    const initramfs = planned.plan.jobs.filter((j) => j.kind === 'initramfs' && outcome.results.get(j.id)?.status === 'done').map((j) => j.kernel);
    const asked = queued.map(describeQueued);
    if (!s.opts.json) s.out(`${outcome.summary}${queued.length ? `; queued by hooks: ${asked.join(', ')}` : ''}${initramfs.length ? `; initramfs updated for ${initramfs.join(', ')}` : ''}`);
    // Kernels or modules changed: say it when the kernel that boots next is not ready.
    const notice = planned.plan.jobs.find((j) => j.kind === 'boot-notice');
    // (Taking the queue and dropping removed marks change no module.)
    const bookkeeping = (j: Job) => j === notice || j.kind === 'dequeue' || j.kind === 'removed-marks';
    const changed = queued.length > 0 || opts.kernelHook || planned.plan.jobs.some((j) => !bookkeeping(j) && outcome.results.get(j.id)?.status === 'done');
    const readiness = notice && outcome.results.get(notice.id)?.readiness;
    const block = changed && readiness ? notReadyBlock(readiness) : undefined;
    for (const line of block ?? []) s.err(line);
    return exit;
  });
  // Inside dpkg a failed optional module must not fail the package, unless the admin asked for it.
  if (exit !== ExitCode.Ok && !s.config().strict) {
    s.err('ootmod: some modules failed; see ootmod status (set strict = yes under [trigger] in /etc/ootmod/ootmod.conf to fail the dpkg run instead)');
    return ExitCode.Ok;
  }
  return exit;
}

export function triggerCommand(s: Session): Promise<ExitCode> {
  return triggerRun(s, { inDpkg: Boolean(process.env.DPKG_MAINTSCRIPT_PACKAGE), label: 'ootmod trigger' });
}
