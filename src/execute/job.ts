// Executes one (module, kernel) job: private build dir, patches, PRE_BUILD, make, POST_BUILD, collect,
// strip, sign, compress, then (for install) an atomic placement under the kernel's module dir.
import { existsSync } from 'node:fs';
import { access, constants, cp, mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { OotmodError } from '../errors.js';
import type { Compression, KernelTarget } from '../kernel/inventory.js';
import type { ModuleSpec } from '../modules/spec.js';
import type { BuildJob } from '../plan/planner.js';
import { copyFileAtomic } from '../system/files.js';
import type { Layout } from '../system/layout.js';
import { fileLog, run, runShell, type CommandLog } from '../system/run.js';
import type { BuildRecord, InstalledFile } from '../state/store.js';
import { makeCommandLine } from './make.js';
import { ensureSigningKey, signModule } from './signing.js';

export interface JobContext {
  layout: Layout;
  kernel: KernelTarget;
  /** The kernel build dir module builds use (headers, or the kernel's Rust tree). */
  kernelBuildDir: string;
  makeJobs: number;
  timeoutMs: number;
  /** The previous record of this (module, version, kernel), if any. */
  previous?: BuildRecord;
  /** Installed records of other versions of this module that the job replaces. */
  replaced: BuildRecord[];
  /** Which other module, if any, owns an installed path. */
  ownerOf(installedPath: string): string | undefined;
}

export interface JobOutcome {
  record: BuildRecord;
  /** Files under the kernel's module dir changed: depmod is due. */
  touchedModules: boolean;
}

const SUFFIX: Record<Compression, string> = { none: '', gzip: '.gz', xz: '.xz', zstd: '.zst' };
const ALL_SUFFIXES = ['', '.gz', '.xz', '.zst'];

function scriptEnv(job: BuildJob, ctx: JobContext): Record<string, string> {
  return {
    kernelver: job.kernel,
    arch: ctx.kernel.arch.machine,
    module: job.module,
    module_version: job.version,
    kernel_source_dir: ctx.kernelBuildDir,
    dkms_tree: ctx.layout.buildTree(job.kernel),
    source_tree: ctx.layout.srcDir,
    install_tree: ctx.layout.modulesDir,
  };
}

/** Runs a PRE_BUILD-style directive: a script path relative to `dir`, with optional arguments. */
export async function runScript(directive: string, script: string, dir: string, env: Record<string, string>, log: CommandLog, timeoutMs: number): Promise<void> {
  const [file, ...args] = script.split(/\s+/).filter(Boolean);
  const full = path.join(dir, file!);
  try {
    await access(full, constants.X_OK);
  } catch {
    throw new OotmodError(`${directive} script ${full} is missing or not executable`, `chmod +x it in the module source`);
  }
  await run(full, args, { cwd: dir, env, log, timeoutMs, step: directive });
}

async function buildModules(job: BuildJob, ctx: JobContext, staging: string, log: CommandLog): Promise<string[]> {
  const { spec } = job;
  const buildDir = ctx.layout.buildDir(job.kernel, spec.name, spec.version);
  const env = scriptEnv(job, ctx);
  await rm(buildDir, { recursive: true, force: true });
  await mkdir(path.dirname(buildDir), { recursive: true });
  await log.write(`# copying ${spec.sourceDir} to ${buildDir}\n`);
  await cp(spec.sourceDir, buildDir, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });

  for (const patch of spec.patches) {
    await run('patch', ['-p1', '--batch', '--forward', '-i', path.join(spec.sourceDir, 'patches', patch)], {
      cwd: buildDir, log, step: `PATCH ${patch}`, timeoutMs: ctx.timeoutMs,
    });
  }
  if (spec.scripts.preBuild) await runScript('PRE_BUILD', spec.scripts.preBuild, buildDir, env, log, ctx.timeoutMs);

  const commandLine = makeCommandLine(spec.make, {
    kernelver: job.kernel,
    kernelBuildDir: ctx.kernelBuildDir,
    buildDir,
    jobs: ctx.makeJobs,
    llvm: ctx.kernel.compiler.clang,
  });
  const compiler = ctx.kernel.compiler.command;
  await runShell(commandLine, {
    cwd: buildDir,
    log,
    step: 'make',
    timeoutMs: ctx.timeoutMs,
    // As DKMS: the kernel's own compiler, and no user compiler flags leaking into kbuild.
    env: { ...env, CC: compiler, KERNEL_CC: compiler, CXX: undefined, CFLAGS: undefined, CXXFLAGS: undefined, LDFLAGS: undefined, MAKEFLAGS: undefined, MFLAGS: undefined },
  });
  if (spec.scripts.postBuild) await runScript('POST_BUILD', spec.scripts.postBuild, buildDir, env, log, ctx.timeoutMs);

  const files: string[] = [];
  for (const m of spec.modules) {
    const built = path.join(buildDir, m.builtLocation, `${m.builtName}.ko`);
    if (!existsSync(built)) {
      throw new OotmodError(
        `make succeeded but ${path.relative(buildDir, built)} was not built`,
        'check BUILT_MODULE_NAME and BUILT_MODULE_LOCATION in dkms.conf',
      );
    }
    const out = path.join(staging, `${m.destName}.ko`);
    await cp(built, out);
    if (m.strip) {
      await run(ctx.kernel.compiler.clang ? 'llvm-strip' : 'strip', ['-g', out], { log, step: 'strip' });
    }
    files.push(out);
  }
  return files;
}

async function signAndCompress(files: string[], ctx: JobContext, log: CommandLog, warnings: string[]): Promise<{ files: string[]; signed: boolean }> {
  const { signing, compression } = ctx.kernel;
  let signed = false;
  if (signing.enabled) {
    if (!signing.hash) warnings.push('CONFIG_MODULE_SIG is set but CONFIG_MODULE_SIG_HASH is not: modules left unsigned');
    else if (!signing.signFile) warnings.push(`sign-file is missing from ${ctx.kernel.kbuildDir}: modules left unsigned`);
    else {
      const key = await ensureSigningKey(ctx.layout);
      for (const f of files) await signModule(signing.signFile, signing.hash, key, f, log);
      signed = true;
    }
    if (!signed && signing.forced) {
      throw new OotmodError(`${ctx.kernel.release} loads only signed modules (CONFIG_MODULE_SIG_FORCE) and signing failed`, warnings[warnings.length - 1]);
    }
  }
  const compressed: string[] = [];
  for (const f of files) {
    if (compression === 'xz') await run('xz', ['-f', '--check=crc32', '--lzma2=dict=1MiB', f], { log, step: 'xz' });
    else if (compression === 'zstd') await run('zstd', ['-q', '-f', '--rm', '-T0', f], { log, step: 'zstd' });
    else if (compression === 'gzip') await run('gzip', ['-9', '-n', '-f', f], { log, step: 'gzip' });
    compressed.push(f + SUFFIX[compression]);
  }
  return { files: compressed, signed };
}

async function installFiles(job: BuildJob, ctx: JobContext, builtFiles: string[], log: CommandLog): Promise<InstalledFile[]> {
  const { spec } = job;
  const env = scriptEnv(job, ctx);
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
  const stale = [...(ctx.previous?.installed ?? []), ...ctx.replaced.flatMap((r) => r.installed)].filter((i) => !keep.has(i.path));
  for (const s of stale) await rm(s.path, { force: true });
  if (spec.scripts.postInstall) await runScript('POST_INSTALL', spec.scripts.postInstall, spec.sourceDir, env, log, ctx.timeoutMs);
  return installed;
}

export async function executeJob(job: BuildJob, ctx: JobContext): Promise<JobOutcome> {
  const started = performance.now();
  const { spec } = job;
  const builtDir = ctx.layout.builtDir(job.kernel, spec.name, spec.version);
  const staging = `${builtDir}.new`;
  const warnings: string[] = [...spec.warnings];
  const base = {
    module: spec.name,
    version: spec.version,
    kernel: job.kernel,
    arch: ctx.kernel.arch.machine,
    inputsKey: job.inputsKey,
    log: path.join(builtDir, 'make.log'),
  };
  let builtFiles: string[] = [];
  let signed = ctx.previous?.signed ?? false;
  let touchedModules = false;
  let installed: InstalledFile[] = ctx.previous?.installed ?? [];
  try {
    if (job.reuseBuilt && ctx.previous?.built.every((f) => existsSync(f))) {
      builtFiles = ctx.previous.built;
    } else {
      await rm(staging, { recursive: true, force: true });
      await mkdir(staging, { recursive: true });
      const log = fileLog(path.join(staging, 'make.log'));
      await log.write(`# ootmod build of ${spec.name}/${spec.version} for ${job.kernel} (${new Date().toISOString()})\n`);
      try {
        const processed = await signAndCompress(await buildModules(job, ctx, staging, log), ctx, log, warnings);
        signed = processed.signed;
        builtFiles = processed.files.map((f) => path.join(builtDir, path.basename(f)));
      } finally {
        // The build's files and its make.log move into place together, whatever happened.
        await rm(builtDir, { recursive: true, force: true });
        await rename(staging, builtDir);
      }
    }
    if (job.action === 'install') {
      const log = fileLog(path.join(builtDir, 'make.log'));
      touchedModules = true;
      installed = await installFiles(job, ctx, builtFiles, log);
    }
    const record: BuildRecord = {
      ...base,
      status: job.action === 'install' ? 'installed' : ctx.previous?.status === 'installed' && ctx.previous.inputsKey === job.inputsKey ? 'installed' : 'built',
      built: builtFiles,
      installed: job.action === 'install' ? installed : ctx.previous?.installed ?? [],
      signed,
      warnings: warnings.length ? warnings : undefined,
      updatedAt: new Date().toISOString(),
      durationMs: Math.round(performance.now() - started),
    };
    return { record, touchedModules };
  } catch (err) {
    const message = err instanceof OotmodError ? err.line() : err instanceof Error ? err.message : String(err);
    const record: BuildRecord = {
      ...base,
      status: 'failed',
      built: [],
      // What an older build installed stays installed, and recorded, until it is replaced or removed.
      installed,
      error: message,
      warnings: warnings.length ? warnings : undefined,
      updatedAt: new Date().toISOString(),
      durationMs: Math.round(performance.now() - started),
    };
    return { record, touchedModules };
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
