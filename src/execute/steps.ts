// The executor's JobRunner for ootmod's plans: each job runs as its kind says (src/execute/kinds.ts);
// a job whose dependency failed is recorded as blocked.
import type { Job } from '../plan/jobs.js';
import type { BuildRecord } from '../state/store.js';
import type { JobResult, JobRunner } from './executor.js';
import { jobTarget, kindOf, type StepContext } from './kinds.js';

export { TRIGGER_NAME, type InitramfsNews, type StepContext } from './kinds.js';

const failed = (detail: string): JobResult => ({ status: 'failed', detail });

export function jobRunner(ctx: StepContext): JobRunner {
  const { store } = ctx;
  return {
    run: (job, results) => kindOf(job).run(job, ctx, results),
    async blocked(job: Job, dependency: Job, results) {
      const why = results.get(dependency.id)?.detail;
      // No build user: the machine's fault, not the module's (no failed record); the command exits 5.
      if (dependency.kind === 'build-user') return { status: 'failed', detail: `${jobTarget(dependency)} could not be created${why ? `: ${why}` : ''}`, fault: true };
      const reason = `${dependency.kind === 'rust-tree' ? 'the Rust tree' : jobTarget(dependency)} failed${why ? `: ${why}` : ''}`;
      // An install whose own build failed: the build's record already says why.
      const sameModule = (job.kind === 'build' || job.kind === 'install') && (dependency.kind === 'build' || dependency.kind === 'install') &&
        dependency.module === job.module && dependency.version === job.version && dependency.kernel === job.kernel;
      if ((job.kind === 'build' || job.kind === 'install') && !sameModule) {
        const previous = store.get(job.module, job.version, job.kernel);
        const kernel = ctx.kernels.get(job.kernel);
        const error = dependency.kind === 'rust-tree'
          ? `it has Rust code and the Rust tree of ${job.kernel} could not be built${why ? `: ${why}` : ''}`
          : `BUILD_DEPENDS: ${dependency.kind === 'build' || dependency.kind === 'install' ? dependency.module : jobTarget(dependency)} failed to build`;
        const record: BuildRecord = {
          module: job.module, version: job.version, kernel: job.kernel, arch: kernel?.arch.machine ?? previous?.arch ?? '',
          status: 'failed', inputsKey: 'blocked', built: [], installed: previous?.installed ?? [], error, updatedAt: new Date().toISOString(),
        };
        await store.put(record);
        return { status: 'failed', detail: error, record };
      }
      return failed(sameModule ? 'its build failed' : reason);
    },
  };
}
