// When a failed build is tried again, with a real failing build against the host's Debian headers:
// not by a plain autoinstall or trigger with nothing changed; yes when a program the build runs
// changed (here: another make on PATH), when the module is asked for by name, and when a package's
// postinst queued it inside dpkg.
import { chmodSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { ootmod, ootmodEnv, statusJson } from '../support/cli.js';
import { FIXTURES, OOTMOD, hostKernel, linkHostKernel, placeSource } from '../support/host.js';
import { makeRoot, tempDir } from '../support/roots.js';

describe('retrying a failed build', () => {
  const kernel = hostKernel();
  const root = makeRoot('ootmod-retry-');
  const target = `ootmod-broken/1.0 for ${kernel.release}`;
  // A make wrapper first on PATH: to ootmod, the make its builds run has changed.
  const bin = tempDir('ootmod-retry-bin-');
  const otherMake = { PATH: `${bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` };

  beforeAll(async () => {
    linkHostKernel(root, kernel.release, kernel.headers);
    placeSource(root, path.join(FIXTURES, 'ootmod-broken-1.0'));
    writeFileSync(path.join(bin, 'make'), '#!/bin/sh\nexec /usr/bin/make "$@"\n');
    chmodSync(path.join(bin, 'make'), 0o755);
    const first = await ootmod(root, 'autoinstall');
    expect(first.exitCode, first.stderr).toBe(1);
  });

  it('autoinstall with nothing changed does not build it again', async () => {
    const again = await ootmod(root, 'autoinstall');
    expect(again.stderr).toMatch(/ootmod-broken\/1.0 .*failed before with the same inputs and tools .*retried when they change, or by ootmod install ootmod-broken/);
    expect(again.stderr).not.toMatch(/^start/m);
  });

  it('builds it again when a program its build runs changed, then leaves it alone', async () => {
    const dry = await ootmodEnv(root, otherMake, '--dry-run', 'autoinstall');
    expect(dry.stdout).toContain(`would build ${target} (failed before; its compiler or build tools changed)`);
    const run = await ootmodEnv(root, otherMake, 'autoinstall');
    expect(run.stderr).toMatch(new RegExp(`^start +${target.replaceAll('.', '\\.').replaceAll('+', '\\+')} \\(build: failed before; its compiler or build tools changed\\)`, 'm'));
    expect(run.exitCode).toBe(1);
    const after = await ootmodEnv(root, otherMake, 'autoinstall');
    expect(after.stderr).not.toMatch(/^start/m);
  });

  it('ootmod install NAME always tries again', async () => {
    const r = await ootmodEnv(root, otherMake, 'install', 'ootmod-broken');
    expect(r.stderr).toMatch(/^start +ootmod-broken\/1\.0 .*\(build: failed before, asked for again\)/m);
    expect(r.exitCode).toBe(1);
    expect((await statusJson(root)).modules.find((m) => m.module === 'ootmod-broken')?.status).toBe('failed');
  });

  it("the trigger tries again a module a package's postinst queued (reinstall, reconfigure), and only that", async () => {
    const plain = await ootmodEnv(root, otherMake, '--dry-run', 'trigger');
    expect(plain.stdout).not.toMatch(/would build ootmod-broken/);
    mkdirSync(path.join(root, 'var/lib/ootmod/queue'), { recursive: true });
    writeFileSync(path.join(root, 'var/lib/ootmod/queue', 'dkms@install@ootmod-broken@1.0'), 'asked by ootmod-broken-dkms\n');
    const queued = await ootmodEnv(root, otherMake, 'trigger');
    expect(queued.stderr).toMatch(/^start +ootmod-broken\/1\.0 .*\(build: failed before, asked for again\)/m);
    // Built once in that run: the follow-up for the queued request does not build it a second time.
    expect(queued.stderr.match(/^start +ootmod-broken/gm)).toHaveLength(1);
    expect(queued.exitCode).toBe(0);
  });

  it('builds a failing module once per apt run, however often the run asks; the next apt run retries it', async () => {
    // Real processes named apt-get and dpkg (bash under those names: /proc's comm is the name the
    // program was started by), as the trigger runs under dpkg under apt: apt-get calls dpkg twice, and
    // before each dpkg run's trigger a package's postinst queued the module (common.postinst).
    const pm = tempDir('ootmod-retry-pm-');
    for (const name of ['apt-get', 'dpkg']) symlinkSync('/bin/bash', path.join(pm, name));
    const dpkg = path.join(pm, 'dpkg');
    const queue = path.join(root, 'var/lib/ootmod/queue');
    const dpkgRun = `mkdir -p ${queue} && echo x > ${queue}/dkms@install@ootmod-broken@1.0 && DPKG_MAINTSCRIPT_PACKAGE=ootmod ${OOTMOD} --root ${root} trigger; true`;
    const aptRun = async () => {
      const r = await execa(path.join(pm, 'apt-get'), ['-c', `${dpkg} -c '${dpkgRun}'; ${dpkg} -c '${dpkgRun}'; true`], { reject: false, env: { ...otherMake, LANG: 'C.UTF-8' } });
      return `${String(r.stdout)}\n${String(r.stderr)}`;
    };
    const first = await aptRun();
    expect(first.match(/^start +ootmod-broken/gm), first).toHaveLength(1);
    expect(first).toMatch(/ootmod-broken\/1\.0 .*failed earlier in this package run with the same inputs and tools/);
    const next = await aptRun();
    expect(next.match(/^start +ootmod-broken/gm), next).toHaveLength(1);
    // Outside dpkg, asked by name: tried again.
    const r = await ootmodEnv(root, otherMake, 'install', 'ootmod-broken');
    expect(r.stderr).toMatch(/^start +ootmod-broken\/1\.0 .*\(build: failed before, asked for again\)/m);
  });
});

describe("a build for a kernel whose compiler is missing", () => {
  const kernel = hostKernel();
  const root = makeRoot('ootmod-nocc-');
  const compiler = /^(\S+)/.exec(kernel.config.string('CC_VERSION_TEXT') ?? '')?.[1] ?? 'gcc';
  // This machine's programs, without the kernel's compiler: what ootmod sees before apt installs it.
  const bin = tempDir('ootmod-nocc-bin-');
  const withoutCompiler = { PATH: bin };

  beforeAll(() => {
    linkHostKernel(root, kernel.release, kernel.headers);
    placeSource(root, path.join(FIXTURES, 'ootmod-hello-1.0'));
    for (const dir of ['/usr/sbin', '/usr/bin']) {
      for (const name of readdirSync(dir)) {
        if (name === compiler || name.endsWith(`-${compiler}`)) continue;
        try {
          symlinkSync(path.join(dir, name), path.join(bin, name));
        } catch {
          // The same name in both dirs: the first wins, as on PATH.
        }
      }
    }
  });

  it('fails, naming the package, then builds once the compiler is there', async () => {
    // The record is a job of the plan: a dry run shows it and writes nothing.
    const dry = await ootmodEnv(root, withoutCompiler, 'autoinstall', '--dry-run');
    expect(dry.stdout).toMatch(new RegExp(`^would record ootmod-hello/1\\.0 for ${kernel.release.replace(/[.+]/g, '\\$&')} as failed: .*install ${compiler}$`, 'm'));
    expect((await statusJson(root)).modules.find((m) => m.module === 'ootmod-hello' && m.kernel === kernel.release)).toBeUndefined();
    const missing = await ootmodEnv(root, withoutCompiler, 'autoinstall');
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toMatch(new RegExp(`ootmod-hello/1\\.0 for .*was built with ${compiler}, which is not installed: install ${compiler}`));
    expect(missing.stdout).toMatch(/^autoinstall: 0 installed, 0 built, 0 current, 0 skipped, 1 failed$/m);
    // Recorded: status names the package to install (dkms status, for a source DKMS registered: the e2e test).
    const row = (await statusJson(root)).modules.find((m) => m.module === 'ootmod-hello' && m.kernel === kernel.release);
    expect(row?.status, JSON.stringify(row)).toBe('failed');
    expect(row?.error).toMatch(new RegExp(`was built with ${compiler}, which is not installed: install ${compiler}\\b`));
    // A package's postinst queued it (dkms install inside dpkg): the trigger's plan records it failed, and
    // the follow-up for the queued request does not plan it a second time (one line, not two).
    mkdirSync(path.join(root, 'var/lib/ootmod/queue'), { recursive: true });
    writeFileSync(path.join(root, 'var/lib/ootmod/queue', 'dkms@install@ootmod-hello@1.0'), 'asked by ootmod-hello-dkms\n');
    const queued = await ootmodEnv(root, withoutCompiler, 'trigger');
    expect(queued.exitCode, queued.stderr).toBe(0);
    expect(queued.stderr.match(new RegExp(`ootmod-hello/1\\.0 for .*install ${compiler}$`, 'gm')), queued.stderr).toHaveLength(1);
    const present = await ootmod(root, 'autoinstall');
    expect(present.exitCode, present.stderr).toBe(0);
    expect(present.stderr).toMatch(/^start +ootmod-hello\/1\.0 .*\(build: failed before because of the machine, not the module\)/m);
    expect(present.stdout).toMatch(/^autoinstall: 1 installed,/m);
    // Installed and current: the compiler going away again changes nothing.
    const gone = await ootmodEnv(root, withoutCompiler, 'autoinstall');
    expect(gone.stdout).toMatch(/^autoinstall: 0 installed, 0 built, 1 current, 0 skipped, 0 failed$/m);
  });
});
