// The per-(kernel, build arch) Rust tree: the kernel's rust/*.rmeta crates, proc-macro .so files,
// scripts/target.json and rust/kernel/generated_arch_*.rs, rebuilt through the kernel's own Makefiles
// against its installed .config. Built in place at trees/<cache key>/ (rustc records the target path;
// trees/<key>-<time>/ when that is the tree in use), then switched to atomically through the `current`
// link; an interrupted build leaves the old tree.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { cp, lstat, mkdir, readdir, readFile, realpath, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ExitCode, OotmodError } from '../errors.js';
import { crossOf, type KernelTarget } from '../kernel/inventory.js';
import { hashParts } from '../modules/identity.js';
import { writeFileAtomic } from '../system/files.js';
import type { Layout } from '../system/layout.js';
import { fileLog, run, type CommandLog, type JobserverClient } from '../system/run.js';
import { chownTree, type Sandbox } from '../system/sandbox.js';
import { checkRustAbi, type AbiReport } from './abi.js';
import { commonHeadersDir, type RustSource } from './kernelsource.js';
import { rustcRemedy, type RustToolchain } from './toolchain.js';

/** Bumped when the tree's layout or the way it is built changes, so old trees are rebuilt. */
const TREE_FORMAT = 2;
const MANIFEST = 'ootmod-rust.json';

export interface RustTreeKey {
  kernel: string;
  headersVersion: string;
  configSha256: string;
  rustc: string;
  bindgen: string;
  buildArch: string;
  source: string;
  format: number;
}

export interface RustTreeManifest {
  key: string;
  parts: RustTreeKey;
  files: { path: string; size: number }[];
  abi: AbiReport;
  builtAt: string;
  durationMs: number;
  bytes: number;
}

export interface RustTree {
  kernel: string;
  buildArch: string;
  /** The tree's real path: the kernel build dir for module builds. */
  dir: string;
  manifest: RustTreeManifest;
}

export function buildArch(): string {
  return typeof os.machine === 'function' ? os.machine() : process.arch === 'x64' ? 'x86_64' : process.arch;
}

export async function treeKey(kernel: KernelTarget, toolchain: Pick<RustToolchain, 'rustcVersion' | 'bindgenVersion'>, source: RustSource): Promise<{ key: string; parts: RustTreeKey }> {
  const config = await readFile(path.join(kernel.headersDir!, '.config'));
  const parts: RustTreeKey = {
    kernel: kernel.release,
    headersVersion: kernel.headersPackage?.version ?? 'unpackaged',
    configSha256: createHash('sha256').update(config).digest('hex'),
    rustc: toolchain.rustcVersion,
    bindgen: toolchain.bindgenVersion,
    buildArch: buildArch(),
    source: source.identity,
    format: TREE_FORMAT,
  };
  return { key: hashParts(Object.values(parts)).slice(0, 16), parts };
}

/** What is wrong with a parsed manifest's shape, if anything (a hand-edited or truncated-then-padded file). */
function manifestShapeProblem(m: unknown): string | undefined {
  if (!m || typeof m !== 'object' || Array.isArray(m)) return 'not a JSON object';
  const o = m as Partial<Record<keyof RustTreeManifest, unknown>>;
  if (typeof o.key !== 'string') return 'no key';
  if (!o.parts || typeof o.parts !== 'object') return 'no parts';
  if (!Array.isArray(o.files) || o.files.some((f) => !f || typeof (f as { path?: unknown }).path !== 'string' || typeof (f as { size?: unknown }).size !== 'number')) return 'no file list';
  if (!o.abi || typeof o.abi !== 'object' || typeof (o.abi as { ok?: unknown }).ok !== 'boolean') return 'no ABI report';
  if (typeof o.durationMs !== 'number' || typeof o.bytes !== 'number' || typeof o.builtAt !== 'string') return 'no build record';
  return undefined;
}

/** A tree's manifest, or why it is corrupt (missing, unreadable, not a manifest). */
export async function readManifest(dir: string): Promise<RustTreeManifest | { corrupt: string }> {
  let text: string;
  try {
    text = await readFile(path.join(dir, MANIFEST), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { corrupt: code === 'ENOENT' ? 'missing' : `unreadable: ${code ?? String(err)}` };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return { corrupt: `does not parse (${(err as Error).message.split('\n')[0]})` };
  }
  const problem = manifestShapeProblem(parsed);
  return problem ? { corrupt: problem } : (parsed as RustTreeManifest);
}

/** The Rust tree in use for a kernel, looked at: none, one whose manifest is corrupt, or a readable one. */
export type TreeInUse = { state: 'none' } | { state: 'corrupt'; dir: string; error: OotmodError } | { state: 'ok'; tree: RustTree };

/** The tree the `current` link names, whether or not it is still current; a corrupt manifest is named with its fix. */
export async function treeInUse(layout: Layout, kernel: string, arch = buildArch()): Promise<TreeInUse> {
  const link = path.join(layout.rustDir(kernel, arch), 'current');
  const dir = await realpath(link).catch(() => undefined);
  if (!dir) return { state: 'none' };
  const manifest = await readManifest(dir);
  if ('corrupt' in manifest) {
    const problem = `the Rust tree manifest ${path.join(dir, MANIFEST)} is corrupt (${manifest.corrupt})`;
    return { state: 'corrupt', dir, error: new OotmodError(problem, `rebuild the tree: ootmod rust prepare -k ${kernel}`, ExitCode.Environment) };
  }
  return { state: 'ok', tree: { kernel, buildArch: arch, dir, manifest } };
}

/** The files the manifest lists that are gone or changed size (a deleted .rmeta, say). */
export async function damagedFiles(tree: RustTree): Promise<string[]> {
  const bad: string[] = [];
  for (const f of tree.manifest.files) {
    const s = await stat(path.join(tree.dir, f.path)).catch(() => undefined);
    if (!s || s.size !== f.size) bad.push(f.path);
  }
  return bad;
}

async function linkAll(fromDir: string, toDir: string, skip: (name: string) => boolean = () => false): Promise<void> {
  await mkdir(toDir, { recursive: true });
  for (const name of await readdir(fromDir)) {
    if (skip(name) || existsSync(path.join(toDir, name))) continue;
    await symlink(path.join(fromDir, name), path.join(toDir, name));
  }
}

/** srctree = headers-common + rust/ and the few scripts the Rust build needs, from the kernel source. */
async function mergedSrctree(layout: Layout, kernel: KernelTarget, source: RustSource, src: string, log: CommandLog, timeoutMs: number): Promise<void> {
  const common = await commonHeadersDir(layout, kernel.headersDir!);
  const kbuildScripts = await realpath(path.join(kernel.headersDir!, 'scripts'));
  await mkdir(path.join(src, 'scripts'), { recursive: true });
  const wanted = ['rust', 'scripts/Makefile*', 'scripts/*rust*', 'drivers/base/base.h'];
  if (source.kind === 'tarball') {
    await run('tar', ['-C', src, '--strip-components=1', '--wildcards', '-xJf', source.tarball, ...wanted.map((w) => `${source.topDir}/${w}`)], {
      log, step: `tar (extracting rust/ from ${path.basename(source.tarball)})`, timeoutMs,
    });
  } else {
    await cp(path.join(source.dir, 'rust'), path.join(src, 'rust'), { recursive: true });
    for (const name of await readdir(path.join(source.dir, 'scripts'))) {
      if (/^Makefile|rust/.test(name)) await cp(path.join(source.dir, 'scripts', name), path.join(src, 'scripts', name), { recursive: true });
    }
    const base = path.join(source.dir, 'drivers/base/base.h');
    if (existsSync(base)) await cp(base, path.join(src, 'drivers/base/base.h'));
  }
  for (const f of ['Makefile', 'arch']) await symlink(path.join(common, f), path.join(src, f));
  // include/ and include/uapi must be real dirs: bindings_helper.h includes <../../drivers/base/base.h>,
  // found through -I$(srctree)/include/uapi, and a symlinked dir would resolve '..' into headers-common.
  await linkAll(path.join(common, 'include/uapi'), path.join(src, 'include/uapi'));
  await linkAll(path.join(common, 'include'), path.join(src, 'include'), (n) => n === 'uapi');
  if (existsSync(path.join(common, 'tools'))) await symlink(await realpath(path.join(common, 'tools')), path.join(src, 'tools'));
  await linkAll(kbuildScripts, path.join(src, 'scripts'));
}

/** objtree = the flavour's config and generated headers (copied), kbuild's scripts (linked). */
async function objtree(kernel: KernelTarget, obj: string, src: string): Promise<void> {
  const h = kernel.headersDir!;
  for (const f of ['.config', '.kernelvariables', 'Module.symvers', 'include', 'arch']) {
    if (existsSync(path.join(h, f))) await cp(path.join(h, f), path.join(obj, f), { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  }
  if (existsSync(path.join(h, 'vmlinux'))) await symlink(path.join(h, 'vmlinux'), path.join(obj, 'vmlinux'));
  if (existsSync(path.join(h, 'tools'))) await symlink(await realpath(path.join(h, 'tools')), path.join(obj, 'tools'));
  // A real scripts/ dir: the headers' scripts link points at the kbuild dir all flavours share, and
  // target.json is per config.
  await linkAll(await realpath(path.join(h, 'scripts')), path.join(obj, 'scripts'));
  // Debian ships no auto.conf.cmd; without it the Makefile runs syncconfig, which deletes generated headers.
  await mkdir(path.join(obj, 'include/config'), { recursive: true });
  await writeFile(path.join(obj, 'include/config/auto.conf.cmd'), '');
  await writeFile(path.join(obj, 'Makefile'), `KBUILD_OUTPUT=${obj}\ninclude ${src}/Makefile\n`);
}

async function walkFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const p = path.join(rel, e.name);
    if (e.isDirectory()) out.push(...(await walkFiles(dir, p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** Keeps what module builds need: rust/*.rmeta, the proc-macro .so (debug info stripped), helper bitcode, generated_arch_*.rs. */
async function prune(obj: string, common: string, headers: string, log: CommandLog): Promise<void> {
  for (const f of await walkFiles(path.join(obj, 'rust'))) {
    const keep = /\.(rmeta|so|bc)$/.test(f) || /^kernel\/generated_arch_.*\.rs$/.test(f);
    if (!keep) await rm(path.join(obj, 'rust', f));
    else if (f.endsWith('.so')) await run('strip', ['--strip-debug', path.join(obj, 'rust', f)], { log, step: 'strip (proc macro)' });
  }
  await removeEmptyDirs(path.join(obj, 'rust'));
  for (const f of await readdir(path.join(obj, 'scripts'))) {
    const p = path.join(obj, 'scripts', f);
    if (f.startsWith('.') || f === 'generate_rust_target') await rm(p, { recursive: true, force: true });
  }
  await rm(path.join(obj, '.src'), { recursive: true, force: true });
  // The build needed private copies (timestamps, an auto.conf.cmd); module builds (M=) need only what
  // the flavour's headers have, so link them instead of keeping ~4 MB of copies.
  for (const f of ['include', 'arch', 'Module.symvers']) {
    if (!existsSync(path.join(headers, f))) continue;
    await rm(path.join(obj, f), { recursive: true, force: true });
    await symlink(path.join(headers, f), path.join(obj, f));
  }
  // The rust sources are no longer needed: module builds use the stock headers-common as srctree.
  await writeFile(path.join(obj, 'Makefile'), `KBUILD_OUTPUT=${obj}\ninclude ${common}/Makefile\n`);
}

async function removeEmptyDirs(dir: string): Promise<boolean> {
  let empty = true;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory() && (await removeEmptyDirs(path.join(dir, e.name)))) continue;
    empty = false;
  }
  if (empty) await rm(dir, { recursive: true });
  return empty;
}

export interface TreeAssessment {
  kernel: string;
  buildArch: string;
  key: string;
  parts: RustTreeKey;
  /** The tree in use, whether or not it is current. */
  current?: RustTree;
  /** Undefined when the tree in use is current and intact: nothing to build. */
  buildReason?: string;
}

/** Reads whether a kernel's Rust tree must be (re)built for this toolchain and source. Changes nothing. */
export async function assessRustTree(layout: Layout, kernel: KernelTarget, toolchain: RustToolchain, source: RustSource, force: boolean): Promise<TreeAssessment> {
  const arch = buildArch();
  const cross = crossOf(kernel);
  if (cross && !kernel.compiler.path) {
    // The inventory's one line names the package (gcc-NN-<triplet>) from the headers' own config.
    const problem = kernel.problems.find((p) => p.includes(kernel.compiler.command ?? '\0'));
    throw new OotmodError(problem ?? `${kernel.release} needs ${kernel.compiler.command ?? 'its cross compiler'}, which is not installed`, problem ? undefined : `install the cross compiler for ${kernel.arch.triplet}`, ExitCode.Environment);
  }
  if (cross) await checkRustTarget(layout, kernel, toolchain);
  const { key, parts } = await treeKey(kernel, toolchain, source);
  const inUse = await treeInUse(layout, kernel.release, arch);
  const current = inUse.state === 'ok' ? inUse.tree : undefined;
  const base = { kernel: kernel.release, buildArch: arch, key, parts, current };
  if (inUse.state === 'corrupt') return { ...base, buildReason: 'corrupt manifest' };
  if (!current) return { ...base, buildReason: 'no tree yet' };
  const damaged = current.manifest.key === key ? await damagedFiles(current) : [];
  if (current.manifest.key === key && !damaged.length && !force) return base;
  return { ...base, buildReason: force ? 'forced' : damaged.length ? `damaged: ${damaged[0]} is missing or changed` : staleReason(current.manifest.parts, parts) };
}

export interface BuildTreeOptions {
  layout: Layout;
  kernel: KernelTarget;
  toolchain: RustToolchain;
  source: RustSource;
  key: string;
  parts: RustTreeKey;
  reason: string;
  timeoutMs: number;
  /** ootmod's jobserver: the tree's make takes its parallelism from it. */
  jobserver?: JobserverClient;
  /** The run's sandbox: the tree's make runs confined through it. */
  sandbox: Sandbox;
}

/** Builds the tree in trees/<key>/ and switches `current` to it when it is complete. */
export async function buildRustTree(opts: BuildTreeOptions): Promise<RustTree> {
  const { layout, kernel, toolchain, source, key, parts, reason } = opts;
  const arch = buildArch();
  const cross = crossOf(kernel);
  const base = layout.rustDir(kernel.release, arch);
  // Always a dir no tree in use has: a forced or repair build with an unchanged key must not build
  // inside the tree in use, so that an interrupted build leaves it whole and current. (The dir
  // `current` names counts even when its manifest is unreadable.)
  const inUse = path.basename((await realpath(path.join(base, 'current')).catch(() => undefined)) ?? '');
  const dirName = inUse === key ? `${key}-${Date.now().toString(36)}` : key;
  const obj = path.join(base, 'trees', dirName);
  const logFile = path.join(base, 'build.log');
  // What an interrupted build left (never the tree in use) goes first: it could be a gigabyte.
  await removeOtherTrees(base, inUse);
  await mkdir(obj, { recursive: true });
  await writeFile(logFile, `# ootmod rust prepare for ${kernel.release} (${new Date().toISOString()}): ${reason}\n# key ${key} ${JSON.stringify(parts)}\n`);
  const log = fileLog(logFile);
  const started = performance.now();
  try {
    const src = path.join(obj, '.src');
    await mergedSrctree(layout, kernel, source, src, log, opts.timeoutMs);
    await objtree(kernel, obj, src);
    const archMakefile = await readArchMakefile(layout, kernel);
    // Only some arches (x86) use a generated target.json; the rest use a built-in rustc target.
    const target = archMakefile.includes('scripts/target.json') ? '$(MAKE) $(build)=scripts scripts/target.json && ' : '';
    const tools = [`RUSTC=${toolchain.rustc}`, `HOSTRUSTC=${toolchain.rustc}`, `BINDGEN=${toolchain.bindgen}`];
    // A foreign kernel: .rmeta for its target, proc macros (HOSTRUSTC) for this machine, its cross compiler.
    if (cross) tools.push(`ARCH=${cross.arch}`, `CROSS_COMPILE=${cross.crossCompile}`, `CC=${kernel.compiler.command}`);
    // The kernel's Makefiles run as the build user, offline, writing only the new tree; then it is root's again.
    const confine = await opts.sandbox.confineTo([obj], path.join(obj, '.tmp'), 'rust-tree');
    // No -j: the parallelism comes from the jobserver in MAKEFLAGS (without one, a serial build).
    await run('make', ['-C', obj, 'run-command', 'FORCE', `KBUILD_RUN_COMMAND=+${target}$(MAKE) $(build)=rust`, ...tools], {
      cwd: obj, log, step: 'make (Rust tree)', timeoutMs: opts.timeoutMs, jobserver: opts.jobserver, confine,
      env: { MAKEFLAGS: undefined, MFLAGS: undefined, CC: undefined, CFLAGS: undefined, RUSTFLAGS: undefined },
    });
    if (confine) {
      await rm(confine.tmpDir, { recursive: true, force: true });
      await chownTree(obj, 0, 0);
    }
    for (const f of ['rust/libkernel.rmeta', 'rust/libcore.rmeta', 'rust/libmacros.so']) {
      if (!existsSync(path.join(obj, f))) throw new OotmodError(`the Rust build finished without ${f}`, `see ${logFile}`);
    }
    const abi = await checkRustAbi(obj, log, cross ? `${cross.crossCompile}nm` : 'nm');
    await prune(obj, await commonHeadersDir(layout, kernel.headersDir!), kernel.headersDir!, log);
    const files = await Promise.all(
      (await walkFiles(obj)).filter((f) => f.startsWith('rust/') || f === 'scripts/target.json').map(async (f) => ({ path: f, size: (await stat(path.join(obj, f))).size })),
    );
    const manifest: RustTreeManifest = {
      key, parts, files, abi,
      builtAt: new Date().toISOString(),
      durationMs: Math.round(performance.now() - started),
      bytes: files.reduce((n, f) => n + f.size, 0),
    };
    await writeFileAtomic(path.join(obj, MANIFEST), `${JSON.stringify(manifest, null, 1)}\n`);
    await switchCurrent(base, dirName);
    await removeOtherTrees(base, dirName);
    await log.write(`# done in ${(manifest.durationMs / 1000).toFixed(1)}s, ${(manifest.bytes / 1e6).toFixed(0)} MB\n`);
    return { kernel: kernel.release, buildArch: arch, dir: obj, manifest };
  } catch (err) {
    await rm(obj, { recursive: true, force: true });
    if (err instanceof OotmodError) throw new OotmodError(`Rust tree for ${kernel.release}: ${err.message}`, err.remedy ?? `see ${logFile}`, err.exitCode);
    throw err;
  }
}

/** The rustc targets an arch Makefile may pass (`--target=aarch64-unknown-none-softfloat`), in order. */
export function rustTargetsOf(archMakefile: string): string[] {
  return [...new Set([...archMakefile.matchAll(/--target=([A-Za-z0-9_.-]+)/g)].map((m) => m[1]!))];
}

async function readArchMakefile(layout: Layout, kernel: KernelTarget): Promise<string> {
  const common = await commonHeadersDir(layout, kernel.headersDir!);
  return readFile(path.join(common, 'arch', kernel.arch.srcArch ?? 'x86', 'Makefile'), 'utf8').catch(() => '');
}

/**
 * A foreign kernel's rustc target must be one this rustc knows (its core is built from rust-src, so
 * no per-target standard library is needed). Read-only: part of assessing the tree, before any build.
 */
async function checkRustTarget(layout: Layout, kernel: KernelTarget, toolchain: RustToolchain): Promise<void> {
  const wanted = rustTargetsOf(await readArchMakefile(layout, kernel));
  if (!wanted.length) return;
  const list = await run(toolchain.rustc, ['--print', 'target-list'], { allowFailure: true });
  const known = new Set(list.stdout.split('\n').map((l) => l.trim()));
  if (wanted.some((t) => known.has(t))) return;
  // Debian's rustc of the kernel's version has every LLVM target: name that package.
  const remedy = await rustcRemedy(toolchain.rustcVersion);
  throw new OotmodError(
    `${toolchain.rustc} has no Rust target ${wanted.join(' or ')}, which ${kernel.release} (${kernel.arch.dpkg ?? kernel.arch.machine}) needs`,
    remedy.replace(/^install /, "install Debian's rustc, which has every target: ").replace(/or set RUSTC to a matching binary$/, 'or set RUSTC to a rustc that has it'),
    ExitCode.Environment,
  );
}

function staleReason(old: RustTreeKey, now: RustTreeKey): string {
  const changed = (Object.keys(now) as (keyof RustTreeKey)[]).filter((k) => old[k] !== now[k]);
  return changed.length ? `stale: ${changed.map((k) => `${k} ${old[k]} -> ${now[k]}`).join(', ')}` : 'stale';
}

async function switchCurrent(base: string, key: string): Promise<void> {
  const tmp = path.join(base, `.current-${process.pid}`);
  await rm(tmp, { force: true });
  await symlink(path.join('trees', key), tmp);
  await rename(tmp, path.join(base, 'current'));
}

async function removeOtherTrees(base: string, keep: string): Promise<string[]> {
  const gone: string[] = [];
  for (const k of await readdir(path.join(base, 'trees')).catch(() => [] as string[])) {
    if (k === keep) continue;
    await rm(path.join(base, 'trees', k), { recursive: true, force: true });
    gone.push(path.join(base, 'trees', k));
  }
  return gone;
}

/**
 * What an interrupted build left beside the tree in use (`treeDir`, current and whole): its half-built
 * trees/<key>-<time> dir and a `.current-<pid>` link not yet switched. Returns the paths removed.
 */
export async function removeStrayTrees(treeDir: string): Promise<string[]> {
  // (strayTrees, below, lists what this removes, for the plan of `rust prepare`.)
  const base = path.dirname(path.dirname(treeDir));
  const gone = await removeOtherTrees(base, path.basename(treeDir));
  for (const f of await readdir(base).catch(() => [] as string[])) {
    if (!f.startsWith('.current-')) continue;
    await rm(path.join(base, f), { force: true });
    gone.push(path.join(base, f));
  }
  return gone;
}

/** What removeStrayTrees would remove now beside `treeDir` (read only). */
export function strayTrees(treeDir: string): string[] {
  const base = path.dirname(path.dirname(treeDir));
  const list = (dir: string) => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };
  return [
    ...list(path.join(base, 'trees')).filter((k) => k !== path.basename(treeDir)).map((k) => path.join(base, 'trees', k)),
    ...list(base).filter((f) => f.startsWith('.current-')).map((f) => path.join(base, f)),
  ];
}

/** Removes a kernel's Rust trees (all build arches). */
export async function cleanRustTrees(layout: Layout, kernel: string): Promise<boolean> {
  const dir = layout.rustKernelDir(kernel);
  const existed = await lstat(dir).then(() => true, () => false);
  await rm(dir, { recursive: true, force: true });
  return existed;
}
