// The ABI check: the crate hashes of the rebuilt `core` and `kernel` crates (v0 symbol mangling) must be
// the ones the kernel exports in Module.symvers, or modules built against the tree would not load.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ExitCode, OotmodError } from '../errors.js';
import { run, type CommandLog } from '../system/run.js';
import { lackingPrefix, parseItemListing, symbolPaths, type ItemListing } from './v0.js';

export const CHECKED_CRATES = ['core', 'kernel'] as const;

/** The crate roots (`C s<disambiguator>_ <len><name>`) named in a v0-mangled symbol, as "name:hash". */
export function crateRoots(symbol: string): string[] {
  const roots: string[] = [];
  const re = /Cs([0-9A-Za-z]+)_(\d+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(symbol))) {
    const len = Number(m[2]);
    const start = m.index + m[0].length;
    const name = symbol.slice(start, start + len);
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && name.length === len) roots.push(`${name}:${m[1]}`);
  }
  return roots;
}

/** Exported Rust symbols (`_R...`) of vmlinux in Module.symvers. */
export function exportedRustSymbols(symvers: string): string[] {
  return symvers
    .split('\n')
    .map((l) => l.split('\t'))
    .filter((f) => f[1]?.startsWith('_R') && f[2] === 'vmlinux')
    .map((f) => f[1]!);
}

export interface AbiReport {
  ok: boolean;
  /** Per checked crate: the hashes the kernel exports and the hash of the rebuilt crate. */
  crates: Record<string, { kernel: string[]; rebuilt: string[] }>;
  /** Exported symbols of the checked crates, and how many of them the rebuilt objects define. */
  exported: number;
  matched: number;
  /** Of the matched symbols, how many the rebuilt objects define as code (T) and as data (D, R, B). */
  text?: number;
  data?: number;
  missing: string[];
  /**
   * Metadata tree: the item paths of the exported symbols (`kernel::net::phy::register`), looked up in
   * the tree crates' `-Zls=items` listings: how many symbols were, and the paths the tree lacks, with
   * how many symbols name each (most first). Absent when rustc has no `-Zls=items`.
   */
  paths?: { checked: number; lacking: { path: string; symbols: number }[] };
}

/**
 * Defined symbols of `nm --defined-only` output (posix format: "name type value size"), with their type
 * letter: text (T, t, W) and data (D, d, R, r, B, b, V) alike, as the kernel exports both.
 */
export function definedSymbols(nmPosix: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of nmPosix.split('\n')) {
    const [name, type] = line.trim().split(/\s+/);
    if (name && type && !name.endsWith(':')) out.set(name, type);
  }
  return out;
}

export function compareAbi(exported: string[], defined: Set<string> | Map<string, string>): AbiReport {
  const crates: AbiReport['crates'] = {};
  const hashesIn = (symbols: Iterable<string>, crate: string) => {
    const set = new Set<string>();
    for (const s of symbols) for (const root of crateRoots(s)) if (root.startsWith(`${crate}:`)) set.add(root.slice(crate.length + 1));
    return [...set].sort();
  };
  for (const crate of CHECKED_CRATES) crates[crate] = { kernel: hashesIn(exported, crate), rebuilt: hashesIn(defined.keys(), crate) };
  // A symbol is the rebuilt crates' to provide when its own crate root (the outermost) is one of them.
  const rebuiltRoots = new Set(CHECKED_CRATES.flatMap((c) => crates[c]!.rebuilt.map((h) => `${c}:${h}`)));
  const kernelRoots = new Set(CHECKED_CRATES.flatMap((c) => crates[c]!.kernel.map((h) => `${c}:${h}`)));
  const owned = exported.filter((s) => {
    const first = crateRoots(s)[0];
    return first !== undefined && kernelRoots.has(first);
  });
  const missing = owned.filter((s) => !defined.has(s));
  const hashesMatch = CHECKED_CRATES.every((c) => crates[c]!.kernel.every((h) => rebuiltRoots.has(`${c}:${h}`)));
  const report: AbiReport = { ok: hashesMatch && missing.length === 0, crates, exported: owned.length, matched: owned.length - missing.length, missing: missing.slice(0, 20) };
  if (defined instanceof Map) {
    const types = owned.map((s) => defined.get(s)).filter((t): t is string => t !== undefined);
    report.text = types.filter((t) => /^[TtWw]$/.test(t)).length;
    report.data = types.length - report.text;
  }
  return report;
}

/** Runs the check on a freshly built tree (before pruning removes the objects). */
export async function checkRustAbi(objDir: string, log: CommandLog, nmCommand = 'nm'): Promise<AbiReport> {
  const symvers = await readFile(path.join(objDir, 'Module.symvers'), 'utf8');
  const exported = exportedRustSymbols(symvers);
  const objects = ['core.o', 'kernel.o'].map((o) => path.join(objDir, 'rust', o));
  // The kernel's binutils (aarch64-linux-gnu-nm for an arm64 kernel): the host nm may not read its objects.
  const nm = await run(nmCommand, ['--defined-only', '--format=posix', ...objects], { log, step: `${nmCommand} (ABI check)` });
  const defined = definedSymbols(nm.stdout);
  const report = compareAbi(exported, defined);
  await log.write(`# ABI check: ${JSON.stringify({ ...report, missing: report.missing.length })}\n`);
  if (!report.ok) {
    const c = CHECKED_CRATES.find((k) => report.crates[k]!.kernel.some((h) => !report.crates[k]!.rebuilt.includes(h)));
    const detail = c
      ? `the rebuilt ${c} crate is ${report.crates[c]!.rebuilt.join(',') || 'missing'} but the kernel exports ${report.crates[c]!.kernel.join(',')}`
      : `${report.missing.length} of the kernel's exported Rust symbols are not in the rebuilt crates (first: ${report.missing[0]})`;
    throw new OotmodError(
      `ABI check failed: ${detail}`,
      'the rustc or .config differ from the kernel build; the tree was refused',
      ExitCode.Failed,
    );
  }
  return report;
}

/** The v0 mangling's crate disambiguator (`Cs<this>_`) of a StableCrateId: base-62 of id - 2 (rustc's push_disambiguator). */
export function v0CrateHash(stableCrateId: bigint): string {
  const digits = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
  let n = stableCrateId - 2n;
  let out = '';
  do {
    out = digits[Number(n % 62n)]! + out;
    n /= 62n;
  } while (n > 0n);
  return out;
}

/** The crate name and v0 hash `rustc -Zls=root` prints for a crate's metadata (`name X`, `stable_crate_id StableCrateId(N)`). */
export function parseCrateRoot(lsRoot: string): { name: string; hash: string } | undefined {
  const name = /^name (\w+)/m.exec(lsRoot)?.[1];
  const id = /stable_crate_id StableCrateId\((\d+)\)/.exec(lsRoot)?.[1];
  return name && id ? { name, hash: v0CrateHash(BigInt(id)) } : undefined;
}

/**
 * The ABI check of a metadata tree (no objects): every exported Rust symbol's crate (its outermost
 * crate root) must be a crate of the tree with the same hash. A crate's hash is rustc's StableCrateId,
 * made of the crate name, -Cmetadata and the rustc version: the same with or without code generation.
 */
export function compareCrateHashes(exported: string[], tree: Map<string, string>): AbiReport {
  const crates: AbiReport['crates'] = {};
  const missing: string[] = [];
  let owned = 0;
  for (const s of exported) {
    // `___rustc` roots are rustc's own internal symbols (rust_begin_unwind), of no crate of the tree.
    const roots = crateRoots(s).filter((r) => !r.startsWith('___'));
    if (!roots.length) continue;
    owned++;
    let ok = true;
    // Every crate a symbol names must be the tree's: `<kernel::X as pin_init::PinInit>::...` names both.
    for (const root of roots) {
      const [name, hash] = root.split(':') as [string, string];
      const c = (crates[name] ??= { kernel: [], rebuilt: tree.has(name) ? [tree.get(name)!] : [] });
      if (!c.kernel.includes(hash)) c.kernel.push(hash);
      if (tree.get(name) !== hash) ok = false;
    }
    if (!ok) missing.push(s);
  }
  for (const c of Object.values(crates)) c.kernel.sort();
  return { ok: owned > 0 && missing.length === 0, crates, exported: owned, matched: owned - missing.length, missing: missing.slice(0, 20) };
}

/** The first crate whose hash differs, in one line; undefined when all match. */
export function crateMismatch(report: AbiReport): string | undefined {
  for (const [name, c] of Object.entries(report.crates)) {
    if (c.kernel.some((h) => !c.rebuilt.includes(h))) {
      return `the tree's ${name} crate is ${c.rebuilt.length ? `Cs${c.rebuilt.join(',Cs')}_` : 'missing'} but the kernel exports ${name} symbols of Cs${c.kernel.join(',Cs')}_`;
    }
  }
  return undefined;
}

/**
 * The item check of a metadata tree: each exported symbol of a tree crate (with that crate's hash)
 * names item paths from the crate root, and each must be in the crate's listing as far as modules go
 * (`kernel::net` of `kernel::net::phy::Device::init_hw`; the free function `register` of
 * `kernel::net::phy::register`). A tree built with another .config lacks the modules and items that
 * options gate (`#[cfg(CONFIG_NET)] pub mod net;`), with the same crate hashes.
 */
export function compareItemPaths(exported: string[], tree: Map<string, string>, listings: Map<string, ItemListing>): NonNullable<AbiReport['paths']> {
  const lacking = new Map<string, number>();
  let checked = 0;
  for (const s of exported) {
    const paths = (symbolPaths(s) ?? []).filter((p) => listings.has(p.crate) && tree.get(p.crate) === p.hash);
    if (!paths.length) continue;
    checked++;
    for (const p of paths) {
      const prefix = lackingPrefix(p, listings.get(p.crate)!);
      if (!prefix) continue;
      const name = [p.crate, ...prefix].join('::');
      lacking.set(name, (lacking.get(name) ?? 0) + 1);
      break;
    }
  }
  return { checked, lacking: [...lacking].map(([path, symbols]) => ({ path, symbols })).sort((a, b) => b.symbols - a.symbols || a.path.localeCompare(b.path)) };
}

/** The item paths a tree lacks, in one line; undefined when it lacks none. */
export function pathMismatch(paths: AbiReport['paths']): string | undefined {
  const [first, ...rest] = paths?.lacking ?? [];
  if (!first) return undefined;
  const crate = first.path.split('::')[0];
  const more = rest.length ? ` (and ${rest.slice(0, 3).map((l) => `${l.symbols} of ${l.path}`).join(', ')}${rest.length > 3 ? ', ...' : ''})` : '';
  return `the kernel exports ${first.symbols} symbol${first.symbols > 1 ? 's' : ''} of ${first.path}, which the tree's ${crate} crate lacks${more}`;
}

/**
 * Runs the metadata tree's check: the crate hashes its .rmeta files record against Module.symvers, then
 * the item paths those symbols name against the crates' item listings. One rustc run per crate.
 */
export async function checkRustAbiMetadata(objDir: string, rustc: string, log: CommandLog): Promise<AbiReport> {
  const symvers = await readFile(path.join(objDir, 'Module.symvers'), 'utf8');
  const exported = exportedRustSymbols(symvers);
  const tree = new Map<string, string>();
  const listings = new Map<string, ItemListing>();
  const rmetas = (await readdir(path.join(objDir, 'rust'))).filter((f) => /^lib\w+\.rmeta$/.test(f)).sort();
  for (const f of rmetas) {
    const file = path.join(objDir, 'rust', f);
    // -Z needs RUSTC_BOOTSTRAP, as the kernel's own Makefile sets it for its rustc.
    const env = { RUSTC_BOOTSTRAP: '1' };
    // Not logged whole: the kernel crate's listing alone is thousands of lines.
    let r = await run(rustc, ['-Zls=root', '-Zls=items', file], { step: `rustc -Zls=root -Zls=items ${f} (ABI check)`, env, allowFailure: true });
    await log.write(`# command: RUSTC_BOOTSTRAP=1 ${r.command}: exit code ${r.exitCode}, ${r.stdout.split('\n').length} lines\n`);
    // A rustc without -Zls=items: the crate hashes alone.
    if (r.exitCode !== 0) r = await run(rustc, ['-Zls=root', file], { log, step: `rustc -Zls=root ${f} (ABI check)`, env });
    const root = parseCrateRoot(r.stdout);
    if (!root) continue;
    tree.set(root.name, root.hash);
    const items = parseItemListing(r.stdout);
    if (items) listings.set(root.name, items);
    else await log.write(`# ${f}: rustc lists no items; its item paths are not checked\n`);
  }
  const report = compareCrateHashes(exported, tree);
  if (listings.size) report.paths = compareItemPaths(exported, tree, listings);
  // Same crate hashes (the same rustc) but items the kernel exports are not there: the .config.
  const why = report.ok ? 'the .config differs from the kernel build' : 'the rustc or .config differ from the kernel build';
  const detail = report.ok ? pathMismatch(report.paths) : crateMismatch(report) ?? `the kernel's Module.symvers exports no Rust symbol of vmlinux`;
  if (detail) report.ok = false;
  await log.write(`# ABI check (crate hashes, item paths): ${JSON.stringify({ ...report, missing: report.missing.length })}\n`);
  if (detail) throw new OotmodError(`ABI check failed: ${detail}`, `${why}; the tree was refused`, ExitCode.Failed);
  return report;
}
