// Faults of the machine: a full disk (a small tmpfs holding the --root, filled to several levels), a
// read-only filesystem, a missing and an unexecutable make, a corrupt state file, and the build dir
// removed during a run. Each: one line with its fix and exit 5 (never 70), whole modules and a readable
// state, and the next plain run completes the work.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURES, hostKernel, placeSource } from '../support/host.js';
import { tempDir } from '../support/roots.js';
import { QUICK, recordRow } from './lib/table.js';
import { guardedTimer, installedProblems, ootmodRun, startOotmod, stateProblem, type Run } from './lib/system.js';

const IS_ROOT = process.getuid?.() === 0;
const MODULES = ['ootmod_hello', 'pair_alpha', 'ootmod_pair_beta', 'ootmod_patched'];

describe.skipIf(!IS_ROOT)('faults of the machine', () => {
  const { release, headers } = IS_ROOT ? hostKernel() : { release: '', headers: '' };
  const mnt = tempDir('ootmod-faults-tmpfs-');
  let mounted = false;
  const root = path.join(mnt, 'root');
  const filler = path.join(mnt, 'filler');

  afterAll(() => {
    if (mounted) execFileSync('umount', [mnt]);
  });

  function setup(): void {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96m,mode=0755', 'ootmod-faults', mnt]);
    mounted = true;
    for (const d of ['usr/lib/modules', 'usr/src', 'var/lib', 'etc', 'boot']) mkdirSync(path.join(root, d), { recursive: true });
    symlinkSync('usr/lib', path.join(root, 'lib'));
    mkdirSync(path.join(root, 'usr/lib/modules', release), { recursive: true });
    symlinkSync(headers, path.join(root, 'usr/lib/modules', release, 'build'));
    for (const f of ['ootmod-hello-1.0', 'ootmod-pair-2.1', 'ootmod-patched-1.0']) placeSource(root, path.join(FIXTURES, f));
  }

  /** Leaves about `bytes` free on the tmpfs. */
  function fill(bytes: number): void {
    rmSync(filler, { force: true });
    const free = Number(execFileSync('df', ['--output=avail', '-B1', mnt], { encoding: 'utf8' }).split('\n')[1]);
    if (free > bytes) execFileSync('fallocate', ['-l', String(free - bytes), filler]);
  }

  /** What must hold after a fault: whole modules, a readable state; then the next plain run completes. */
  async function afterFault(r: Run, expectLine: RegExp | undefined): Promise<string[]> {
    const problems: string[] = [];
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('ootmod: '));
    if (r.code === 70) problems.push(`internal error: ${r.stderr.trim()}`);
    if (expectLine) {
      if (r.code !== 5) problems.push(`exit ${r.code}, not 5: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
      else if (!lines.some((l) => expectLine.test(l))) problems.push(`no one-line error like ${expectLine}: ${lines.join(' | ')}`);
    }
    problems.push(...installedProblems(root, release).problems);
    const st = stateProblem(root);
    if (st) problems.push(st);
    rmSync(filler, { force: true });
    const next = await ootmodRun(root, ['autoinstall']);
    if (next.code !== 0) problems.push(`next run exited ${next.code}: ${next.stderr.trim().split('\n').pop()}`);
    const files = installedProblems(root, release).files;
    const depFile = path.join(root, 'usr/lib/modules', release, 'modules.dep');
    const dep = existsSync(depFile) ? readFileSync(depFile, 'utf8') : '';
    for (const m of MODULES) {
      const f = files.find((x) => x.startsWith(`${m}.ko`));
      if (!f) problems.push(`${m} not installed after the next run`);
      else if (!dep.includes(`updates/ootmod/${f}:`)) problems.push(`modules.dep does not list ${f}`);
    }
    const status = JSON.parse((await ootmodRun(root, ['status', '--json'])).stdout || '{"modules":[]}') as { modules: { module: string; status: string }[] };
    for (const s of status.modules) if (s.status !== 'installed') problems.push(`status of ${s.module}: ${s.status}`);
    return problems;
  }

  it('gives one line and exit 5 for each, keeps everything whole, and the next run completes', async () => {
    setup();
    const first = await ootmodRun(root, ['autoinstall']);
    expect(first.code, first.stderr).toBe(0);
    const results: { fault: string; held: boolean; detail: string }[] = [];
    const note = (fault: string, problems: string[], r?: Run) =>
      results.push({ fault, held: problems.length === 0, detail: problems.join('; ') || `exit ${r?.code}${r?.code === 5 ? ' with one line' : ''}; modules and state whole; the next run completed` });

    // Disk full at several levels: from nothing left to enough for some of the builds.
    const levels = QUICK ? [0, 512 * 1024] : [0, 16 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024, 12 * 1024 * 1024];
    for (const free of levels) {
      fill(free);
      const r = await ootmodRun(root, ['autoinstall', '--force']);
      // With enough room for everything the run succeeds; otherwise it must be exit 5 with the line.
      note(`disk full (${free} bytes free)`, await afterFault(r, r.code === 0 ? undefined : /^ootmod: .*no space left on device.*: free space/), r);
    }

    // A read-only filesystem under the root.
    execFileSync('mount', ['-o', 'remount,ro', mnt]);
    const ro = await ootmodRun(root, ['autoinstall', '--force']);
    execFileSync('mount', ['-o', 'remount,rw', mnt]);
    note('read-only filesystem', await afterFault(ro, /^ootmod: .*read-only filesystem.*remount it read-write/), ro);

    // make missing from PATH, then make not executable: a farm of every other program.
    const farm = tempDir('ootmod-faults-path-');
    chmodSync(farm, 0o755);
    for (const dir of ['/usr/local/bin', '/usr/sbin', '/usr/bin']) {
      for (const f of readdirSync(dir)) if (f !== 'make' && !existsSync(path.join(farm, f))) symlinkSync(path.join(dir, f), path.join(farm, f));
    }
    const missing = await ootmodRun(root, ['autoinstall', '--force'], { PATH: farm });
    note('missing tool (make)', await afterFault(missing, /^ootmod: make: make is not installed: install the package/), missing);
    copyFileSync('/usr/bin/make', path.join(farm, 'make'));
    chmodSync(path.join(farm, 'make'), 0o644);
    const noexec = await ootmodRun(root, ['autoinstall', '--force'], { PATH: farm });
    note('unexecutable tool (make)', await afterFault(noexec, /^ootmod: make: .*make cannot be executed/), noexec);

    // A corrupt state file: kept aside, never overwritten, rebuilt.
    const stateFile = path.join(root, 'var/lib/ootmod/state.json');
    writeFileSync(stateFile, '{"format": 1, "records": {"trunc');
    const corrupt = await ootmodRun(root, ['autoinstall']);
    const aside = readdirSync(path.dirname(stateFile)).filter((f) => f.startsWith('state.json.corrupt-'));
    const corruptProblems = await afterFault(corrupt, undefined);
    if (corrupt.code !== 0) corruptProblems.push(`exit ${corrupt.code}: ${corrupt.stderr}`);
    if (aside.length !== 1 || readFileSync(path.join(path.dirname(stateFile), aside[0]!), 'utf8') !== '{"format": 1, "records": {"trunc') corruptProblems.push(`corrupt file not kept aside: ${aside.join(', ')}`);
    note('corrupt state file', corruptProblems, corrupt);

    // The build dir removed while the build runs, as an admin's `rm -rf` would race with make: retried
    // on every tick until the tree is gone once (make may create a file between rm's reads of a dir,
    // which fails that one attempt with ENOTEMPTY), every error kept for the case.
    const { done } = startOotmod(root, ['autoinstall', '--force']);
    const tree = path.join(root, 'var/lib/ootmod/tree');
    let started = false;
    let removedAt: number | undefined;
    const watcher = guardedTimer(() => {
      if (removedAt !== undefined) return;
      started ||= existsSync(path.join(tree, release, 'ootmod-hello/1.0/build/Makefile'));
      if (!started) return;
      try {
        rmSync(tree, { recursive: true, force: true });
      } finally {
        if (!existsSync(tree)) removedAt = performance.now();
      }
    }, 20, true);
    const gone = await done;
    const endedAt = performance.now();
    const rmErrors = watcher.stop();
    const goneProblems: string[] = [];
    if (removedAt === undefined || removedAt > endedAt) goneProblems.push(`the build dir was not removed while the run went on (${started ? `removal failed: ${rmErrors.slice(-1).join('')}` : 'its Makefile never appeared'})`);
    goneProblems.push(...(await afterFault(gone, gone.code === 0 ? undefined : /^ootmod: .* was removed while ootmod worked in it: .*run the command again/)));
    const retried = rmErrors.length ? `; rm -rf retried after ${rmErrors.length} race(s) with make` : '';
    results.push({
      fault: 'build dir removed mid-run',
      held: goneProblems.length === 0,
      detail: goneProblems.join('; ') || `removed ${((endedAt - removedAt!) / 1000).toFixed(1)} s before the run ended${retried}; exit ${gone.code}${gone.code === 5 ? ' with one line' : ''}; modules and state whole; the next run completed`,
    });

    for (const r of results) recordRow({ fault: r.fault, tried: 1, held: r.held ? 1 : 0, detail: r.detail });
    expect(results.filter((r) => !r.held)).toEqual([]);
  });
});
