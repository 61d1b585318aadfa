// Installed kernels: every release with headers or an image, and what building modules for it needs.
import { existsSync } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Layout } from '../system/layout.js';
import { KernelConfig } from './config.js';
import { KERNEL_PACKAGES, installedPackages, type InstalledPackage } from './packages.js';
import { compareKernelVersions } from './version.js';
import { findOnPath } from '../system/programs.js';
import { archFromDebian, archFromTriplet, buildMachineArch, dpkgTables, type ArchInfo, type DpkgTables } from './dpkgarch.js';
import os from 'node:os';

export type Compression = 'none' | 'gzip' | 'xz' | 'zstd';

export interface KernelArch {
  /** Debian architecture of the headers package (amd64, arm64, ...), when dpkg knows it. */
  dpkg?: string;
  /** The kernel's source architecture (x86, arm64, ...), from .kernelvariables. */
  srcArch?: string;
  /** `uname -m` of a machine running this kernel: DKMS's `arch` (x86_64, aarch64, ...). */
  machine: string;
  /** The kernel's GNU triplet (aarch64-linux-gnu), from dpkg's tables. */
  triplet?: string;
  /** CROSS_COMPILE of the headers' .kernelvariables (aarch64-linux-gnu-). */
  crossCompile?: string;
  /** The Debian architecture of this machine (the build architecture). */
  build?: string;
  /** The kernel is of another architecture than this machine: a cross build. */
  foreign: boolean;
}

export interface KernelCompiler {
  /** CONFIG_CC_VERSION_TEXT, e.g. "gcc-12 (Debian 12.2.0-14) 12.2.0". */
  versionText?: string;
  /** The compiler command the kernel was built with, e.g. gcc-12. */
  command?: string;
  /** Where that command is on this machine, if it is installed. */
  path?: string;
  clang: boolean;
}

export interface KernelTarget {
  release: string;
  moduleDir: string;
  /** The kernel build dir (the headers), resolved from `build` or /usr/src/linux-headers-KVER. */
  headersDir?: string;
  kbuildDir?: string;
  image?: string;
  config?: KernelConfig;
  configPath?: string;
  /** Debian version of the headers package (linux-headers-KVER). */
  headersPackage?: InstalledPackage;
  arch: KernelArch;
  compiler: KernelCompiler;
  compression: Compression;
  signing: { enabled: boolean; forced: boolean; hash?: string; signFile?: string };
  rust: { enabled: boolean; rustcVersionText?: string; bindgenVersionText?: string };
  /** Facts that make the kernel unusable for builds, one line each. */
  problems: string[];
}

/**
 * Parses the unconditional `KEY = value` assignments of Debian's .kernelvariables. Those inside an
 * ifeq/ifneq/ifdef/ifndef block depend on make variables ootmod does not have: bookworm's headers set
 * `CROSS_COMPILE = $(DEB_HOST_GNU_TYPE)-` only when DEB_BUILD_ARCH and DEB_HOST_ARCH differ, which they
 * do not when a module is built (both unset); newer headers set it unconditionally.
 */
export function parseKernelVariables(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  let depth = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (/^if(n?eq|n?def)\b/.test(line)) depth++;
    else if (/^endif\b/.test(line)) depth = Math.max(0, depth - 1);
    else if (depth === 0) {
      const m = /^(?:override\s+)?([A-Z_]+)\s*:?=\s*(.*)$/.exec(line);
      if (m) vars.set(m[1]!, m[2]!.trim());
    }
  }
  return vars;
}

/** The compiler command named in .kernelvariables' CC (dropping the ccache and CROSS_COMPILE parts). */
export function compilerFromKernelVariables(cc: string | undefined): string | undefined {
  if (!cc) return undefined;
  const words = cc.replace(/\$\(if [^)]*\)\)?/g, ' ').split(/\s+/).filter(Boolean);
  const last = words[words.length - 1];
  return last?.replace(/^\$\(CROSS_COMPILE\)/, '') || undefined;
}

/** What building for a kernel of `triplet` needs of `tool` (gcc-16, clang-19): Debian's package name. */
export function toolPackage(tool: string, triplet: string | undefined, build: ArchInfo | undefined): string {
  // Debian's cross compilers are gcc-NN-<triplet>; the native gcc-NN also has the <triplet>-gcc-NN name.
  return triplet && build && triplet !== build.triplet && /^gcc(-\d+)?$/.test(tool) ? `${tool}-${triplet}` : tool;
}

/**
 * The kernel's architecture: its Debian architecture (the headers package's, else from the GNU triplet
 * of CROSS_COMPILE in .kernelvariables, through dpkg's tables) and DKMS's `arch`: `uname -m` of this
 * machine for a kernel of this machine's architecture, the GNU CPU name (aarch64) for a foreign one.
 */
export function kernelArch(dpkgArch: string | undefined, kvars: Map<string, string>, tables: DpkgTables | undefined, build = buildMachineArch(tables)): KernelArch {
  const cross = kvars.get('CROSS_COMPILE')?.replace(/-$/, '') || undefined;
  const info = tables && ((dpkgArch && archFromDebian(tables, dpkgArch)) || (cross && archFromTriplet(tables, cross)) || undefined);
  const foreign = Boolean(info && build && info.debian !== build.debian);
  const machine = foreign ? info!.gnuCpu : typeof os.machine === 'function' ? os.machine() : (build?.gnuCpu ?? process.arch);
  return {
    dpkg: dpkgArch ?? info?.debian,
    srcArch: kvars.get('ARCH'),
    machine,
    triplet: info?.triplet ?? cross,
    // Headers that set none (bookworm's): a foreign kernel's compilers are its triplet's.
    crossCompile: kvars.get('CROSS_COMPILE') || (foreign && info ? `${info.triplet}-` : undefined),
    build: build?.debian,
    foreign,
  };
}

/** ARCH and CROSS_COMPILE for a kernel of another architecture (from its .kernelvariables). */
export function crossOf(kernel: Pick<KernelTarget, 'arch'>): { arch: string; crossCompile: string } | undefined {
  const { foreign, srcArch, crossCompile } = kernel.arch;
  return foreign && srcArch && crossCompile ? { arch: srcArch, crossCompile } : undefined;
}

export function compressionOf(config: KernelConfig | undefined): Compression {
  if (config?.builtin('MODULE_COMPRESS_ZSTD')) return 'zstd';
  if (config?.builtin('MODULE_COMPRESS_XZ')) return 'xz';
  if (config?.builtin('MODULE_COMPRESS_GZIP')) return 'gzip';
  return 'none';
}

async function readOptional(file: string): Promise<string | undefined> {
  return readFile(file, 'utf8').catch(() => undefined);
}

async function candidateReleases(layout: Layout): Promise<string[]> {
  const releases = new Set<string>();
  for (const entry of await readdir(layout.modulesDir, { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) releases.add(entry.name);
  }
  for (const entry of await readdir(layout.srcDir).catch(() => [] as string[])) {
    const m = /^linux-headers-(.+)$/.exec(entry);
    if (m && existsSync(path.join(layout.srcDir, entry, '.config'))) releases.add(m[1]!);
  }
  return [...releases];
}

async function findHeaders(layout: Layout, kver: string): Promise<string | undefined> {
  const viaLink = layout.resolveLink(layout.kernelBuildLink(kver));
  for (const dir of [viaLink, layout.headersDir(kver)]) {
    if (dir && existsSync(path.join(dir, 'Makefile')) && existsSync(path.join(dir, '.config'))) return dir;
  }
  return undefined;
}

function findImage(layout: Layout, kver: string): string | undefined {
  return [path.join(layout.bootDir, `vmlinuz-${kver}`), path.join(layout.kernelDir(kver), 'vmlinuz')].find((p) =>
    existsSync(p),
  );
}

export async function readKernel(layout: Layout, kver: string, pkgs?: Map<string, InstalledPackage>): Promise<KernelTarget> {
  const headersDir = await findHeaders(layout, kver);
  const problems: string[] = [];
  let config: KernelConfig | undefined;
  let configPath: string | undefined;
  let kvars = new Map<string, string>();
  let kbuildDir: string | undefined;
  if (headersDir) {
    configPath = path.join(headersDir, '.config');
    config = KernelConfig.parse((await readOptional(configPath)) ?? '');
    kvars = parseKernelVariables((await readOptional(path.join(headersDir, '.kernelvariables'))) ?? '');
    kbuildDir = await realpath(path.join(headersDir, 'scripts')).then(path.dirname, () => undefined);
    if (!kbuildDir || !existsSync(path.join(kbuildDir, 'scripts', 'mod'))) {
      problems.push(`the kbuild tools of ${kver} are missing: install the linux-kbuild package its headers depend on`);
    }
  } else {
    const boot = path.join(layout.bootDir, `config-${kver}`);
    const base = path.join(layout.kernelDir(kver), 'config');
    configPath = [boot, base].find((p) => existsSync(p));
    if (configPath) config = KernelConfig.parse((await readOptional(configPath)) ?? '');
    problems.push(`no headers for ${kver}: install linux-headers-${kver}`);
  }
  const dpkgArch = pkgs?.get(`linux-headers-${kver}`)?.arch;
  const tables = dpkgTables();
  const arch = kernelArch(dpkgArch && dpkgArch !== 'all' ? dpkgArch : undefined, kvars, tables);
  const ccText = config?.string('CC_VERSION_TEXT');
  const tool = compilerFromKernelVariables(kvars.get('CC')) ?? ccText?.split(/\s+/)[0];
  // A foreign kernel's compiler is the cross compiler: CROSS_COMPILE (from the headers) + the tool.
  const command = tool && arch.foreign && arch.crossCompile && !tool.startsWith(arch.crossCompile) ? `${arch.crossCompile}${tool}` : tool;
  const compilerPath = command ? findOnPath(command) : undefined;
  if (headersDir && command && tool && !compilerPath) {
    const pkg = toolPackage(tool.replace(/^.*-linux-\w+-/, ''), arch.triplet, tables && buildMachineArch(tables));
    const what = arch.foreign ? `${kver} is a kernel for ${arch.dpkg ?? arch.machine}, built with ${command}` : `${kver} was built with ${command}`;
    problems.push(`${what}, which is not installed: install ${pkg}`);
  }
  const hash = config?.string('MODULE_SIG_HASH');
  const signFile = kbuildDir ? path.join(kbuildDir, 'scripts', 'sign-file') : undefined;
  return {
    release: kver,
    moduleDir: layout.kernelDir(kver),
    headersDir,
    kbuildDir,
    image: findImage(layout, kver),
    config,
    configPath,
    headersPackage: pkgs?.get(`linux-headers-${kver}`),
    arch,
    compiler: { versionText: ccText, command, path: compilerPath, clang: config?.builtin('CC_IS_CLANG') ?? false },
    compression: compressionOf(config),
    signing: {
      enabled: config?.builtin('MODULE_SIG') ?? false,
      forced: config?.builtin('MODULE_SIG_FORCE') ?? false,
      hash,
      signFile: signFile && existsSync(signFile) ? signFile : undefined,
    },
    rust: {
      enabled: config?.builtin('RUST') ?? false,
      rustcVersionText: config?.string('RUSTC_VERSION_TEXT'),
      bindgenVersionText: config?.string('BINDGEN_VERSION_TEXT'),
    },
    problems,
  };
}

/** Every kernel release with headers or an image, newest first. */
export async function listKernels(layout: Layout, only?: readonly string[]): Promise<KernelTarget[]> {
  const releases = only?.length ? [...only] : await candidateReleases(layout);
  const pkgs = await installedPackages(layout, KERNEL_PACKAGES);
  const kernels = await Promise.all(releases.map((k) => readKernel(layout, k, pkgs)));
  return kernels
    .filter((k) => only?.length || k.headersDir || k.image)
    .sort((a, b) => compareKernelVersions(b.release, a.release));
}

/** Cheap identity of a kernel's build inputs, for deciding whether a module build is still current. */
export async function kernelIdentity(kernel: KernelTarget): Promise<string> {
  if (!kernel.headersDir) return 'no-headers';
  const parts = await Promise.all(
    ['.config', 'Module.symvers', 'Makefile'].map(async (f) => {
      const s = await stat(path.join(kernel.headersDir!, f)).catch(() => undefined);
      return s ? `${f}:${s.size}:${Math.trunc(s.mtimeMs)}` : `${f}:-`;
    }),
  );
  return [kernel.release, kernel.headersPackage?.version ?? '', ...parts].join('|');
}

/** The programs a module build for this kernel runs: its compiler, linker and strip (cross or LLVM ones), make. */
export function buildTools(kernel: KernelTarget): string[] {
  const prefix = crossOf(kernel)?.crossCompile ?? '';
  const llvm = kernel.compiler.clang;
  return [kernel.compiler.command ?? (llvm ? 'clang' : `${prefix}gcc`), llvm ? 'ld.lld' : `${prefix}ld`, llvm ? 'llvm-strip' : `${prefix}strip`, 'make'];
}

/**
 * Cheap identity of programs found on PATH: the file each resolves to, its size and mtime, or "missing".
 * Installing, upgrading or removing one (a gcc-N, a cross compiler, clang) changes it.
 */
export async function toolsIdentity(commands: readonly string[]): Promise<string> {
  const parts = await Promise.all(commands.map(async (command) => {
    const found = findOnPath(command);
    const real = found && (await realpath(found).catch(() => undefined));
    const s = real && (await stat(real).catch(() => undefined));
    return s ? `${command}=${real}:${s.size}:${Math.trunc(s.mtimeMs)}` : `${command}=missing`;
  }));
  return parts.join('|');
}
