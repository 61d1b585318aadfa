// The run context: what one run of ootmod keeps from its start to its end besides the system itself.
// The pipeline creates it (for the CLI's session) and passes each part down to what needs it; no module
// of src/ keeps such state of its own, so a test makes a fresh one instead of resetting anything.
import type { KeyCreations } from '../execute/signing.js';
import { ConfEvaluator } from '../modules/dkmsconf.js';
import { Sandbox, type SandboxPolicy } from '../system/sandbox.js';

export interface RunContext {
  /** How module sources' code runs (confined as the build user, or not), and the build user once found. */
  sandbox: Sandbox;
  /** dkms.conf evaluation through the sandbox; the pipeline opens its shared reader while it plans. */
  dkmsConf: ConfEvaluator;
  /** The signing key pairs being created, each once however many builds ask at the same time. */
  signingKeys: KeyCreations;
  /** Whether this machine's make takes the jobserver's fifo form: asked once per run. */
  makeFifo(): Promise<boolean>;
}

export function createRunContext(policy: SandboxPolicy): RunContext {
  const sandbox = new Sandbox(policy);
  let fifo: Promise<boolean> | undefined;
  return {
    sandbox,
    dkmsConf: new ConfEvaluator(sandbox),
    signingKeys: new Map(),
    // Loaded when asked (tmp-promise comes with the jobserver): most commands never ask.
    makeFifo: () => (fifo ??= import('../execute/jobserver.js').then((m) => m.probeMakeFifo())),
  };
}
