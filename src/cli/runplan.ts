// Running a plan for a command: its notes, the plan on --dry-run (lines or JSON), else the pre-run lines,
// the progress, the summary or the result JSON; and the global lock around a command's plans.
import { kindOf } from '../execute/kinds.js';
import { executeWork, planPostTransaction, type Planned, type WorkOutcome } from '../pipeline/work.js';
import { json } from './format.js';
import { planJson, preRunLines, printPlan, reporterFor } from './progress.js';
import type { Session } from './session.js';

/** Runs a plan (or prints it on --dry-run); returns undefined on a dry run. */
export async function runPlanned(s: Session, planned: Planned, opts: { quietSummary?: boolean; quietPreRun?: boolean } = {}): Promise<WorkOutcome | undefined> {
  for (const n of planned.notes) s.err(n);
  if (s.opts.dryRun) {
    printPlan(s.out, planned.plan, s.opts.json);
    return undefined;
  }
  const locked = planned.plan.jobs.find((j) => kindOf(j).lock);
  if (locked && !s.holdsLock) throw new Error(`${locked.id} runs under ootmod's lock, and ${planned.label} runs it without (withLock)`);
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
  const held = s.holdsLock;
  s.holdsLock = true;
  try {
    return await fn();
  } finally {
    s.holdsLock = held;
    await release();
  }
}

/**
 * ootmod-dkms: framework.conf's post_transaction at the end of a transaction that changed modules, as
 * a plan of its own (under the lock the caller holds), and DKMS's line about it on stdout.
 */
export async function endTransaction(s: Session, kver: string, reason: string): Promise<void> {
  const planned = planPostTransaction(s, kver, reason);
  if (!planned) return;
  const outcome = await runPlanned(s, planned, { quietSummary: true, quietPreRun: true });
  const line = outcome?.results.get('post-transaction')?.detail;
  if (line && !s.opts.json) s.out(line);
}
