// The one executor: runs any plan's job graph. A job starts when the jobs it needs have succeeded and
// the jobs it comes after have finished; a failure fails only what needs it. CPU jobs (module builds,
// Rust trees) each hold a jobserver token while they run, so every compiler of the run shares one budget
// of --jobs; the other jobs (installs, removals, depmod) start as soon as they are ready.
import { environmentFault, errorLine } from '../errors.js';
import type { Job, WorkPlan } from '../plan/jobs.js';
import type { JobId } from '../plan/jobid.js';
import { jobTarget, kindOf } from './kinds.js';
import type { ReadinessView } from '../plan/readiness.js';
import type { GuardDecision } from '../plan/bootguard.js';
import type { BuildRecord } from '../state/store.js';
import type { Jobserver, Token } from './jobserver.js';

/** A job that threw: a machine fault (ENOSPC saving the state, say) keeps its one line with the fix. */
function failedResult(err: unknown): JobResult {
  const fault = environmentFault(err);
  return fault ? { status: 'failed', detail: fault.line(), fault: true } : { status: 'failed', detail: errorLine(err) };
}

export interface JobResult {
  status: 'done' | 'failed' | 'skipped';
  /** One line: why it failed, or what it did. */
  detail?: string;
  /** It failed because of the machine (disk full, read-only fs): the command exits 5. */
  fault?: boolean;
  /** Files under the kernel's module dir changed. */
  touched?: boolean;
  /** The module record the job wrote. */
  record?: BuildRecord;
  /** A Rust tree job: the tree's dir. */
  treeDir?: string;
  /** A boot-notice or boot-guard job: the readiness it read (after the guard's change). */
  readiness?: ReadinessView;
  /** A boot-guard job: what it decided. */
  guard?: GuardDecision;
  /** The job did not run because a job it needs failed. */
  blocked?: boolean;
  elapsedMs?: number;
  /** When the job started, in ms from the start of the run. */
  startMs?: number;
}

export interface ProgressReporter {
  jobStarted(job: Job): void;
  jobFinished(job: Job, result: JobResult): void;
  note(line: string): void;
  /** Stops any live display before the summary is printed. */
  close(): void;
}

export interface JobRunner {
  /** Runs one job; `results` holds the results of every job that finished before it. */
  run(job: Job, results: ReadonlyMap<string, JobResult>): Promise<JobResult>;
  /** A job that does not run because `dependency` failed: records why, where it keeps records. */
  blocked(job: Job, dependency: Job, results: ReadonlyMap<string, JobResult>): Promise<JobResult>;
}

/** A job that compiles (module builds, Rust trees): it holds a jobserver token while it runs. */
export const isCpuJob = (job: Job): boolean => kindOf(job).cpu;

/** Rust trees first: they are the long pole, and Rust module builds wait for them. */
const priority = (job: Job): number => (kindOf(job).first ? 0 : 1);

export async function executePlan(plan: WorkPlan, runner: JobRunner, opts: { jobserver?: Jobserver; reporter: ProgressReporter }): Promise<Map<string, JobResult>> {
  const t0Run = performance.now();
  const byId = new Map(plan.jobs.map((j) => [j.id, j]));
  const results = new Map<string, JobResult>();
  const pending = new Set(plan.jobs);
  let running = 0;
  let acquiring = false;
  let wake: () => void = () => {};
  let woken = new Promise<void>((r) => (wake = r));
  const notify = () => {
    wake();
    woken = new Promise<void>((r) => (wake = r));
  };
  // A dependency that is not in the plan is treated as done (the plan never makes one; a guard).
  const finished = (id: JobId) => !byId.has(id) || results.has(id);
  const ready = (job: Job) => job.needs.every(finished) && job.after.every(finished);

  const start = (job: Job, token?: Token) => {
    pending.delete(job);
    running++;
    opts.reporter.jobStarted(job);
    const t0 = performance.now();
    void runner
      .run(job, results)
      .catch((err): JobResult => failedResult(err))
      .then((result) => {
        token?.release();
        result.elapsedMs = performance.now() - t0;
        result.startMs = t0 - t0Run;
        results.set(job.id, result);
        running--;
        opts.reporter.jobFinished(job, result);
        notify();
      });
  };

  while (pending.size || running) {
    let progressed = true;
    while (progressed) {
      progressed = false;
      for (const job of pending) {
        if (!ready(job)) continue;
        const failedDep = job.needs.map((id) => byId.get(id)).find((d) => d && results.get(d.id)?.status !== 'done' && results.get(d.id)?.status !== 'skipped');
        if (failedDep) {
          pending.delete(job);
          const result = await runner.blocked(job, failedDep, results).catch((err): JobResult => failedResult(err));
          results.set(job.id, { ...result, blocked: true });
          opts.reporter.jobFinished(job, results.get(job.id)!);
          progressed = true;
          continue;
        }
        if (!isCpuJob(job)) {
          start(job);
          progressed = true;
        }
      }
    }
    const cpuReady = () => [...pending].filter((j) => isCpuJob(j) && ready(j)).sort((a, b) => priority(a) - priority(b));
    if (!acquiring && cpuReady().length) {
      if (!opts.jobserver) {
        // No jobserver (a plan with no CPU budget to share): one CPU job at a time.
        if (!running) start(cpuReady()[0]!);
      } else {
        acquiring = true;
        void opts.jobserver.acquire().then((token) => {
          acquiring = false;
          const next = cpuReady()[0];
          if (next) start(next, token);
          else token.release();
          notify();
        });
      }
    }
    if (!running && !acquiring && pending.size && ![...pending].some(ready)) {
      // Unreachable with the planner's cycle checks; a guard so a bad plan cannot hang a dpkg trigger.
      for (const job of pending) {
        results.set(job.id, { status: 'failed', detail: `${jobTarget(job)}: its dependencies never finished` });
        opts.reporter.note(`${job.id}: its dependencies never finished`);
      }
      pending.clear();
      break;
    }
    if (pending.size || running) await woken;
  }
  return results;
}
