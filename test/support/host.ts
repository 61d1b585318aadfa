// The host's real Debian kernel headers, installed with apt when missing, and facts to check builds by.
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { KernelConfig } from '../../src/kernel/config.js';
import { compareKernelVersions } from '../../src/kernel/version.js';

export const REPO = path.resolve(__dirname, '../..');
export const OOTMOD = path.join(REPO, 'dist/ootmod');
export const FIXTURES = path.join(REPO, 'test/fixtures');

function kernelsWithHeaders(): string[] {
  const dir = '/usr/lib/modules';
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((k) => existsSync(path.join(dir, k, 'build', '.config')) && existsSync(path.join(dir, k, 'build', 'Makefile')))
    .sort((a, b) => compareKernelVersions(b, a));
}

/** The newest kernel release whose Debian headers are installed on the host; installs linux-headers-<arch> when none is. */
export function hostKernel(): { release: string; headers: string; config: KernelConfig } {
  let found = kernelsWithHeaders();
  if (!found.length) {
    const arch = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
    execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', `linux-headers-${arch}`], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    found = kernelsWithHeaders();
  }
  const release = found[0];
  if (!release) throw new Error('no kernel headers could be installed on this host');
  const headers = realpathSync(path.join('/usr/lib/modules', release, 'build'));
  return { release, headers, config: KernelConfig.parse(readFileSync(path.join(headers, '.config'), 'utf8')) };
}

/** The vermagic string include/linux/vermagic.h gives for this config (x86_64 and arm64). */
export function expectedVermagic(release: string, config: KernelConfig): string {
  const parts = [release];
  if (config.builtin('SMP')) parts.push('SMP');
  if (config.builtin('PREEMPT_RT')) parts.push('preempt_rt');
  else if (config.builtin('PREEMPT_BUILD') || config.builtin('PREEMPT')) parts.push('preempt');
  if (config.builtin('MODULE_UNLOAD')) parts.push('mod_unload');
  if (config.builtin('MODVERSIONS')) parts.push('modversions');
  if (config.builtin('ARM64')) parts.push('aarch64');
  return parts.join(' ');
}

export function compressionSuffix(config: KernelConfig): string {
  if (config.builtin('MODULE_COMPRESS_ZSTD')) return '.zst';
  if (config.builtin('MODULE_COMPRESS_XZ')) return '.xz';
  if (config.builtin('MODULE_COMPRESS_GZIP')) return '.gz';
  return '';
}

export function modinfo(field: string, file: string): string {
  return execFileSync('modinfo', ['-F', field, file], { encoding: 'utf8' }).trim();
}

/** A sandbox root that sees the host kernel's real headers. */
export function linkHostKernel(root: string, release: string, headers: string): void {
  mkdirSync(path.join(root, 'usr/lib/modules', release), { recursive: true });
  symlinkSync(headers, path.join(root, 'usr/lib/modules', release, 'build'));
}

/** Copies a module source into root/usr/src, root-owned and not group/other-writable as ootmod requires. */
export function placeSource(root: string, from: string, name = path.basename(from)): string {
  const to = path.join(root, 'usr/src', name);
  rmSync(to, { recursive: true, force: true });
  cpSync(from, to, { recursive: true });
  const fix = (p: string) => {
    const s = statSync(p);
    chmodSync(p, s.mode & 0o7755);
    if (s.isDirectory()) for (const e of readdirSync(p)) fix(path.join(p, e));
  };
  fix(to);
  return to;
}
