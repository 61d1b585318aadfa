// build, install and autoinstall: parse, call the pipeline, render.
import path from 'node:path';
import { ExitCode, OotmodError } from '../../errors.js';
import { listSourceDirs, type SourceDir } from '../../modules/sources.js';
import type { Action } from '../../plan/planner.js';
import { executeWork, planModuleWork, type Planned, type WorkOutcome } from '../../pipeline/work.js';
import { isSourcePath, parseModuleRef, sourcePathOf, type ModuleRef } from '../modargs.js';
import { preRunLines, printPlan, reporterFor } from '../progress.js';
import type { Session } from '../session.js';
import { addSource } from './add.js';

export type JobsCommand = Action | 'autoinstall';

async function resolveTargets(s: Session, args: string[]): Promise<{ refs?: ModuleRef[]; sources?: SourceDir[] }> {
  if (!args.length) return {};
  const refs: ModuleRef[] = [];
  for (const arg of args) {
    if (isSourcePath(arg)) {
      const dir = sourcePathOf(arg);
      // A tree outside /usr/src is added first, as DKMS's implicit add does.
      const added = path.dirname(dir) === s.layout.srcDir ? undefined : await addSource(s, dir, { quiet: true });
      const base = path.basename(added?.dir ?? dir);
      const m = /^(.*)-([^-]+)$/.exec(base);
      refs.push(added ? { name: added.name, version: added.version } : { name: m?.[1] ?? base, version: m?.[2] });
    } else {
      refs.push(parseModuleRef(arg));
    }
  }
  const all = await listSourceDirs(s.layout);
  const sources = all.filter((d) => refs.some((r) => r.name === d.guessedName));
  return { refs, sources: sources.length === refs.length ? sources : all };
}

/** Runs a plan (or prints it on --dry-run); returns undefined on a dry run. */
export async function runPlanned(s: Session, planned: Planned, opts: { quietSummary?: boolean } = {}): Promise<WorkOutcome | undefined> {
  for (const n of planned.notes) s.err(n);
  if (s.opts.dryRun) {
    printPlan(s.out, planned.plan, s.opts.json);
    return undefined;
  }
  for (const line of preRunLines(planned.plan, s.opts.verbose)) s.err(line);
  const reporter = reporterFor(s.opts.verbose);
  try {
    const outcome = await executeWork(s, planned, reporter);
    reporter.close();
    if (!opts.quietSummary) s.out(outcome.summary);
    return outcome;
  } finally {
    reporter.close();
  }
}

/** Takes the global lock for a real run (a dry run changes nothing and needs none). */
export async function withLock<T>(s: Session, fn: () => Promise<T>): Promise<T> {
  const release = s.opts.dryRun ? async () => {} : await s.lock();
  try {
    return await fn();
  } finally {
    await release();
  }
}

export async function jobsCommand(s: Session, command: JobsCommand, args: string[]): Promise<ExitCode> {
  if (command !== 'autoinstall' && !args.length) {
    throw new OotmodError(`${command} needs a module`, `ootmod ${command} NAME[/VERSION] [-k KVER]`, ExitCode.Usage);
  }
  return withLock(s, async () => {
    const { refs, sources } = await resolveTargets(s, args);
    const planned = await planModuleWork(s, { action: command === 'build' ? 'build' : 'install', refs, sources, label: command });
    const outcome = await runPlanned(s, planned);
    return outcome?.exit ?? ExitCode.Ok;
  });
}
