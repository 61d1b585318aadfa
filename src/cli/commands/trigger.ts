// trigger: what ootmod's triggered postinst runs at the end of a dpkg run, and what the kernel hooks run
// outside dpkg: forget removed kernels and sources, then bring every kernel up to date. With DKMS on the
// machine or just gone, it also hands modules between the two (src/dkms/handover.ts).
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { ootmodFramework, postTransaction } from '../../dkms/framework.js';
import { dkmsAutoinstall, dkmsRegisteredRecords } from '../../dkms/handover.js';
import { describeQueued, parseQueued, type QueuedRequest } from '../../dkms/requests.js';
import { ExitCode } from '../../errors.js';
import { dkmsIsInstalled, removedMarker } from '../../modules/names.js';
import { notReadyBlock } from '../../plan/readiness.js';
import { planModuleWork, planRemoval, planTrigger } from '../../pipeline/work.js';
import type { Session } from '../session.js';
import { runPlanned, withLock } from './jobs.js';

/** The entries hooks and deferred requests queued inside dpkg: taken (and named in the summary) by the trigger. */
async function takeQueue(s: Session): Promise<string[]> {
  const names = await readdir(s.layout.queueDir).catch(() => [] as string[]);
  if (!s.opts.dryRun) for (const n of names) await rm(path.join(s.layout.queueDir, n), { force: true });
  return names;
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
    const queued = await takeQueue(s);
    let exit: ExitCode = ExitCode.Ok;
    const dkms = dkmsIsInstalled(s.layout);
    const back = dkms ? await handBack(s) : { exit: ExitCode.Ok, handedBack: false };
    exit = worse(exit, back.exit);
    // A module asked for explicitly inside dpkg (dkms build|install, a package's postinst: installed,
    // reinstalled, reconfigured) is built even if it failed before from the same inputs.
    const requests = queued.map(parseQueued).filter((r): r is QueuedRequest => r !== undefined);
    const planned = await planTrigger(s, { ...opts, retry: new Set(requests.map((r) => `${r.module}/${r.version}`)), kernelsChanged: opts.kernelHook || queued.length > 0 });
    const outcome = await runPlanned(s, planned, { quietSummary: true });
    // --json changes only what is printed: every follow-up below still runs, each plan run printing its
    // own JSON document (jq reads them in turn). A dry run prints the explicit requests' plans too, then stops.
    if (outcome) exit = worse(exit, outcome.exit);

    // `dkms build|install NAME` from a maintainer script, for a module autoinstall does not cover
    // (AUTOINSTALL is not yes): done now; a module the trigger just built is current, a no-op.
    for (const action of ['install', 'build'] as const) {
      const refs = requests.filter((r) => r.action === action && existsSync(s.layout.moduleSource(r.module, r.version))).map((r) => ({ name: r.module, version: r.version }));
      if (!refs.length) continue;
      // One attempt per run: a module the plan above just built is not built again here.
      const tried = (r: { name: string; version: string }) => planned.plan.jobs.some((j) => j.kind === 'build' && j.module === r.name && j.version === r.version);
      const retry = new Set(refs.filter((r) => !tried(r)).map((r) => `${r.name}/${r.version}`));
      const explicit = await runPlanned(s, await planModuleWork(s, { action, refs, retry, label: `${opts.label} (dkms ${action})`, inDpkg: opts.inDpkg }), { quietSummary: true });
      exit = worse(exit, explicit?.exit);
    }
    if (!outcome) return ExitCode.Ok;
    if (back.handedBack) {
      // DKMS installs them again, as its own kernel hook would.
      for (const line of await dkmsAutoinstall(s.layout, planned.kernels)) s.err(`ootmod: ${line}`);
    }
    // Sources `dkms remove` left unbuilt whose files are gone now: nothing to remember.
    const removedDir = path.dirname(removedMarker(s.layout, 'x'));
    for (const name of await readdir(removedDir).catch(() => [] as string[])) {
      if (!existsSync(path.join(s.layout.srcDir, name))) await rm(path.join(removedDir, name), { force: true });
    }

    // With ootmod-dkms, framework.conf's post_transaction ends a run that installed or removed modules, as DKMS's.
    const modulesChanged = planned.plan.jobs.some((j) => ['install', 'uninstall'].includes(j.kind) && outcome.results.get(j.id)?.status === 'done');
    if (modulesChanged && exit === ExitCode.Ok) {
      const line = await postTransaction(s.layout, ootmodFramework(s.layout), planned.kernels[0]?.release);
      if (line) s.out(line);
    }
    const initramfs = planned.plan.jobs.filter((j) => j.kind === 'initramfs' && outcome.results.get(j.id)?.status === 'done').map((j) => j.kernel);
    const asked = queued.map(describeQueued);
    if (!s.opts.json) s.out(`${outcome.summary}${queued.length ? `; queued by hooks: ${asked.join(', ')}` : ''}${initramfs.length ? `; initramfs updated for ${initramfs.join(', ')}` : ''}`);
    // Kernels or modules changed: say it when the kernel that boots next is not ready.
    const notice = planned.plan.jobs.find((j) => j.kind === 'boot-notice');
    const changed = queued.length > 0 || opts.kernelHook || planned.plan.jobs.some((j) => j !== notice && outcome.results.get(j.id)?.status === 'done');
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
