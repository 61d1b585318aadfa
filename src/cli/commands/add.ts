// add: place a module source tree at /usr/src/<name>-<version> and run its POST_ADD.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ExitCode, OotmodError } from '../../errors.js';
import { confFiles } from '../../modules/dkmsconf.js';
import { sourceDirName } from '../../modules/names.js';
import { confContext, loadSpec, type SourceDir } from '../../modules/sourcedirs.js';
import { planAdd, type AddRequest } from '../../pipeline/work.js';
import { isSourcePath, parseModuleRef, sourcePathOf } from '../modargs.js';
import type { Session } from '../session.js';
import { runPlanned, withLock } from '../runplan.js';

function sourceDirOf(s: Session, dir: string): SourceDir {
  const { name, version } = sourceDirName(s.layout, dir);
  return { dir, guessedName: name, guessedVersion: version };
}

/**
 * Reads a source dir: the add job that places it at /usr/src/<name>-<version>. Changes nothing. An
 * existing /usr/src/<name>-<version> is replaced only with --force or `replace` (ootmod-dkms, as DKMS).
 */
export async function addRequest(s: Session, from: string, opts: { replace?: boolean } = {}): Promise<AddRequest> {
  const ctx = { layout: s.layout, conf: s.run.dkmsConf, jobs: s.opts.jobs, checkOwnership: false };
  // Read name and version from the tree where it is; the copy is validated fully by the build's read.
  const first = await loadSpec(sourceDirOf(s, from), ctx).catch((err) => {
    // A tree outside /usr/src need not be named <name>-<version> yet.
    if (err instanceof OotmodError && /the source dir must be named/.test(err.message)) return undefined;
    throw err;
  });
  const spec = first ?? (await loadNamesOnly(from, s));
  const dest = s.layout.moduleSource(spec.name, spec.version);
  if (path.resolve(from) !== dest && existsSync(dest) && !s.opts.force && !opts.replace) {
    throw new OotmodError(`${dest} already exists`, `use --force to replace it, or ootmod remove ${spec.name}/${spec.version} first`, ExitCode.InvalidSource);
  }
  const postAdd = first?.scripts.postAdd;
  return { from: path.resolve(from), dest, module: spec.name, version: spec.version, postAdd, reason: path.resolve(from) === dest ? 'already in place' : 'ootmod add' };
}

async function loadNamesOnly(from: string, s: Session) {
  const src = sourceDirOf(s, from);
  const cctx = confContext(src, { layout: s.layout, conf: s.run.dkmsConf, jobs: s.opts.jobs, checkOwnership: false });
  const conf = await s.run.dkmsConf.evaluate(confFiles(path.join(from, 'dkms.conf'), s.layout.dkmsEtcDir, cctx), cctx);
  const name = conf.directives.get('PACKAGE_NAME')?.get(0);
  const version = conf.directives.get('PACKAGE_VERSION')?.get(0);
  if (!name || !version) throw new OotmodError(`${from}/dkms.conf: PACKAGE_NAME and PACKAGE_VERSION must be set`, undefined, ExitCode.InvalidSource);
  return { name, version };
}

export async function addCommand(s: Session, args: string[]): Promise<ExitCode> {
  if (args.length !== 1) throw new OotmodError('add needs one source dir', 'ootmod add /path/to/<name>-<version>', ExitCode.Usage);
  return withLock(s, async () => {
    const arg = args[0]!;
    let from: string;
    if (isSourcePath(arg)) {
      from = sourcePathOf(arg);
    } else {
      const ref = parseModuleRef(arg);
      if (!ref.version) throw new OotmodError(`add needs a path or NAME/VERSION, not '${arg}'`, undefined, ExitCode.Usage);
      from = sourcePathOf(s.layout.moduleSource(ref.name, ref.version));
    }
    const add = await addRequest(s, from);
    const outcome = await runPlanned(s, planAdd(s, [add]), { quietSummary: true });
    if (!outcome) return ExitCode.Ok;
    const failed = [...outcome.results.values()].find((r) => r.status === 'failed');
    if (failed) throw new OotmodError(`adding ${add.module}/${add.version} failed: ${failed.detail}`, undefined, ExitCode.Failed);
    // The placed copy is root's: validate it as every build will.
    await loadSpec(sourceDirOf(s, add.dest), { layout: s.layout, conf: s.run.dkmsConf, jobs: s.opts.jobs, checkOwnership: s.isRoot });
    if (!s.opts.json) s.out(`added ${add.module}/${add.version} at ${add.dest}`);
    return ExitCode.Ok;
  });
}
