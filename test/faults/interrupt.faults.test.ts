// Interrupted: SIGINT, SIGTERM or SIGHUP to ootmod alone (Ctrl-C, `timeout`, a closed terminal, a
// service stopped) while a confined build runs. ootmod exits with 128 + the signal's number and leaves
// no process of the build behind, and the state stays readable. (A confined make is the init of its pid
// namespace: it survives SIGTERM, so ootmod must follow with SIGKILL.)
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { hostKernel, linkHostKernel } from '../support/host.js';
import { makeRoot } from '../support/roots.js';
import { recordRow } from './lib/table.js';
import { startOotmod, stateProblem } from './lib/system.js';

const IS_ROOT = process.getuid?.() === 0;
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Pids whose command line contains `mark`, read from /proc. */
function withMark(mark: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(mark)) out.push(Number(e));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

async function until(what: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (what()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return what();
}

describe.skipIf(!IS_ROOT)('interrupted during a confined build', () => {
  it('exits 128 + the signal, with no process of the build left and a readable state (SIGINT, SIGTERM, SIGHUP)', async () => {
    const { release, headers } = hostKernel();
    const failures: string[] = [];
    for (const signal of SIGNALS) {
      const root = makeRoot('ootmod-faults-interrupt-');
      linkHostKernel(root, release, headers);
      const mark = `ootmod-spin-${randomUUID()}`;
      // A build that never ends: make (the init of the sandbox's pid namespace) and its busy shell.
      const src = path.join(root, 'usr/src/ootmod-spin-1.0');
      mkdirSync(src, { recursive: true });
      writeFileSync(path.join(src, 'spin.mk'), `all:\n\t: ${mark}; while :; do :; done\n`);
      writeFileSync(path.join(src, 'dkms.conf'), `PACKAGE_NAME=ootmod-spin\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=spin\nDEST_MODULE_LOCATION[0]=/updates\nMAKE[0]="make -f spin.mk MARK=${mark}"\nAUTOINSTALL=yes\n`);
      const { child, done } = startOotmod(root, ['autoinstall']);
      const problems: string[] = [];
      if (!(await until(() => withMark(mark).length >= 2, 60_000))) problems.push('the build never started');
      process.kill(child.pid!, signal);
      const sent = Date.now();
      const r = await Promise.race([done, new Promise<undefined>((res) => setTimeout(() => res(undefined), 10_000))]);
      if (!r) problems.push('ootmod did not exit within 10 s');
      else if (r.code !== 128 + constants.signals[signal]) problems.push(`exit ${r.code ?? r.signal}, not ${128 + constants.signals[signal]}`);
      else if (Date.now() - sent > 3000) problems.push(`exit took ${Date.now() - sent} ms`);
      if (!(await until(() => withMark(mark).length === 0, 2000))) {
        const left = withMark(mark);
        problems.push(`processes of the build left: ${left.map((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ').slice(0, 60)).join(' | ')}`);
        for (const p of left) process.kill(p, 'SIGKILL');
      }
      const st = stateProblem(root);
      if (st) problems.push(st);
      if (problems.length) failures.push(`${signal}: ${problems.join('; ')}`);
    }
    recordRow({ fault: 'interrupted (SIGINT/TERM/HUP to ootmod alone)', tried: SIGNALS.length, held: SIGNALS.length - failures.length, detail: 'a confined build that never ends; exit 128+n, no process left, state readable' });
    expect(failures).toEqual([]);
  });
});
