// The executor's scheduling, the jobserver with real GNU make, and the runner's timeout and group kill.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { executePlan, type JobResult, type JobRunner, type ProgressReporter } from '../../src/execute/executor.js';
import { Jobserver, makeSupportsFifo } from '../../src/execute/jobserver.js';
import { emptyPlan, type Job, type WorkPlan } from '../../src/plan/jobs.js';
import { CommandError, run } from '../../src/system/run.js';
import { tempDir } from '../support/roots.js';

const quiet: ProgressReporter = { jobStarted() {}, jobFinished() {}, note() {}, close() {} };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function job(id: string, kind: Job['kind'], extra: Partial<Job> = {}): Job {
  return { id, kind, kernel: 'k', reason: 'test', needs: [], after: [], ...extra } as Job;
}

function planOf(...jobs: Job[]): WorkPlan {
  return { ...emptyPlan(), jobs };
}

/** A runner that records the order and the concurrency of CPU jobs, and fails the ids it is told to. */
function recordingRunner(opts: { fail?: string[]; ms?: number } = {}) {
  const order: string[] = [];
  const blocked: string[] = [];
  let cpu = 0;
  let maxCpu = 0;
  const runner: JobRunner = {
    async run(j) {
      order.push(j.id);
      const isCpu = j.kind === 'build' || j.kind === 'rust-tree';
      if (isCpu) maxCpu = Math.max(maxCpu, ++cpu);
      await sleep(opts.ms ?? 30);
      if (isCpu) cpu--;
      return { status: opts.fail?.includes(j.id) ? 'failed' : 'done', detail: 'x' } satisfies JobResult;
    },
    async blocked(j) {
      blocked.push(j.id);
      return { status: 'failed', detail: 'blocked' };
    },
  };
  return { runner, order, blocked, maxCpu: () => maxCpu };
}

describe('executor', () => {
  it('runs a job only after what it needs and comes after, and blocks what needs a failed job', async () => {
    const r = recordingRunner({ fail: ['build:a'] });
    const plan = planOf(
      job('build:a', 'build'),
      job('install:a', 'install', { needs: ['build:a'] }),
      job('build:b', 'build'),
      job('install:b', 'install', { needs: ['build:b'] }),
      job('depmod:k', 'depmod', { after: ['install:a', 'install:b'] }),
    );
    const js = await Jobserver.create(2, { fifoForm: false });
    try {
      const results = await executePlan(plan, r.runner, { jobserver: js, reporter: quiet });
      expect(results.get('install:a')).toMatchObject({ status: 'failed', blocked: true });
      expect(r.blocked).toEqual(['install:a']);
      expect(results.get('install:b')?.status).toBe('done');
      // depmod comes after both installs, whatever their outcome.
      expect(r.order.at(-1)).toBe('depmod:k');
      expect(r.order.indexOf('install:b')).toBeGreaterThan(r.order.indexOf('build:b'));
      expect(js.held).toBe(0);
      expect(js.available()).toBe(2);
    } finally {
      await js.close();
    }
  });

  it('never runs more CPU jobs than tokens, starts the Rust tree first, and runs the rest without tokens', async () => {
    const r = recordingRunner({ ms: 40 });
    const builds = Array.from({ length: 6 }, (_, i) => job(`build:m${i}`, 'build'));
    const installs = builds.map((b, i) => job(`install:m${i}`, 'install', { needs: [b.id] }));
    const plan = planOf(...builds, job('rust-tree:k', 'rust-tree'), job('build:rs', 'build', { needs: ['rust-tree:k'] }), ...installs);
    const js = await Jobserver.create(2, { fifoForm: false });
    try {
      const results = await executePlan(plan, r.runner, { jobserver: js, reporter: quiet });
      expect([...results.values()].every((x) => x.status === 'done')).toBe(true);
      expect(r.maxCpu()).toBe(2);
      expect(r.order[0]).toBe('rust-tree:k');
      // C builds do not wait for the Rust tree; the Rust module's build does.
      expect(r.order.indexOf('build:m0')).toBeLessThan(r.order.indexOf('build:rs'));
    } finally {
      await js.close();
    }
  });

  it('fails the jobs of a plan whose dependencies can never finish, instead of hanging', async () => {
    const r = recordingRunner();
    const plan = planOf(job('install:a', 'install', { after: ['install:b'] }), job('install:b', 'install', { after: ['install:a'] }));
    const results = await executePlan(plan, r.runner, { reporter: quiet });
    expect(results.get('install:a')?.status).toBe('failed');
    expect(results.get('install:b')?.detail).toMatch(/dependencies never finished/);
  });
});

describe('jobserver', () => {
  it('hands out its tokens in order and takes them back', async () => {
    const js = await Jobserver.create(2, { fifoForm: false });
    try {
      const a = await js.acquire();
      const b = await js.acquire();
      expect(js.available()).toBe(0);
      let third = false;
      const c = js.acquire().then((t) => ((third = true), t));
      await sleep(60);
      expect(third).toBe(false);
      a.release();
      (await c).release();
      expect(third).toBe(true);
      b.release();
      b.release(); // a second release of the same token is a no-op
      expect(js.available()).toBe(2);
    } finally {
      await js.close();
    }
  });

  it('knows which makes understand the fifo form', () => {
    expect(makeSupportsFifo('GNU Make 4.4.1\nBuilt for x86_64-pc-linux-gnu')).toBe(true);
    expect(makeSupportsFifo('GNU Make 4.3')).toBe(false);
    expect(makeSupportsFifo('GNU Make 5.0')).toBe(true);
    expect(makeSupportsFifo('bmake')).toBe(false);
  });

  const hostMake = execFileSync('make', ['--version'], { encoding: 'utf8' });
  const forms = [
    { name: 'pipe form (make < 4.4)', fifoForm: false, skip: false },
    { name: 'fifo form (make >= 4.4)', fifoForm: true, skip: !makeSupportsFifo(hostMake) },
  ];
  for (const form of forms) {
    it.skipIf(form.skip)(`limits a real make to the pool: ${form.name}`, async () => {
      const dir = tempDir('ootmod-jobserver-');
      // Eight recipes that each hold a slot for a while and log when they run.
      const targets = Array.from({ length: 8 }, (_, i) => `t${i}`);
      writeFileSync(
        path.join(dir, 'Makefile'),
        `all: ${targets.join(' ')}\n${targets.map((t) => `${t}:\n\t@echo "+ $$(date +%s.%N)" >> log; sleep 0.3; echo "- $$(date +%s.%N)" >> log\n`).join('')}`,
      );
      const js = await Jobserver.create(3, { fifoForm: form.fifoForm });
      try {
        const token = await js.acquire(); // ootmod's token: the make's implicit slot
        await run('make', ['-C', dir], { jobserver: js.client(), timeoutMs: 60_000 });
        token.release();
        expect(js.available()).toBe(3);
      } finally {
        await js.close();
      }
      const events = readFileSync(path.join(dir, 'log'), 'utf8').trim().split('\n').map((l) => ({ up: l.startsWith('+'), t: Number(l.slice(2)) })).sort((a, b) => a.t - b.t);
      let now = 0;
      let max = 0;
      for (const e of events) max = Math.max(max, (now += e.up ? 1 : -1));
      expect(max).toBe(3);
    });
  }
});

describe('runner', () => {
  it('ends the whole process group on a timeout, with a one-line error', async () => {
    const dir = tempDir('ootmod-run-');
    const pidFile = path.join(dir, 'pid');
    const started = performance.now();
    const err = await run('bash', ['-c', `sleep 60 & echo $! > ${pidFile}; wait`], { timeoutMs: 300, step: 'PRE_BUILD' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).line()).toMatch(/^PRE_BUILD timed out/);
    expect(performance.now() - started).toBeLessThan(5000);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await sleep(200);
    // Gone, or a zombie waiting for init to reap it: either way no longer running.
    const state = (() => {
      try {
        return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0];
      } catch {
        return 'gone';
      }
    })();
    expect(['gone', 'Z']).toContain(state);
  });

  it('names a missing program in one line, with the fix, as an environment fault (exit 5)', async () => {
    const err = await run('no-such-program-ootmod', [], { step: 'strip' }).catch((e: unknown) => e);
    expect((err as CommandError).line()).toMatch(/^strip: no-such-program-ootmod is not installed: install the package that provides no-such-program-ootmod/);
    expect((err as CommandError).exitCode).toBe(5);
  });
});
