// Executes a plan: independent (module, kernel) jobs in parallel up to --jobs without oversubscribing
// the cores, BUILD_DEPENDS order, one failure never stopping the others, depmod once per kernel.
import { errorLine } from '../errors.js';
import type { KernelTarget } from '../kernel/inventory.js';
import type { BuildJob, Plan } from '../plan/planner.js';
import type { Layout } from '../system/layout.js';
import type { BuildRecord, StateStore } from '../state/store.js';
import { depmod } from './depmod.js';
import { executeJob } from './job.js';

export interface ProgressReporter {
  jobStarted(job: BuildJob): void;
  jobFinished(job: BuildJob, record: BuildRecord): void;
  note(line: string): void;
  /** Stops any live display before the summary is printed. */
  close(): void;
}

export interface ExecuteOptions {
  layout: Layout;
  kernels: ReadonlyMap<string, KernelTarget>;
  store: StateStore;
  jobs: number;
  timeoutMs: number;
  reporter: ProgressReporter;
  /** The kernel build dir for a kernel (its Rust tree when it has one, else its headers). */
  kernelBuildDir(kernel: KernelTarget): string;
  /** Kernels changed before the plan ran (removals): depmod them with the others, once. */
  alsoDepmod?: string[];
}

export interface ExecutionResult {
  records: BuildRecord[];
  depmodFailures: { kernel: string; error: string }[];
  /** Kernels whose module dir changed (depmod ran). */
  touchedKernels: string[];
}

export async function executePlan(plan: Plan, opts: ExecuteOptions): Promise<ExecutionResult> {
  const concurrency = Math.max(1, Math.min(opts.jobs, plan.jobs.length));
  // Each make gets a share of the cores not yet given to a running make (split among the jobs that can
  // still start beside it), so parallel builds never run more than --jobs compilers, and a last job
  // alone gets what is free.
  let allocated = 0;
  const share = (): number => {
    const slots = Math.max(1, Math.min(pending.length + 1, concurrency - running.size));
    return Math.max(1, Math.floor((opts.jobs - allocated) / slots));
  };
  const results = new Map<string, BuildRecord>();
  const touched = new Set<string>(opts.alsoDepmod ?? []);
  const pending = [...plan.jobs];
  const running = new Set<Promise<void>>();

  const ownerOf = (p: string) => opts.store.ownerOf(p);

  const runOne = async (job: BuildJob, makeJobs: number): Promise<void> => {
    const kernel = opts.kernels.get(job.kernel)!;
    opts.reporter.jobStarted(job);
    const failedDep = job.after.find((id) => results.get(id)?.status === 'failed');
    let record: BuildRecord;
    if (failedDep) {
      record = {
        module: job.module, version: job.version, kernel: job.kernel, arch: kernel.arch.machine, status: 'failed',
        inputsKey: job.inputsKey, built: [], installed: opts.store.get(job.module, job.version, job.kernel)?.installed ?? [],
        error: `BUILD_DEPENDS: ${failedDep.split('@')[0]} failed to build`, updatedAt: new Date().toISOString(),
      };
    } else {
      const outcome = await executeJob(job, {
        layout: opts.layout,
        kernel,
        kernelBuildDir: opts.kernelBuildDir(kernel),
        makeJobs,
        timeoutMs: opts.timeoutMs,
        previous: opts.store.get(job.module, job.version, job.kernel),
        replaced: job.replaces.map((v) => opts.store.get(job.module, v, job.kernel)).filter((r): r is BuildRecord => Boolean(r)),
        ownerOf,
      });
      record = outcome.record;
      if (outcome.touchedModules) touched.add(job.kernel);
      if (record.status === 'installed') {
        for (const v of job.replaces) await opts.store.delete(job.module, v, job.kernel);
      }
    }
    results.set(job.id, record);
    await opts.store.put(record);
    opts.reporter.jobFinished(job, record);
  };

  while (pending.length || running.size) {
    const readyIndex = pending.findIndex((j) => j.after.every((id) => results.has(id)));
    if (readyIndex >= 0 && running.size < concurrency) {
      const [job] = pending.splice(readyIndex, 1);
      const makeJobs = share();
      allocated += makeJobs;
      const p: Promise<void> = runOne(job!, makeJobs).finally(() => {
        allocated -= makeJobs;
        running.delete(p);
      });
      running.add(p);
      continue;
    }
    if (running.size === 0) {
      // Unreachable with the planner's cycle check; a guard so a bad plan cannot hang a dpkg trigger.
      for (const job of pending.splice(0)) opts.reporter.note(`${job.id}: its BUILD_DEPENDS never finished`);
      break;
    }
    await Promise.race(running);
  }

  const depmodFailures: ExecutionResult['depmodFailures'] = [];
  await Promise.all(
    [...touched].map(async (k) => {
      try {
        await depmod(opts.layout, k);
      } catch (err) {
        depmodFailures.push({ kernel: k, error: errorLine(err) });
      }
    }),
  );
  return { records: [...results.values()], depmodFailures, touchedKernels: [...touched] };
}
