// uninstall (keep the build) and remove (uninstall and forget the builds) a module.
import { ExitCode, OotmodError } from '../../errors.js';
import { planRemoval } from '../../pipeline/work.js';
import { parseModuleRef } from '../modargs.js';
import type { Session } from '../session.js';
import { runPlanned, withLock } from '../runplan.js';

export async function removeCommand(s: Session, command: 'uninstall' | 'remove', args: string[]): Promise<ExitCode> {
  if (args.length !== 1) throw new OotmodError(`${command} needs one module`, `ootmod ${command} NAME[/VERSION] [-k KVER]`, ExitCode.Usage);
  const ref = parseModuleRef(args[0]!);
  return withLock(s, async () => {
    const outcome = await runPlanned(s, await planRemoval(s, ref, command === 'remove'), { quietSummary: true });
    if (!outcome || s.opts.json) return outcome?.exit ?? ExitCode.Ok;
    const removed = [...outcome.results.values()].filter((r) => r.status === 'failed').length;
    s.out(outcome.summary);
    return removed ? ExitCode.Failed : ExitCode.Ok;
  });
}
