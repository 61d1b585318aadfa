// rust prepare | status | clean: the per-kernel Rust trees.
import { ExitCode, OotmodError } from '../../errors.js';
import { listKernels } from '../../kernel/inventory.js';
import { planRustClean, planRustPrepare, rustPrepareExit } from '../../pipeline/work.js';
import { rustKernels } from '../../rust/prepare.js';
import { findRustSource } from '../../rust/kernelsource.js';
import { findRustToolchain } from '../../rust/toolchain.js';
import { buildArch, damagedFiles, treeInUse, treeKey } from '../../rust/tree.js';
import { jobId } from '../../plan/jobid.js';
import { json, table } from '../format.js';
import type { Session } from '../session.js';
import { runPlanned, withLock } from '../runplan.js';

export async function rustPrepare(s: Session): Promise<ExitCode> {
  return withLock(s, async () => {
    const planned = await planRustPrepare(s);
    const { plan } = planned;
    if (!plan.rustCurrent.length && !plan.rustUnavailable.length && !plan.jobs.length && !s.opts.json) {
      s.out('no installed kernel with headers is built with CONFIG_RUST: nothing to prepare');
      return ExitCode.Ok;
    }
    if (!s.opts.dryRun && !s.opts.json) for (const c of plan.rustCurrent) s.out(`current ${c.dir}`);
    // The trees that cannot be built get one line each, below, with their kernel.
    const outcome = await runPlanned(s, planned, { quietSummary: true, quietPreRun: true });
    if (!outcome || s.opts.json) return outcome?.exit ?? ExitCode.Ok;
    for (const j of plan.jobs) {
      const r = outcome.results.get(j.id);
      // What an interrupted build left (a rust-stray job), gone now the lock is ours.
      if (j.kind === 'rust-stray' && r?.status === 'done') s.out(`removed ${j.paths.length === 1 ? 'a build' : `${j.paths.length} builds`} interrupted before completion: ${r.detail}`);
      if (j.kind === 'rust-tree' && r?.status === 'done') s.out(`built ${r.treeDir} in ${((r.elapsedMs ?? 0) / 1000).toFixed(0)}s (${j.reason})`);
      else if (j.kind === 'rust-tree') s.err(`rust prepare ${j.kernel}: ${r?.detail ?? 'failed'}`);
    }
    for (const u of plan.rustUnavailable) s.err(`rust prepare ${u.kernel}: ${u.reason}`);
    return rustPrepareExit(planned, outcome.results);
  });
}

export async function rustStatus(s: Session): Promise<ExitCode> {
  const kernels = rustKernels(await listKernels(s.layout, s.opts.kernels.length ? s.opts.kernels : undefined));
  const rows = await Promise.all(
    kernels.map(async (k) => {
      const inUse = await treeInUse(s.layout, k.release);
      const tree = inUse.state === 'ok' ? inUse.tree : undefined;
      let state = inUse.state === 'corrupt' ? 'corrupt' : tree ? 'current' : 'missing';
      let detail = inUse.state === 'corrupt' ? inUse.error.line() : '';
      if (tree) {
        const damaged = await damagedFiles(tree);
        if (damaged.length) {
          state = 'damaged';
          detail = `${damaged[0]} is missing or changed`;
        } else {
          // Stale when what the tree was built from is no longer what is installed.
          try {
            const toolchain = await findRustToolchain(k, { rustc: s.config().rustc, bindgen: s.config().bindgen });
            const source = await findRustSource(s.layout, k, s.opts.kernelSource ?? s.config().kernelSource);
            const { key, parts } = await treeKey(k, toolchain, source, s.config().rustTree);
            if (key !== tree.manifest.key) {
              state = 'stale';
              detail = Object.keys(parts).filter((p) => parts[p as keyof typeof parts] !== tree.manifest.parts[p as keyof typeof parts]).join(', ') + ' changed';
            }
          } catch (err) {
            state = 'stale';
            detail = err instanceof OotmodError ? err.line() : String(err);
          }
        }
      }
      return {
        kernel: k.release,
        kernelArch: k.arch.dpkg ?? k.arch.machine,
        buildArch: buildArch(),
        state,
        // metadata: crates without code (the default); full: the kernel's whole rust/ build; trees of
        // older ootmod versions recorded no kind and were full.
        kind: tree ? tree.manifest.parts.kind ?? 'full' : null,
        detail: detail || null,
        dir: tree?.dir ?? (inUse.state === 'corrupt' ? inUse.dir : null),
        rustc: tree?.manifest.parts.rustc ?? k.rust.rustcVersionText ?? null,
        builtAt: tree?.manifest.builtAt ?? null,
        buildSeconds: tree ? Math.round(tree.manifest.durationMs / 1000) : null,
        sizeBytes: tree?.manifest.bytes ?? null,
        abi: tree
          ? {
              ok: tree.manifest.abi.ok, exported: tree.manifest.abi.exported, matched: tree.manifest.abi.matched,
              text: tree.manifest.abi.text ?? null, data: tree.manifest.abi.data ?? null, crates: tree.manifest.abi.crates,
              // metadata trees: how many symbols' item paths were found in the crates, and what they lack.
              paths: tree.manifest.abi.paths ?? null,
            }
          : null,
      };
    }),
  );
  if (s.opts.json) {
    s.out(json({ trees: rows }));
    return ExitCode.Ok;
  }
  if (!rows.length) {
    s.out('no installed kernel with headers is built with CONFIG_RUST');
    return ExitCode.Ok;
  }
  for (const line of table(
    ['KERNEL', 'ARCH', 'BUILD ARCH', 'STATE', 'KIND', 'SIZE', 'ABI', 'DETAIL'],
    rows.map((r) => [
      r.kernel, r.kernelArch, r.buildArch, r.state, r.kind ?? '-', r.sizeBytes ? `${Math.round(r.sizeBytes / 1e6)} MB` : '-',
      r.abi ? `${r.abi.ok ? 'ok' : 'FAILED'} ${r.abi.matched}/${r.abi.exported} symbols${r.abi.data !== null ? ` (${r.abi.text} text, ${r.abi.data} data)` : r.kind === 'metadata' ? ' (crate hashes)' : ''}` : '-',
      r.detail ?? r.dir ?? '',
    ]),
  )) s.out(line);
  return ExitCode.Ok;
}

export async function rustClean(s: Session): Promise<ExitCode> {
  if (!s.opts.kernels.length) throw new OotmodError('rust clean needs -k KVER', 'ootmod rust clean -k KVER', ExitCode.Usage);
  return withLock(s, async () => {
    const planned = planRustClean(s, s.opts.kernels);
    const outcome = await runPlanned(s, planned, { quietSummary: true });
    if (!outcome || s.opts.json) return outcome?.exit ?? ExitCode.Ok;
    for (const k of s.opts.kernels) s.out(`${outcome.results.get(jobId({ kind: 'rust-clean', kernel: k }))?.status === 'done' ? 'removed' : 'no'} Rust tree for ${k}`);
    return [...outcome.results.values()].some((r) => r.status === 'failed') ? ExitCode.Failed : ExitCode.Ok;
  });
}

export function rustCommand(s: Session, args: string[]): Promise<ExitCode> {
  switch (args[0]) {
    case 'prepare':
      return rustPrepare(s);
    case 'status':
      return rustStatus(s);
    case 'clean':
      return rustClean(s);
    default:
      throw new OotmodError(`unknown rust subcommand '${args[0] ?? ''}'`, 'use ootmod rust prepare|status|clean', ExitCode.Usage);
  }
}
