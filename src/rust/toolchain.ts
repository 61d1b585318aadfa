// The Rust toolchain a kernel needs: a rustc whose --version is byte-identical to
// CONFIG_RUSTC_VERSION_TEXT (anything else fails later with E0461/E0514), its rust-src, a bindgen
// equal to CONFIG_BINDGEN_VERSION_TEXT, and libclang. These are programs of the machine ootmod runs on,
// so they are looked up on it even with --root (which relocates only the files ootmod manages).
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { writeFileAtomic } from '../system/files.js';
import { HOST_TOOLS } from '../system/layout.js';
import os from 'node:os';
import path from 'node:path';
import { ExitCode, OotmodError } from '../errors.js';
import type { KernelTarget } from '../kernel/inventory.js';
import { findOnPath } from '../system/programs.js';
import { run } from '../system/run.js';

export interface RustToolchain {
  rustc: string;
  rustcVersion: string;
  sysroot: string;
  bindgen: string;
  bindgenVersion: string;
}

export interface ToolchainSearch {
  probes?: ProbeCache;
  /** Explicit rustc/bindgen (RUSTC/BINDGEN environment or the config file). */
  rustc?: string;
  bindgen?: string;
  env?: NodeJS.ProcessEnv;
}

function listGlob(dir: string, pattern: RegExp): string[] {
  try {
    return readdirSync(dir).filter((e) => pattern.test(e)).map((e) => path.join(dir, e));
  } catch {
    return [];
  }
}

/** Every rustc on this machine: the explicit one, PATH, Debian's versioned rustc-1.NN, rustup toolchains. */
export function rustcCandidates(search: ToolchainSearch): string[] {
  const env = search.env ?? process.env;
  // A rustc the admin named is the only one tried: a silent fallback would hide their mistake.
  const explicit = search.rustc ?? env.RUSTC;
  if (explicit) return [explicit];
  const homes = [env.RUSTUP_HOME, env.HOME && path.join(env.HOME, '.rustup'), path.join(os.homedir(), '.rustup'), HOST_TOOLS.rootRustup].filter(Boolean) as string[];
  const found = [
    findOnPath('rustc', env.PATH),
    ...listGlob(HOST_TOOLS.binDir, /^rustc-1\.\d+$/),
    ...listGlob(HOST_TOOLS.libDir, /^rust-1\.\d+$/).map((d) => path.join(d, 'bin/rustc')),
    ...homes.flatMap((h) => listGlob(path.join(h, 'toolchains'), /./).map((t) => path.join(t, 'bin/rustc'))),
  ].filter((p): p is string => Boolean(p) && existsSync(p!));
  return [...new Set(found)];
}

/**
 * What a program prints for --version (and, for rustc, --print sysroot), remembered per binary identity
 * (real path, size, mtime) in a small file, so a warm `rust prepare` starts no compiler.
 */
export class ProbeCache {
  private entries: Record<string, string> = {};
  private dirty = false;

  /** Reads `readFrom` (default: `file`); saves to `file` only (none: never saves, as on a dry run). */
  constructor(private readonly file?: string, readFrom = file) {
    if (readFrom) {
      try {
        this.entries = JSON.parse(readFileSync(readFrom, 'utf8')) as Record<string, string>;
      } catch {
        this.entries = {};
      }
    }
  }

  async probe(binary: string, args: string[]): Promise<string | undefined> {
    let id: string;
    try {
      const real = realpathSync(binary);
      const s = statSync(real);
      id = `${real}:${s.size}:${s.mtimeMs}:${args.join(' ')}`;
    } catch {
      return undefined;
    }
    if (id in this.entries) return this.entries[id];
    const r = await run(binary, args, { allowFailure: true, timeoutMs: 20_000 }).catch(() => undefined);
    const out = r && r.exitCode === 0 ? r.stdout.split('\n')[0]!.trim() : undefined;
    if (out !== undefined) {
      this.entries[id] = out;
      this.dirty = true;
    }
    return out;
  }

  async save(): Promise<void> {
    if (this.file && this.dirty) await writeFileAtomic(this.file, JSON.stringify(this.entries)).catch(() => undefined);
  }
}

/** The Debian package versions of `pkg` whose upstream part is `upstream`, with their suites (for the remedy). */
async function aptCandidates(pkg: string, upstream: string): Promise<string[]> {
  const r = await run('apt-cache', ['madison', pkg], { allowFailure: true, timeoutMs: 20_000 }).catch(() => undefined);
  const out: string[] = [];
  for (const line of r?.stdout.split('\n') ?? []) {
    const [, version, source] = line.split('|').map((s) => s.trim());
    if (version?.startsWith(`${upstream}+`) || version?.startsWith(`${upstream}-`) || version === upstream) {
      const suite = /\s(\S+?)\/main/.exec(source ?? '')?.[1];
      out.push(suite ? `${pkg}=${version} (${suite})` : `${pkg}=${version}`);
    }
  }
  return [...new Set(out)];
}

function upstreamOf(versionText: string): string | undefined {
  return /^\S+ (\d+\.\d+\.\d+)/.exec(versionText)?.[1];
}

async function remedyFor(pkgs: string[], versionText: string, envVar: string): Promise<string> {
  const upstream = upstreamOf(versionText);
  const offers = upstream ? (await Promise.all(pkgs.map((p) => aptCandidates(p, upstream)))).flat() : [];
  if (offers.length) return `install ${offers.join(' ')}, or set ${envVar} to a matching binary`;
  return `install ${pkgs.join(' and ')} ${upstream ?? ''} (none is in the configured apt sources), or set ${envVar} to a matching binary`.replace(/\s+/g, ' ');
}

/** The fix for a rustc that is missing or lacks something: the packages of the kernel's version, from apt. */
export function rustcRemedy(versionText: string): Promise<string> {
  return remedyFor(['rustc'], versionText, 'RUSTC');
}

export async function findRustToolchain(kernel: KernelTarget, search: ToolchainSearch = {}): Promise<RustToolchain> {
  const probes = search.probes ?? new ProbeCache();
  const versionOf = (binary: string) => probes.probe(binary, ['--version']);
  const want = kernel.rust.rustcVersionText;
  if (!kernel.rust.enabled || !want) {
    throw new OotmodError(`${kernel.release} is not built with CONFIG_RUST`, 'Rust modules cannot be built for it', ExitCode.NotFound);
  }
  const seen: string[] = [];
  let rustc: string | undefined;
  for (const candidate of rustcCandidates(search)) {
    const version = await versionOf(candidate);
    if (version === want) {
      rustc = candidate;
      break;
    }
    seen.push(version ? `${version} at ${candidate}` : `${candidate}, which does not run`);
  }
  if (!rustc) {
    const have = seen.length ? `installed: ${seen.join('; ')}` : 'no rustc is installed';
    throw new OotmodError(
      `${kernel.release} was built with ${want}, ${have}`,
      await remedyFor(['rustc', 'rust-src'], want, 'RUSTC'),
      ExitCode.Environment,
    );
  }
  const sysroot = (await probes.probe(rustc, ['--print', 'sysroot'])) ?? '';
  if (!existsSync(path.join(sysroot, 'lib/rustlib/src/rust/library/core/src/lib.rs'))) {
    throw new OotmodError(`the Rust standard library source for ${want} is missing (${sysroot}/lib/rustlib/src)`, await remedyFor(['rust-src'], want, 'RUSTC'), ExitCode.Environment);
  }

  const wantBindgen = kernel.rust.bindgenVersionText;
  const explicitBindgen = search.bindgen ?? (search.env ?? process.env).BINDGEN;
  const bindgenCandidates = explicitBindgen ? [explicitBindgen] : [findOnPath('bindgen', search.env?.PATH)].filter((p): p is string => Boolean(p));
  let bindgen: string | undefined;
  let bindgenVersion = '';
  const bindgenSeen: string[] = [];
  for (const candidate of [...new Set(bindgenCandidates)]) {
    const version = await versionOf(candidate);
    if (version && (!wantBindgen || version === wantBindgen)) {
      bindgen = candidate;
      bindgenVersion = version;
      break;
    }
    bindgenSeen.push(version ? `${version} at ${candidate}` : `${candidate}, which does not run`);
  }
  if (!bindgen) {
    const have = bindgenSeen.length ? `installed: ${bindgenSeen.join('; ')}` : 'no bindgen is installed';
    throw new OotmodError(`${kernel.release} was built with ${wantBindgen ?? 'bindgen'}, ${have}`, await remedyFor(['bindgen'], wantBindgen ?? 'bindgen 0.0.0', 'BINDGEN'), ExitCode.Environment);
  }
  if (!hasLibclang()) {
    throw new OotmodError('bindgen needs libclang, which is not installed', 'install libclang-dev', ExitCode.Environment);
  }
  await probes.save();
  return { rustc, rustcVersion: want, sysroot, bindgen, bindgenVersion };
}

function hasLibclang(): boolean {
  const dirs = [...listGlob(HOST_TOOLS.libDir, /^llvm-\d+$/).map((d) => path.join(d, 'lib')), ...listGlob(HOST_TOOLS.libDir, /-linux-gnu\w*$/)];
  return dirs.some((d) => listGlob(d, /^libclang(-\d+)?\.so/).length > 0);
}
