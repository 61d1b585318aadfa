// Power loss: ootmod and every process it started get SIGKILL at random moments of autoinstall --force.
// After each: no partial .ko installed, state.json parses, and the next plain run finishes the job.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES, hostKernel, linkHostKernel, placeSource } from '../support/host.js';
import { makeRoot } from '../support/roots.js';
import { seededRandom } from './lib/random.js';
import { QUICK, recordRow } from './lib/table.js';
import { guardedTimer, installedProblems, killAll, ootmodRun, startOotmod, stateProblem } from './lib/system.js';

const IS_ROOT = process.getuid?.() === 0;
const TRIALS = QUICK ? 4 : 20;
const MODULES = ['ootmod_hello', 'pair_alpha', 'ootmod_pair_beta', 'ootmod_patched'];

describe.skipIf(!IS_ROOT)('SIGKILL during autoinstall --force', () => {
  it(`leaves whole modules and a readable state, and the next run completes (${TRIALS} trials)`, async () => {
    const { release, headers } = hostKernel();
    const root = makeRoot('ootmod-faults-kill-');
    linkHostKernel(root, release, headers);
    for (const f of ['ootmod-hello-1.0', 'ootmod-pair-2.1', 'ootmod-patched-1.0']) placeSource(root, path.join(FIXTURES, f));
    const t0 = performance.now();
    const first = await ootmodRun(root, ['autoinstall']);
    expect(first.code, first.stderr).toBe(0);
    const fullMs = performance.now() - t0;
    const rnd = seededRandom();
    const failures: string[] = [];
    let midRun = 0;
    for (let i = 0; i < TRIALS; i++) {
      // Inside the run (its first build took fullMs): a kill after the run ended would test nothing.
      const at = Math.round(100 + rnd.next() * fullMs * 0.9);
      const { child, done } = startOotmod(root, ['autoinstall', '--force']);
      const timer = guardedTimer(() => killAll(child.pid!), at, false);
      const killed = await done;
      const timerErrors = timer.stop();
      const problems: string[] = timerErrors.map((e) => `the kill failed: ${e}`);
      if (killed.signal === 'SIGKILL') midRun++;
      if (killed.code === 70) problems.push(`internal error: ${killed.stderr}`);
      problems.push(...installedProblems(root, release).problems);
      const st = stateProblem(root);
      if (st) problems.push(st);
      const next = await ootmodRun(root, ['autoinstall']);
      if (next.code !== 0) problems.push(`next run exited ${next.code}: ${next.stderr.trim().split('\n').pop()}`);
      const after = installedProblems(root, release);
      const dep = readFileSync(path.join(root, 'usr/lib/modules', release, 'modules.dep'), 'utf8');
      for (const m of MODULES) {
        const file = after.files.find((f) => f.startsWith(`${m}.ko`));
        if (!file) problems.push(`${m} not installed after the next run`);
        else if (!dep.includes(`updates/ootmod/${file}:`)) problems.push(`modules.dep does not list ${file}`);
      }
      const status = JSON.parse((await ootmodRun(root, ['status', '--json'])).stdout) as { modules: { module: string; status: string }[] };
      for (const r of status.modules) if (r.status !== 'installed') problems.push(`status of ${r.module}: ${r.status}`);
      if (problems.length) failures.push(`trial ${i} (kill at ${at} ms, seed ${rnd.seed}): ${problems.join('; ')}`);
    }
    // Most kills must land while the run goes on (a forced run can be quicker than the first one).
    if (midRun < Math.ceil(TRIALS / 2)) failures.push(`only ${midRun} of ${TRIALS} kills landed while the run went on`);
    recordRow({ fault: 'SIGKILL in autoinstall --force', tried: TRIALS, held: TRIALS - failures.length, detail: `3 fixture sources, kills in 0.1-${(fullMs * 0.9 / 1000).toFixed(1)} s, ${midRun} of ${TRIALS} mid-run, seed ${rnd.seed}` });
    expect(failures).toEqual([]);
  });
});
