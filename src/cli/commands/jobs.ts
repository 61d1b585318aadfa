// build, install and autoinstall: read the system, plan, execute, report.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { executePlan } from '../../execute/executor.js';
import { ExitCode, OotmodError } from '../../errors.js';
import { listSourceDirs, type SourceDir } from '../../modules/sources.js';
import { listKernels, type KernelTarget } from '../../kernel/inventory.js';
import { readFacts } from '../../plan/facts.js';
import { prepareRustTrees, rustKernels } from '../../rust/prepare.js';
import { currentTree } from '../../rust/tree.js';
import { plan, type Action, type Plan } from '../../plan/planner.js';
import { StateStore } from '../../state/store.js';
import { isSourcePath, parseModuleRef, sourcePathOf, type ModuleRef } from '../modargs.js';
import { lineReporter, ttyReporter } from '../progress.js';
import type { Session } from '../session.js';
import { addSource } from './add.js';

export type JobsCommand = Action | 'autoinstall';

export function printPlan(s: Session, p: Plan): void {
  for (const j of p.jobs) {
    const after = j.after.length ? ` after ${j.after.join(', ')}` : '';
    s.out(`would ${j.action} ${j.module}/${j.version} for ${j.kernel} (${j.reason})${after}`);
  }
  for (const c of p.current) s.out(`current  ${c.module}/${c.version} for ${c.kernel}: ${c.reason}`);
  for (const f of p.failed) s.out(`failed   ${f.module}/${f.version} for ${f.kernel}: ${f.reason}`);
  for (const k of p.skipped) s.out(`skip     ${k.module}/${k.version} for ${k.kernel}: ${k.reason}`);
  for (const i of uniqueInvalid(p)) s.out(`invalid  ${i.module}: ${i.reason}`);
}

function uniqueInvalid(p: Plan) {
  const seen = new Set<string>();
  return p.invalid.filter((i) => !seen.has(i.module + i.reason) && seen.add(i.module + i.reason));
}

async function resolveTargets(s: Session, args: string[]): Promise<{ refs?: ModuleRef[]; sources?: SourceDir[] }> {
  if (!args.length) return {};
  const refs: ModuleRef[] = [];
  for (const arg of args) {
    if (isSourcePath(arg)) {
      const dir = sourcePathOf(arg);
      // A tree outside /usr/src is added first, as DKMS's implicit add does.
      const added = path.dirname(dir) === s.layout.srcDir ? undefined : await addSource(s, dir, { quiet: true });
      const base = path.basename(added?.dir ?? dir);
      const m = /^(.*)-([^-]+)$/.exec(base);
      refs.push(added ? { name: added.name, version: added.version } : { name: m?.[1] ?? base, version: m?.[2] });
    } else {
      refs.push(parseModuleRef(arg));
    }
  }
  const all = await listSourceDirs(s.layout);
  const sources = all.filter((d) => refs.some((r) => r.name === d.guessedName));
  return { refs, sources: sources.length === refs.length ? sources : all };
}

/** Prepares the Rust trees of the CONFIG_RUST kernels (a cache hit when current); returns the failures. */
async function prepareRust(s: Session, installed: KernelTarget[]): Promise<Map<string, string>> {
  const failures = new Map<string, string>();
  if (!s.config().rust) return failures;
  const kernels = rustKernels(installed);
  if (!kernels.length) return failures;
  if (s.opts.dryRun) {
    for (const k of kernels) {
      const tree = await currentTree(s.layout, k.release);
      if (tree) s.rustTrees.set(k.release, tree.dir);
      else s.out(`would prepare the Rust tree of ${k.release}`);
    }
    return failures;
  }
  const results = await prepareRustTrees(kernels, {
    layout: s.layout, config: s.config(), kernelSource: s.opts.kernelSource, jobs: s.opts.jobs, force: false,
    onStart: (k, reason) => s.err(`rust     building the Rust tree of ${k} (${reason})`),
  });
  for (const r of results) {
    if (r.tree) {
      s.rustTrees.set(r.kernel, r.tree.dir);
      continue;
    }
    s.err(`rust     no current Rust tree for ${r.kernel}: ${r.error}`);
    failures.set(r.kernel, r.error ?? 'failed');
    // The tree in use (stale, say, after a rustc upgrade) still serves C modules, which do not use
    // rustc: they are not rebuilt just because Rust is unavailable. Without a tree they use the headers.
    const stale = await currentTree(s.layout, r.kernel);
    if (stale) s.rustTrees.set(r.kernel, stale.dir);
  }
  return failures;
}

export interface JobsOutcome {
  exit: ExitCode;
  /** Kernels whose module dir changed in this run (depmod ran for them). */
  touchedKernels: string[];
  summary: string;
}

export interface JobsOptions {
  /** The caller already holds the global lock. */
  locked?: boolean;
  /** Kernels changed before this run (removals): their depmod is merged into this run's. */
  alsoDepmod?: string[];
  /** The label of the summary line. */
  label?: string;
}

export async function jobsCommand(s: Session, command: JobsCommand, args: string[]): Promise<ExitCode> {
  return (await runJobs(s, command, args)).exit;
}

export async function runJobs(s: Session, command: JobsCommand, args: string[], opts: JobsOptions = {}): Promise<JobsOutcome> {
  if (command !== 'autoinstall' && !args.length) {
    throw new OotmodError(`${command} needs a module`, `ootmod ${command} NAME[/VERSION] [-k KVER]`, ExitCode.Usage);
  }
  for (const k of s.opts.kernels) {
    if (!existsSync(s.layout.kernelDir(k)) && !existsSync(s.layout.headersDir(k))) {
      throw new OotmodError(`kernel ${k} is not installed`, `install linux-headers-${k}, or see ootmod kernels`, ExitCode.NotFound);
    }
  }
  const release = s.opts.dryRun || opts.locked ? async () => {} : await s.lock();
  const label = opts.label ?? command;
  try {
    const { refs, sources } = await resolveTargets(s, args);
    const store = StateStore.load(s.layout.stateFile);
    // The kernels are read once: the Rust step and the planner see the same inventory.
    const kernels = await listKernels(s.layout, s.opts.kernels.length ? s.opts.kernels : undefined);
    const rustFailures = await prepareRust(s, kernels);
    const facts = await readFacts({
      layout: s.layout,
      store,
      kernels,
      sources,
      jobs: s.opts.jobs,
      checkOwnership: s.isRoot,
      kernelBuildDir: s.kernelBuildDir,
    });
    for (const ref of refs ?? []) {
      const known = facts.candidates.some((c) => c.spec?.name === ref.name && (!ref.version || c.spec.version === ref.version));
      const invalid = facts.candidates.find((c) => !c.spec && sources?.some((d) => d.dir === c.sourceDir && d.guessedName === ref.name));
      if (!known && invalid) throw new OotmodError(invalid.error ?? 'invalid module source', undefined, ExitCode.InvalidSource);
      if (!known) {
        const what = ref.version ? `${ref.name}/${ref.version}` : ref.name;
        throw new OotmodError(`no module source ${what} under ${s.layout.srcDir}`, 'ootmod add <dir> first, or see ootmod status', ExitCode.NotFound);
      }
    }
    if (!facts.kernels.some((k) => k.headersDir)) {
      const line = `no kernel headers found under ${s.layout.modulesDir}`;
      const fix = 'install linux-headers-<flavour> (e.g. linux-headers-amd64)';
      if (refs) throw new OotmodError(line, fix, ExitCode.NotFound);
      s.err(`ootmod: ${line}: ${fix}`);
    }
    const action: Action = command === 'build' ? 'build' : 'install';
    const p = plan({
      kernels: facts.kernels, candidates: facts.candidates, records: facts.records,
      request: { action, modules: refs, force: s.opts.force }, rustUnavailable: rustFailures,
    });
    if (s.opts.dryRun) {
      printPlan(s, p);
      if (!p.jobs.length) s.out('nothing to do');
      return { exit: ExitCode.Ok, touchedKernels: [], summary: '' };
    }
    for (const k of p.skipped) s.err(`skip     ${k.module}/${k.version} for ${k.kernel}: ${k.reason}`);
    for (const i of uniqueInvalid(p)) s.err(`invalid  ${i.module}: ${i.reason}`);
    for (const f of p.failed) s.err(`failed   ${f.module}/${f.version} for ${f.kernel}: ${f.reason}`);
    if (s.opts.verbose) for (const c of p.current) s.err(`current  ${c.module}/${c.version} for ${c.kernel}`);
    const reporter = process.stderr.isTTY && !s.opts.verbose ? ttyReporter(process.stderr) : lineReporter(process.stderr);
    const result = await executePlan(p, {
      layout: s.layout,
      kernels: new Map(facts.kernels.map((k) => [k.release, k])),
      store,
      jobs: s.opts.jobs,
      timeoutMs: s.config().buildTimeout * 1000,
      reporter,
      kernelBuildDir: s.kernelBuildDir,
      alsoDepmod: opts.alsoDepmod,
    });
    reporter.close();
    for (const d of result.depmodFailures) s.err(`depmod failed for ${d.kernel}: ${d.error}`);
    const count = (st: string) => result.records.filter((r) => r.status === st).length;
    const failed = count('failed') + p.failed.length + result.depmodFailures.length;
    const invalid = uniqueInvalid(p).length;
    const summary =
      `${label}: ${count('installed')} installed, ${count('built')} built, ${p.current.length} current, ` +
      `${p.skipped.length} skipped, ${failed} failed${invalid ? `, ${invalid} invalid` : ''}`;
    if (!opts.label) s.out(summary);
    let exit: ExitCode = ExitCode.Ok;
    if (failed) exit = ExitCode.Failed;
    // An invalid source is a failed module for autoinstall, a bad argument for a named one.
    else if (invalid) exit = refs ? ExitCode.InvalidSource : ExitCode.Failed;
    else if (refs && p.skipped.length && !p.jobs.length && !p.current.length) exit = ExitCode.Skipped;
    return { exit, touchedKernels: result.touchedKernels, summary };
  } finally {
    await release();
  }
}
