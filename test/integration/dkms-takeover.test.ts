// Take-over from DKMS (ootmod-dkms replaced dkms) is part of the trigger's plan: --dry-run shows it and
// changes nothing; the real run removes DKMS's copies of what ootmod installed, and its "installed"
// links, before the kernel's one depmod. In a sandbox root against the host's real headers, with DKMS's
// tree laid out as DKMS leaves it (its build of the module, the copy in updates/dkms, the link).
import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { ootmod, ootmodEnv } from '../support/cli.js';
import { FIXTURES, compressionSuffix, hostKernel, linkHostKernel, placeSource } from '../support/host.js';
import { makeRoot, tempDir, treeHash } from '../support/roots.js';

interface PlanJob {
  id: string;
  kind: string;
  reason: string;
  after: string[];
  remove?: string[];
  status?: string;
}

describe('take-over from DKMS as jobs of the trigger plan', () => {
  const kernel = hostKernel();
  const kver = kernel.release;
  const suffix = compressionSuffix(kernel.config);
  const root = makeRoot();
  const arch = 'x86_64';
  const moduleDir = path.join(root, 'usr/lib/modules', kver);
  const dkmsCopy = (m: string) => path.join(moduleDir, 'updates/dkms', `${m}.ko${suffix}`);
  const link = (name: string) => path.join(root, 'var/lib/dkms', name, `kernel-${kver}-${arch}`);
  const modulesDep = () => readFileSync(path.join(moduleDir, 'modules.dep'), 'utf8');
  // depmod on PATH logs its runs, then runs the real one.
  const bin = tempDir('ootmod-depmod-');
  const calls = path.join(bin, 'calls');
  const env = { PATH: `${bin}:${process.env.PATH}` };
  const depmodRuns = () => (existsSync(calls) ? readFileSync(calls, 'utf8').split('\n').filter((l) => l.includes(kver)).length : 0);

  /** What DKMS leaves for a module it built and installed: its build, the copy in updates/dkms, the link. */
  const dkmsInstalled = (name: string, module: string, ko: string) => {
    const built = path.join(root, 'var/lib/dkms', name, '1.0', kver, arch, 'module');
    mkdirSync(built, { recursive: true });
    copyFileSync(ko, path.join(built, `${module}.ko${suffix}`));
    mkdirSync(path.dirname(dkmsCopy(module)), { recursive: true });
    copyFileSync(ko, dkmsCopy(module));
    symlinkSync(`/usr/src/${name}-1.0`, path.join(root, 'var/lib/dkms', name, '1.0', 'source'));
    symlinkSync(`1.0/${kver}/${arch}`, link(name));
  };

  beforeAll(async () => {
    linkHostKernel(root, kver, kernel.headers);
    placeSource(root, path.join(FIXTURES, 'ootmod-hello-1.0'));
    // A real module file for DKMS's copies: ootmod builds it once, then forgets it.
    expect((await ootmod(root, 'install', 'ootmod-hello')).exitCode).toBe(0);
    const ko = path.join(tempDir('ootmod-ko-'), `ootmod_hello.ko${suffix}`);
    copyFileSync(path.join(moduleDir, 'updates/ootmod', `ootmod_hello.ko${suffix}`), ko);
    expect((await ootmod(root, 'remove', 'ootmod-hello')).exitCode).toBe(0);
    dkmsInstalled('ootmod-hello', 'ootmod_hello', ko);
    // A module ootmod cannot build: DKMS's copy must stay in use.
    placeSource(root, path.join(FIXTURES, 'ootmod-broken-1.0'));
    dkmsInstalled('ootmod-broken', 'ootmod_broken', ko);
    await execa('depmod', ['-b', root, '-a', kver]);
    expect(modulesDep()).toMatch(/^updates\/dkms\/ootmod_hello\.ko/m);
    writeFileSync(path.join(bin, 'depmod'), `#!/bin/sh\necho "$*" >> ${calls}\nexec /usr/sbin/depmod "$@"\n`, { mode: 0o755 });
  });

  it('--dry-run shows the take-over, with its reason, and changes nothing', async () => {
    const watched = ['usr/lib/modules', 'var/lib/ootmod', 'var/lib/dkms', 'usr/src'];
    const before = treeHash(root, watched);
    const text = await ootmodEnv(root, env, '--dry-run', 'trigger');
    expect(text.exitCode, text.stderr).toBe(0);
    expect(text.stdout).toContain(
      `would take over ootmod-hello/1.0 for ${kver} from DKMS: remove ${dkmsCopy('ootmod_hello')}, ${link('ootmod-hello')} (DKMS installed it and ootmod-dkms replaced DKMS: ootmod installs it, after its install)`,
    );
    expect(text.stdout.split('\n').filter((l) => l.startsWith(`would run depmod for ${kver}`))).toHaveLength(1);
    const json = await ootmodEnv(root, env, '--dry-run', '--json', 'trigger');
    expect(json.exitCode, json.stderr).toBe(0);
    const jobs = JSON.parse(json.stdout).plan.jobs as PlanJob[];
    const takeover = jobs.find((j) => j.id === `dkms-takeover:ootmod-hello/1.0@${kver}`);
    expect(takeover).toMatchObject({ kind: 'dkms-takeover', after: [`install:ootmod-hello/1.0@${kver}`], remove: [dkmsCopy('ootmod_hello'), link('ootmod-hello')] });
    expect(takeover!.reason).toMatch(/ootmod-dkms replaced DKMS/);
    expect(jobs.find((j) => j.kind === 'depmod')?.after).toContain(takeover!.id);
    expect(treeHash(root, watched), '--dry-run changed the tree').toBe(before);
    expect(depmodRuns()).toBe(0);
  });

  it('the trigger installs ootmod\'s module, removes DKMS\'s copy and link, and runs depmod once', async () => {
    const r = await ootmodEnv(root, env, '--json', 'trigger');
    expect(r.exitCode, r.stderr).toBe(0);
    const jobs = JSON.parse(r.stdout).plan.jobs as PlanJob[];
    const status = (id: string) => jobs.find((j) => j.id === id)?.status;
    expect(status(`install:ootmod-hello/1.0@${kver}`)).toBe('done');
    expect(status(`dkms-takeover:ootmod-hello/1.0@${kver}`)).toBe('done');
    expect(existsSync(dkmsCopy('ootmod_hello'))).toBe(false);
    expect(lstatSync(link('ootmod-hello'), { throwIfNoEntry: false })).toBeUndefined();
    // DKMS's build stays, for DKMS to find if it comes back.
    expect(existsSync(path.join(root, 'var/lib/dkms/ootmod-hello/1.0', kver, arch, 'module', `ootmod_hello.ko${suffix}`))).toBe(true);
    expect(modulesDep()).toMatch(/^updates\/ootmod\/ootmod_hello\.ko/m);
    expect(modulesDep()).not.toMatch(/updates\/dkms\/ootmod_hello/);
    expect(depmodRuns()).toBe(1);
  });

  it('keeps DKMS\'s copy of a module ootmod could not build', async () => {
    expect(existsSync(dkmsCopy('ootmod_broken'))).toBe(true);
    expect(readlinkSync(link('ootmod-broken'))).toBe(`1.0/${kver}/${arch}`);
    expect(modulesDep()).toMatch(/^updates\/dkms\/ootmod_broken\.ko/m);
    // Nothing is left to take over: a second trigger changes nothing and runs no depmod.
    rmSync(calls, { force: true });
    const r = await ootmodEnv(root, env, 'trigger');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/took over/);
    expect(depmodRuns()).toBe(0);
  });
});
