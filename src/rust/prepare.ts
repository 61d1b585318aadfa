// Preparing the Rust trees of several kernels: find sources and toolchain, build or reuse the tree.
import path from 'node:path';
import { ExitCode, OotmodError, errorLine } from '../errors.js';
import type { KernelTarget } from '../kernel/inventory.js';
import type { OotmodConfig } from '../system/config.js';
import type { Layout } from '../system/layout.js';
import { findRustSource } from './sources.js';
import { ProbeCache, findRustToolchain } from './toolchain.js';
import { prepareRustTree, type RustTree } from './tree.js';

export interface RustPrepareOutcome {
  kernel: string;
  tree?: RustTree;
  built: boolean;
  reason: string;
  /** One line: why no tree could be prepared. */
  error?: string;
  exitCode?: ExitCode;
}

export interface RustPrepareRequest {
  layout: Layout;
  config: OotmodConfig;
  kernelSource?: string;
  jobs: number;
  force: boolean;
  onStart?(kernel: string, reason: string): void;
}

export function rustKernels(kernels: KernelTarget[]): KernelTarget[] {
  return kernels.filter((k) => k.rust.enabled && k.headersDir);
}

/** Kernels are prepared one after another: each build already uses every core. */
export async function prepareRustTrees(kernels: KernelTarget[], req: RustPrepareRequest): Promise<RustPrepareOutcome[]> {
  const out: RustPrepareOutcome[] = [];
  const probes = new ProbeCache(path.join(req.layout.stateDir, 'rust', 'probes.json'));
  for (const kernel of rustKernels(kernels)) {
    try {
      const toolchain = await findRustToolchain(kernel, { rustc: req.config.rustc, bindgen: req.config.bindgen, probes });
      const source = await findRustSource(req.layout, kernel, req.kernelSource ?? req.config.kernelSource);
      const result = await prepareRustTree({
        layout: req.layout, kernel, toolchain, source, jobs: req.jobs, force: req.force, timeoutMs: req.config.buildTimeout * 1000,
        onBuild: (reason) => req.onStart?.(kernel.release, reason),
      });
      out.push({ kernel: kernel.release, tree: result.tree, built: result.built, reason: result.reason });
    } catch (err) {
      const exitCode = err instanceof OotmodError ? err.exitCode : ExitCode.Failed;
      out.push({ kernel: kernel.release, built: false, reason: 'failed', error: errorLine(err), exitCode });
    }
  }
  return out;
}
