// Asking for a new initramfs for kernels whose modules changed: a module in the initramfs (storage,
// filesystems) must be the one just installed. initramfs-tools (Debian's default) or dracut, whichever
// makes this machine's initramfs.
import { findOnPath } from '../system/programs.js';
import { initramfsFile, initramfsGenerator, type InitramfsTool } from '../kernel/initramfs.js';
import { compareKernelVersions } from '../kernel/version.js';
import type { Layout } from '../system/layout.js';
import { run } from '../system/run.js';

/**
 * Set in the environment of the update-initramfs ootmod runs: ootmod's initramfs-tools post-update hook
 * (`ootmod hook initramfs`) then does nothing, since the run that asked checks the new initramfs itself.
 */
export const INITRAMFS_JOB_ENV = 'OOTMOD_INITRAMFS_JOB';


/**
 * The kernels whose initramfs ootmod keeps up to date: only on the real system, with initramfs-tools
 * or dracut, and kernels that have an initramfs. With update-initramfs, inside dpkg the newest one goes
 * through its `update-initramfs` trigger (it runs once at the end of the dpkg run); the others, and
 * every kernel outside dpkg, get `update-initramfs -u -k KVER`. A dracut without update-initramfs
 * (Debian 12's) has no trigger: `dracut --force`.
 */
export function initramfsKernels(layout: Layout, allKernels: string[]): { kernels: Set<string>; newest?: string; tool?: InitramfsTool } {
  if (layout.root !== '/') return { kernels: new Set() };
  const generator = initramfsGenerator(layout);
  const tool = !generator ? undefined : findOnPath('update-initramfs') ? 'update-initramfs' : generator === 'dracut' && findOnPath('dracut') ? 'dracut' : undefined;
  if (!tool) return { kernels: new Set() };
  return {
    kernels: new Set(allKernels.filter((k) => initramfsFile(layout, k))),
    newest: tool === 'update-initramfs' ? [...allKernels].sort(compareKernelVersions).pop() : undefined,
    tool,
  };
}

/** Returns the error line, or undefined when it worked. */
export async function requestInitramfs(layout: Layout, kernel: string, how: { viaTrigger: boolean; tool: InitramfsTool }): Promise<string | undefined> {
  const env = { DPKG_MAINTSCRIPT_PACKAGE: undefined, [INITRAMFS_JOB_ENV]: '1' };
  if (how.tool === 'dracut') {
    const file = initramfsFile(layout, kernel) ?? layout.initramfs(kernel);
    const res = await run('dracut', ['-q', '--force', file, kernel], { allowFailure: true, timeoutMs: 900_000, env });
    return res.exitCode ? `dracut --force ${file} ${kernel} failed: ${res.stderr.trim().split('\n').pop()}` : undefined;
  }
  const res = how.viaTrigger
    ? await run('dpkg-trigger', ['--no-await', 'update-initramfs'], { allowFailure: true })
    : await run('update-initramfs', ['-u', '-k', kernel], { allowFailure: true, timeoutMs: 900_000, env });
  return res.exitCode ? `update-initramfs -u -k ${kernel} failed: ${res.stderr.trim().split('\n').pop()}` : undefined;
}
