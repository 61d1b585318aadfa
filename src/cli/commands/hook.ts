// hook: the logic of the kernel hooks in /etc/kernel/*.d/ootmod (called as `ootmod hook NAME KVER [IMAGE]`).
// Inside a dpkg run the work is deferred to ootmod's trigger, so it runs once, at the end, when the
// headers, rustc, rust-src and linux-source of the same transaction are all configured.
import { ExitCode, OotmodError, errorLine } from '../../errors.js';
import { forgetKernel } from '../../execute/cleanup.js';
import { cleanRustTrees } from '../../rust/tree.js';
import { run } from '../../system/run.js';
import { StateStore } from '../../state/store.js';
import type { Session } from '../session.js';
import { enqueueKernel, triggerRun } from './trigger.js';

export const TRIGGER_NAME = 'ootmod-rebuild';

/** DEB_MAINT_PARAMS: the maintainer script's arguments, joined by spaces (possibly single-quoted). */
export function maintParams(value: string | undefined): string[] {
  return (value ?? '').trim().split(/\s+/).filter(Boolean).map((w) => w.replace(/^'(.*)'$/, '$1'));
}

async function deferToTrigger(s: Session, kver: string, why: string): Promise<boolean> {
  if (!process.env.DPKG_MAINTSCRIPT_PACKAGE) return false;
  await enqueueKernel(s, kver, why);
  const r = await run('dpkg-trigger', ['--no-await', TRIGGER_NAME], { allowFailure: true });
  if (r.exitCode === 0) {
    s.err(`ootmod: ${kver} queued; its modules are built at the end of this dpkg run`);
    return true;
  }
  return false;
}

export async function hookCommand(s: Session, args: string[]): Promise<ExitCode> {
  const [name, kver] = args;
  if (!name || !kver) throw new OotmodError('hook needs a hook name and a kernel release', 'ootmod hook header_postinst|postinst|prerm|postrm KVER [IMAGE]', ExitCode.Usage);
  const action = maintParams(process.env.DEB_MAINT_PARAMS)[0];
  try {
    switch (name) {
      case 'header_postinst':
      case 'postinst':
        // The image postinst runs hooks for configure only; kernel-install and admins pass nothing.
        if (action && action !== 'configure') return ExitCode.Ok;
        if (await deferToTrigger(s, kver, name)) return ExitCode.Ok;
        return await triggerRun(s, { inDpkg: false, label: `ootmod ${name} ${kver}` });
      case 'prerm':
        if (action && action !== 'remove') return ExitCode.Ok;
        return await removeKernel(s, kver);
      case 'postrm':
        return ExitCode.Ok;
      default:
        throw new OotmodError(`unknown hook '${name}'`, 'use header_postinst, postinst, prerm or postrm', ExitCode.Usage);
    }
  } catch (err) {
    if (err instanceof OotmodError && err.exitCode === ExitCode.Usage) throw err;
    // A hook runs inside the kernel's maintainer script: never fail the kernel install.
    s.err(`ootmod: hook ${name} ${kver}: ${errorLine(err)}`);
    return s.config().strict ? ExitCode.Failed : ExitCode.Ok;
  }
}

/** Before a kernel's files go: what ootmod built and installed for it, and its Rust tree. */
async function removeKernel(s: Session, kver: string): Promise<ExitCode> {
  const release = await s.lock();
  try {
    const store = StateStore.load(s.layout.stateFile);
    const log = { write: async () => {} };
    const n = await forgetKernel(s.layout, store, kver, log);
    const tree = await cleanRustTrees(s.layout, kver);
    s.err(`ootmod: removed ${n} module build(s)${tree ? ' and the Rust tree' : ''} of ${kver}`);
    return ExitCode.Ok;
  } finally {
    await release();
  }
}
