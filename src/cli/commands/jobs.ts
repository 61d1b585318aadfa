// build, install and autoinstall: parse, call the pipeline, render.
import path from 'node:path';
import { ExitCode, OotmodError } from '../../errors.js';
import { sourceDirName } from '../../modules/names.js';
import { listSourceDirs, type SourceDir } from '../../modules/sources.js';
import type { Action } from '../../plan/planner.js';
import { executeWork, planAdd, planModuleWork, type AddRequest, type Planned, type WorkOutcome } from '../../pipeline/work.js';
import { isSourcePath, parseModuleRef, sourcePathOf, type ModuleRef } from '../modargs.js';
import { planJson } from '../../plan/jobs.js';
import { json } from '../format.js';
import { preRunLines, printPlan, reporterFor } from '../progress.js';
import type { Session } from '../session.js';
import { addRequest } from './add.js';

export type JobsCommand = Action | 'autoinstall';

interface Targets {
  refs?: ModuleRef[];
  sources?: SourceDir[];
  /** Dirs outside /usr/src, placed there by the plan first. */
  adds: AddRequest[];
  /** Adds of dirs not named <name>-<version>: placed by a plan of their own before the build is planned. */
  addFirst: AddRequest[];
}

async function resolveTargets(s: Session, args: string[]): Promise<Targets> {
  const t: Targets = { adds: [], addFirst: [] };
  if (!args.length) return t;
  const refs: ModuleRef[] = [];
  const outside: SourceDir[] = [];
  for (const arg of args) {
    if (isSourcePath(arg)) {
      const dir = sourcePathOf(arg);
      if (path.dirname(dir) === s.layout.srcDir) {
        const { name, version } = sourceDirName(s.layout, dir);
        refs.push({ name, version: version || undefined });
        continue;
      }
      // A tree outside /usr/src is added first, as DKMS's implicit add does.
      const add = await addRequest(s, dir);
      refs.push({ name: add.module, version: add.version });
      if (path.basename(dir) === `${add.module}-${add.version}`) {
        t.adds.push(add);
        outside.push({ dir, guessedName: add.module, guessedVersion: add.version });
      } else {
        t.addFirst.push(add);
      }
    } else {
      refs.push(parseModuleRef(arg));
    }
  }
  const all = (await listSourceDirs(s.layout)).filter((d) => !t.adds.some((a) => a.dest === d.dir));
  const sources = [...all.filter((d) => refs.some((r) => r.name === d.guessedName)), ...outside];
  return { ...t, refs, sources: sources.length === refs.length ? sources : [...all, ...outside] };
}

/** Runs a plan (or prints it on --dry-run); returns undefined on a dry run. */
export async function runPlanned(s: Session, planned: Planned, opts: { quietSummary?: boolean; quietPreRun?: boolean } = {}): Promise<WorkOutcome | undefined> {
  for (const n of planned.notes) s.err(n);
  if (s.opts.dryRun) {
    printPlan(s.out, planned.plan, s.opts.json);
    return undefined;
  }
  if (!opts.quietPreRun) for (const line of preRunLines(planned.plan, s.opts.verbose)) s.err(line);
  const reporter = reporterFor(s.opts.verbose, s.stderr);
  try {
    const outcome = await executeWork(s, planned, reporter);
    reporter.close();
    if (s.opts.json) s.out(json(resultJson(planned, outcome)));
    else if (!opts.quietSummary) s.out(outcome.summary);
    if (outcome.fault) s.err(`ootmod: ${outcome.fault}`);
    return outcome;
  } finally {
    reporter.close();
  }
}

/** The plan with each job's outcome, for machines (--json on a real run). */
function resultJson(planned: Planned, outcome: WorkOutcome): unknown {
  const plan = planJson(planned.plan) as { jobs: { id: string }[] };
  return {
    summary: outcome.summary,
    exit: outcome.exit,
    plan: {
      ...plan,
      jobs: plan.jobs.map((j) => {
        const r = outcome.results.get(j.id);
        const sec = (ms: number | undefined) => (ms === undefined ? null : Math.round(ms) / 1000);
        return {
          ...j, status: r?.status ?? 'not run', detail: r?.detail ?? null, seconds: sec(r?.elapsedMs),
          // Seconds from the start of the run: when it started and ended (the order jobs really ran in).
          started: sec(r?.startMs), finished: sec(r?.startMs === undefined ? undefined : r.startMs + (r.elapsedMs ?? 0)),
        };
      }),
    },
  };
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
    const targets = await resolveTargets(s, args);
    const { addFirst } = targets;
    let { refs, sources, adds } = targets;
    if (addFirst.length) {
      const added = await runPlanned(s, planAdd(s, addFirst), { quietSummary: true });
      if (!added) {
        s.out(`then would ${command} ${addFirst.map((a) => `${a.module}/${a.version}`).join(', ')} (planned once added: the dir is not named <name>-<version>)`);
        return ExitCode.Ok;
      }
      const failed = [...added.results.values()].find((r) => r.status === 'failed');
      if (failed) throw new OotmodError(`adding failed: ${failed.detail}`, undefined, ExitCode.Failed);
      ({ refs, sources, adds } = await resolveTargets(s, args.map((a) => addFirst.find((x) => isSourcePath(a) && x.from === sourcePathOf(a))?.dest ?? a)));
    }
    const planned = await planModuleWork(s, { action: command === 'build' ? 'build' : 'install', refs, sources, adds, label: command, inDpkg: Boolean(process.env.DPKG_MAINTSCRIPT_PACKAGE) });
    const outcome = await runPlanned(s, planned);
    return outcome?.exit ?? ExitCode.Ok;
  });
}
