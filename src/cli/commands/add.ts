// add: place a module source tree at /usr/src/<name>-<version> and run its POST_ADD.
import { chmod, cp, lstat, readdir, rename, rm } from 'node:fs/promises';
import { chownSync } from 'node:fs';
import path from 'node:path';
import { runScript } from '../../execute/job.js';
import { ExitCode, OotmodError } from '../../errors.js';
import { confFiles, evaluateConf } from '../../modules/dkmsconf.js';
import { confContext, loadSpec, splitNameVersion, type SourceDir } from '../../modules/sources.js';
import type { CommandLog } from '../../system/run.js';
import { isSourcePath, parseModuleRef, sourcePathOf } from '../modargs.js';
import type { Session } from '../session.js';

/** Makes a copied tree root-owned and not writable by group or others, as a root-built source must be. */
async function secureTree(dir: string): Promise<void> {
  const s = await lstat(dir);
  if (process.getuid?.() === 0) chownSync(dir, 0, 0);
  if (!s.isSymbolicLink()) await chmod(dir, s.mode & 0o7755);
  if (s.isDirectory()) for (const e of await readdir(dir)) await secureTree(path.join(dir, e));
}

function sourceDirOf(dir: string): SourceDir {
  const { name, version } = splitNameVersion(path.basename(dir));
  return { dir, guessedName: name, guessedVersion: version };
}

export async function addSource(s: Session, from: string, opts: { quiet?: boolean } = {}): Promise<{ dir: string; name: string; version: string }> {
  const ctx = { layout: s.layout, jobs: s.opts.jobs, checkOwnership: false };
  // Read name and version from the tree where it is, then copy it and validate the copy fully.
  const first = await loadSpec(sourceDirOf(from), ctx).catch((err) => {
    // A tree outside /usr/src need not be named <name>-<version> yet.
    if (err instanceof OotmodError && /the source dir must be named/.test(err.message)) return undefined;
    throw err;
  });
  const spec = first ?? (await loadNamesOnly(from, s));
  const dest = s.layout.moduleSource(spec.name, spec.version);
  const log: CommandLog = { write: async (text) => void (s.opts.verbose && process.stderr.write(text)) };
  if (path.resolve(from) !== dest) {
    const exists = await lstat(dest).then(() => true, () => false);
    if (exists && !s.opts.force) {
      throw new OotmodError(`${dest} already exists`, `use --force to replace it, or ootmod remove ${spec.name}/${spec.version} first`, ExitCode.InvalidSource);
    }
    if (s.opts.dryRun) {
      s.out(`would copy ${from} to ${dest}`);
      return { dir: dest, name: spec.name, version: spec.version };
    }
    const tmp = `${dest}.ootmod-new`;
    await rm(tmp, { recursive: true, force: true });
    await cp(from, tmp, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
    await secureTree(tmp);
    await rm(dest, { recursive: true, force: true });
    await rename(tmp, dest);
  }
  const final = await loadSpec(sourceDirOf(dest), { ...ctx, checkOwnership: s.isRoot });
  if (final.scripts.postAdd && !s.opts.dryRun) {
    await runScript('POST_ADD', final.scripts.postAdd, dest, { module: final.name, module_version: final.version }, log, 600_000);
  }
  if (!opts.quiet) s.out(`added ${final.name}/${final.version} at ${dest}`);
  return { dir: dest, name: final.name, version: final.version };
}

async function loadNamesOnly(from: string, s: Session) {
  const src = sourceDirOf(from);
  const cctx = confContext(src, { layout: s.layout, jobs: s.opts.jobs, checkOwnership: false });
  const conf = await evaluateConf(confFiles(path.join(from, 'dkms.conf'), s.layout.dkmsEtcDir, cctx), cctx);
  const name = conf.directives.get('PACKAGE_NAME')?.get(0);
  const version = conf.directives.get('PACKAGE_VERSION')?.get(0);
  if (!name || !version) throw new OotmodError(`${from}/dkms.conf: PACKAGE_NAME and PACKAGE_VERSION must be set`, undefined, ExitCode.InvalidSource);
  return { name, version };
}

export async function addCommand(s: Session, args: string[]): Promise<ExitCode> {
  if (args.length !== 1) throw new OotmodError('add needs one source dir', 'ootmod add /path/to/<name>-<version>', ExitCode.Usage);
  const release = s.opts.dryRun ? async () => {} : await s.lock();
  try {
    const arg = args[0]!;
    if (isSourcePath(arg)) {
      await addSource(s, sourcePathOf(arg));
    } else {
      const ref = parseModuleRef(arg);
      if (!ref.version) throw new OotmodError(`add needs a path or NAME/VERSION, not '${arg}'`, undefined, ExitCode.Usage);
      await addSource(s, sourcePathOf(s.layout.moduleSource(ref.name, ref.version)));
    }
    return ExitCode.Ok;
  } finally {
    await release();
  }
}
