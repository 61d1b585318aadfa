// The jobs that move a machine between DKMS and ootmod-dkms (what they act on is read by
// src/dkms/handover.ts): the take-over removes DKMS's copies of what ootmod installed; the hand-back
// runs DKMS's own autoinstall.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { DkmsInstall } from '../dkms/handover.js';
import type { Layout } from '../system/layout.js';
import { run } from '../system/run.js';

/** Runs a take-over job: DKMS's copies and its link go. True when a file in the module dir went (depmod). */
export async function takeOverFromDkms(job: Pick<DkmsInstall, 'link' | 'copies'>): Promise<boolean> {
  let touched = false;
  for (const copy of job.copies) {
    if (!existsSync(copy)) continue;
    await rm(copy, { force: true });
    touched = true;
  }
  await rm(job.link, { force: true });
  return touched;
}

/** DKMS's own `dkms autoinstall -k KVER` for every kernel with headers (hand-back; only on the real root). */
export async function dkmsAutoinstall(layout: Layout, kernels: string[]): Promise<string[]> {
  if (layout.root !== '/') return [];
  const lines: string[] = [];
  for (const k of kernels) {
    const r = await run(layout.dkmsProgram, ['autoinstall', '-k', k], { allowFailure: true, env: { DPKG_MAINTSCRIPT_PACKAGE: undefined } });
    lines.push(`dkms autoinstall -k ${k}: ${r.exitCode === 0 ? 'done' : `exited with ${r.exitCode}`}`);
  }
  return lines;
}
