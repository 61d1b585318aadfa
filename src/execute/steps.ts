// What each kind of job does: the executor's JobRunner for ootmod's plans.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { takeOverFromDkms } from '../dkms/handover.js';
import type { KernelTarget } from '../kernel/inventory.js';
import { jobTarget, type InitramfsRef, type Job } from '../plan/jobs.js';
import { buildRustTree, cleanRustTrees } from '../rust/tree.js';
import { installedFilesPresent, type BuildRecord, type StateStore } from '../state/store.js';
import type { Layout } from '../system/layout.js';
import { run, type CommandLog } from '../system/run.js';
import { USERADD_ARGS, type Sandbox } from '../system/sandbox.js';
import { depmod } from './depmod.js';
import { keepPerBuildDir, removeDkmsTree, writeDkmsTree } from './dkmstree.js';
import type { JobResult, JobRunner } from './executor.js';
import { requestInitramfs } from './initramfs.js';
import { updateBootNotices } from './notices.js';
import { applyGuard, guardInput, readGuardState, realGrubTools, type GrubTools } from './bootguard.js';
import { decideGuard, guardLine, type GuardDecision } from '../plan/bootguard.js';
import type { ReadinessView } from '../plan/readiness.js';
import { buildModule, installModule, runScript, uninstallRecord } from './job.js';
import { placeSourceTree } from './sources.js';
import type { Jobserver } from './jobserver.js';
import type { KeyCreations } from './signing.js';

export const TRIGGER_NAME = 'ootmod-rebuild';

export interface StepContext {
  layout: Layout;
  kernels: ReadonlyMap<string, KernelTarget>;
  store: StateStore;
  timeoutMs: number;
  jobserver?: Jobserver;
  /** The run's sandbox: builds and Rust trees are confined through it; the build-user job creates its user. */
  sandbox: Sandbox;
  /** The run's signing key pairs being created (each once). */
  signingKeys: KeyCreations;
  /** Where removal steps write what they did (verbose output). */
  log: CommandLog;
  /** Reads every kernel's readiness now (for the boot-notice and boot-guard jobs, after the other jobs). */
  readiness?: (opts: InitramfsNews) => Promise<ReadinessView>;
  /** GRUB's tools for the boot guard (grub-editenv, update-grub); tests give their own. */
  grubTools?: GrubTools;
}

/** What this run's initramfs jobs did, for the readiness the boot jobs read. */
export interface InitramfsNews {
  /** Rebuilt later by initramfs-tools' trigger: still the old modules now, not checked. */
  initramfsPending: string[];
  /** Rebuilt by this run: checked for the critical modules. */
  initramfsRebuilt: string[];
}

function initramfsNews(job: { initramfsJobs: InitramfsRef[] }, results: ReadonlyMap<string, JobResult>): InitramfsNews {
  const done = job.initramfsJobs.filter((d) => results.get(d.job)?.status === 'done');
  return { initramfsPending: done.filter((d) => d.viaTrigger).map((d) => d.kernel), initramfsRebuilt: done.filter((d) => !d.viaTrigger).map((d) => d.kernel) };
}

const failed = (detail: string): JobResult => ({ status: 'failed', detail });

function recordResult(record: BuildRecord, touched = false): JobResult {
  return record.status === 'failed' ? { status: 'failed', detail: record.error, record, touched } : { status: 'done', record, touched };
}

export function jobRunner(ctx: StepContext): JobRunner {
  const { layout, store } = ctx;
  const kernelOf = (kver: string) => ctx.kernels.get(kver);
  return {
    async run(job, results) {
      switch (job.kind) {
        case 'build-user': {
          await ctx.sandbox.createBuildUser(async () => void (await run('useradd', USERADD_ARGS, { log: ctx.log, step: 'useradd' })));
          return { status: 'done' };
        }
        case 'add': {
          await placeSourceTree(job.from, job.dest);
          if (job.postAdd) await runScript('POST_ADD', job.postAdd, job.dest, { module: job.module, module_version: job.version }, ctx.log, 600_000);
          return { status: 'done' };
        }
        case 'rust-tree': {
          const kernel = kernelOf(job.kernel)!;
          const tree = await buildRustTree({
            layout, kernel, toolchain: job.toolchain, source: job.source, key: job.key, parts: job.parts, reason: job.reason,
            timeoutMs: ctx.timeoutMs, jobserver: ctx.jobserver?.client(), sandbox: ctx.sandbox,
          });
          const abi = tree.manifest.abi;
          return { status: 'done', treeDir: tree.dir, detail: `${(tree.manifest.bytes / 1e6).toFixed(0)} MB, ABI ${abi.ok ? 'ok' : 'refused'} (${abi.matched}/${abi.exported} symbols)` };
        }
        case 'build': {
          const kernel = kernelOf(job.kernel)!;
          const kernelBuildDir = job.rustTreeJob ? results.get(job.rustTreeJob)?.treeDir ?? job.kernelBuildDir : job.kernelBuildDir;
          const record = await buildModule(job, {
            layout, kernel, kernelBuildDir, timeoutMs: ctx.timeoutMs, previous: store.get(job.module, job.version, job.kernel), jobserver: ctx.jobserver?.client(),
            sandbox: ctx.sandbox, signingKeys: ctx.signingKeys,
          });
          await store.put(record);
          return recordResult(record);
        }
        case 'install': {
          const kernel = kernelOf(job.kernel)!;
          const { record, touched } = await installModule(job, {
            layout, kernel, timeoutMs: ctx.timeoutMs,
            record: store.get(job.module, job.version, job.kernel),
            replaced: job.replaces.map((v) => store.get(job.module, v, job.kernel)).filter((r): r is BuildRecord => Boolean(r)),
            ownerOf: (p) => store.ownerOf(p),
          });
          await store.put(record);
          if (record.status === 'installed') for (const v of job.replaces) await store.delete(job.module, v, job.kernel);
          return recordResult(record, touched);
        }
        case 'uninstall': {
          const record = store.get(job.module, job.version, job.kernel);
          if (!record) return { status: 'skipped', detail: 'not recorded any more' };
          const touched = await uninstallRecord(record, job.spec, layout, ctx.log);
          if (record.installed.length) {
            await store.put({ ...record, status: record.status === 'failed' ? 'failed' : 'built', installed: [], updatedAt: new Date().toISOString() });
          }
          return { status: 'done', touched };
        }
        case 'forget': {
          if (job.module && job.version) {
            await rm(layout.builtDir(job.kernel, job.module, job.version), { recursive: true, force: true });
            await rm(path.dirname(layout.buildDir(job.kernel, job.module, job.version)), { recursive: true, force: true });
            if (job.dkmsTree) await removeDkmsTree(job.dkmsTree);
            await store.delete(job.module, job.version, job.kernel);
            return { status: 'done' };
          }
          for (const dir of [layout.buildTree(job.kernel), path.dirname(path.dirname(layout.builtDir(job.kernel, 'x', 'y')))]) {
            await rm(dir, { recursive: true, force: true });
          }
          const install = layout.installDir(job.kernel);
          if (existsSync(install) && (await readdir(install)).length === 0) await rm(install, { recursive: true });
          return { status: 'done' };
        }
        case 'dkms-takeover': {
          // Only with ootmod's own copy in place (its install may have failed): else DKMS's stays in use.
          const ours = store.find({ module: job.module, kernel: job.kernel }).some(installedFilesPresent);
          if (!ours) return { status: 'skipped', detail: 'ootmod has not installed it' };
          return { status: 'done', touched: await takeOverFromDkms(job) };
        }
        case 'dkms-tree': {
          const record = store.get(job.module, job.version, job.kernel);
          if (!record?.built.length) return { status: 'skipped', detail: 'no kept build' };
          const perBuild = layout.perBuildDir(job.kernel, job.module, job.version, record.arch);
          await keepPerBuildDir(perBuild, { built: record.built, log: record.log });
          await writeDkmsTree(perBuild, job.dkmsTree);
          return { status: 'done' };
        }
        case 'rust-clean':
          return { status: (await cleanRustTrees(layout, job.kernel)) ? 'done' : 'skipped' };
        case 'depmod': {
          // Once per kernel, and only if one of its jobs changed files under its module dir.
          if (!job.after.some((id) => results.get(id)?.touched)) return { status: 'skipped', detail: 'no module changed' };
          await depmod(layout, job.kernel, ctx.log);
          return { status: 'done' };
        }
        case 'initramfs': {
          if (results.get(job.after[0]!)?.status !== 'done') return { status: 'skipped', detail: 'depmod did not run' };
          const error = await requestInitramfs(layout, job.kernel, job);
          return error ? failed(error) : { status: 'done', detail: job.tool === 'dracut' ? 'dracut --force' : job.viaTrigger ? 'through initramfs-tools\' trigger' : 'update-initramfs -u' };
        }
        case 'defer': {
          await mkdir(layout.queueDir, { recursive: true });
          await writeFile(path.join(layout.queueDir, job.entry.replaceAll('/', '_')), `${job.reason} ${new Date().toISOString()}\n`);
          const r = await run('dpkg-trigger', ['--no-await', TRIGGER_NAME], { allowFailure: true });
          return r.exitCode === 0 ? { status: 'done' } : failed(`dpkg-trigger ${TRIGGER_NAME} failed: ${r.stderr.trim().split('\n').pop() ?? r.exitCode}`);
        }
        case 'boot-guard': {
          if (!ctx.readiness) return { status: 'skipped', detail: 'no readiness reader' };
          const view = await ctx.readiness(initramfsNews(job, results));
          const state = readGuardState(layout);
          const decision: GuardDecision = job.release
            ? state ? { action: 'release', why: 'ootmod boot release', loader: state.bootloader } : { action: 'none', why: 'the guard holds nothing' }
            : decideGuard(guardInput(layout, job.mode, view, view.images ?? []));
          const after = await applyGuard(layout, decision, state, ctx.grubTools ?? realGrubTools(layout));
          const changed = decision.action === 'engage' || decision.action === 'release';
          const grubCfgAgain = layout.root !== '/' && ((decision.action === 'engage' && decision.savedMode === 'drop-in' && !state?.dropIn) || (decision.action === 'release' && state?.dropIn));
          const note = grubCfgAgain ? ' (update-grub is not run under --root: run it inside the root)' : '';
          return { status: changed ? 'done' : 'skipped', detail: `${guardLine(decision, true)}${note}`, guard: decision, readiness: { ...view, guard: after } };
        }
        case 'boot-notice': {
          // The guard's job (when the plan has one) read the readiness after its change.
          const guarded = results.get('boot-guard')?.readiness;
          if (!guarded && !ctx.readiness) return { status: 'skipped', detail: 'no readiness reader' };
          const readiness = guarded ?? (await ctx.readiness!(initramfsNews(job, results)));
          return { status: 'done', detail: await updateBootNotices(layout, job.files, readiness), readiness };
        }
      }
    },
    async blocked(job: Job, dependency: Job, results) {
      const why = results.get(dependency.id)?.detail;
      // No build user: the machine's fault, not the module's (no failed record); the command exits 5.
      if (dependency.kind === 'build-user') return { status: 'failed', detail: `${jobTarget(dependency)} could not be created${why ? `: ${why}` : ''}`, fault: true };
      const reason = `${dependency.kind === 'rust-tree' ? 'the Rust tree' : jobTarget(dependency)} failed${why ? `: ${why}` : ''}`;
      // An install whose own build failed: the build's record already says why.
      const sameModule = (job.kind === 'build' || job.kind === 'install') && (dependency.kind === 'build' || dependency.kind === 'install') &&
        dependency.module === job.module && dependency.version === job.version && dependency.kernel === job.kernel;
      if ((job.kind === 'build' || job.kind === 'install') && !sameModule) {
        const previous = store.get(job.module, job.version, job.kernel);
        const kernel = kernelOf(job.kernel);
        const error = dependency.kind === 'rust-tree'
          ? `it has Rust code and the Rust tree of ${job.kernel} could not be built${why ? `: ${why}` : ''}`
          : `BUILD_DEPENDS: ${dependency.kind === 'build' || dependency.kind === 'install' ? dependency.module : jobTarget(dependency)} failed to build`;
        const record: BuildRecord = {
          module: job.module, version: job.version, kernel: job.kernel, arch: kernel?.arch.machine ?? previous?.arch ?? '',
          status: 'failed', inputsKey: 'blocked', built: [], installed: previous?.installed ?? [], error, updatedAt: new Date().toISOString(),
        };
        await store.put(record);
        return { status: 'failed', detail: error, record };
      }
      return failed(sameModule ? 'its build failed' : reason);
    },
  };
}
