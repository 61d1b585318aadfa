// Progress: a line per job start and end when not on a TTY, a live view on a TTY.
import type { ProgressReporter } from '../execute/executor.js';
import type { BuildJob } from '../plan/planner.js';
import type { BuildRecord } from '../state/store.js';

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

function endLine(job: BuildJob, record: BuildRecord, elapsed: number): string {
  const what = `${job.module}/${job.version} for ${job.kernel}`;
  if (record.status === 'failed') return `failed   ${what} after ${seconds(elapsed)}: ${record.error}${record.log ? ` (log: ${record.log})` : ''}`;
  return `${record.status.padEnd(8)} ${what} in ${seconds(elapsed)}`;
}

export function lineReporter(out: NodeJS.WritableStream): ProgressReporter {
  const started = new Map<string, number>();
  return {
    jobStarted(job) {
      started.set(job.id, performance.now());
      out.write(`start    ${job.module}/${job.version} for ${job.kernel} (${job.action}: ${job.reason})\n`);
    },
    jobFinished(job, record) {
      out.write(`${endLine(job, record, performance.now() - (started.get(job.id) ?? performance.now()))}\n`);
    },
    note(line) {
      out.write(`${line}\n`);
    },
    close() {},
  };
}

/** A live view: finished lines scroll above a block that shows the running jobs and their times. */
export function ttyReporter(out: NodeJS.WriteStream): ProgressReporter {
  const running = new Map<string, { job: BuildJob; since: number }>();
  let drawn = 0;
  const clear = () => {
    if (drawn) out.write(`\x1b[${drawn}A\x1b[J`);
    drawn = 0;
  };
  const draw = () => {
    clear();
    const width = out.columns || 100;
    for (const { job, since } of running.values()) {
      out.write(`  building ${job.module}/${job.version} for ${job.kernel}  ${seconds(performance.now() - since)}`.slice(0, width - 1) + '\n');
      drawn++;
    }
  };
  const timer = setInterval(draw, 200);
  timer.unref();
  return {
    jobStarted(job) {
      running.set(job.id, { job, since: performance.now() });
      draw();
    },
    jobFinished(job, record) {
      const since = running.get(job.id)?.since ?? performance.now();
      running.delete(job.id);
      clear();
      out.write(`${endLine(job, record, performance.now() - since)}\n`);
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
