// DKMS's settings file, /etc/dkms/framework.conf and framework.conf.d/*.conf (shell assignments, read in
// that order, the last one set wins). With ootmod-dkms installed it is ootmod's: what has a meaning for
// ootmod is honoured (the key, sign_file, parallel_jobs, compress_*_opts, verbose, post_transaction),
// the rest is named once per command as ignored. The files are read as text, never sourced: only plain
// values and $kernelver are followed.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Compression } from '../kernel/inventory.js';
import { ootmodDkmsIsInstalled } from '../modules/names.js';
import type { Layout } from '../system/layout.js';

/** The value of `name=` in shell assignments, the last one set; quotes removed; '' when set empty. */
export function frameworkValue(text: string, name: string): string | undefined {
  return assignments(text).get(name);
}

function assignments(text: string, into = new Map<string, string>()): Map<string, string> {
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(?:"([^"]*)"|'([^']*)'|([^\s#;]*))/.exec(line);
    if (m) into.set(m[1]!, (m[2] ?? m[3] ?? m[4] ?? '').replace(/\r$/, ''));
  }
  return into;
}

/** Every setting of framework.conf and framework.conf.d/*.conf, the last one set winning. */
export function readFramework(layout: Layout): Map<string, string> {
  const files = [path.join(layout.dkmsEtcDir, 'framework.conf')];
  const dropIns = path.join(layout.dkmsEtcDir, 'framework.conf.d');
  if (existsSync(dropIns)) files.push(...readdirSync(dropIns).filter((f) => f.endsWith('.conf')).sort().map((f) => path.join(dropIns, f)));
  const values = new Map<string, string>();
  for (const file of files) {
    try {
      assignments(readFileSync(file, 'utf8'), values);
    } catch {
      // A file that is not there (or not readable) sets nothing, as DKMS's `[[ -e ]] && source` does.
    }
  }
  return values;
}

/**
 * A path setting for one kernel: `$kernelver`/`${kernelver}` replaced, as DKMS documents for sign_file,
 * mok_signing_key and mok_certificate; undefined when unset, empty, or using another shell variable.
 */
export function settingFor(values: Map<string, string>, name: string, kver?: string): string | undefined {
  const raw = values.get(name);
  if (!raw) return undefined;
  if (/\$\{?kernelver\}?/.test(raw) && kver === undefined) return undefined;
  const value = raw.replace(/\$\{kernelver\}|\$kernelver\b/g, kver ?? '');
  return value.includes('$') ? undefined : value;
}

/** DKMS's defaults, for the settings that change nothing when set to them. */
const DEFAULTS: Record<string, string> = {
  source_tree: '/usr/src', dkms_tree: '/var/lib/dkms', install_tree: '/lib/modules', tmp_location: '/tmp',
  compress_xz_opts: '--check=crc32 --lzma2=dict=1MiB', compress_zstd_opts: '-q --rm -T0',
};

/** What ootmod honours (README, "ootmod-dkms"). */
const HONOURED = new Set([
  'mok_signing_key', 'mok_certificate', 'sign_file', 'parallel_jobs', 'verbose', 'post_transaction',
  'compress_gzip_opts', 'compress_xz_opts', 'compress_zstd_opts',
]);

/**
 * The settings that are set, change something under DKMS, and that ootmod does not follow:
 * symlink_modules, modprobe_on_install, tmp_location and the trees when moved,
 * and autoinstall_all_kernels when set empty (ootmod always builds for every kernel with headers).
 */
export function ignoredSettings(values: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [name, value] of values) {
    if (HONOURED.has(name)) continue;
    if (name === 'autoinstall_all_kernels') {
      if (value === '') out.push(name);
      continue;
    }
    if (!value || DEFAULTS[name] === value.replace(/\/+$/, '')) continue;
    if (['symlink_modules', 'modprobe_on_install', 'source_tree', 'dkms_tree', 'install_tree', 'tmp_location'].includes(name)) out.push(name);
  }
  return out.sort();
}

/** parallel_jobs as a job count (0 and unset: ootmod's default). */
export function frameworkJobs(values: Map<string, string>): number | undefined {
  const n = Number(values.get('parallel_jobs'));
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** The options a compressor runs with: compress_<tool>_opts when set (DKMS splits them at spaces), else ootmod's. */
export function compressOptions(values: Map<string, string> | undefined, tool: Exclude<Compression, 'none'>): string[] {
  const own: Record<Exclude<Compression, 'none'>, string> = { xz: '--check=crc32 --lzma2=dict=1MiB', zstd: '-q --rm -T0', gzip: '-9 -n' };
  const set = values?.get(`compress_${tool}_opts`);
  return (set || own[tool]).split(/\s+/).filter(Boolean);
}

/** framework.conf's settings when ootmod-dkms is installed (then they are ootmod's), else none. */
export function ootmodFramework(layout: Layout): Map<string, string> | undefined {
  return ootmodDkmsIsInstalled(layout) ? readFramework(layout) : undefined;
}

/** DKMS's switch for its automatic builds: while /etc/dkms/no-autoinstall exists, DKMS's autoinstall, kernel_postinst and common.postinst build nothing. */
export function noAutoinstall(layout: Layout): boolean {
  return existsSync(path.join(layout.dkmsEtcDir, 'no-autoinstall'));
}

/**
 * With ootmod-dkms installed, ootmod's automatic builds honour DKMS's no-autoinstall (the trigger, the
 * kernel hooks, ootmod autoinstall), as DKMS's autoinstall does. Without it the file is DKMS's alone.
 */
export function autoinstallDisabled(layout: Layout): boolean {
  return noAutoinstall(layout) && ootmodDkmsIsInstalled(layout);
}

/** The compression part of the build-inputs key: the kind, and the options when framework.conf sets them. */
export function compressionIdentity(values: Map<string, string> | undefined, compression: string): string {
  const set = compression === 'none' ? undefined : values?.get(`compress_${compression}_opts`);
  return set ? `${compression} ${set}` : compression;
}
