// Asking for a new initramfs for kernels whose modules changed: a module in the initramfs (storage,
// filesystems) must be the one just installed.
import { existsSync } from 'node:fs';
import { findOnPath } from '../kernel/toolchain.js';
import { compareKernelVersions } from '../kernel/version.js';
import type { Layout } from '../system/layout.js';
import { run } from '../system/run.js';

export interface InitramfsRequest {
  kernel: string;
  how: 'trigger' | 'update-initramfs';
  error?: string;
}

/**
 * Inside dpkg, initramfs-tools' own `update-initramfs` trigger is activated: it runs once at the end of
 * the dpkg run for the newest kernel. Any other kernel (and every kernel outside dpkg) gets
 * `update-initramfs -u -k KVER` at once. Only for the real system, and kernels that have an initramfs.
 */
export async function updateInitramfs(layout: Layout, kernels: string[], allKernels: string[], inDpkg: boolean): Promise<InitramfsRequest[]> {
  if (layout.root !== '/' || !findOnPath('update-initramfs')) return [];
  const newest = [...allKernels].sort(compareKernelVersions).pop();
  const out: InitramfsRequest[] = [];
  for (const kernel of kernels.filter((k) => existsSync(layout.initramfs(k)))) {
    const viaTrigger = inDpkg && kernel === newest;
    const res = viaTrigger
      ? await run('dpkg-trigger', ['--no-await', 'update-initramfs'], { allowFailure: true })
      : await run('update-initramfs', ['-u', '-k', kernel], { allowFailure: true, timeoutMs: 900_000, env: { DPKG_MAINTSCRIPT_PACKAGE: undefined } });
    out.push({ kernel, how: viaTrigger ? 'trigger' : 'update-initramfs', error: res.exitCode ? res.stderr.trim().split('\n').pop() : undefined });
  }
  return out;
}
