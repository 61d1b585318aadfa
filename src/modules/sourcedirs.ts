// Module sources: /usr/src/<name>-<version>/dkms.conf trees, evaluated per kernel into specs.
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { crossOf, type KernelTarget } from '../kernel/inventory.js';
import { ExitCode, OotmodError, escapeControls } from '../errors.js';
import type { Layout } from '../system/layout.js';
import { confFiles, type ConfContext, type ConfEvaluator } from './dkmsconf.js';
import { registeredWithDkms, removedMarker, sourceDirName, splitNameVersion } from './names.js';
import { PACKAGE_WORD, resolveSpec, type ModuleSpec } from './spec.js';

export { registeredWithDkms, splitNameVersion };

export interface SourceDir {
  /** /usr/src/<dir> */
  dir: string;
  /** Name and version as the directory name suggests (DKMS's <name>-<version>). */
  guessedName: string;
  guessedVersion: string;
}

/**
 * Module sources under /usr/src: every dir with a dkms.conf, whatever its name (kernel headers and
 * linux-source dirs have none). Those DKMS has registered are listed only with `includeDkms`; those
 * `dkms remove` took away (ootmod-dkms) are not listed.
 */
export async function listSourceDirs(layout: Layout, opts: { includeDkms?: boolean } = {}): Promise<SourceDir[]> {
  const found: SourceDir[] = [];
  for (const entry of await readdir(layout.srcDir, { withFileTypes: true }).catch(() => [])) {
    if (!entry.isDirectory()) continue;
    const dir = path.join(layout.srcDir, entry.name);
    if (!existsSync(path.join(dir, 'dkms.conf'))) continue;
    const { name, version } = sourceDirName(layout, dir);
    if (!opts.includeDkms && registeredWithDkms(layout, name, version)) continue;
    if (existsSync(removedMarker(layout, entry.name))) continue;
    found.push({ dir, guessedName: name, guessedVersion: version });
  }
  return found.sort((a, b) => a.dir.localeCompare(b.dir));
}

export interface SourceContext {
  layout: Layout;
  /** Evaluates dkms.conf, confined by the run's sandbox. */
  conf: ConfEvaluator;
  kernel?: KernelTarget;
  /** The kernel build dir builds use (the headers, or the kernel's Rust tree). */
  kernelBuildDir?: string;
  jobs: number;
  /** True when ootmod runs as root: then a source a non-root user can write is refused. */
  checkOwnership: boolean;
  /** How long dkms.conf may take to evaluate (default 30 s). */
  evalTimeoutMs?: number;
}

export class InvalidSourceError extends OotmodError {
  readonly problems: string[];
  constructor(readonly sourceDir: string, problems: string[]) {
    // Control characters shown escaped (a newline in a value), so that each problem stays one line.
    super(escapeControls(`${path.join(sourceDir, 'dkms.conf')}: ${problems[0]}`), undefined, ExitCode.InvalidSource);
    this.problems = problems.map(escapeControls);
  }
}

async function checkNotWritableByOthers(file: string, label: string): Promise<string | undefined> {
  const s = await stat(file).catch(() => undefined);
  if (!s) return undefined;
  if (s.uid !== 0) return `${label} is owned by uid ${s.uid}, not root: chown ${s.isDirectory() ? '-R ' : ''}root:root it`;
  if (s.mode & 0o022) return `${label} is writable by group or others: chmod go-w it`;
  return undefined;
}

/**
 * The name and version of a source. Under /usr/src they come from the dir, as DKMS takes them from
 * `-m NAME -v VERSION` and /usr/src/NAME-VERSION (splitNameVersion: after PACKAGE_NAME when the dir
 * starts with it, else before the first '-<digit>'). Elsewhere (a tree to add) from PACKAGE_NAME and PACKAGE_VERSION.
 */
export function sourceIdentity(confName: string, confVersion: string, dir: string, underSrc: boolean): { name: string; version: string; note?: string } | { error: string } {
  const base = path.basename(dir);
  const valid = (w: string) => PACKAGE_WORD.test(w);
  if (base === `${confName}-${confVersion}` && valid(confName) && valid(confVersion)) return { name: confName, version: confVersion };
  if (underSrc) {
    const fromDir = splitNameVersion(base, valid(confName) ? confName : undefined);
    if (fromDir.name && fromDir.version && valid(fromDir.name) && valid(fromDir.version)) {
      return { ...fromDir, note: `dkms.conf says ${confName}/${confVersion}; using ${fromDir.name}/${fromDir.version} from the dir name, as DKMS does` };
    }
  }
  if (!valid(confName)) return { error: `PACKAGE_NAME '${confName}' must hold only letters, digits and _.+~:-` };
  if (!valid(confVersion)) return { error: `PACKAGE_VERSION '${confVersion}' must hold only letters, digits and _.+~:-` };
  return { error: `the source dir must be named ${confName}-${confVersion} after PACKAGE_NAME and PACKAGE_VERSION` };
}

async function fileProblems(spec: ModuleSpec, src: SourceDir, ctx: SourceContext): Promise<string[]> {
  const problems: string[] = [];
  for (const patch of spec.patches) {
    if (!existsSync(path.join(src.dir, 'patches', patch))) {
      problems.push(`PATCH '${patch}' is not in ${path.join(src.dir, 'patches')}: add the file or remove it from PATCH`);
    }
  }
  for (const [directive, script] of Object.entries(spec.scripts)) {
    if (!script) continue;
    const file = script.split(/\s+/)[0]!;
    const base = directive === 'preBuild' || directive === 'postBuild' ? 'the build dir (copied from the source)' : 'the source dir';
    if (file.startsWith('/') || file.split('/').includes('..')) {
      problems.push(`${scriptDirective(directive)} '${file}' must be a path inside ${base}`);
    } else if (!existsSync(path.join(src.dir, file))) {
      problems.push(`${scriptDirective(directive)} script '${file}' does not exist in ${src.dir}: add it or remove ${scriptDirective(directive)}`);
    }
  }
  if (ctx.checkOwnership) {
    // The tree first: when it is a user's, so is everything in it, and chown -R fixes all.
    for (const [file, label] of [
      [src.dir, `the source tree ${src.dir}`],
      [path.join(src.dir, 'dkms.conf'), 'dkms.conf'],
    ] as const) {
      const problem = await checkNotWritableByOthers(file, label);
      if (problem) problems.push(problem);
    }
    // Every Makefile, script and source file runs or is compiled as root too.
    if (!problems.length) {
      const loose = await firstLooseFile(src.dir);
      if (loose) problems.push(await checkNotWritableByOthers(loose, loose) ?? `${loose} is writable by a non-root user`);
    }
  }
  return problems;
}

/** The first file or dir below `dir` (symlinks aside) that a non-root user owns or can write. */
async function firstLooseFile(dir: string): Promise<string | undefined> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isSymbolicLink()) continue;
    const p = path.join(dir, e.name);
    if (await checkNotWritableByOthers(p, p)) return p;
    if (e.isDirectory()) {
      const deeper = await firstLooseFile(p);
      if (deeper) return deeper;
    }
  }
  return undefined;
}

function scriptDirective(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
}

/**
 * DKMS's kernel_source_dir: $install_tree/$kernelver/build, the link itself, when it leads to the
 * headers the build uses (zfs's dkms.conf finds the kernel's full source as its sibling `source`,
 * which Debian's headers packages link to linux-headers-<kver>-common); else that build dir.
 */
export function dkmsKernelSourceDir(layout: Layout, kver: string, buildDir: string): string {
  const link = layout.kernelBuildLink(kver);
  return kver && buildDir && layout.resolveLink(link) === buildDir ? link : buildDir;
}

export function confContext(src: SourceDir, ctx: SourceContext, name = src.guessedName, version = src.guessedVersion): ConfContext {
  const kernel = ctx.kernel;
  const headers = ctx.kernelBuildDir ?? kernel?.headersDir ?? '';
  const autoConf = headers ? path.join(headers, 'include/config/auto.conf') : '';
  const kver = kernel?.release ?? '';
  const cross = kernel && crossOf(kernel);
  return {
    kernelver: kver,
    arch: kernel?.arch.machine ?? '',
    kernel_source_dir: dkmsKernelSourceDir(ctx.layout, kver, headers),
    kernel_config: autoConf && existsSync(autoConf) ? autoConf : kernel?.configPath ?? '',
    dkms_tree: kver ? ctx.layout.buildTree(kver) : ctx.layout.dkmsTree,
    source_tree: ctx.layout.srcDir,
    install_tree: ctx.layout.modulesDir,
    module: name,
    module_version: version,
    parallel_jobs: String(ctx.jobs),
    // DKMS reads CROSS_COMPILE and ARCH from its environment (zfs's PRE_BUILD adds --host= from it).
    ...(cross ? { ARCH: cross.arch, CROSS_COMPILE: cross.crossCompile } : {}),
  };
}

/** Evaluates a source's dkms.conf for one kernel into a validated spec; throws InvalidSourceError. */
export async function loadSpec(src: SourceDir, ctx: SourceContext): Promise<ModuleSpec> {
  const confPath = path.join(src.dir, 'dkms.conf');
  const confStat = await stat(confPath).catch(() => undefined);
  if (!confStat) throw new InvalidSourceError(src.dir, ['no such file: a module source needs a dkms.conf in its top dir']);
  if (!confStat.isFile()) throw new InvalidSourceError(src.dir, ['not a regular file: dkms.conf must be a file of bash assignments']);
  let names = { name: src.guessedName, version: src.guessedVersion };
  for (let attempt = 0; ; attempt++) {
    const cctx = confContext(src, ctx, names.name, names.version);
    let conf;
    try {
      conf = await ctx.conf.evaluate(confFiles(confPath, ctx.layout.dkmsEtcDir, cctx), cctx, ctx.evalTimeoutMs);
    } catch (err) {
      // Keep the remedy: the one line is "problem: fix".
      if (err instanceof OotmodError && err.exitCode !== ExitCode.Environment) throw new InvalidSourceError(src.dir, [err.line().replace(`${confPath}: `, '')]);
      throw err;
    }
    const { spec, errors } = resolveSpec(conf, src.dir);
    if (!spec) throw new InvalidSourceError(src.dir, errors);
    const id = sourceIdentity(spec.name, spec.version, src.dir, path.dirname(src.dir) === ctx.layout.srcDir);
    if ('error' in id) throw new InvalidSourceError(src.dir, [id.error]);
    if (id.note) spec.warnings.push(id.note);
    spec.name = id.name;
    spec.version = id.version;
    // dkms.conf may use $module/$module_version: read it again with the real names when the guess was wrong.
    if (attempt === 0 && (spec.name !== names.name || spec.version !== names.version)) {
      names = { name: spec.name, version: spec.version };
      continue;
    }
    const problems = await fileProblems(spec, src, ctx);
    if (problems.length) throw new InvalidSourceError(src.dir, problems);
    return spec;
  }
}
