// The executor's JobRunner for ootmod's plans: each job runs as its kind says (src/execute/kinds.ts),
// and a job whose dependency failed is blocked as its kind says.
import type { JobRunner } from './executor.js';
import { jobTarget, kindOf, type StepContext } from './kinds.js';

export { TRIGGER_NAME, type InitramfsNews, type StepContext } from './kinds.js';

export function jobRunner(ctx: StepContext): JobRunner {
  return {
    run: (job, results) => kindOf(job).run(job, ctx, results),
    async blocked(job, dependency, results) {
      const why = results.get(dependency.id)?.detail;
      const dep = kindOf(dependency);
      // A machine fault (no build user): not the module's (no failed record); the command exits 5.
      if (dep.failureIsFault) return { status: 'failed', detail: `${jobTarget(dependency)} could not be created${why ? `: ${why}` : ''}`, fault: true };
      const own = kindOf(job).blocked;
      if (own) return own(job, dependency, why, ctx);
      return { status: 'failed', detail: `${dep.blockedAs ?? jobTarget(dependency)} failed${why ? `: ${why}` : ''}` };
    },
  };
}
