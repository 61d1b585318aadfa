// Reading the Rust trees of CONFIG_RUST kernels for the planner: the toolchain and source each would be
// built with, and whether the tree in use is current. Reading never changes the system (the probe
// cache is saved only when the caller allows it).
import path from 'node:path';
import { ExitCode, OotmodError, errorLine } from '../errors.js';
import type { KernelTarget } from '../kernel/inventory.js';
import type { OotmodConfig } from '../system/config.js';
import type { Layout } from '../system/layout.js';
import { findRustSource, type RustSource } from './kernelsource.js';
import { ProbeCache, findRustToolchain, type RustToolchain } from './toolchain.js';
import { assessRustTree, treeInUse, type RustTree, type TreeAssessment } from './tree.js';

export type RustTreeFact =
  | { kernel: string; state: 'current'; tree: RustTree }
  | { kernel: string; state: 'build'; assessment: TreeAssessment; toolchain: RustToolchain; source: RustSource }
  /** No tree can be built now; `current` is the tree in use, if any (modules built against it stay). */
  | { kernel: string; state: 'unavailable'; error: string; exitCode: ExitCode; current?: RustTree };

export interface RustFactsRequest {
  layout: Layout;
  config: OotmodConfig;
  kernelSource?: string;
  force: boolean;
  /** Save the cache of toolchain --version probes (not on a dry run). */
  saveProbes: boolean;
}

export function rustKernels(kernels: KernelTarget[]): KernelTarget[] {
  return kernels.filter((k) => k.rust.enabled && k.headersDir);
}

export async function readRustFacts(kernels: KernelTarget[], req: RustFactsRequest): Promise<RustTreeFact[]> {
  const out: RustTreeFact[] = [];
  const probes = new ProbeCache(req.saveProbes ? path.join(req.layout.stateDir, 'rust', 'probes.json') : undefined, path.join(req.layout.stateDir, 'rust', 'probes.json'));
  for (const kernel of rustKernels(kernels)) {
    try {
      const toolchain = await findRustToolchain(kernel, { rustc: req.config.rustc, bindgen: req.config.bindgen, probes });
      const source = await findRustSource(req.layout, kernel, req.kernelSource ?? req.config.kernelSource);
      const assessment = await assessRustTree(req.layout, kernel, toolchain, source, req.force);
      if (!assessment.buildReason && assessment.current) out.push({ kernel: kernel.release, state: 'current', tree: assessment.current });
      else out.push({ kernel: kernel.release, state: 'build', assessment, toolchain, source });
    } catch (err) {
      const exitCode = err instanceof OotmodError ? err.exitCode : ExitCode.Failed;
      // A tree whose manifest is corrupt is no tree to build against (the next prepare replaces it).
      const inUse = await treeInUse(req.layout, kernel.release);
      out.push({ kernel: kernel.release, state: 'unavailable', error: errorLine(err), exitCode, current: inUse.state === 'ok' ? inUse.tree : undefined });
    }
  }
  return out;
}
