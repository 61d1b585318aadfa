// Which kernel boots next by default, and the root filesystem's type: best-effort
// reads of the bootloader's own files (GRUB, systemd-boot), never a change. Each answer says how it was
// found, or why it is unknown.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Layout } from '../system/layout.js';
import { run } from '../system/run.js';
import { findOnPath } from '../system/programs.js';
import { compareKernelVersions } from './version.js';

export type Bootloader = 'grub' | 'systemd-boot' | 'none';

export interface NextBoot {
  /** The kernel release that boots next by default; undefined when it cannot be told. */
  kernel?: string;
  bootloader: Bootloader;
  /** How it was found ("GRUB_DEFAULT=0: the first menu entry"), or why it is unknown. */
  how: string;
}

/** One entry of grub.cfg's menu, with the submenus above it. */
export interface GrubEntry {
  /** Titles from the top menu down, e.g. ["Advanced options for Debian GNU/Linux", "Debian GNU/Linux, with Linux 6.1.0-57-amd64"]. */
  titles: string[];
  /** The $menuentry_id_option ids, same order. */
  ids: string[];
  /** Positions from the top menu down, e.g. [1, 2]. */
  positions: number[];
  /** The kernel release of its `linux` line (/boot/vmlinuz-RELEASE). */
  kernel?: string;
}

/** Reads the words of a grub.cfg line (single or double quoted, or bare). */
function words(line: string): string[] {
  const out: string[] = [];
  const re = /'([^']*)'|"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] ?? m[2]?.replace(/\\(.)/g, '$1') ?? m[3]!);
  return out;
}

/** The menu entries of a grub.cfg, in menu order, submenus flattened (each entry keeps its path). */
export function parseGrubCfg(text: string): GrubEntry[] {
  const entries: GrubEntry[] = [];
  // Every open `{` block: a menu item (its path) or anything else (a function, an if's braces).
  const stack: ({ titles: string[]; ids: string[]; positions: number[]; entry?: GrubEntry; count: number } | null)[] = [];
  const top = { titles: [] as string[], ids: [] as string[], positions: [] as number[], count: 0 };
  const menu = () => ([...stack].reverse().find((s) => s !== null) ?? top);
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const w = words(line);
    if ((w[0] === 'menuentry' || w[0] === 'submenu') && line.endsWith('{')) {
      const parent = menu();
      const idIndex = w.findIndex((x) => x === '$menuentry_id_option' || x === '--id');
      const title = w[1] ?? '';
      const id = idIndex > 0 ? w[idIndex + 1] ?? '' : '';
      const frame = { titles: [...parent.titles, title], ids: [...parent.ids, id], positions: [...parent.positions, parent.count++], count: 0 };
      if (w[0] === 'menuentry') {
        const entry: GrubEntry = { titles: frame.titles, ids: frame.ids, positions: frame.positions };
        entries.push(entry);
        stack.push({ ...frame, entry });
      } else {
        stack.push(frame);
      }
      continue;
    }
    if (line === '}') {
      stack.pop();
      continue;
    }
    if (w[0] === 'linux' || w[0] === 'linuxefi') {
      const item = [...stack].reverse().find((s) => s?.entry);
      const m = /vmlinuz-(\S+)$/.exec(w[1] ?? '');
      if (item?.entry && m) item.entry.kernel = m[1];
      continue;
    }
    if (line.endsWith('{')) stack.push(null);
  }
  return entries;
}

/** The entry a GRUB_DEFAULT / saved_entry value names: positions ("1>2"), titles or ids, joined by '>'. */
export function findGrubEntry(entries: GrubEntry[], spec: string): GrubEntry | undefined {
  const parts = spec.split('>');
  const matches = (e: GrubEntry) =>
    e.titles.length === parts.length &&
    parts.every((p, i) => (/^\d+$/.test(p) ? e.positions[i] === Number(p) : p === e.titles[i] || p === e.ids[i]));
  // A single title or id may also name an entry inside a submenu (GRUB warns, and still finds it).
  return entries.find(matches) ?? (parts.length === 1 && !/^\d+$/.test(spec) ? entries.find((e) => e.titles.at(-1) === spec || e.ids.at(-1) === spec) : undefined);
}

/** `KEY=value` lines of grubenv (padded with #). */
export function parseGrubenv(text: string): Map<string, string> {
  const env = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) env.set(m[1]!, m[2]!);
  }
  return env;
}

/** GRUB_DEFAULT of /etc/default/grub (and grub.d/*.cfg, read after it): the last assignment wins. */
export function grubDefault(texts: string[]): string | undefined {
  let value: string | undefined;
  for (const text of texts) {
    for (const line of text.split('\n')) {
      const m = /^\s*(?:export\s+)?GRUB_DEFAULT=(.*)$/.exec(line);
      if (m) value = words(m[1]!.replace(/\s+#.*$/, ''))[0] ?? '';
    }
  }
  return value;
}

const readText = (file: string) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
};

/** The newest of these kernels (Debian's GRUB and systemd-boot put the newest version first). */
function newest(kernels: readonly string[]): string | undefined {
  return [...kernels].sort(compareKernelVersions).pop();
}

export interface GrubFiles {
  defaults: string[];
  grubenv?: string;
  grubCfg?: string;
}

/** GRUB's choice for the next boot, from its files: next_entry (grub-reboot), else GRUB_DEFAULT (saved: saved_entry). */
export function grubNextBoot(files: GrubFiles, installed: readonly string[]): NextBoot {
  const env = parseGrubenv(files.grubenv ?? '');
  const def = grubDefault(files.defaults) ?? '0';
  let spec: string;
  let how: string;
  if (env.get('next_entry')) {
    spec = env.get('next_entry')!;
    how = `next_entry=${spec} in grubenv (grub-reboot: this boot only)`;
  } else if (def === 'saved') {
    spec = env.get('saved_entry') || '0';
    how = env.get('saved_entry') ? `GRUB_DEFAULT=saved, saved_entry=${spec}` : 'GRUB_DEFAULT=saved, no saved_entry: the first menu entry';
  } else {
    spec = def;
    how = `GRUB_DEFAULT=${def}${def === '0' ? ': the first menu entry' : ''}`;
  }
  if (files.grubCfg !== undefined) {
    const entry = findGrubEntry(parseGrubCfg(files.grubCfg), spec);
    if (!entry) return { bootloader: 'grub', how: `unknown (${how} names no entry of grub.cfg)` };
    if (!entry.kernel) return { bootloader: 'grub', how: `unknown (${how} names "${entry.titles.join('>')}", which boots no Linux kernel)` };
    return { bootloader: 'grub', kernel: entry.kernel, how };
  }
  // No grub.cfg (update-grub has not run): only the first entry can be told, the newest kernel.
  if (spec === '0') {
    const kernel = newest(installed);
    return kernel ? { bootloader: 'grub', kernel, how: `${how}, no grub.cfg: the newest kernel` } : { bootloader: 'grub', how: 'unknown (no kernel image installed)' };
  }
  const named = installed.filter((k) => spec.includes(k)).sort((a, b) => b.length - a.length)[0];
  return named ? { bootloader: 'grub', kernel: named, how } : { bootloader: 'grub', how: `unknown (${how}, and there is no grub.cfg to resolve it)` };
}

export interface LoaderEntry {
  /** The entry's id as loader.conf's `default` matches it, without `.conf` and without a boot counter. */
  id: string;
  kernel?: string;
  /** Boot counting (`+LEFT-DONE` in the file name) says it has no tries left: systemd-boot sorts it last. */
  bad?: boolean;
}

/** A Type #1 entry's file name: its id (no `.conf`, no boot counter) and whether its boot counter ran out (`ID+0-3.conf`). */
export function loaderEntryName(file: string): { id: string; bad: boolean } {
  const base = file.replace(/\.conf$/, '');
  const m = /^(.*)\+(\d+)(?:-(\d+))?$/.exec(base);
  return m ? { id: m[1]!, bad: Number(m[2]) === 0 } : { id: base, bad: false };
}

/** loader.conf's `default` (the last such line wins, as systemd-boot reads it). */
export function loaderConfDefault(text: string | undefined): string | undefined {
  return [...(text ?? '').matchAll(/^[ \t]*default[ \t]+(.*?)[ \t]*$/gm)].pop()?.[1] || undefined;
}

/** A systemd-boot entry's kernel: its `version`, else the release in its `linux` path (vmlinuz-REL or .../REL/linux). */
export function loaderEntryKernel(text: string, installed: readonly string[]): string | undefined {
  const field = (k: string) => new RegExp(`^\\s*${k}\\s+(.+?)\\s*$`, 'm').exec(text)?.[1];
  const version = field('version');
  if (version) return version;
  const linux = field('linux');
  if (!linux) return undefined;
  const m = /vmlinuz-([^/]+)$/.exec(linux) ?? /\/([^/]+)\/linux$/.exec(linux);
  return m?.[1] ?? installed.filter((k) => linux.includes(k)).sort((a, b) => b.length - a.length)[0];
}

/** Shell-style glob (systemd-boot's `default` pattern) as a regular expression. */
function globRe(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
}

/** systemd-boot's choice: the one-shot or default EFI variable, else loader.conf's `default`, else the newest entry. */
export function systemdBootNextBoot(loaderConf: string | undefined, entries: LoaderEntry[], efi: { oneShot?: string; default?: string }): NextBoot {
  const pick = (pattern: string, how: string): NextBoot => {
    const re = globRe(pattern.replace(/\.conf$/, ''));
    // Entries whose boot counter ran out come last; among the rest the newest version first.
    const match = entries.filter((e) => re.test(e.id)).sort((a, b) => Number(Boolean(a.bad)) - Number(Boolean(b.bad)) || compareKernelVersions(b.kernel ?? '', a.kernel ?? ''))[0];
    if (!match) return { bootloader: 'systemd-boot', how: `unknown (${how} matches no entry)` };
    return match.kernel ? { bootloader: 'systemd-boot', kernel: match.kernel, how } : { bootloader: 'systemd-boot', how: `unknown (${how}: entry ${match.id} names no kernel release)` };
  };
  if (efi.oneShot) return pick(efi.oneShot, `LoaderEntryOneShot=${efi.oneShot} (this boot only)`);
  if (efi.default) return pick(efi.default, `LoaderEntryDefault=${efi.default} (bootctl set-default)`);
  const def = loaderConfDefault(loaderConf);
  if (def && def !== '@saved') return pick(def, `default ${def} in loader.conf`);
  const good = entries.filter((e) => e.kernel && !e.bad);
  const withKernel = good.length ? good : entries.filter((e) => e.kernel);
  const kernel = newest(withKernel.map((e) => e.kernel!));
  return kernel ? { bootloader: 'systemd-boot', kernel, how: 'no default set: the newest entry' } : { bootloader: 'systemd-boot', how: 'unknown (no entry names a kernel release)' };
}

/** An EFI variable of systemd-boot (UTF-16 text after 4 bytes of attributes), on the running system only. */
function loaderEfiVar(name: string): string | undefined {
  try {
    const buf = readFileSync(`/sys/firmware/efi/efivars/${name}-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f`);
    return buf.subarray(4).toString('utf16le').replace(/\0+$/, '') || undefined;
  } catch {
    return undefined;
  }
}

/** The ESP and XBOOTLDR mount points Debian uses (systemd's own order of looking). */
const BOOT_PARTITIONS = ['/efi', '/boot/efi', '/boot'];

/** The loader/ dirs of systemd-boot that are there: those with loader.conf or entries/. */
function loaderDirs(layout: Layout): string[] {
  return BOOT_PARTITIONS.map((d) => layout.at(`${d}/loader`)).filter((d) => existsSync(path.join(d, 'loader.conf')) || existsSync(path.join(d, 'entries')));
}

/** systemd-boot's configuration is there (loader.conf or Type #1 entries on the ESP or XBOOTLDR). */
export function hasSystemdBoot(layout: Layout): boolean {
  return loaderDirs(layout).length > 0;
}

/**
 * loader.conf on the ESP (a system path, under the root): the one that exists, else the ESP's where
 * systemd-boot is installed (EFI/systemd), else the first loader/ dir's. XBOOTLDR's is never read.
 */
export function loaderConfPath(layout: Layout): string {
  const exists = BOOT_PARTITIONS.find((d) => existsSync(layout.at(`${d}/loader/loader.conf`)));
  const esp = exists ?? BOOT_PARTITIONS.find((d) => existsSync(layout.at(`${d}/EFI/systemd`))) ?? BOOT_PARTITIONS.find((d) => existsSync(layout.at(`${d}/loader`))) ?? '/boot/efi';
  return `${esp}/loader/loader.conf`;
}

/** Every Type #1 entry on the ESP and XBOOTLDR (the first of an id wins). */
export function readLoaderEntries(layout: Layout, installed: readonly string[]): LoaderEntry[] {
  const out = new Map<string, LoaderEntry>();
  for (const dir of loaderDirs(layout).map((d) => path.join(d, 'entries'))) {
    for (const f of existsSync(dir) ? readdirSync(dir).filter((x) => x.endsWith('.conf')).sort() : []) {
      const { id, bad } = loaderEntryName(f);
      if (!out.has(id)) out.set(id, { id, bad, kernel: loaderEntryKernel(readText(path.join(dir, f)) ?? '', installed) });
    }
  }
  return [...out.values()];
}

/** The running system was started by systemd-boot (its LoaderInfo EFI variable). */
function bootedBySystemdBoot(layout: Layout): boolean {
  return layout.root === '/' && (loaderEfiVar('LoaderInfo') ?? '').startsWith('systemd-boot');
}

/**
 * This machine's bootloader, by its configuration: GRUB (Debian's default) when its files are there,
 * unless the running system was started by systemd-boot; else systemd-boot when its loader.conf or
 * entries are there; else none.
 */
export function bootloaderOf(layout: Layout): Bootloader {
  const sdboot = hasSystemdBoot(layout);
  if (hasGrub(layout) && !(sdboot && bootedBySystemdBoot(layout))) return 'grub';
  return sdboot ? 'systemd-boot' : 'none';
}

/** systemd-boot's EFI variables, on the running system only (never under --root). */
export function loaderEfiVars(layout: Layout): { oneShot?: string; default?: string } {
  return layout.root === '/' ? { oneShot: loaderEfiVar('LoaderEntryOneShot'), default: loaderEfiVar('LoaderEntryDefault') } : {};
}

/** The drop-in through which ootmod's boot guard sets GRUB_DEFAULT=saved (read after every other one). */
export const GUARD_DROP_IN = '/etc/default/grub.d/zz-ootmod-boot-guard.cfg';

export interface GrubPaths {
  etcDefault: string;
  dropInDir: string;
  grubenv: string;
  grubCfg: string;
}

export function grubPaths(layout: Layout): GrubPaths {
  const grubDir = path.join(layout.bootDir, 'grub');
  return { etcDefault: layout.at('/etc/default/grub'), dropInDir: layout.at('/etc/default/grub.d'), grubenv: path.join(grubDir, 'grubenv'), grubCfg: path.join(grubDir, 'grub.cfg') };
}

/** GRUB is this machine's bootloader (its configuration is there). */
export function hasGrub(layout: Layout): boolean {
  const p = grubPaths(layout);
  return existsSync(p.grubCfg) || existsSync(p.etcDefault);
}

/**
 * GRUB's files as they are, or (`admin`) as the admin has them: without the boot guard's drop-in and
 * with the saved_entry the guard replaced (null: there was none).
 */
export function readGrubFiles(layout: Layout, admin?: { savedEntry: string | null }): GrubFiles {
  const p = grubPaths(layout);
  const guardDropIn = layout.at(GUARD_DROP_IN);
  const dropIns = existsSync(p.dropInDir)
    ? readdirSync(p.dropInDir).filter((f) => f.endsWith('.cfg')).sort().map((f) => path.join(p.dropInDir, f)).filter((f) => !admin || f !== guardDropIn)
    : [];
  let grubenv = readText(p.grubenv);
  if (admin) {
    const lines = (grubenv ?? '').split('\n').filter((l) => !l.startsWith('saved_entry='));
    grubenv = [...lines, ...(admin.savedEntry !== null ? [`saved_entry=${admin.savedEntry}`] : [])].join('\n');
  }
  return { defaults: [readText(p.etcDefault) ?? '', ...dropIns.map((f) => readText(f) ?? '')], grubenv, grubCfg: readText(p.grubCfg) };
}

/**
 * The bootloader's settings as the admin has them, without what the boot guard changed: GRUB's
 * saved_entry before it (null: none), loader.conf's `default` line before it (null: none).
 */
export interface AdminSettings {
  savedEntry?: string | null;
  loaderDefaultLine?: string | null;
}

/** loader.conf's text, or (`admin`) as the admin has it: the guard's marker and line replaced by the admin's line. */
export function readLoaderConf(layout: Layout, admin?: AdminSettings): string | undefined {
  const text = readText(layout.at(loaderConfPath(layout)));
  return text !== undefined && admin?.loaderDefaultLine !== undefined ? withoutGuardLine(text, admin.loaderDefaultLine) : text;
}

/** The comment the boot guard writes above its `default` line in loader.conf: the admin's line follows it. */
export const LOADER_GUARD_MARK = '#ootmod-boot-guard:';

/**
 * loader.conf without the boot guard's lines: its marker comment and the `default` line after it give
 * way to the admin's line (`previous`; null: none). A file without the marker is returned as it is.
 */
export function withoutGuardLine(text: string, previous: string | null): string {
  const lines = text.split('\n');
  const at = lines.findIndex((l) => l.startsWith(LOADER_GUARD_MARK));
  if (at < 0) return text;
  lines.splice(at, /^[ \t]*default[ \t]/.test(lines[at + 1] ?? '') ? 2 : 1, ...(previous === null ? [] : [previous]));
  return lines.join('\n');
}

/**
 * Which kernel boots next by default, by this machine's bootloader (bootloaderOf); with neither GRUB
 * nor systemd-boot, the newest installed kernel, as both order their menus. `admin`: the choice as the
 * admin set it, without what the boot guard changed.
 */
export function readNextBoot(layout: Layout, installed: readonly string[], admin?: AdminSettings): NextBoot {
  const loader = bootloaderOf(layout);
  if (loader === 'grub') return grubNextBoot(readGrubFiles(layout, admin?.savedEntry !== undefined ? { savedEntry: admin.savedEntry } : undefined), installed);
  if (loader === 'systemd-boot') return systemdBootNextBoot(readLoaderConf(layout, admin), readLoaderEntries(layout, installed), loaderEfiVars(layout));
  const kernel = newest(installed);
  return kernel
    ? { bootloader: 'none', kernel, how: 'no GRUB or systemd-boot configuration found: the newest kernel, as Debian orders its boot menus' }
    : { bootloader: 'none', how: 'unknown (no bootloader configuration and no kernel image found)' };
}

/** The root filesystem's type (findmnt), e.g. zfs: the module that provides it is needed in early boot. */
export async function rootFsType(layout: Layout): Promise<string | undefined> {
  if (!findOnPath('findmnt')) return undefined;
  const res = await run('findmnt', ['-no', 'FSTYPE', '-T', layout.root], { allowFailure: true, timeoutMs: 10_000 });
  return res.exitCode === 0 ? res.stdout.trim().split('\n')[0] || undefined : undefined;
}
