// Asking for a new initramfs for kernels whose modules changed: a module in the initramfs (storage,
// filesystems) must be the one just installed.
import { existsSync } from 'node:fs';
import { findOnPath } from '../system/programs.js';
import { compareKernelVersions } from '../kernel/version.js';
import type { Layout } from '../system/layout.js';
import { run } from '../system/run.js';

/**
 * The kernels whose initramfs ootmod keeps up to date: only on the real system, with initramfs-tools,
 * and kernels that have an initramfs. Inside dpkg the newest one goes through initramfs-tools' own
 * `update-initramfs` trigger (it runs once at the end of the dpkg run); the others, and every kernel
 * outside dpkg, get `update-initramfs -u -k KVER`.
 */
export function initramfsKernels(layout: Layout, allKernels: string[]): { kernels: Set<string>; newest?: string } {
  if (layout.root !== '/' || !findOnPath('update-initramfs')) return { kernels: new Set() };
  return {
    kernels: new Set(allKernels.filter((k) => existsSync(layout.initramfs(k)))),
    newest: [...allKernels].sort(compareKernelVersions).pop(),
  };
}

/** Returns the error line, or undefined when it worked. */
export async function requestInitramfs(kernel: string, viaTrigger: boolean): Promise<string | undefined> {
  const res = viaTrigger
    ? await run('dpkg-trigger', ['--no-await', 'update-initramfs'], { allowFailure: true })
    : await run('update-initramfs', ['-u', '-k', kernel], { allowFailure: true, timeoutMs: 900_000, env: { DPKG_MAINTSCRIPT_PACKAGE: undefined } });
  return res.exitCode ? `update-initramfs -u -k ${kernel} failed: ${res.stderr.trim().split('\n').pop()}` : undefined;
}
