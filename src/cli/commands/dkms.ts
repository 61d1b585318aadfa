// `ootmod dkms ARGS`: DKMS's command line (what ootmod-dkms's /usr/sbin/dkms runs), translated into
// ootmod's own commands in this process; and `ootmod dkms common.postinst`, what dh_dkms's postinst runs.
// Inside a dpkg run, add/build/install/autoinstall record the request and leave the work to ootmod's
// trigger, so a transaction of N module packages is built once, at its end, and never fails a package.
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { parseDkmsArgs, type DkmsRequest } from '../../dkms/args.js';
import { frameworkJobs, ignoredSettings, noAutoinstall, ootmodFramework } from '../../dkms/framework.js';
import { dkmsTreeBuilds, isRegistered, listRegistry, registryDir, removedMark } from '../../dkms/registry.js';
import { queueEntry, type QueuedRequest } from '../../dkms/requests.js';
import { dkmsStatusLines, withDkmsTree } from '../../dkms/status.js';
import { DKMS_INTERFACE_VERSION } from '../../dkms/version.js';
import { dkmsKeyChoice } from '../../dkms/mok.js';
import { ExitCode, OotmodError, environmentFault, errorLine } from '../../errors.js';
import { removedMarker, sourceDirName } from '../../modules/names.js';
import { listSourceDirs, loadSpec } from '../../modules/sourcedirs.js';
import { planAdd, planDefer, planDkmsRegistry, type WorkOutcome } from '../../pipeline/work.js';
import type { PlanItem } from '../../plan/jobs.js';
import type { Layout } from '../../system/layout.js';
import { sourcePathOf } from '../modargs.js';
import { createSession, type Session } from '../session.js';
import { addCommand, addRequest } from './add.js';
import { hookCommand } from './hook.js';
import { jobsCommand } from './build.js';
import { endTransaction, runPlanned, withLock } from '../runplan.js';
import { removeCommand } from './remove.js';
import { statusRows, type StatusRow } from '../../state/status.js';

const USAGE = `Usage: dkms [action] [options] [module/module-version] [/path/to/source-tree]

ootmod-dkms: DKMS's command line, run by ootmod. Actions: add, build, install, uninstall, unbuild,
remove, status, autoinstall, generate_mok, kernel_postinst, kernel_prerm (and --version). Options: -m MODULE[/VERSION],
-v VERSION, -k KVER[/ARCH] (repeatable), -a ARCH, --all, --force, -j N, -q, --verbose, --dry-run (ootmod's: print the plan, change nothing),
--kernelsourcedir DIR, --sourcetree DIR, --installtree DIR, --dkmstree DIR.
Without -k, build and install act on every kernel that has headers. Inside a dpkg run, add, build,
install and autoinstall are done by ootmod's trigger at the end of the run. See man ootmod.
`;

/** DKMS's exit codes for ootmod's (see the header of DKMS's script and README.md). */
export function dkmsExit(code: ExitCode, action: string): number {
  switch (code) {
    case ExitCode.Ok:
    case ExitCode.Skipped:
      return code;
    case ExitCode.Failed:
      // 10: make failed; 11: autoinstall had failures; 14: kernel_prerm failures.
      return action === 'autoinstall' || action === 'kernel_postinst' ? 11 : action === 'build' || action === 'install' ? 10 : 1;
    case ExitCode.Usage:
      return 2;
    case ExitCode.InvalidSource:
      return 8;
    case ExitCode.NotFound:
      return 3;
    case ExitCode.Environment:
      return 1;
    default:
      return code;
  }
}

/** --sourcetree and --installtree: the layout with those dirs moved. */
function withTrees(layout: Layout, req: DkmsRequest): Layout {
  if (!req.sourceTree && !req.installTree) return layout;
  const srcDir = req.sourceTree ? layout.at(path.resolve(req.sourceTree)) : layout.srcDir;
  const modulesDir = req.installTree ? layout.at(path.resolve(req.installTree)) : layout.modulesDir;
  return {
    ...layout,
    srcDir,
    modulesDir,
    moduleSource: (name, version) => path.join(srcDir, `${name}-${version}`),
    kernelDir: (kver) => path.join(modulesDir, kver),
    kernelBuildLink: (kver) => path.join(modulesDir, kver, 'build'),
    installDir: (kver) => path.join(modulesDir, kver, 'updates', 'ootmod'),
  };
}

/** A stream that drops what is written (DKMS's `> /dev/null`). */
const discard = (): Writable => new Writable({ write: (_chunk, _encoding, done) => done() });

function inDpkg(): boolean {
  return Boolean(process.env.DPKG_MAINTSCRIPT_PACKAGE);
}

/**
 * Inside dpkg (and strict = no): records the request for ootmod's trigger and activates it (a defer job);
 * false when that is not possible, and the work is then done at once.
 */
async function deferToTrigger(s: Session, req: QueuedRequest | { action: 'autoinstall' }): Promise<boolean> {
  if (!inDpkg() || s.config().strict) return false;
  const what = 'module' in req ? `${req.module}/${req.version}` : 'every module';
  const outcome = await withLock(s, () => runPlanned(s, planDefer(s, queueEntry(req), `dkms ${req.action} ${what}`, `asked by ${process.env.DPKG_MAINTSCRIPT_PACKAGE}`), { quietSummary: true }));
  // A dry run printed the plan.
  if (!outcome) return true;
  if (![...outcome.results.values()].every((r) => r.status === 'done')) return false;
  s.out(`ootmod-dkms: ${req.action} of ${what} queued; ootmod builds it at the end of this dpkg run (see ootmod status)`);
  return true;
}

interface Target {
  name: string;
  version: string;
}

/** NAME and VERSION of the request: -m/-v, NAME/VERSION, a source path, or the only version in /usr/src. */
async function target(s: Session, req: DkmsRequest, action: string): Promise<Target> {
  if (req.path) {
    const dir = sourcePathOf(req.path);
    if (path.dirname(dir) !== s.layout.srcDir) {
      // A tree elsewhere is placed at /usr/src/<name>-<version> first, as DKMS's add does: over what is
      // there (DKMS copies over it; ootmod replaces it whole), saying so only with --force, as DKMS.
      const replace = ['add', 'build', 'install'].includes(action);
      const add = await addRequest(s, dir, { replace });
      if (replace && s.opts.force && existsSync(add.dest)) s.out(`Forcing install of ${add.module}/${add.version}`);
      const outcome = await withLock(s, () => runPlanned(s, planAdd(s, [add]), { quietSummary: true }));
      const failed = outcome && [...outcome.results.values()].find((r) => r.status === 'failed');
      if (failed) throw new OotmodError(`adding ${add.module}/${add.version} failed: ${failed.detail}`, undefined, ExitCode.Failed);
      return { name: add.module, version: add.version };
    }
    return sourceDirName(s.layout, dir, registryDir(s.layout, req.dkmsTree));
  }
  if (!req.module) throw new OotmodError(`${action} needs a module`, `dkms ${action} -m NAME -v VERSION (or NAME/VERSION)`, ExitCode.Usage);
  if (req.version) return { name: req.module, version: req.version };
  const versions = (await listSourceDirs(s.layout, { includeDkms: true })).filter((d) => d.guessedName === req.module);
  if (versions.length === 1) return { name: req.module, version: versions[0]!.guessedVersion };
  throw new OotmodError(
    `${action} needs the version of ${req.module}${versions.length ? ` (${versions.map((v) => v.guessedVersion).join(', ')} are in ${s.layout.srcDir})` : ''}`,
    `dkms ${action} -m ${req.module} -v VERSION`,
    ExitCode.Usage,
  );
}

/** `dkms add`: the source must be in /usr/src; it is registered in DKMS's registry and is ootmod's to build. */
async function addModule(s: Session, t: Target, registry: string, opts: { quiet?: boolean; again?: boolean } = {}): Promise<number> {
  const dir = s.layout.moduleSource(t.name, t.version);
  if (!existsSync(path.join(dir, 'dkms.conf'))) {
    throw new OotmodError(`${existsSync(dir) ? `${dir} has no dkms.conf` : `could not find module source directory ${dir}`}`, 'install the module package, or put the source there', existsSync(dir) ? ExitCode.InvalidSource : ExitCode.NotFound);
  }
  if (isRegistered(registry, t) && !existsSync(removedMarker(s.layout, `${t.name}-${t.version}`)) && !opts.again) {
    s.err(`Error! DKMS tree already contains: ${t.name}/${t.version}`);
    s.err(`You cannot add the same module/version combo more than once.`);
    return 3;
  }
  // Validates the source and runs its POST_ADD (an add job), as DKMS's add does. Quiet: what
  // common.postinst runs as `dkms add > /dev/null` (errors still go to stderr).
  const stdout = s.stdout;
  if (opts.quiet) s.stdout = discard();
  const added = await addCommand(s, [`${t.name}/${t.version}`]).finally(() => (s.stdout = stdout));
  if (added !== ExitCode.Ok) return dkmsExit(added, 'add');
  // The link names the system path, as DKMS's does (also under --root).
  const link = path.join(registry, t.name, t.version, 'source');
  const register = { module: t.name, version: t.version, registry, link, source: path.join('/', path.relative(s.layout.root, dir)), marker: removedMark(s.layout, t), reason: 'dkms add' };
  const outcome = await withLock(s, () => runPlanned(s, planDkmsRegistry(s, { dkmsRegister: [register] }, 'dkms add'), { quietSummary: true }));
  failedJob(outcome, `registering ${t.name}/${t.version}`);
  if (!opts.quiet && outcome) s.out(`Creating symlink ${link} -> ${dir}`);
  return 0;
}

/** A registry plan's failed job: one line, exit 1 (as DKMS's failed add or remove). */
function failedJob(outcome: WorkOutcome | undefined, what: string): void {
  const failed = outcome && [...outcome.results.values()].find((r) => r.status === 'failed');
  if (failed) throw new OotmodError(`${what} failed: ${failed.detail}`, undefined, failed.fault ? ExitCode.Environment : ExitCode.Failed);
}

/** `rebuild`: a package's postinst (common.postinst), which builds a current module again, as DKMS's. */
async function buildOrInstall(s: Session, action: 'build' | 'install', t: Target, registry: string, opts: { rebuild?: boolean } = {}): Promise<number> {
  if (!isRegistered(registry, t) || existsSync(removedMarker(s.layout, `${t.name}-${t.version}`))) await addModule(s, t, registry, { quiet: true, again: true });
  if (await deferToTrigger(s, { action, module: t.name, version: t.version, ...(opts.rebuild ? { rebuild: true } : {}) })) return 0;
  // What is built (installed) and current already is not built again, and said in DKMS's words; exit 0, as DKMS.
  const onCurrent = (item: PlanItem, arch: string) => s.out(action === 'build'
    ? `Module ${item.module}/${item.version} already built for kernel ${item.kernel} (${arch}), skip. You may override by specifying --force.`
    : `Module ${item.module}/${item.version} already installed on kernel ${item.kernel} (${arch}), skip. You may override by specifying --force.`);
  return dkmsExit(await jobsCommand(s, action, [`${t.name}/${t.version}`], { ...opts, onCurrent }), action);
}

async function removeModule(s: Session, command: 'uninstall' | 'remove', t: Target): Promise<number> {
  try {
    return dkmsExit(await removeCommand(s, command, [`${t.name}/${t.version}`]), command);
  } catch (err) {
    // Nothing built or installed: DKMS says so and goes on.
    if (err instanceof OotmodError && err.exitCode === ExitCode.NotFound) {
      s.out(`Module ${t.name}/${t.version} is not ${command === 'uninstall' ? 'installed' : 'built'} for ${s.opts.kernels.join(', ') || 'any kernel'}. Skipping...`);
      return 0;
    }
    throw err;
  }
}

/**
 * DKMS's status: the module versions in DKMS's registry only (what `dkms add` registered), each with
 * what ootmod built and installed for it; a source no `dkms add` registered is ootmod's alone (ootmod
 * status shows it) and not listed, as DKMS would not list it.
 */
function statusCommandDkms(s: Session, req: DkmsRequest, registry: string): number {
  const entries = listRegistry(s.layout, registry, { name: req.module, version: req.version });
  const registered = new Set(entries.filter((e) => !e.broken).map((e) => `${e.name}/${e.version}`));
  const ours = statusRows(s.layout, s.opts.kernels, { module: req.module, version: req.version }).filter((r) => r.kernel !== null && registered.has(`${r.module}/${r.version}`));
  // What DKMS itself built and installed (before ootmod-dkms, or what ootmod could not build) is listed too.
  const rows = withDkmsTree(ours, entries.filter((e) => !e.broken).flatMap((e) => dkmsTreeBuilds(registry, e).map((b) => ({ module: e.name, version: e.version, ...b }))));
  const added = entries.filter((e) => !e.broken).map((e): StatusRow => ({ module: e.name, version: e.version, kernel: null, arch: null, status: 'added', detail: null, signed: null, files: [], log: null, error: null, updatedAt: null }));
  const out = dkmsStatusLines([...rows, ...added], s.opts.kernels, entries.filter((e) => e.broken).map((e) => `${e.name}/${e.version}`));
  for (const l of out.lines) s.out(l);
  for (const w of out.warnings) s.err(w);
  return 0;
}

/** `dkms generate_mok`: DKMS's key pair (its rules, see src/dkms/mok.ts), created when missing, as DKMS prints it. */
async function generateMok(s: Session): Promise<number> {
  const choice = dkmsKeyChoice(s.layout);
  const shown = (p: string) => (s.layout.root === '/' || p.startsWith('pkcs11:') ? p : path.join('/', path.relative(s.layout.root, p)));
  s.out(`Signing key: ${shown(choice.key)}`);
  s.out(`Public certificate (MOK): ${shown(choice.cert)}`);
  if (choice.key.startsWith('pkcs11:') || (existsSync(choice.key) && existsSync(choice.cert))) return 0;
  if (!s.opts.dryRun) s.out('Certificate or key are missing, generating self signed certificate for MOK...');
  const outcome = await withLock(s, () => runPlanned(s, planDkmsRegistry(s, { signingKey: { choice, reason: 'dkms generate_mok: the pair is missing' } }, 'dkms generate_mok'), { quietSummary: true }));
  failedJob(outcome, 'generating the signing key pair');
  return 0;
}

/** What DKMS's autoinstall prints, and its exit, while /etc/dkms/no-autoinstall exists. */
function autoinstallDisabledLine(s: Session): number {
  s.out('Automatic installation of modules has been disabled.');
  return 0;
}

async function act(s: Session, req: DkmsRequest): Promise<number> {
  const registry = registryDir(s.layout, req.dkmsTree);
  const action = req.action!;
  switch (action) {
    case 'version':
      s.out(`dkms-${DKMS_INTERFACE_VERSION}`);
      return 0;
    case 'help':
      s.stdout.write(USAGE);
      return 0;
    case 'status':
      return statusCommandDkms(s, req, registry);
    case 'generate_mok':
      return generateMok(s);
    case 'add':
      return addModule(s, await target(s, req, action), registry);
    case 'build':
    case 'install':
      return buildOrInstall(s, action, await target(s, req, action), registry);
    case 'uninstall':
      return removeModule(s, 'uninstall', await target(s, req, action));
    case 'unbuild':
      return removeModule(s, 'remove', await target(s, req, action));
    case 'remove': {
      const t = await target(s, req, action);
      const code = await removeModule(s, 'remove', t);
      if (code === 0 && !s.opts.kernels.length) {
        const marker = existsSync(s.layout.moduleSource(t.name, t.version)) ? removedMark(s.layout, t) : undefined;
        const unregister = { module: t.name, version: t.version, registry, marker, reason: 'dkms remove --all' };
        const outcome = await withLock(s, () => runPlanned(s, planDkmsRegistry(s, { dkmsUnregister: [unregister] }, 'dkms remove'), { quietSummary: true }));
        failedJob(outcome, `removing ${t.name}/${t.version} from DKMS's registry`);
        if (outcome) s.out(`Deleting module ${t.name}/${t.version} completely from the DKMS tree.`);
      }
      return code;
    }
    case 'autoinstall': {
      if (noAutoinstall(s.layout)) return autoinstallDisabledLine(s);
      if (await deferToTrigger(s, { action })) return 0;
      return dkmsExit(await jobsCommand(s, 'autoinstall', []), action);
    }
    case 'kernel_postinst':
      if (noAutoinstall(s.layout)) return autoinstallDisabledLine(s);
      return dkmsExit(await hookCommand(s, ['postinst', req.kernels[0]!.kver]), action);
    case 'kernel_prerm':
      return (await hookCommand(s, ['prerm', req.kernels[0]!.kver])) === ExitCode.Ok ? 0 : 14;
    case 'kernel_preinst':
      // DKMS drops its builds for a kernel being reinstalled; ootmod's builds are keyed by the headers'
      // contents, so the postinst rebuilds what changed.
      return 0;
  }
}

/**
 * dh_dkms's postinst: `common.postinst NAME VERSION [TARBALL_ROOT] [ARCH] [UPGRADE]`. Registers the
 * source and, as DKMS 3.2.2's, builds and installs an AUTOINSTALL=yes one for every kernel with headers,
 * again where it is built already (the package was reinstalled or reconfigured: DKMS removes and
 * rebuilds it); a module without AUTOINSTALL is only registered, said in DKMS's words. Inside dpkg, queued
 * for the trigger. Never fails the package for a module that does not build, unless strict = yes.
 */
async function commonPostinst(s: Session, args: string[]): Promise<number> {
  const [name, version] = args;
  if (!name || !version) throw new OotmodError('common.postinst needs NAME and VERSION', '/usr/lib/dkms/common.postinst NAME VERSION [TARBALL_ROOT] [ARCH] [UPGRADE]', ExitCode.Usage);
  if (noAutoinstall(s.layout)) {
    s.out('autoinstall for dkms modules has been disabled.');
    return 0;
  }
  const t = { name, version };
  const registry = s.layout.dkmsRegistry;
  if (!existsSync(s.layout.moduleSource(name, version))) {
    s.err(`ootmod-dkms: ${s.layout.moduleSource(name, version)} does not exist: nothing to build for ${name}/${version}`);
    return 0;
  }
  try {
    s.out(`Loading new ${name}/${version} DKMS files...`);
    const added = await addModule(s, t, registry, { quiet: true, again: true });
    if (added !== 0) return s.config().strict ? added : 0;
  } catch (err) {
    s.err(`ootmod-dkms: ${errorLine(err)}`);
    return s.config().strict ? dkmsExit(err instanceof OotmodError ? err.exitCode : ExitCode.Failed, 'add') : 0;
  }
  // DKMS's common.postinst builds only a module with AUTOINSTALL set, and leaves the others to the
  // package's own `dkms install` (or the admin's). AUTOINSTALL="no" is not set here (see README).
  const spec = await loadSpec({ dir: s.layout.moduleSource(name, version), guessedName: name, guessedVersion: version }, { layout: s.layout, conf: s.run.dkmsConf, jobs: s.opts.jobs, checkOwnership: s.isRoot }).catch(() => undefined);
  if (spec && !spec.autoinstall) {
    s.out(`Not building the ${name} module which does not have AUTOINSTALL enabled.`);
    return 0;
  }
  const code = await buildOrInstall(s, 'install', t, registry, { rebuild: true }).catch((err: unknown) => {
    s.err(`ootmod-dkms: ${errorLine(err)}`);
    return 1;
  });
  if (code === 0 || code === 77) return 0;
  s.err(`ootmod-dkms: ${name}/${version} did not build or install for every kernel: see ootmod status ${name}`);
  return s.config().strict ? code : 0;
}

/** Entry point: `ootmod [--root DIR] dkms ARGS`. */
export async function dkmsMain(root: string, argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  let req: DkmsRequest;
  try {
    req = first === 'common.postinst'
      ? { kernels: [], all: false, force: false, quiet: false, verbose: false, noDepmod: false, dryRun: false, ignored: [] }
      : parseDkmsArgs(argv);
  } catch (err) {
    if (!(err instanceof OotmodError)) throw err;
    process.stderr.write(`ootmod-dkms: ${err.line()}\n`);
    return dkmsExit(err.exitCode, '');
  }
  const s = createSession({
    root,
    dryRun: req.dryRun,
    jobs: req.jobs ?? 0,
    verbose: req.verbose,
    json: false,
    kernels: req.kernels.map((k) => k.kver),
    force: req.force,
    debug: false,
  });
  s.layout = withTrees(s.layout, req);
  if (req.kernelSourceDir) s.err('ootmod-dkms: --kernelsourcedir is ignored: ootmod builds against each kernel\'s own headers (/usr/lib/modules/KVER/build)');
  if (!req.quiet) return dkmsRun(s, req, first, rest);
  // DKMS's -q sends everything to /dev/null: from here on nothing is printed, not even an error (whose
  // exit code stays what ootmod's main would give).
  s.stdout = s.stderr = discard();
  return dkmsRun(s, req, first, rest).catch((err: unknown) => (err instanceof OotmodError ? err.exitCode : environmentFault(err)?.exitCode ?? ExitCode.Internal));
}

async function dkmsRun(s: Session, req: DkmsRequest, first: string | undefined, rest: string[]): Promise<number> {
  // With ootmod-dkms installed, DKMS's framework.conf is ootmod's: parallel_jobs (when no -j) and verbose
  // here, the key, sign_file and compress_*_opts where modules are signed and compressed; the settings
  // ootmod does not follow are named once, for the commands they would change.
  const fw = ootmodFramework(s.layout);
  if (fw) {
    if (req.jobs === undefined && frameworkJobs(fw)) s.opts.jobs = frameworkJobs(fw)!;
    if (fw.get('verbose')) s.opts.verbose = true;
    const ignored = ignoredSettings(fw);
    const action = first === 'common.postinst' ? 'install' : req.action;
    if (ignored.length && action && !['status', 'version', 'help', 'generate_mok'].includes(action)) {
      s.err(`ootmod-dkms: ignoring ${ignored.join(', ')} from /etc/dkms/framework.conf (see README, "ootmod-dkms")`);
    }
  }
  try {
    if (first === 'common.postinst') return await commonPostinst(s, rest);
    if (req.all) s.opts.kernels = [];
    const code = await act(s, req);
    // post_transaction after what changed modules, as DKMS; a build queued for the trigger runs it there.
    const queued = inDpkg() && !s.config().strict;
    if (code === 0 && ['install', 'uninstall', 'unbuild', 'remove', 'autoinstall'].includes(req.action!) && !(queued && ['install', 'autoinstall'].includes(req.action!))) {
      await withLock(s, () => endTransaction(s, s.opts.kernels[0] ?? os.release(), `dkms ${req.action}`));
    }
    return code;
  } catch (err) {
    if (!(err instanceof OotmodError)) throw err;
    s.err(`ootmod-dkms: ${err.line()}`);
    return dkmsExit(err.exitCode, req.action ?? '');
  }
}
