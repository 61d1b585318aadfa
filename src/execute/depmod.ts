// depmod, once per kernel per run.
import { existsSync } from 'node:fs';
import type { Layout } from '../system/layout.js';
import { run, type CommandLog } from '../system/run.js';

export async function depmod(layout: Layout, kver: string, log?: CommandLog): Promise<void> {
  // A kernel whose module dir is gone (removed meanwhile) has nothing to index.
  if (!existsSync(layout.kernelDir(kver))) return;
  const args = layout.root === '/' ? ['-a', kver] : ['-b', layout.root, '-a', kver];
  await run('depmod', args, { log, step: `depmod ${kver}`, timeoutMs: 600_000 });
}
