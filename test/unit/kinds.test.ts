// What each job kind looks like to its users, for a plan with every kind: the --dry-run lines, the plan
// JSON, the progress lines (done, failed, skipped, blocked; verbose or not) and the summary with its exit
// status. The snapshot was taken before the kinds moved into one registry (src/execute/kinds.ts) and
// holds them to it: a changed line is a changed interface. (The kinds of issue 19's item 3, the writes
// that were outside any plan, came later: their lines were added to it.)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { lineReporter, planLines } from '../../src/cli/progress.js';
import type { JobResult } from '../../src/execute/executor.js';
import { emptyPlan, type Job, type JobKind, type WorkPlan } from '../../src/plan/jobs.js';
import { planJson } from '../../src/cli/progress.js';
import { summarize, type Planned } from '../../src/pipeline/work.js';
import type { BuildRecord, StateStore } from '../../src/state/store.js';
import type { StepContext } from '../../src/execute/kinds.js';

const K = '6.12.0-1-amd64';
const base = { reason: 'because', needs: [], after: [] };

/** One job of every kind (the Record makes a new kind a compile error here until it has its case). */
const EVERY: Record<JobKind, Job[]> = {
  'build-user': [{ ...base, kind: 'build-user', id: 'build-user', user: '_ootmod' }],
  add: [{ ...base, kind: 'add', id: 'add:hello/1.0', from: '/tmp/hello', dest: '/usr/src/hello-1.0', module: 'hello', version: '1.0', postAdd: 'post.sh' }],
  'rust-tree': [{ ...base, kind: 'rust-tree', id: `rust-tree:${K}`, kernel: K, needs: ['build-user'] } as unknown as Job],
  build: [
    { ...base, kind: 'build', id: `build:hello/1.0@${K}`, module: 'hello', version: '1.0', kernel: K, needs: ['add:hello/1.0', `rust-tree:${K}`, 'build-user'], dkmsTree: `/var/lib/dkms/hello/1.0/${K}/x86_64` } as unknown as Job,
    { ...base, kind: 'build', id: `build:dep/2@${K}`, module: 'dep', version: '2', kernel: K, needs: [`install:hello/1.0@${K}`] } as unknown as Job,
  ],
  install: [{ ...base, kind: 'install', id: `install:hello/1.0@${K}`, module: 'hello', version: '1.0', kernel: K, replaces: [], needs: [`build:hello/1.0@${K}`] } as unknown as Job],
  uninstall: [{ ...base, kind: 'uninstall', id: `uninstall:old/1@${K}`, module: 'old', version: '1', kernel: K }],
  forget: [
    { ...base, kind: 'forget', id: `forget:old/1@${K}`, module: 'old', version: '1', kernel: K, needs: [`uninstall:old/1@${K}`] },
    { ...base, kind: 'forget', id: `forget:@${K}`, kernel: K, after: [`forget:old/1@${K}`] },
  ],
  'rust-clean': [{ ...base, kind: 'rust-clean', id: `rust-clean:${K}`, kernel: K }],
  'rust-stray': [{ ...base, kind: 'rust-stray', id: `rust-stray:${K}`, kernel: K, tree: '/var/lib/ootmod/rust/k/x86_64/trees/abc', paths: ['/var/lib/ootmod/rust/k/x86_64/trees/def-1'] }],
  'dkms-register': [{ ...base, kind: 'dkms-register', id: 'dkms-register:hello/1.0', module: 'hello', version: '1.0', registry: '/var/lib/dkms', link: '/var/lib/dkms/hello/1.0/source', source: '/usr/src/hello-1.0', marker: '/var/lib/ootmod/dkms-removed/hello-1.0', needs: ['add:hello/1.0'] }],
  'dkms-unregister': [
    { ...base, kind: 'dkms-unregister', id: 'dkms-unregister:old/1', module: 'old', version: '1', registry: '/var/lib/dkms', marker: '/var/lib/ootmod/dkms-removed/old-1' },
    { ...base, kind: 'dkms-unregister', id: 'dkms-unregister:gone/2', module: 'gone', version: '2', registry: '/var/lib/dkms' },
  ],
  'dkms-autoinstall': [{ ...base, kind: 'dkms-autoinstall', id: 'dkms-autoinstall', kernels: [K, 'other'] }],
  'signing-key': [{ ...base, kind: 'signing-key', id: 'signing-key', choice: { key: '/var/lib/dkms/mok.key', cert: '/var/lib/dkms/mok.pub', source: 'dkms' } as never }],
  dequeue: [{ ...base, kind: 'dequeue', id: 'dequeue', files: ['/var/lib/ootmod/queue/a', '/var/lib/ootmod/queue/dkms@install@x@1'] }],
  'removed-marks': [{ ...base, kind: 'removed-marks', id: 'removed-marks', files: ['/var/lib/ootmod/dkms-removed/x-1'] }],
  'dkms-takeover': [{ ...base, kind: 'dkms-takeover', id: `dkms-takeover:hello/1.0@${K}`, module: 'hello', version: '1.0', kernel: K, link: '/var/lib/dkms/hello/kernel-x', copies: ['/lib/modules/x/updates/dkms/hello.ko'], after: [`install:hello/1.0@${K}`] }],
  'dkms-tree': [{ ...base, kind: 'dkms-tree', id: `dkms-tree:cur/3@${K}`, module: 'cur', version: '3', kernel: K, dkmsTree: `/var/lib/dkms/cur/3/${K}/x86_64` }],
  depmod: [{ ...base, kind: 'depmod', id: `depmod:${K}`, kernel: K, after: [`install:hello/1.0@${K}`, `uninstall:old/1@${K}`] }],
  initramfs: [
    { ...base, kind: 'initramfs', id: `initramfs:${K}`, kernel: K, viaTrigger: true, tool: 'update-initramfs', after: [`depmod:${K}`] },
    { ...base, kind: 'initramfs', id: 'initramfs:other', kernel: 'other', viaTrigger: false, tool: 'dracut' },
  ],
  defer: [{ ...base, kind: 'defer', id: `defer:${K}`, entry: K, what: `kernel ${K}` }],
  'boot-guard': [
    { ...base, kind: 'boot-guard', id: 'boot-guard', mode: 'auto', loader: 'grub', release: false, preview: 'hold the default', initramfsJobs: [] },
    { ...base, kind: 'boot-guard', id: 'boot-guard', mode: 'yes', loader: 'systemd-boot', release: true, initramfsJobs: [] },
  ],
  'boot-notice': [{ ...base, kind: 'boot-notice', id: 'boot-notice', files: ['/run/a', '/var/b'], initramfsJobs: [] }],
  'post-transaction': [{ ...base, kind: 'post-transaction', id: 'post-transaction', command: 'update-grub', kernel: K, log: '/var/lib/dkms/post_transaction.log', after: ['depmod:' + K] } as Job],
  'record-failure': [{ ...base, kind: 'record-failure', id: `record-failure:nocc/1@${K}`, module: 'nocc', version: '1', kernel: K, error: `${K} was built with gcc-16, which is not installed: install gcc-16` }],
};

function planWith(jobs: Job[]): WorkPlan {
  const plan = emptyPlan();
  plan.jobs = jobs;
  plan.current.push({ module: 'cur', version: '3', kernel: K, reason: 'built and installed' });
  return plan;
}

function progress(jobs: Job[], result: (j: Job) => JobResult, verbose: boolean): string[] {
  const out = new PassThrough();
  let text = '';
  out.on('data', (b: Buffer) => (text += b.toString()));
  const r = lineReporter(out, verbose);
  for (const j of jobs) {
    r.jobStarted(j);
    r.jobFinished(j, { elapsedMs: 1500, ...result(j) });
  }
  return text.split('\n').filter(Boolean);
}

const RESULTS: Record<string, (j: Job) => JobResult> = {
  done: () => ({ status: 'done', detail: 'did it' }),
  failed: () => ({ status: 'failed', detail: 'it broke', record: { log: '/var/log/x.log' } as JobResult['record'] }),
  skipped: () => ({ status: 'skipped', detail: 'nothing to do' }),
  blocked: () => ({ status: 'failed', detail: 'its build failed', blocked: true }),
};

describe('every job kind, as its users see it', () => {
  const jobs = Object.values(EVERY).flat();

  it('plan lines and plan JSON', () => {
    expect(planLines(planWith(jobs))).toMatchSnapshot();
    expect(planJson(planWith(jobs))).toMatchSnapshot();
  });

  it.each(Object.keys(RESULTS))('progress lines when every job is %s', (name) => {
    expect({ quiet: progress(jobs, RESULTS[name]!, false), verbose: progress(jobs, RESULTS[name]!, true) }).toMatchSnapshot();
  });

  it.each(Object.keys(RESULTS))('summary and exit when every job is %s', (name) => {
    for (const named of [false, true]) {
      const planned = { plan: planWith(jobs), kernels: [], store: {} as StateStore, label: 'test', named, notes: [] } satisfies Planned;
      const results = new Map(jobs.map((j) => [j.id as string, RESULTS[name]!(j)]));
      const { summary, exit, touchedKernels } = summarize(planned, results);
      expect({ named, summary, exit, touchedKernels }).toMatchSnapshot();
    }
  });

  it('summary of a run where some kinds fail and others are done', () => {
    const planned = { plan: planWith(jobs), kernels: [], store: {} as StateStore, label: 'mixed', named: true, notes: [] } satisfies Planned;
    const failing = new Set<string>(['build', 'rust-tree', 'depmod']);
    const results = new Map(jobs.map((j) => [j.id as string, (failing.has(j.kind) ? RESULTS.failed! : RESULTS.done!)(j)]));
    expect(summarize(planned, results)).toMatchSnapshot();
  });

  it('exit of a named module that is only skipped, of an invalid source, and of a machine fault', () => {
    const skipped = emptyPlan();
    skipped.skipped.push({ module: 'a', version: '1', kernel: K, reason: 'BUILD_EXCLUSIVE_KERNEL' });
    const invalid = emptyPlan();
    invalid.invalid.push({ module: '/usr/src/x-1', reason: 'no dkms.conf' }, { module: '/usr/src/x-1', reason: 'no dkms.conf' });
    const out = [];
    for (const plan of [skipped, invalid]) {
      for (const named of [false, true]) out.push(summarize({ plan, kernels: [], store: {} as StateStore, label: 'x', named, notes: [] }, new Map()));
    }
    const fault = planWith(EVERY.depmod);
    out.push(summarize({ plan: fault, kernels: [], store: {} as StateStore, label: 'x', named: false, notes: [] }, new Map([[`depmod:${K}`, { status: 'failed', detail: 'disk full: free space', fault: true }]])));
    expect(out.map(({ summary, exit, fault }) => ({ summary, exit, fault }))).toMatchSnapshot();
  });

  it('the executor, the progress lines and the summary ask the registry, never a kind by name', () => {
    const src = (f: string) => readFileSync(path.resolve(__dirname, '../../src', f), 'utf8');
    const summarize = src('pipeline/work.ts').split('export function summarize(')[1]!.split('\n}\n')[0]!;
    for (const [file, text] of [['execute/executor.ts', src('execute/executor.ts')], ['execute/steps.ts', src('execute/steps.ts')], ['cli/progress.ts', src('cli/progress.ts')], ['summarize', summarize]] as const) {
      expect(text.match(/\.kind\s*[!=]==|case '[a-z-]+':/g), file).toBeNull();
    }
  });
});

describe('the lock a kind needs', () => {
  it('a plan with a job that needs the global lock does not run outside withLock', async () => {
    const { runPlanned, withLock } = await import('../../src/cli/runplan.js');
    const lines: string[] = [];
    const s = { opts: { dryRun: false, json: false, verbose: false }, err: (l: string) => lines.push(l), out: (l: string) => lines.push(l), lock: async () => async () => {} } as unknown as Parameters<typeof runPlanned>[0];
    const planned = { plan: planWith(EVERY.depmod), kernels: [], store: {} as StateStore, label: 'test', named: false, notes: [] } satisfies Planned;
    await expect(runPlanned(s, planned)).rejects.toThrow(`depmod:${K} runs under ootmod's lock, and test runs it without (withLock)`);
    // Under the lock the check passes (the plan then fails further on, on this fake session: not the lock's error).
    await expect(withLock(s, () => runPlanned(s, planned))).rejects.not.toThrow(/runs under ootmod's lock/);
    expect(s.holdsLock).toBeFalsy();
  });
});

describe('a job whose dependency failed, as its kind says', () => {
  const blockedBy = async (job: Job, dependency: Job, detail: string) => {
    const { jobRunner } = await import('../../src/execute/steps.js');
    const put: BuildRecord[] = [];
    const store = { get: () => undefined, put: async (r: BuildRecord) => void put.push(r) } as unknown as StateStore;
    const ctx = { store, kernels: new Map() } as unknown as StepContext;
    const result = await jobRunner(ctx).blocked(job, dependency, new Map([[dependency.id, { status: 'failed', detail }]]));
    return { result, put };
  };
  const [build, dependant] = EVERY.build;
  const [install] = EVERY.install;

  it("no build user: the machine's fault, nothing recorded", async () => {
    const { result, put } = await blockedBy(build!, EVERY['build-user'][0]!, 'useradd: no such file');
    expect(result).toEqual({ status: 'failed', detail: 'the system user _ootmod could not be created: useradd: no such file', fault: true });
    expect(put).toEqual([]);
  });

  it("an install after its own module's failed build: nothing more said or recorded", async () => {
    const { result, put } = await blockedBy(install!, build!, 'make failed');
    expect(result).toEqual({ status: 'failed', detail: 'its build failed' });
    expect(put).toEqual([]);
  });

  it('a build after a BUILD_DEPENDS module or the Rust tree: a failed record that says which', async () => {
    const dep = await blockedBy(dependant!, install!, 'make failed');
    expect(dep.result).toMatchObject({ status: 'failed', detail: 'BUILD_DEPENDS: hello failed to build' });
    expect(dep.put).toMatchObject([{ module: 'dep', version: '2', kernel: K, status: 'failed', inputsKey: 'blocked', error: 'BUILD_DEPENDS: hello failed to build' }]);
    const tree = await blockedBy(build!, EVERY['rust-tree'][0]!, 'rustc missing');
    expect(tree.put).toMatchObject([{ module: 'hello', status: 'failed', error: `it has Rust code and the Rust tree of ${K} could not be built: rustc missing` }]);
  });

  it('any other kind: "<what it needed> failed: <why>"', async () => {
    const depmod = EVERY.depmod[0]!;
    expect((await blockedBy(depmod, EVERY['rust-tree'][0]!, 'rustc missing')).result).toEqual({ status: 'failed', detail: 'the Rust tree failed: rustc missing' });
    expect((await blockedBy(depmod, install!, 'x')).result).toEqual({ status: 'failed', detail: `hello/1.0 for ${K} failed: x` });
  });
});

describe("a kernel's Rust tree that cannot be built", () => {
  it('is a line of the plan when every tree is wanted (autoinstall, trigger, rust prepare), not when named C modules are built', async () => {
    const { composePlan } = await import('../../src/plan/compose.js');
    const { ExitCode } = await import('../../src/errors.js');
    const rust = [{ kernel: K, state: 'unavailable' as const, error: 'no rustc is installed: install rustc', exitCode: ExitCode.Environment }];
    expect(composePlan({ rust, rustWanted: 'all', depmodKernels: new Set() }).rustUnavailable).toEqual([{ kernel: K, reason: 'no rustc is installed: install rustc', exitCode: ExitCode.Environment }]);
    expect(composePlan({ rust, rustWanted: 'needed', depmodKernels: new Set() }).rustUnavailable).toEqual([]);
  });
});
