// Eight ootmod commands of different kinds started at once on one root while the global lock is held.
// The writers serialise on the lock, each says which run it waits for, status does not wait, and the
// state is consistent at the end.
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES, hostKernel, linkHostKernel, placeSource } from '../support/host.js';
import { makeRoot, tempDir } from '../support/roots.js';
import { recordRow } from './lib/table.js';
import { acquireLock, lockOwnerFile } from '../../src/system/lock.js';
import { createLayout } from '../../src/system/layout.js';
import { installedProblems, ootmodRun, startOotmod, stateProblem } from './lib/system.js';

const IS_ROOT = process.getuid?.() === 0;

describe.skipIf(!IS_ROOT)('eight commands at once', () => {
  it('serialises the writers, says what each waits for, and ends consistent', async () => {
    const { release, headers } = hostKernel();
    const root = makeRoot('ootmod-faults-8way-');
    linkHostKernel(root, release, headers);
    for (const f of ['ootmod-hello-1.0', 'ootmod-pair-2.1', 'ootmod-patched-1.0']) placeSource(root, path.join(FIXTURES, f));
    const first = await ootmodRun(root, ['autoinstall']);
    expect(first.code, first.stderr).toBe(0);
    const outside = tempDir('ootmod-faults-add-');
    chmodSync(outside, 0o755);
    const added = placeSource(outside, path.join(FIXTURES, 'ootmod-exclusive-1.0'), 'ootmod-exclusive-1.0');
    // `locks`: the command takes the global lock (rust prepare does too, even with nothing to build).
    const commands: { args: string[]; locks: boolean }[] = [
      { args: ['install', 'ootmod-hello', '--force'], locks: true },
      { args: ['remove', 'ootmod-pair'], locks: true },
      { args: ['autoinstall', '--force'], locks: true },
      { args: ['rust', 'prepare'], locks: true },
      { args: ['status'], locks: false },
      { args: ['trigger'], locks: true },
      { args: ['uninstall', 'ootmod-patched'], locks: true },
      { args: ['add', added], locks: true },
    ];
    // The test holds the lock while all eight start, so every lock taker must find it taken and say so
    // (without it, a command that starts late can find the lock free between two holders, 250 ms
    // apart, and rightly not wait). It lets go once each has said it waits, or after two minutes.
    const layout = createLayout(root);
    const releaseHeld = await acquireLock(layout.lockFile);
    const owner = lockOwnerFile(layout.lockFile);
    writeFileSync(owner, `${readFileSync(owner, 'utf8').trim().replace(/:.*$/, ':')} the concurrency fault test\n`);
    const started = commands.map((c) => startOotmod(root, c.args));
    const deadline = Date.now() + 120_000;
    const saidWait = () => started.filter((p, i) => commands[i]!.locks && p.stderr().includes('waiting for')).length;
    while (saidWait() < commands.filter((c) => c.locks).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    // Status takes no lock: it has finished while the lock was still held.
    const statusIndex = commands.findIndex((c) => !c.locks);
    const statusDone = await Promise.race([started[statusIndex]!.done.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 30_000))]);
    await releaseHeld();
    const runs = await Promise.all(started.map((p) => p.done));
    const failures: string[] = [];
    if (!statusDone) failures.push('status did not finish while another run held the lock');
    const waitLine = /^ootmod: waiting for another ootmod run to finish \(pid \d+: .+\)$/;
    let waited = 0;
    const silent: string[] = [];
    runs.forEach((r, i) => {
      const name = commands[i]!.args.join(' ');
      // README: every one of these commands succeeds, whatever the order the lock gives them.
      if (r.code !== 0) failures.push(`${name}: exit ${r.code}: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
      const waits = r.stderr.split('\n').filter((l) => l.includes('waiting for'));
      if (waits.some((l) => !waitLine.test(l))) failures.push(`${name}: unclear wait line ${JSON.stringify(waits)}`);
      if (!commands[i]!.locks) {
        if (waits.length) failures.push(`${name} takes no lock but waited`);
        return;
      }
      if (waits.length) waited++;
      else silent.push(`${name} (${r.stderr.trim().split('\n').slice(0, 2).join(' | ')})`);
    });
    const lockers = commands.filter((c) => c.locks).length;
    // The lock was held when all started: every lock taker must have waited, and said so.
    if (silent.length) failures.push(`${silent.length} of ${lockers} lock takers did not say they waited: ${silent.join('; ')}`);
    const st = stateProblem(root);
    if (st) failures.push(st);
    const state = JSON.parse(readFileSync(path.join(root, 'var/lib/ootmod/state.json'), 'utf8')) as { records: Record<string, { module: string; status: string; installed: { path: string }[] }> };
    const recorded = new Set<string>();
    for (const r of Object.values(state.records)) {
      for (const f of r.installed) {
        recorded.add(path.basename(f.path));
        if (!existsSync(f.path)) failures.push(`${r.module}: recorded ${f.path} is missing`);
      }
    }
    const { files, problems } = installedProblems(root, release);
    failures.push(...problems);
    for (const f of files) if (!recorded.has(f)) failures.push(`${f} is installed but no record has it`);
    const dep = readFileSync(path.join(root, 'usr/lib/modules', release, 'modules.dep'), 'utf8');
    for (const f of files) if (!dep.includes(`updates/ootmod/${f}:`)) failures.push(`modules.dep does not list ${f}`);
    for (const line of dep.split('\n').filter((l) => l.startsWith('updates/ootmod/'))) {
      if (!files.includes(path.basename(line.split(':')[0]!))) failures.push(`modules.dep lists a removed ${line.split(':')[0]}`);
    }
    const next = await ootmodRun(root, ['autoinstall']);
    if (next.code !== 0) failures.push(`the next autoinstall exited ${next.code}: ${next.stderr.trim().split('\n').pop()}`);
    recordRow({
      fault: '8 commands at once',
      tried: 1,
      held: failures.length ? 0 : 1,
      detail: `${commands.map((c) => c.args[0] === 'rust' ? 'rust prepare' : c.args[0]).join(', ')}; ${waited} of ${lockers} lock takers waited, naming the holder; exits ${runs.map((r) => r.code).join(',')}`,
    });
    expect(failures).toEqual([]);
  });
});
