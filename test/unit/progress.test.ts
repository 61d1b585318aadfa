// Every report is one line, also when a reason quotes a dkms.conf value that holds a newline.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { lineReporter, planLines, preRunLines } from '../../src/cli/progress.js';
import type { Job } from '../../src/plan/jobs.js';
import { emptyPlan } from '../../src/plan/jobs.js';

describe('plan and progress lines', () => {
  const plan = emptyPlan();
  plan.skipped.push({ module: 'fz1', version: '1.0', kernel: '6.1.0-x', reason: "BUILD_EXCLUSIVE_KERNEL 'a\n/updates' does not match 6.1.0-x" } as (typeof plan.skipped)[number]);
  plan.failed.push({ module: 'fz2', version: '1.0', kernel: '6.1.0-x', reason: 'BUILD_DEPENDS: first\r\nsecond is not installed for 6.1.0-x and not being built' } as (typeof plan.failed)[number]);

  it('escape newlines in the plan and before the run', () => {
    for (const lines of [planLines(plan), preRunLines(plan, false)]) {
      expect(lines.join('\n').split('\n')).toHaveLength(lines.length);
      expect(lines).toContain("skip     fz1/1.0 for 6.1.0-x: BUILD_EXCLUSIVE_KERNEL 'a\\n/updates' does not match 6.1.0-x");
      expect(lines).toContain('failed   fz2/1.0 for 6.1.0-x: BUILD_DEPENDS: first\\nsecond is not installed for 6.1.0-x and not being built');
    }
  });

  it('escape newlines in a job line', () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (b: Buffer) => (text += b.toString()));
    const job = { kind: 'build', id: 'build:fz3', module: 'fz3', version: '1.0', kernel: '6.1.0-x', reason: 'new\nline', needs: [], after: [] } as unknown as Job;
    lineReporter(out).jobStarted(job);
    expect(text).toBe('start    fz3/1.0 for 6.1.0-x (build: new\\nline)\n');
  });
});
