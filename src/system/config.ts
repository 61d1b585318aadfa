// /etc/ootmod/ootmod.conf: ini settings, all optional.
import { readFileSync } from 'node:fs';
import ini from 'ini';
import { ExitCode, OotmodError } from '../errors.js';

export interface OotmodConfig {
  /** Fail the dpkg run (trigger exits non-zero) when a module fails: for admins who want that. */
  strict: boolean;
  /** Parallel compilers; 0 = number of cores. */
  jobs: number;
  /** Time limit of one build, in seconds. */
  buildTimeout: number;
  /** Build Rust trees for CONFIG_RUST kernels automatically. */
  rust: boolean;
  kernelSource?: string;
  rustc?: string;
  bindgen?: string;
  /** [rust] tree: `metadata` (crates without code generation: what modules consume) or `full` (the kernel's whole rust/ build). */
  rustTree: RustTreeKind;
  /** Modules (or `rust-tree`) whose build may run as root with network: the admin trusts them. */
  unconfined: string[];
  /** [boot]: what the next boot's kernel must have (src/plan/readiness.ts). */
  boot: BootConfig;
}

export type RustTreeKind = 'metadata' | 'full';

export type GuardMode = 'auto' | 'yes' | 'no';

export interface BootConfig {
  /** Modules (PACKAGE_NAME or module name) every kernel needs, on top of those installed for the running kernel. */
  needed: string[];
  /** Modules never needed: their absence does not make a kernel not ready. */
  optional: string[];
  /** The boot guard's mode: auto (act for critical modules), yes (for any needed module), no (report only). */
  guard: GuardMode;
}

export const DEFAULT_CONFIG: OotmodConfig = { strict: false, jobs: 0, buildTimeout: 3600, rust: true, rustTree: 'metadata', unconfined: [], boot: { needed: [], optional: [], guard: 'auto' } };

function bool(value: unknown, key: string, file: string): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === true || /^(yes|true|1|on)$/i.test(String(value))) return true;
  if (value === false || /^(no|false|0|off)$/i.test(String(value))) return false;
  throw new OotmodError(`${file}: ${key} = ${String(value)} is not yes or no`, `fix ${key} in ${file}`, ExitCode.Environment);
}

function int(value: unknown, key: string, file: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new OotmodError(`${file}: ${key} = ${String(value)} is not a whole number`, `fix ${key} in ${file}`, ExitCode.Environment);
  return n;
}

export function loadConfig(file: string): OotmodConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { ...DEFAULT_CONFIG };
  }
  const raw = ini.parse(text) as Record<string, Record<string, unknown> | undefined>;
  const build = raw.build ?? {};
  const rust = raw.rust ?? {};
  const trigger = raw.trigger ?? {};
  const boot = raw.boot ?? {};
  const str = (v: unknown) => (typeof v === 'string' && v.trim() ? v.trim() : undefined);
  const list = (v: unknown) => (str(v) ?? '').split(/[\s,]+/).filter(Boolean);
  const guard = str(boot.guard) ?? DEFAULT_CONFIG.boot.guard;
  if (!/^(auto|yes|no)$/.test(guard)) throw new OotmodError(`${file}: guard = ${guard} is not auto, yes or no`, `fix guard under [boot] in ${file}`, ExitCode.Environment);
  const tree = str(rust.tree) ?? DEFAULT_CONFIG.rustTree;
  if (tree !== 'metadata' && tree !== 'full') throw new OotmodError(`${file}: tree = ${tree} is not metadata or full`, `fix tree under [rust] in ${file}`, ExitCode.Environment);
  return {
    strict: bool(trigger.strict, 'strict', file) ?? DEFAULT_CONFIG.strict,
    jobs: int(build.jobs, 'jobs', file) ?? DEFAULT_CONFIG.jobs,
    buildTimeout: int(build.timeout, 'timeout', file) ?? DEFAULT_CONFIG.buildTimeout,
    rust: bool(rust.enabled, 'enabled', file) ?? DEFAULT_CONFIG.rust,
    kernelSource: str(rust.kernel_source),
    rustc: str(rust.rustc),
    bindgen: str(rust.bindgen),
    rustTree: tree,
    unconfined: list(build.unconfined),
    boot: { needed: list(boot.needed), optional: list(boot.optional), guard: guard as GuardMode },
  };
}
