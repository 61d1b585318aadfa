// trigger: what ootmod's triggered postinst runs at the end of a dpkg run, and what the kernel hooks run
// outside dpkg: forget removed kernels and sources, then bring every kernel up to date.
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { ExitCode } from '../../errors.js';
import { planTrigger } from '../../pipeline/work.js';
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
}

export async function triggerRun(s: Session, opts: TriggerOptions): Promise<ExitCode> {
  const exit = await withLock(s, async () => {
    const queued = await takeQueue(s);
    const planned = await planTrigger(s, opts);
    const outcome = await runPlanned(s, planned, { quietSummary: true });
    if (!outcome || s.opts.json) return outcome?.exit ?? ExitCode.Ok;
    const initramfs = planned.plan.jobs.filter((j) => j.kind === 'initramfs' && outcome.results.get(j.id)?.status === 'done').map((j) => j.kernel);
    s.out(`${outcome.summary}${queued.length ? `; queued by hooks: ${queued.join(', ')}` : ''}${initramfs.length ? `; initramfs updated for ${initramfs.join(', ')}` : ''}`);
    return outcome.exit;
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
