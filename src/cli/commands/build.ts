// build, install and autoinstall: parse, call the pipeline, render.
import path from 'node:path';
import { autoinstallDisabled } from '../../dkms/framework.js';
import { ExitCode, OotmodError } from '../../errors.js';
import { sourceDirName } from '../../modules/names.js';
import { listSourceDirs, type SourceDir } from '../../modules/sourcedirs.js';
import type { PlanItem } from '../../plan/jobs.js';
import type { Action } from '../../plan/planner.js';
import { planAdd, planModuleWork, type AddRequest } from '../../pipeline/work.js';
import { isSourcePath, parseModuleRef, sourcePathOf, type ModuleRef } from '../modargs.js';
import { runPlanned, withLock } from '../runplan.js';
import type { Session } from '../session.js';
import { addRequest } from './add.js';

export type JobsCommand = Action | 'autoinstall';

interface Targets {
  refs?: ModuleRef[];
  sources?: SourceDir[];
  /** Dirs outside /usr/src, placed there by the plan first. */
  adds: AddRequest[];
  /** Adds of dirs not named <name>-<version>: placed by a plan of their own before the build is planned. */
  addFirst: AddRequest[];
}

async function resolveTargets(s: Session, args: string[]): Promise<Targets> {
  const t: Targets = { adds: [], addFirst: [] };
  if (!args.length) return t;
  const refs: ModuleRef[] = [];
  const outside: SourceDir[] = [];
  for (const arg of args) {
    if (isSourcePath(arg)) {
      const dir = sourcePathOf(arg);
      if (path.dirname(dir) === s.layout.srcDir) {
        const { name, version } = sourceDirName(s.layout, dir);
        refs.push({ name, version: version || undefined });
        continue;
      }
      // A tree outside /usr/src is added first, as DKMS's implicit add does.
      const add = await addRequest(s, dir);
      refs.push({ name: add.module, version: add.version });
      if (path.basename(dir) === `${add.module}-${add.version}`) {
        t.adds.push(add);
        outside.push({ dir, guessedName: add.module, guessedVersion: add.version });
      } else {
        t.addFirst.push(add);
      }
    } else {
      refs.push(parseModuleRef(arg));
    }
  }
  const all = (await listSourceDirs(s.layout)).filter((d) => !t.adds.some((a) => a.dest === d.dir));
  const sources = [...all.filter((d) => refs.some((r) => r.name === d.guessedName)), ...outside];
  return { ...t, refs, sources: sources.length === refs.length ? sources : [...all, ...outside] };
}

export interface JobsOptions {
  /** Build the named modules again even where their build is current (a package's postinst, as DKMS's common.postinst). */
  rebuild?: boolean;
  /** Told of each module the plan found current for a kernel (of that kernel's architecture), before the plan runs. */
  onCurrent?: (item: PlanItem, arch: string) => void;
}

export async function jobsCommand(s: Session, command: JobsCommand, args: string[], opts: JobsOptions = {}): Promise<ExitCode> {
  if (command !== 'autoinstall' && !args.length) {
    throw new OotmodError(`${command} needs a module`, `ootmod ${command} NAME[/VERSION] [-k KVER]`, ExitCode.Usage);
  }
  // With ootmod-dkms, DKMS's no-autoinstall stops ootmod's autoinstall as it stops DKMS's.
  if (command === 'autoinstall' && autoinstallDisabled(s.layout)) {
    s.out('Automatic installation of modules has been disabled (/etc/dkms/no-autoinstall): ootmod install NAME builds one, or remove the file');
    return ExitCode.Ok;
  }
  return withLock(s, async () => {
    const targets = await resolveTargets(s, args);
    const { addFirst } = targets;
    let { refs, sources, adds } = targets;
    if (addFirst.length) {
      const added = await runPlanned(s, planAdd(s, addFirst), { quietSummary: true });
      if (!added) {
        s.out(`then would ${command} ${addFirst.map((a) => `${a.module}/${a.version}`).join(', ')} (planned once added: the dir is not named <name>-<version>)`);
        return ExitCode.Ok;
      }
      const failed = [...added.results.values()].find((r) => r.status === 'failed');
      if (failed) throw new OotmodError(`adding failed: ${failed.detail}`, undefined, ExitCode.Failed);
      ({ refs, sources, adds } = await resolveTargets(s, args.map((a) => addFirst.find((x) => isSourcePath(a) && x.from === sourcePathOf(a))?.dest ?? a)));
    }
    const rebuild = opts.rebuild ? new Set((refs ?? []).flatMap((r) => (r.version ? [`${r.name}/${r.version}`] : []))) : undefined;
    const planned = await planModuleWork(s, { action: command === 'build' ? 'build' : 'install', refs, sources, adds, rebuild, label: command, inDpkg: Boolean(process.env.DPKG_MAINTSCRIPT_PACKAGE) });
    if (opts.onCurrent && !s.opts.dryRun) {
      for (const item of planned.plan.current) opts.onCurrent(item, planned.kernels.find((k) => k.release === item.kernel)?.arch.machine ?? '');
    }
    const outcome = await runPlanned(s, planned);
    return outcome?.exit ?? ExitCode.Ok;
  });
}
