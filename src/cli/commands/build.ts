// build, install and autoinstall: parse, call the pipeline, render.
import path from 'node:path';
import { ExitCode, OotmodError } from '../../errors.js';
import { sourceDirName } from '../../modules/names.js';
import { listSourceDirs, type SourceDir } from '../../modules/sourcedirs.js';
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

export async function jobsCommand(s: Session, command: JobsCommand, args: string[]): Promise<ExitCode> {
  if (command !== 'autoinstall' && !args.length) {
    throw new OotmodError(`${command} needs a module`, `ootmod ${command} NAME[/VERSION] [-k KVER]`, ExitCode.Usage);
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
    const planned = await planModuleWork(s, { action: command === 'build' ? 'build' : 'install', refs, sources, adds, label: command, inDpkg: Boolean(process.env.DPKG_MAINTSCRIPT_PACKAGE) });
    const outcome = await runPlanned(s, planned);
    return outcome?.exit ?? ExitCode.Ok;
  });
}
