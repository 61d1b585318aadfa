// --dry-run changes nothing, for every command that changes the system, and its plan is what the real
// run then does: each command runs dry (--json) and then for real (--json), against the host's real
// headers in a sandbox root; the tree under the root is hashed around the dry run.
import { chmodSync, cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ootmodEnv } from '../support/cli.js';
import { FIXTURES, hostKernel, linkHostKernel, placeSource } from '../support/host.js';
import { makeRoot, tempDir, treeHash } from '../support/roots.js';

/** Whether the host kernel's headers say CONFIG_RUST=y. */
function hostHasRust(headers: string): boolean {
  try {
    return /^CONFIG_RUST=y$/m.test(readFileSync(path.join(headers, '.config'), 'utf8'));
  } catch {
    return false;
  }
}

interface PlanJob {
  id: string;
  kind: string;
  status?: string;
}

/**
 * The jobs of every plan a command printed with --json: one JSON document per plan it ran (the trigger
 * runs the queued explicit requests as plans of their own; jq reads the documents in turn). Each
 * document starts with a `{` at the start of a line; output that does not parse fails the case.
 */
function planJobs(stdout: string): PlanJob[] {
  const docs = stdout.split(/\n(?=\{)/).filter((d) => d.trim());
  expect(docs.length, `no JSON document in ${JSON.stringify(stdout.slice(0, 200))}`).toBeGreaterThan(0);
  return docs.flatMap((d) => (JSON.parse(d) as { plan: { jobs: PlanJob[] } }).plan.jobs);
}

describe('--dry-run', () => {
  const kernel = hostKernel();
  const root = makeRoot();
  const watched = ['usr/lib/modules', 'var/lib/ootmod', 'usr/src', 'etc'];
  // The build user is a user of the host even with --root: a dry run must not create it (when it is
  // already there, test/unit/sandbox.test.ts checks that path).
  const accounts = ['etc/passwd', 'etc/group', 'etc/shadow', 'etc/gshadow'];
  const outside = tempDir('ootmod-add-');

  beforeAll(() => {
    linkHostKernel(root, kernel.release, kernel.headers);
    for (const f of ['ootmod-hello-1.0', 'ootmod-pair-2.1', 'ootmod-broken-1.0']) placeSource(root, path.join(FIXTURES, f));
    cpSync(path.join(FIXTURES, 'ootmod-patched-1.0'), path.join(outside, 'ootmod-patched-1.0'), { recursive: true });
    // Builds are confined: the build user reads dkms.conf where it is (README: a dir it cannot read is refused).
    chmodSync(outside, 0o755);
  });

  function queue(entry: string): void {
    const dir = path.join(root, 'var/lib/ootmod/queue');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, entry), `test ${new Date().toISOString()}\n`);
  }

  function mark(dirName: string): void {
    const dir = path.join(root, 'var/lib/ootmod/dkms-removed');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, dirName), `test ${new Date().toISOString()}\n`);
  }

  // In order: each real run leaves the state the next command starts from.
  // `exit`: the real run's exit code (ootmod-broken fails on purpose: 1); `jobs`: whether the plan has
  // jobs to do (a planner that planned nothing must not pass as "the same plan").
  const rust = hostHasRust(kernel.headers);
  // `kinds`: kinds of job the plan must have (what the command writes besides modules is a job too).
  const steps: { name: string; args: string[]; env?: Record<string, string>; before?: () => void; real?: boolean; exit?: number; jobs?: boolean; kinds?: string[] }[] = [
    { name: 'autoinstall', args: ['autoinstall'], exit: 1 },
    { name: 'build --force', args: ['build', 'ootmod-hello', '--force'] },
    { name: 'install --force', args: ['install', 'ootmod-pair', '--force'] },
    { name: 'uninstall', args: ['uninstall', 'ootmod-hello'] },
    { name: 'remove', args: ['remove', 'ootmod-pair'] },
    { name: 'install of a dir outside /usr/src (add)', args: ['install', 'OUTSIDE'] },
    { name: 'trigger after a source is gone', args: ['trigger'], before: () => rmSync(path.join(root, 'usr/src/ootmod-hello-1.0'), { recursive: true }) },
    // A source put back, so the hook has a module to build (everything else is current by now).
    { name: 'hook header_postinst outside dpkg', args: ['hook', 'header_postinst', kernel.release], env: { DEB_MAINT_PARAMS: 'configure' }, before: () => placeSource(root, path.join(FIXTURES, 'ootmod-hello-1.0')) },
    // A request queued inside dpkg (what `dkms install` in a package's postinst leaves): the dry run of
    // the trigger keeps it queued; the real run takes it (a dequeue job). With it, the mark `dkms remove`
    // left for a source whose files are gone: the real run removes it (a removed-marks job).
    { name: 'trigger with a queued request', args: ['trigger'], before: () => (queue('dkms@install@ootmod-hello@1.0'), mark('ootmod-gone-1.0')), kinds: ['dequeue', 'removed-marks'] },
    { name: 'hook header_postinst inside dpkg', args: ['hook', 'header_postinst', kernel.release], env: { DEB_MAINT_PARAMS: 'configure', DPKG_MAINTSCRIPT_PACKAGE: 'linux-headers-x' }, real: false },
    // Without CONFIG_RUST (Debian 12's kernels) there is nothing to prepare: the plan is truly empty.
    { name: `rust prepare (${rust ? 'a CONFIG_RUST kernel' : 'no CONFIG_RUST kernel: an empty plan'})`, args: ['rust', 'prepare'], jobs: rust, exit: rust ? undefined : 0 },
    { name: 'rust clean', args: ['rust', 'clean', '-k', kernel.release], jobs: rust },
    { name: 'hook prerm', args: ['hook', 'prerm', kernel.release], env: { DEB_MAINT_PARAMS: 'remove' } },
  ];

  for (const step of steps) {
    it(`${step.name}: changes nothing, and plans what the real run does`, async () => {
      step.before?.();
      const args = step.args.map((a) => (a === 'OUTSIDE' ? path.join(outside, 'ootmod-patched-1.0') : a));
      const before = treeHash(root, watched);
      const hostBefore = treeHash('/', accounts);
      const dry = await ootmodEnv(root, step.env ?? {}, '--dry-run', '--json', ...args);
      expect(dry.exitCode, dry.stderr).toBe(0);
      expect(treeHash(root, watched), `${step.name} --dry-run changed the tree`).toBe(before);
      expect(treeHash('/', accounts), `${step.name} --dry-run changed the host's accounts`).toBe(hostBefore);
      if (step.real === false) {
        expect(dry.stdout).toMatch(/"kind": "defer"/);
        return;
      }
      // --json is JSON, always: output that does not parse fails the case.
      const planned = planJobs(dry.stdout);
      if (step.jobs !== false) expect(planned.length, `${step.name}: the dry run planned nothing`).toBeGreaterThan(0);
      for (const kind of step.kinds ?? []) expect(planned.map((j) => j.kind), `${step.name}: no ${kind} job in the plan`).toContain(kind);
      const real = await ootmodEnv(root, step.env ?? {}, '--json', ...args);
      if (step.exit !== undefined || !rust) expect(real.exitCode, real.stderr).toBe(step.exit ?? 0);
      else expect(real.exitCode, real.stderr).toBeLessThan(2);
      const done = planJobs(real.stdout);
      expect(done.map((j) => j.id).sort(), real.stderr).toEqual(planned.map((j) => j.id).sort());
      for (const j of done) expect(j.status, j.id).not.toBe('not run');
    });
  }
});
