// `ootmod dkms ...` (what ootmod-dkms's /usr/sbin/dkms runs) on real module sources against the host's
// real Debian headers, in a sandbox root: DKMS's registry, status lines and exit codes, and the request
// queued for the trigger inside dpkg.
import { execa } from 'execa';
import { existsSync, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, OOTMOD, hostKernel, linkHostKernel, placeSource } from '../support/host.js';
import { makeRoot } from '../support/roots.js';

describe('ootmod dkms against real Debian headers', () => {
  const kernel = hostKernel();
  const root = makeRoot('ootmod-dkms-');
  const dkms = async (args: string[], env: Record<string, string | undefined> = {}) => {
    const r = await execa(OOTMOD, ['--root', root, 'dkms', ...args], { reject: false, env: { LANG: 'C.UTF-8', DPKG_MAINTSCRIPT_PACKAGE: undefined, ...env } });
    return { code: r.exitCode ?? -1, out: String(r.stdout), err: String(r.stderr) };
  };

  beforeAll(() => {
    linkHostKernel(root, kernel.release, kernel.headers);
    for (const f of ['ootmod-hello-1.0', 'ootmod-exclusive-1.0', 'ootmod-broken-1.0']) placeSource(root, path.join(FIXTURES, f));
  });

  it('add registers the source as DKMS does; a second add exits 3', async () => {
    const r = await dkms(['add', '-m', 'ootmod-hello', '-v', '1.0']);
    expect(r.code, r.err).toBe(0);
    const link = path.join(root, 'var/lib/dkms/ootmod-hello/1.0/source');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe('/usr/src/ootmod-hello-1.0');
    const again = await dkms(['add', 'ootmod-hello/1.0']);
    expect(again.code).toBe(3);
    expect((await dkms(['status'])).out.split('\n')).toContain('ootmod-hello/1.0: added');
  });

  it('install builds at once outside dpkg and status prints the DKMS line', async () => {
    const r = await dkms(['install', 'ootmod-hello/1.0', '-k', kernel.release]);
    expect(r.code, r.err).toBe(0);
    const s = await dkms(['status', '-m', 'ootmod-hello', '-v', '1.0']);
    expect(s.out.trim()).toBe(`ootmod-hello/1.0, ${kernel.release}, x86_64: installed`);
    expect(existsSync(path.join(root, 'usr/lib/modules', kernel.release, 'updates/ootmod'))).toBe(true);
  });

  it("exits 77 for a BUILD_EXCLUSIVE skip and 10 for a failed build, naming the compiler's error", async () => {
    expect((await dkms(['build', 'ootmod-exclusive/1.0'])).code).toBe(77);
    const bad = await dkms(['build', '-m', 'ootmod-broken', '-v', '1.0']);
    expect(bad.code).toBe(10);
    const s = await dkms(['status', 'ootmod-broken/1.0']);
    expect(s.out.trim()).toBe('ootmod-broken/1.0: added');
    expect(s.err).toMatch(/ootmod-broken\/1\.0 failed to build for .*ootmod_broken\.c:\d+:\d+: error: /);
  });

  it('inside dpkg, common.postinst registers and queues the module for the trigger and succeeds', async () => {
    const r = await dkms(['common.postinst', 'ootmod-exclusive', '1.0', '/usr/share/ootmod-exclusive-dkms', '', ''], { DPKG_MAINTSCRIPT_PACKAGE: 'ootmod-exclusive-dkms' });
    expect(r.code, r.err).toBe(0);
    expect(lstatSync(path.join(root, 'var/lib/dkms/ootmod-exclusive/1.0/source')).isSymbolicLink()).toBe(true);
    expect(readdirSync(path.join(root, 'var/lib/ootmod/queue'))).toContain('dkms@install@ootmod-exclusive@1.0');
  });

  it('remove --all uninstalls, unregisters and leaves the source unbuilt until dkms add', async () => {
    const r = await dkms(['remove', '-m', 'ootmod-hello', '-v', '1.0', '--all']);
    expect(r.code, r.err).toBe(0);
    expect(existsSync(path.join(root, 'var/lib/dkms/ootmod-hello'))).toBe(false);
    expect((await dkms(['status', 'ootmod-hello/1.0'])).out.trim()).toBe('');
    expect(readdirSync(path.join(root, 'var/lib/ootmod/dkms-removed'))).toEqual(['ootmod-hello-1.0']);
    // What dh_dkms's prerm runs for a module that is not there: nothing to do, and no error.
    expect((await dkms(['remove', '-m', 'ootmod-hello', '-v', '1.0', '--all'])).code).toBe(0);
  });

  it('gives one line and a non-zero exit for what it does not implement or understand', async () => {
    for (const args of [['mktarball', 'ootmod-hello/1.0'], ['ldtarball', '/tmp/x.tar.gz'], ['install', '--frobnicate']]) {
      const r = await dkms(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
    expect((await dkms(['--version'])).out.trim()).toMatch(/^dkms-\d+\.\d+\.\d+$/);
  });
});
