// Rendering a plan and its execution: the plan as `would …` lines (--dry-run) or JSON, progress as a line
// per job event when not on a TTY, a live view on a TTY.
import type { ProgressReporter } from '../execute/executor.js';
import { jobTarget, KINDS, kindOf, seconds } from '../execute/kinds.js';
import type { Job, WorkPlan } from '../plan/jobs.js';
import { idTarget, moduleTarget, parseJobId, type JobId } from '../plan/jobid.js';
import { oneLine } from '../errors.js';
import { json } from './format.js';

/** A dependency as a plan line names it: what it acts on. */
function dependencyName(id: JobId): string {
  const ref = parseJobId(id);
  return (ref && (KINDS[ref.kind].asDependency ?? idTarget(ref))) ?? id;
}

function plannedLine(job: Job): string {
  // Dependencies other than the job's own build (an install follows its build; that goes without saying).
  const ref = parseJobId(job.id);
  const own = ref && 'module' in ref && 'kernel' in ref ? moduleTarget(ref) : '';
  const deps = job.needs.map(dependencyName).filter((n) => n !== own);
  return kindOf(job).planLine(job, deps.length ? `, after ${deps.join(', ')}` : '');
}

/** The plan for machines: kinds, targets, reasons and dependencies; no internal objects. */
export function planJson(plan: WorkPlan): unknown {
  return {
    jobs: plan.jobs.map((j) => ({
      id: j.id,
      kind: j.kind,
      target: jobTarget(j),
      kernel: j.kernel ?? null,
      module: 'module' in j ? j.module ?? null : null,
      version: 'version' in j ? j.version ?? null : null,
      reason: j.reason,
      ...kindOf(j).json?.(j),
      needs: j.needs,
      after: j.after,
    })),
    current: plan.current,
    skipped: plan.skipped,
    failed: plan.failed,
    invalid: plan.invalid,
    rust: { current: plan.rustCurrent, unavailable: plan.rustUnavailable },
  };
}

/** The plan for people: what would run, and what needs nothing, with the reasons. */
export function planLines(plan: WorkPlan): string[] {
  const out = plan.jobs.map(plannedLine);
  for (const c of plan.current) out.push(`current  ${c.module}/${c.version} for ${c.kernel}: ${c.reason}`);
  for (const f of plan.failed) out.push(`failed   ${f.module}/${f.version} for ${f.kernel}: ${f.reason}`);
  for (const k of plan.skipped) out.push(`skip     ${k.module}/${k.version} for ${k.kernel}: ${k.reason}`);
  for (const i of uniqueInvalid(plan)) out.push(`invalid  ${i.module}: ${i.reason}`);
  for (const r of plan.rustUnavailable) out.push(`rust     no Rust tree can be built for ${r.kernel}: ${r.reason}`);
  if (!plan.jobs.length) out.push('nothing to do');
  return out.map(oneLine);
}

export function uniqueInvalid(plan: WorkPlan) {
  const seen = new Set<string>();
  return plan.invalid.filter((i) => !seen.has(i.module + i.reason) && seen.add(i.module + i.reason));
}

/** Prints the plan (--dry-run): as lines, or as JSON with --json. */
export function printPlan(out: (line: string) => void, plan: WorkPlan, asJson: boolean): void {
  if (asJson) out(json({ dryRun: true, plan: planJson(plan) }));
  else for (const line of planLines(plan)) out(line);
}

/** What needs no job but is worth saying before the run. */
export function preRunLines(plan: WorkPlan, verbose: boolean): string[] {
  const out: string[] = [];
  for (const k of plan.skipped) out.push(`skip     ${k.module}/${k.version} for ${k.kernel}: ${k.reason}`);
  for (const i of uniqueInvalid(plan)) out.push(`invalid  ${i.module}: ${i.reason}`);
  for (const f of plan.failed) out.push(`failed   ${f.module}/${f.version} for ${f.kernel}: ${f.reason}`);
  for (const r of plan.rustUnavailable) out.push(`rust     no current Rust tree for ${r.kernel}: ${r.reason}`);
  if (verbose) for (const c of plan.current) out.push(`current  ${c.module}/${c.version} for ${c.kernel}`);
  return out.map(oneLine);
}

export function lineReporter(out: NodeJS.WritableStream, verbose = false): ProgressReporter {
  return {
    jobStarted(job) {
      const line = kindOf(job).startLine?.(job);
      if (line) out.write(`${oneLine(line)}\n`);
    },
    jobFinished(job, result) {
      const line = kindOf(job).endLine(job, result, verbose);
      if (line) out.write(`${oneLine(line)}\n`);
    },
    note(line) {
      out.write(`${line}\n`);
    },
    close() {},
  };
}

/** A live view: finished lines scroll above a block that shows the running CPU jobs and their times. */
export function ttyReporter(out: NodeJS.WriteStream): ProgressReporter {
  const running = new Map<string, { job: Job; since: number }>();
  let drawn = 0;
  const clear = () => {
    if (drawn) out.write(`\x1b[${drawn}A\x1b[J`);
    drawn = 0;
  };
  const draw = () => {
    clear();
    const width = out.columns || 100;
    for (const { job, since } of running.values()) {
      out.write(`  ${kindOf(job).live} ${jobTarget(job)}  ${seconds(performance.now() - since)}`.slice(0, width - 1) + '\n');
      drawn++;
    }
  };
  const timer = setInterval(draw, 200);
  timer.unref();
  return {
    jobStarted(job) {
      if (!kindOf(job).live) return;
      running.set(job.id, { job, since: performance.now() });
      draw();
    },
    jobFinished(job, result) {
      running.delete(job.id);
      const line = kindOf(job).endLine(job, result, false);
      clear();
      if (line) out.write(`${oneLine(line)}\n`);
      draw();
    },
    note(line) {
      clear();
      out.write(`${line}\n`);
      draw();
    },
    close() {
      clearInterval(timer);
      clear();
    },
  };
}

/** Progress on `stream` (the session's stderr): redrawn lines on a terminal, else one line per job. */
export function reporterFor(verbose: boolean, stream: NodeJS.WritableStream = process.stderr): ProgressReporter {
  const tty = (stream as NodeJS.WriteStream).isTTY ? (stream as NodeJS.WriteStream) : undefined;
  return tty && !verbose ? ttyReporter(tty) : lineReporter(stream, verbose);
}
