// The trigger and hook logic against real headers, in a sandbox root (dpkg itself is exercised by the
// e2e suite in a sid chroot).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ootmod, ootmodEnv, statusJson } from '../support/cli.js';
import { FIXTURES, compressionSuffix, hostKernel, linkHostKernel, placeSource } from '../support/host.js';
import { makeRoot } from '../support/roots.js';

describe('trigger and kernel hooks', () => {
  const kernel = hostKernel();
  const suffix = compressionSuffix(kernel.config);
  const root = makeRoot();
  const installed = (name: string) => path.join(root, 'usr/lib/modules', kernel.release, 'updates/ootmod', `${name}.ko${suffix}`);
  const modulesDep = () => readFileSync(path.join(root, 'usr/lib/modules', kernel.release, 'modules.dep'), 'utf8');

  beforeAll(() => {
    linkHostKernel(root, kernel.release, kernel.headers);
    placeSource(root, path.join(FIXTURES, 'ootmod-hello-1.0'));
    placeSource(root, path.join(FIXTURES, 'ootmod-broken-1.0'));
  });

  it('header_postinst outside dpkg builds at once, and a failing module does not fail the hook', async () => {
    const r = await ootmodEnv(root, { DEB_MAINT_PARAMS: 'configure 1.0-1' }, 'hook', 'header_postinst', kernel.release);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ootmod header_postinst .*: 1 installed, 0 built, 0 current, 0 skipped, 1 failed$/m);
    expect(r.stderr).toMatch(/some modules failed; see ootmod status/);
    expect(existsSync(installed('ootmod_hello'))).toBe(true);
  });

  it('postinst does nothing for a maintainer-script action other than configure', async () => {
    const r = await ootmodEnv(root, { DEB_MAINT_PARAMS: 'abort-upgrade 1.0-1' }, 'hook', 'postinst', kernel.release, '/boot/vmlinuz');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('');
  });

  it('fails the run in strict mode', async () => {
    mkdirSync(path.join(root, 'etc/ootmod'), { recursive: true });
    writeFileSync(path.join(root, 'etc/ootmod/ootmod.conf'), '[trigger]\nstrict = yes\n');
    const r = await ootmod(root, 'trigger');
    expect(r.exitCode).toBe(1);
    rmSync(path.join(root, 'etc/ootmod/ootmod.conf'));
    expect((await ootmod(root, 'trigger')).exitCode).toBe(0);
  });

  it('uninstalls the modules of a source that was removed, and depmod forgets them', async () => {
    expect(modulesDep()).toMatch(/ootmod_hello/);
    rmSync(path.join(root, 'usr/src/ootmod-hello-1.0'), { recursive: true });
    const r = await ootmod(root, 'trigger');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/removed ootmod-hello\/1.0 from .* \(its source is gone\)/);
    expect(existsSync(installed('ootmod_hello'))).toBe(false);
    expect(modulesDep()).not.toMatch(/ootmod_hello/);
    expect((await statusJson(root)).modules.map((m) => m.module)).not.toContain('ootmod-hello');
  });

  it('leaves sources registered with DKMS to DKMS', async () => {
    placeSource(root, path.join(FIXTURES, 'ootmod-pair-2.1'));
    mkdirSync(path.join(root, 'usr/sbin'), { recursive: true });
    writeFileSync(path.join(root, 'usr/sbin/dkms'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    mkdirSync(path.join(root, 'var/lib/dkms/ootmod-pair/2.1'), { recursive: true });
    writeFileSync(path.join(root, 'var/lib/dkms/ootmod-pair/2.1/source'), '');
    const r = await ootmod(root, 'autoinstall');
    expect(r.stderr).not.toMatch(/ootmod-pair/);
    expect(existsSync(installed('pair_alpha'))).toBe(false);
    const pair = (await statusJson(root)).modules.find((m) => m.module === 'ootmod-pair');
    expect(pair?.status).toBe('dkms');
    rmSync(path.join(root, 'usr/sbin/dkms'));
  });

  it('prerm removes everything ootmod built for the kernel', async () => {
    expect((await ootmod(root, 'autoinstall')).stdout).toMatch(/1 installed/);
    expect(existsSync(installed('pair_alpha'))).toBe(true);
    const r = await ootmodEnv(root, { DEB_MAINT_PARAMS: 'remove' }, 'hook', 'prerm', kernel.release, '/boot/vmlinuz');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/removed 2 module build\(s\) of /);
    expect(existsSync(installed('pair_alpha'))).toBe(false);
    expect(existsSync(path.join(root, 'var/lib/ootmod/built', kernel.release))).toBe(false);
    expect((await statusJson(root)).modules.filter((m) => m.kernel === kernel.release)).toEqual([]);
  });

  it('rejects an unknown hook with a usage error', async () => {
    const r = await ootmod(root, 'hook', 'preinst-typo', kernel.release);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim()).toMatch(/^ootmod: unknown hook 'preinst-typo': use header_postinst, postinst, prerm, postrm, initramfs or boot-entry$/);
  });
});
