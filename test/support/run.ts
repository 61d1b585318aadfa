// A run context for tests that call src/ directly: unconfined (as ootmod run by a user who is not root),
// fresh for each call, so no test sees another's sandbox, dkms.conf reader or caches.
import { createRunContext, type RunContext } from '../../src/pipeline/context.js';

export function unconfinedRun(): RunContext {
  return createRunContext({ enabled: false, unconfined: [] });
}
