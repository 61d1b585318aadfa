// Executes one (module, kernel) job: private build dir, patches, PRE_BUILD, make, POST_BUILD, collect,
// strip, sign, compress, then (for install) an atomic placement under the kernel's module dir.
import { existsSync } from 'node:fs';
import { access, constants, cp, lstat, mkdir, readdir, realpath, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { ExitCode, OotmodError, environmentFault } from '../errors.js';
import { crossOf, type Compression, type KernelTarget } from '../kernel/inventory.js';
import { kernelToolEnv } from '../kernel/toolchain.js';
import { dkmsKernelSourceDir } from '../modules/sourcedirs.js';
import type { ModuleSpec } from '../modules/spec.js';
import type { BuildJob, InstallJob } from '../plan/jobs.js';
import { copyFileAtomic } from '../system/files.js';
import type { Layout } from '../system/layout.js';
import { fileLog, quoteArg, run, runShell, type CommandLog, type JobserverClient } from '../system/run.js';
import type { Confinement, Sandbox } from '../system/sandbox.js';
import type { BuildRecord, InstalledFile } from '../state/store.js';
import { freshPerBuildDir, keepPerBuildDir, restorePerBuildDir, writeDkmsTree } from './dkmstree.js';
import { makeCommandLine } from './make.js';
import { compressOptions, ootmodFramework } from '../dkms/framework.js';
import { signFileFor } from '../dkms/mok.js';
import { ensureSigningKey, signModule, type KeyCreations } from './signing.js';

export interface BuildContext {
  layout: Layout;
  kernel: KernelTarget;
  /** The kernel build dir the build uses (the headers, or the kernel's Rust tree). */
  kernelBuildDir: string;
  timeoutMs: number;
  /** The previous record of this (module, version, kernel), if any. */
  previous?: BuildRecord;
  jobserver?: JobserverClient;
  /** The run's sandbox: the build's commands run confined through it. */
  sandbox: Sandbox;
  /** The run's signing key pairs being created. */
  signingKeys: KeyCreations;
}

export interface InstallContext {
  layout: Layout;
  kernel: KernelTarget;
  timeoutMs: number;
  /** The record of the build to install (status built, or installed from older inputs). */
  record?: BuildRecord;
  /** Installed records of other versions of this module that the job replaces. */
  replaced: BuildRecord[];
  /** Which other module, if any, owns an installed path. */
  ownerOf(installedPath: string): string | undefined;
}

const SUFFIX: Record<Compression, string> = { none: '', gzip: '.gz', xz: '.xz', zstd: '.zst' };
const ALL_SUFFIXES = ['', '.gz', '.xz', '.zst'];

function scriptEnv(job: BuildJob | InstallJob, ctx: { layout: Layout; kernel: KernelTarget }, kernelBuildDir: string): Record<string, string> {
  return {
    kernelver: job.kernel,
    arch: ctx.kernel.arch.machine,
    module: job.module,
    module_version: job.version,
    kernel_source_dir: dkmsKernelSourceDir(ctx.layout, job.kernel, kernelBuildDir),
    dkms_tree: ctx.layout.buildTree(job.kernel),
    source_tree: ctx.layout.srcDir,
    install_tree: ctx.layout.modulesDir,
  };
}

/**
 * A PRE_BUILD-style directive as DKMS runs it (run_build_script): `<dir>/<value>` is one bash command
 * line, evaluated (invoke_command's eval), so the value's words, quotes, `;` and `&&` are bash's.
 * `file` is what must be executable: `<dir>/<value>` up to its first space, as DKMS checks it.
 */
export function scriptCommand(script: string, dir: string): { file: string; command: string } {
  const run = `${dir}/${script}`;
  return { file: run.split(' ')[0]!, command: `${quoteArg(dir)}/${script}` };
}

/** Runs a PRE_BUILD-style directive (a script path relative to `dir`, with optional arguments) from `dir`. */
export async function runScript(directive: string, script: string, dir: string, env: Record<string, string | undefined>, log: CommandLog, timeoutMs: number, jobserver?: JobserverClient, confine?: Confinement): Promise<void> {
  const { file, command } = scriptCommand(script, dir);
  try {
    await access(file, constants.X_OK);
  } catch {
    throw new OotmodError(`${directive} script ${file} is missing or not executable`, `chmod +x it in the module source`);
  }
  await runShell(command, { cwd: dir, env, log, timeoutMs, step: directive, jobserver, confine });
}

/** A built .ko, read by root out of a dir the build user owns: only a regular file inside that dir. */
async function builtModule(buildDir: string, built: string): Promise<string | undefined> {
  const st = await lstat(built).catch(() => undefined);
  if (!st) return undefined;
  const real = await realpath(built);
  if (!st.isFile() || !real.startsWith(`${await realpath(buildDir)}/`)) {
    throw new OotmodError(`${path.relative(buildDir, built)} is not a regular file inside the build dir`, 'the build must leave the .ko itself, not a link to it');
  }
  return real;
}

/** The strip of the kernel's binutils: the cross one (aarch64-linux-gnu-strip) for a foreign kernel. */
export function stripCommand(kernel: KernelTarget): string {
  if (kernel.compiler.clang) return 'llvm-strip';
  const cross = crossOf(kernel);
  return cross ? `${cross.crossCompile}strip` : 'strip';
}

function perBuildDirOf(job: BuildJob | InstallJob, ctx: { layout: Layout; kernel: KernelTarget }): string {
  return ctx.layout.perBuildDir(job.kernel, job.module, job.version, ctx.kernel.arch.machine);
}

/** The per-build dir kept with the build's files, and for a DKMS-registered source copied into DKMS's tree. */
async function keepBuildResult(job: BuildJob | InstallJob, ctx: { layout: Layout; kernel: KernelTarget }, result: { built: string[]; log?: string; symvers?: string }): Promise<void> {
  await keepPerBuildDir(perBuildDirOf(job, ctx), result);
  if (job.dkmsTree) await writeDkmsTree(perBuildDirOf(job, ctx), job.dkmsTree);
}

async function buildModules(job: BuildJob, ctx: BuildContext, staging: string, log: CommandLog): Promise<string[]> {
  const { spec } = job;
  const buildDir = ctx.layout.buildDir(job.kernel, spec.name, spec.version);
  const env = scriptEnv(job, ctx, ctx.kernelBuildDir);
  // DKMS's $dkms_tree/$module/$module_version/$kernelver/$arch (the per-build dir): where the built
  // modules are (module/) when POST_BUILD runs; zfs's POST_BUILD copies its zfs_config.h and Module.symvers there.
  const baseDir = perBuildDirOf(job, ctx);
  await rm(buildDir, { recursive: true, force: true });
  await mkdir(path.dirname(buildDir), { recursive: true });
  await log.write(`# copying ${spec.sourceDir} to ${buildDir}\n`);
  await cp(spec.sourceDir, buildDir, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  // The source's code runs as the build user, offline, with only the build dir, DKMS's dir of the built
  // modules (for POST_BUILD) and a scratch dir writable.
  const scratch = path.join(path.dirname(buildDir), 'tmp');
  await rm(scratch, { recursive: true, force: true });
  // POST_BUILD scripts (ZFS's) write into it: writable too.
  await freshPerBuildDir(baseDir);
  const confine = await ctx.sandbox.confineTo([buildDir, baseDir], scratch, spec.name);

  for (const patch of spec.patches) {
    await run('patch', ['-p1', '--batch', '--forward', '-i', path.join(spec.sourceDir, 'patches', patch)], {
      cwd: buildDir, log, step: `PATCH ${patch}`, timeoutMs: ctx.timeoutMs, confine,
    });
  }
  // PRE_BUILD, MAKE and POST_BUILD see what DKMS exports before PRE_BUILD (the kernel's CC, KERNEL_CC, and
  // LD, KERNEL_LD for an lld-linked kernel), and no user compiler flags leaking into kbuild.
  const buildEnv = { ...env, ...kernelToolEnv(ctx.kernel), CXX: undefined, CFLAGS: undefined, CXXFLAGS: undefined, LDFLAGS: undefined, MAKEFLAGS: undefined, MFLAGS: undefined };
  if (spec.scripts.preBuild) await runScript('PRE_BUILD', spec.scripts.preBuild, buildDir, buildEnv, log, ctx.timeoutMs, ctx.jobserver, confine);

  const commandLine = makeCommandLine(spec.make, {
    kernelver: job.kernel,
    kernelBuildDir: ctx.kernelBuildDir,
    buildDir,
    llvm: ctx.kernel.compiler.clang,
    cross: crossOf(ctx.kernel),
  });
  await runShell(commandLine, { cwd: buildDir, log, step: 'make', timeoutMs: ctx.timeoutMs, jobserver: ctx.jobserver, confine, env: buildEnv });

  const files: string[] = [];
  for (const m of spec.modules) {
    const expected = path.join(buildDir, m.builtLocation, `${m.builtName}.ko`);
    const built = await builtModule(buildDir, expected);
    if (!built) {
      throw new OotmodError(
        `make succeeded but ${path.relative(buildDir, expected)} was not built`,
        'check BUILT_MODULE_NAME and BUILT_MODULE_LOCATION in dkms.conf',
      );
    }
    const out = path.join(staging, `${m.destName}.ko`);
    await cp(built, out);
    if (m.strip) {
      await run(stripCommand(ctx.kernel), ['-g', out], { log, step: 'strip' });
    }
    files.push(out);
  }
  // As DKMS: POST_BUILD runs once the modules are collected, with them in $dkms_tree/.../$arch/module/
  // (here stripped; ootmod signs and compresses them afterwards) and the build's Module.symvers.
  if (spec.scripts.postBuild) {
    // The build user could write there: whatever it left at module/ (a link, say) goes, and root makes it anew.
    const moduleDir = path.join(baseDir, 'module');
    await rm(moduleDir, { recursive: true, force: true });
    await mkdir(moduleDir);
    for (const f of files) await cp(f, path.join(moduleDir, path.basename(f)));
    const symvers = path.join(buildDir, 'Module.symvers');
    if ((await lstat(symvers).catch(() => undefined))?.isFile()) await cp(symvers, path.join(moduleDir, 'Module.symvers'));
    await runScript('POST_BUILD', spec.scripts.postBuild, buildDir, buildEnv, log, ctx.timeoutMs, ctx.jobserver, confine);
  }
  await rm(scratch, { recursive: true, force: true });
  return files;
}

async function signAndCompress(files: string[], ctx: { layout: Layout; kernel: KernelTarget; signingKeys: KeyCreations }, log: CommandLog, warnings: string[]): Promise<{ files: string[]; signed: boolean }> {
  const { signing, compression } = ctx.kernel;
  const signFile = signFileFor(ctx.layout, ctx.kernel);
  const fw = ootmodFramework(ctx.layout);
  let signed = false;
  if (signing.enabled) {
    if (!signing.hash) warnings.push('CONFIG_MODULE_SIG is set but CONFIG_MODULE_SIG_HASH is not: modules left unsigned');
    else if (!signFile) warnings.push(`sign-file is missing from ${ctx.kernel.kbuildDir}: modules left unsigned`);
    else {
      const key = await ensureSigningKey(ctx.layout, ctx.kernel.release, ctx.signingKeys);
      for (const f of files) await signModule(signFile, signing.hash, key, f, log);
      signed = true;
    }
    if (!signed && signing.forced) {
      throw new OotmodError(`${ctx.kernel.release} loads only signed modules (CONFIG_MODULE_SIG_FORCE) and signing failed`, warnings[warnings.length - 1]);
    }
  }
  const compressed: string[] = [];
  for (const f of files) {
    // framework.conf's compress_<tool>_opts with ootmod-dkms, as DKMS runs them; else ootmod's.
    if (compression !== 'none') await run(compression, [...compressOptions(fw, compression), '-f', f], { log, step: compression });
    compressed.push(f + SUFFIX[compression]);
  }
  return { files: compressed, signed };
}

async function installFiles(job: InstallJob, ctx: InstallContext, builtFiles: string[], log: CommandLog): Promise<InstalledFile[]> {
  const { spec } = job;
  const env = scriptEnv(job, ctx, ctx.kernel.headersDir ?? '');
  const dest = ctx.layout.installDir(job.kernel);
  for (const f of builtFiles) {
    const target = path.join(dest, path.basename(f));
    const owner = ctx.ownerOf(target);
    if (owner && owner !== spec.name) {
      throw new OotmodError(`${path.basename(f)} is already installed for ${job.kernel} by module ${owner}`, `ootmod uninstall ${owner} -k ${job.kernel} first`);
    }
  }
  if (spec.scripts.preInstall) await runScript('PRE_INSTALL', spec.scripts.preInstall, spec.sourceDir, env, log, ctx.timeoutMs);
  const installed: InstalledFile[] = [];
  for (const f of builtFiles) {
    const target = path.join(dest, path.basename(f));
    await copyFileAtomic(f, target);
    await log.write(`# installed ${target}\n`);
    const module = path.basename(f).replace(/\.ko(\.\w+)?$/, '');
    installed.push({ module, path: target });
    // The same module under another compression suffix would shadow or duplicate this one.
    for (const suffix of ALL_SUFFIXES) {
      const other = path.join(dest, `${module}.ko${suffix}`);
      if (other !== target) await rm(other, { force: true });
    }
  }
  const keep = new Set(installed.map((i) => i.path));
  const stale = [...(ctx.record?.installed ?? []), ...ctx.replaced.flatMap((r) => r.installed)].filter((i) => !keep.has(i.path));
  for (const s of stale) await rm(s.path, { force: true });
  if (spec.scripts.postInstall) await runScript('POST_INSTALL', spec.scripts.postInstall, spec.sourceDir, env, log, ctx.timeoutMs);
  return installed;
}

/** Why a job failed when the cause is the machine's (disk full, a tool missing, its work dir removed). */
function jobFault(err: unknown, workDirs: string[]): OotmodError | undefined {
  const fault = environmentFault(err);
  if (fault) return fault;
  const gone = workDirs.find((d) => !existsSync(d));
  const code = (err as NodeJS.ErrnoException).code;
  if (gone && (code === 'ENOENT' || err instanceof OotmodError)) {
    return new OotmodError(`${gone} was removed while ootmod worked in it`, 'leave ootmod\'s work dirs alone during a run, and run the command again: it completes the work', ExitCode.Environment);
  }
  return undefined;
}

function failedRecord(base: Omit<BuildRecord, 'status' | 'built' | 'installed' | 'updatedAt'>, err: unknown, installed: InstalledFile[], warnings: string[], started: number, workDirs: string[] = []): BuildRecord {
  const fault = jobFault(err, workDirs);
  return {
    ...base,
    // A failure of the machine says nothing about the module: no inputs key, so the next run retries.
    ...(fault ? { inputsKey: '', fault: true } : {}),
    status: 'failed',
    built: [],
    // What an older build installed stays installed, and recorded, until it is replaced or removed.
    installed,
    error: fault ? fault.line() : err instanceof OotmodError ? err.line() : err instanceof Error ? err.message : String(err),
    warnings: warnings.length ? warnings : undefined,
    updatedAt: new Date().toISOString(),
    durationMs: Math.round(performance.now() - started),
  };
}

/** Builds, strips, signs and compresses a module; the result and its make.log are kept under the built dir. */
export async function buildModule(job: BuildJob, ctx: BuildContext): Promise<BuildRecord> {
  const started = performance.now();
  const { spec } = job;
  const builtDir = ctx.layout.builtDir(job.kernel, spec.name, spec.version);
  const staging = `${builtDir}.new`;
  const warnings: string[] = [...spec.warnings];
  const base = {
    module: spec.name, version: spec.version, kernel: job.kernel, arch: ctx.kernel.arch.machine,
    inputsKey: job.inputsKey, toolsKey: job.toolsKey, transaction: job.transaction, log: path.join(builtDir, 'make.log'),
  };
  const installed = ctx.previous?.installed ?? [];
  try {
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging, { recursive: true });
    const log = fileLog(path.join(staging, 'make.log'));
    await log.write(`# ootmod build of ${spec.name}/${spec.version} for ${job.kernel} (${new Date().toISOString()})\n`);
    let processed: { files: string[]; signed: boolean };
    try {
      processed = await signAndCompress(await buildModules(job, ctx, staging, log), ctx, log, warnings);
    } finally {
      // The build's files and its make.log move into place together, whatever happened.
      await rm(builtDir, { recursive: true, force: true });
      await rename(staging, builtDir);
    }
    const stillInstalled = ctx.previous?.status === 'installed' && ctx.previous.inputsKey === job.inputsKey;
    const built = processed.files.map((f) => path.join(builtDir, path.basename(f)));
    const buildDir = ctx.layout.buildDir(job.kernel, spec.name, spec.version);
    const symvers = await builtModule(buildDir, path.join(buildDir, 'Module.symvers')).catch(() => undefined);
    await keepBuildResult(job, ctx, { built, log: base.log, symvers });
    return {
      ...base,
      status: stillInstalled ? 'installed' : 'built',
      built,
      installed,
      signed: processed.signed,
      warnings: warnings.length ? warnings : undefined,
      updatedAt: new Date().toISOString(),
      durationMs: Math.round(performance.now() - started),
    };
  } catch (err) {
    await restorePerBuildDir(perBuildDirOf(job, ctx)).catch(() => undefined);
    return failedRecord(base, err, installed, warnings, started, [ctx.layout.buildDir(job.kernel, spec.name, spec.version)]);
  }
}

/** Installs a kept build atomically under the kernel's module dir. */
export async function installModule(job: InstallJob, ctx: InstallContext): Promise<{ record: BuildRecord; touched: boolean }> {
  const started = performance.now();
  const { spec } = job;
  const builtDir = ctx.layout.builtDir(job.kernel, spec.name, spec.version);
  const base = {
    module: spec.name, version: spec.version, kernel: job.kernel, arch: ctx.kernel.arch.machine,
    inputsKey: job.inputsKey, log: path.join(builtDir, 'make.log'),
  };
  const previous = ctx.record;
  const warnings = previous?.warnings ?? [];
  let touched = false;
  try {
    if (!previous || previous.inputsKey !== job.inputsKey || previous.status === 'failed' || !previous.built.length || !previous.built.every((f) => existsSync(f))) {
      throw new OotmodError(`no current build of ${spec.name}/${spec.version} for ${job.kernel} to install`, `ootmod build ${spec.name}/${spec.version} -k ${job.kernel}`);
    }
    const log = fileLog(path.join(builtDir, 'make.log'));
    touched = true;
    const installed = await installFiles(job, ctx, previous.built, log);
    await keepBuildResult(job, ctx, { built: previous.built, log: previous.log });
    return {
      record: { ...previous, ...base, status: 'installed', installed, error: undefined, updatedAt: new Date().toISOString(), durationMs: (previous.durationMs ?? 0) + Math.round(performance.now() - started) },
      touched,
    };
  } catch (err) {
    return { record: failedRecord(base, err, previous?.installed ?? [], warnings, started), touched };
  }
}

/** Removes what a record installed; returns true when anything under the module dir changed. */
export async function uninstallRecord(record: BuildRecord, spec: ModuleSpec | undefined, layout: Layout, log: CommandLog): Promise<boolean> {
  for (const f of record.installed) {
    await rm(f.path, { force: true });
    await log.write(`# removed ${f.path}\n`);
  }
  const dir = layout.installDir(record.kernel);
  if ((await readdir(dir).catch(() => ['x'])).length === 0) await rm(dir, { recursive: true, force: true });
  if (spec?.scripts.postRemove && record.installed.length) {
    await runScript('POST_REMOVE', spec.scripts.postRemove, spec.sourceDir, {
      kernelver: record.kernel,
      module: record.module,
      module_version: record.version,
      arch: record.arch,
    }, log, 600_000);
  }
  return record.installed.length > 0;
}
