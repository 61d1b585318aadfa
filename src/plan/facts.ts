// Reading the system for the planner: kernels, module sources evaluated per kernel, and state.
// Reading never changes the system.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { environmentFault, errorLine } from '../errors.js';
import { buildTools, kernelIdentity, toolsIdentity, type KernelTarget } from '../kernel/inventory.js';
import { hashParts, hashTree } from '../modules/identity.js';
import type { ConfEvaluator } from '../modules/dkmsconf.js';
import { listSourceDirs, loadSpec, type SourceDir } from '../modules/sourcedirs.js';
import type { RustTreeFact } from '../rust/prepare.js';
import { buildArch } from '../rust/tree.js';
import { compressionIdentity, ootmodFramework } from '../dkms/framework.js';
import { signingKeyIdentity } from '../dkms/mok.js';
import type { Layout } from '../system/layout.js';
import { VERSION } from '../version.js';
import { installedFilesPresent, type BuildRecord, type StateStore } from '../state/store.js';
import type { ModuleCandidate, RecordView } from './planner.js';


export interface Facts {
  kernels: KernelTarget[];
  candidates: ModuleCandidate[];
  records: RecordView[];
}

export interface FactsRequest {
  layout: Layout;
  /** Evaluates dkms.conf (the run's, through its sandbox). */
  conf: ConfEvaluator;
  store: StateStore;
  /** The installed kernels to plan for, as listed by listKernels. */
  kernels: KernelTarget[];
  /** Only these source dirs (all under /usr/src when absent). */
  sources?: SourceDir[];
  jobs: number;
  checkOwnership: boolean;
  /** Source dirs outside /usr/src that an add job places there (root-owned) first: dir -> its place. */
  placed?: ReadonlyMap<string, string>;
  /** The Rust trees of the CONFIG_RUST kernels, as read (Rust modules build against them). */
  rust: RustTreeFact[];
}

/** The Rust tree a Rust module of this kernel builds against: its key, and the dir dkms.conf sees. */
function rustTreeOf(layout: Layout, kernel: KernelTarget, rust: RustTreeFact[]): { key: string; dir: string } {
  const fact = rust.find((r) => r.kernel === kernel.release);
  const link = path.join(layout.rustDir(kernel.release, buildArch()), 'current');
  if (!fact) return { key: 'none', dir: kernel.headersDir ?? link };
  if (fact.state === 'current') return { key: fact.tree.manifest.key, dir: fact.tree.dir };
  if (fact.state === 'build') return { key: fact.assessment.key, dir: link };
  return { key: fact.current?.manifest.key ?? 'none', dir: fact.current?.dir ?? link };
}

/** Runs `fn` over `items` with at most `limit` at a time, keeping order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export function recordViews(store: StateStore): RecordView[] {
  return store.records().map((r) => ({ ...r, filesPresent: installedFilesPresent(r) }));
}

export async function readFacts(req: FactsRequest): Promise<Facts> {
  const { kernels } = req;
  const sources = req.sources ?? (await listSourceDirs(req.layout));
  const trees = new Map(await mapLimit(sources, 4, async (s) => [s.dir, await hashTree(s.dir).catch(() => ({ hash: 'unreadable', hasRust: false }))] as const));
  // With no kernel at all, each source is still read once, so invalid ones are reported.
  const pairs = kernels.length
    ? kernels.flatMap((kernel) => sources.map((source) => ({ kernel: kernel as KernelTarget | undefined, source })))
    : sources.map((source) => ({ kernel: undefined, source }));
  const identities = new Map(await Promise.all(kernels.map(async (k) => [k.release, await kernelIdentity(k)] as const)));
  // What a failed build is retried for (src/plan/planner.ts): the programs it runs, as found now.
  const tools = new Map(await Promise.all(kernels.map(async (k) => [k.release, await toolsIdentity(buildTools(k))] as const)));
  const rustTools = kernels.some((k) => k.rust.enabled) ? await toolsIdentity(['rustc', 'bindgen']) : '';
  // A module signed with another key than the one in use now is rebuilt (e.g. DKMS's, at a take-over).
  const signingKey = kernels.some((k) => k.signing.enabled) ? signingKeyIdentity(req.layout) : undefined;
  const framework = ootmodFramework(req.layout);
  const candidates = await mapLimit(pairs, 8, async ({ kernel, source }): Promise<ModuleCandidate> => {
    if (!kernel) {
      try {
        const spec = await loadSpec(source, { layout: req.layout, conf: req.conf, jobs: req.jobs, checkOwnership: req.checkOwnership && !req.placed?.has(source.dir) });
        return { sourceDir: source.dir, kernel: '', spec };
      } catch (err) {
        // A full disk or a missing bash is the machine's fault, not the source's.
        if (environmentFault(err)) throw environmentFault(err);
        return { sourceDir: source.dir, kernel: '', error: errorLine(err) };
      }
    }
    // C modules build against the headers; Rust modules against the kernel's Rust tree.
    const hasRust = trees.get(source.dir)?.hasRust ?? false;
    const rustTree = hasRust ? rustTreeOf(req.layout, kernel, req.rust) : undefined;
    const kernelBuildDir = rustTree?.dir ?? kernel.headersDir ?? req.layout.kernelBuildLink(kernel.release);
    try {
      const dest = req.placed?.get(source.dir);
      const read = await loadSpec(source, { layout: req.layout, conf: req.conf, kernel, kernelBuildDir, jobs: req.jobs, checkOwnership: req.checkOwnership && !dest });
      // A source the plan adds first builds from its place under /usr/src.
      const spec = dest ? { ...read, sourceDir: dest } : read;
      const inputsKey = hashParts([
        VERSION,
        spec,
        trees.get(source.dir)?.hash,
        identities.get(kernel.release),
        rustTree ? `rust:${rustTree.key}` : 'headers',
        compressionIdentity(framework, kernel.compression),
        kernel.signing.enabled ? signingKey : false,
      ]);
      const toolsKey = hashParts([tools.get(kernel.release), hasRust ? rustTools : '']);
      return { sourceDir: source.dir, kernel: kernel.release, spec, inputsKey, toolsKey, usesRust: hasRust, kernelBuildDir };
    } catch (err) {
      if (environmentFault(err)) throw environmentFault(err);
      return { sourceDir: source.dir, kernel: kernel.release, error: errorLine(err) };
    }
  });
  if (req.store.recoveredTo) adoptInstalled(req, candidates);
  return { kernels, candidates, records: recordViews(req.store) };
}

/** After a corrupt state file: the modules ootmod installed (updates/ootmod/) are matched to their sources again. */
function adoptInstalled(req: FactsRequest, candidates: ModuleCandidate[]): void {
  const adopted: BuildRecord[] = [];
  for (const kernel of req.kernels) {
    const dir = req.layout.installDir(kernel.release);
    const files = existsSync(dir) ? readdirSync(dir).filter((f) => /\.ko(\.(xz|zst|gz))?$/.test(f)) : [];
    for (const c of candidates) {
      if (c.kernel !== kernel.release || !c.spec) continue;
      const mine = files.filter((f) => c.spec!.modules.some((m) => f.replace(/\.ko(\.\w+)?$/, '') === m.destName));
      if (!mine.length) continue;
      adopted.push({
        module: c.spec.name, version: c.spec.version, kernel: kernel.release, arch: kernel.arch.machine, status: 'installed',
        inputsKey: '', built: [], installed: mine.map((f) => ({ module: f.replace(/\.ko(\.\w+)?$/, ''), path: path.join(dir, f) })),
        updatedAt: new Date().toISOString(),
      });
    }
  }
  req.store.adopt(adopted);
}
