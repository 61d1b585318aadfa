// Rendering a plan and its execution: the plan as `would …` lines (--dry-run) or JSON, progress as a line
// per job event when not on a TTY, a live view on a TTY.
import type { JobResult, ProgressReporter } from '../execute/executor.js';
import { jobTarget, planJson, type Job, type WorkPlan } from '../plan/jobs.js';
import { idTarget, moduleTarget, parseJobId, type JobId } from '../plan/jobid.js';
import { oneLine } from '../errors.js';
import { json } from './format.js';

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

/** A dependency as a plan line names it: what it acts on. */
function dependencyName(id: JobId): string {
  const ref = parseJobId(id);
  return ref?.kind === 'build-user' ? 'the build user' : (ref && idTarget(ref)) ?? id;
}

function plannedLine(job: Job): string {
  // Dependencies other than the job's own build (an install follows its build; that goes without saying).
  const ref = parseJobId(job.id);
  const own = ref && 'module' in ref && 'kernel' in ref ? moduleTarget(ref) : '';
  const deps = job.needs.map(dependencyName).filter((n) => n !== own);
  const needs = deps.length ? `, after ${deps.join(', ')}` : '';
  switch (job.kind) {
    case 'rust-tree':
      return `would build the Rust tree of ${job.kernel} (${job.reason})`;
    case 'build':
    case 'install':
    case 'uninstall':
      return `would ${job.kind} ${jobTarget(job)} (${job.reason}${needs})`;
    case 'forget':
      return `would forget ${jobTarget(job)} (${job.reason})`;
    case 'rust-clean':
      return `would remove the Rust tree of ${job.kernel} (${job.reason})`;
    case 'depmod':
      return `would run depmod for ${job.kernel} (once, after its ${job.after.length} job(s), if one changed files)`;
    case 'initramfs':
      return `would update the initramfs of ${job.kernel}${job.tool === 'dracut' ? ' (dracut --force)' : job.viaTrigger ? " (through initramfs-tools' trigger)" : ''}`;
    case 'add':
      return `would add ${job.module}/${job.version}: copy ${job.from} to ${job.dest}${job.postAdd ? ' and run its POST_ADD' : ''}`;
    case 'dkms-takeover':
      return `would take over ${jobTarget(job)} from DKMS: remove ${[...job.copies, job.link].join(', ')} (${job.reason}${job.after.length ? ', after its install' : ''})`;
    case 'dkms-tree':
      return `would write ${job.dkmsTree} (${job.reason})`;
    case 'defer':
      return `would queue ${job.what} and activate ootmod's dpkg trigger (${job.reason})`;
    case 'build-user':
      return `would create the system user ${job.user} with useradd --system (${job.reason})`;
    case 'boot-guard':
      if (job.release) return `would give ${jobTarget(job)} back as the admin had it (${job.preview ?? job.reason})`;
      return `would run the boot guard after the other jobs (${job.reason})${job.preview ? `; as things are now it would ${job.preview}` : ''}`;
    case 'boot-notice':
      return `would update the notices of the next boot's readiness after the other jobs: ${job.files.join(', ')} (${job.reason})`;
  }
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

function startLine(job: Job): string | undefined {
  if (job.kind === 'build') return `start    ${jobTarget(job)} (build: ${job.reason})`;
  if (job.kind === 'rust-tree') return `rust     building the Rust tree of ${job.kernel} (${job.reason})`;
  return undefined;
}

function endLine(job: Job, r: JobResult, verbose: boolean): string | undefined {
  const took = seconds(r.elapsedMs ?? 0);
  const log = r.record?.log ? ` (log: ${r.record.log})` : '';
  switch (job.kind) {
    case 'rust-tree':
      return r.status === 'failed' ? `rust     the Rust tree of ${job.kernel} failed: ${r.detail}` : `rust     built the Rust tree of ${job.kernel} in ${took} (${r.detail})`;
    case 'build':
      if (r.status === 'failed') return `failed   ${jobTarget(job)} after ${took}: ${r.detail}${r.blocked ? '' : log}`;
      return `built    ${jobTarget(job)} in ${took}`;
    case 'install':
      if (r.status === 'failed') return r.blocked && r.detail === 'its build failed' ? undefined : `failed   ${jobTarget(job)}: ${r.detail}${log}`;
      return `installed ${jobTarget(job)}`;
    case 'build-user':
      return r.status === 'failed' ? `failed   to create ${jobTarget(job)}: ${r.detail}` : `created the system user ${job.user} for unprivileged module builds`;
    case 'add':
      return r.status === 'failed' ? `failed   to add ${jobTarget(job)}: ${r.detail}` : `added ${jobTarget(job)}`;
    case 'uninstall':
      if (r.status === 'failed') return `failed   to remove ${jobTarget(job)}: ${r.detail}`;
      return r.status === 'done' ? `removed ${job.module}/${job.version} from ${job.kernel} (${job.reason})` : undefined;
    case 'dkms-takeover':
      if (r.status === 'failed') return `failed   to take over ${jobTarget(job)} from DKMS: ${r.detail}`;
      return r.status === 'done' ? `took over ${jobTarget(job)} from DKMS (removed its copy from updates/dkms)` : undefined;
    case 'boot-guard':
      if (r.status === 'failed') return `failed   boot guard: ${r.detail}`;
      return r.status === 'done' || verbose ? `boot guard: ${r.detail}` : undefined;
    case 'boot-notice':
      if (r.status === 'failed') return `failed   to update the notices of the next boot's readiness: ${r.detail}`;
      return verbose && r.detail ? `notice   ${r.detail}` : undefined;
    case 'depmod':
    case 'initramfs':
      if (r.status === 'failed') return `${job.kind} failed for ${job.kernel}: ${r.detail}`;
      return verbose && r.status === 'done' ? `${job.kind.padEnd(8)} ${job.kernel}${r.detail ? ` (${r.detail})` : ''}` : undefined;
    default:
      if (r.status === 'failed') return `failed   ${job.kind} ${jobTarget(job)}: ${r.detail}`;
      return verbose ? `${job.kind.padEnd(8)} ${jobTarget(job)}` : undefined;
  }
}

export function lineReporter(out: NodeJS.WritableStream, verbose = false): ProgressReporter {
  return {
    jobStarted(job) {
      const line = startLine(job);
      if (line) out.write(`${oneLine(line)}\n`);
    },
    jobFinished(job, result) {
      const line = endLine(job, result, verbose);
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
      out.write(`  ${job.kind === 'rust-tree' ? 'building' : job.kind} ${jobTarget(job)}  ${seconds(performance.now() - since)}`.slice(0, width - 1) + '\n');
      drawn++;
    }
  };
  const timer = setInterval(draw, 200);
  timer.unref();
  return {
    jobStarted(job) {
      if (job.kind !== 'build' && job.kind !== 'rust-tree') return;
      running.set(job.id, { job, since: performance.now() });
      draw();
    },
    jobFinished(job, result) {
      running.delete(job.id);
      const line = endLine(job, result, false);
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
