// `ootmod dkms ...` (what ootmod-dkms's /usr/sbin/dkms runs) on real module sources against the host's
// real Debian headers, in a sandbox root: DKMS's registry, status lines and exit codes, and the request
// queued for the trigger inside dpkg.
import { execa } from 'execa';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, OOTMOD, hostKernel, linkHostKernel, modinfo, placeSource } from '../support/host.js';
import { DKMS_FRONT_END_MARK } from '../../src/modules/names.js';
import { makeRoot, treeHash } from '../support/roots.js';

describe('ootmod dkms against real Debian headers', () => {
  const kernel = hostKernel();
  const root = makeRoot('ootmod-dkms-');
  const ootmod = async (args: string[], env: Record<string, string | undefined> = {}, as?: string) => {
    const argv = ['--root', root, ...args];
    // `as`: another user, as a script or admin without root runs it.
    const r = as
      ? await execa('setpriv', [`--reuid=${as}`, `--regid=${as === 'nobody' ? 'nogroup' : as}`, '--clear-groups', OOTMOD, ...argv], { reject: false, env: { LANG: 'C.UTF-8', DPKG_MAINTSCRIPT_PACKAGE: undefined, ...env } })
      : await execa(OOTMOD, argv, { reject: false, env: { LANG: 'C.UTF-8', DPKG_MAINTSCRIPT_PACKAGE: undefined, ...env } });
    return { code: r.exitCode ?? -1, out: String(r.stdout), err: String(r.stderr) };
  };
  const dkms = (args: string[], env: Record<string, string | undefined> = {}, as?: string) => ootmod(['dkms', ...args], env, as);

  beforeAll(() => {
    linkHostKernel(root, kernel.release, kernel.headers);
    for (const f of ['ootmod-hello-1.0', 'ootmod-exclusive-1.0', 'ootmod-broken-1.0']) placeSource(root, path.join(FIXTURES, f));
  });

  // ootmod's --dry-run (DKMS has none): what `dkms add` and `generate_mok` would write is a plan's jobs.
  const watched = ['var/lib', 'usr/src', 'usr/lib/modules', 'etc'];
  it('--dry-run of add and generate_mok prints the plan and changes nothing', async () => {
    const before = treeHash(root, watched);
    const add = await dkms(['--dry-run', 'add', '-m', 'ootmod-hello', '-v', '1.0']);
    expect(add.code, add.err).toBe(0);
    expect(add.out).toMatch(/^would register ootmod-hello\/1\.0 in DKMS's registry: \S*var\/lib\/dkms\/ootmod-hello\/1\.0\/source -> \/usr\/src\/ootmod-hello-1\.0 \(dkms add\)$/m);
    expect(add.out).not.toMatch(/Creating symlink/);
    const mok = await dkms(['--dry-run', 'generate_mok']);
    expect(mok.code, mok.err).toBe(0);
    expect(mok.out).toMatch(/^would create the signing key pair \S+, \S+ \(dkms generate_mok: the pair is missing\)$/m);
    expect(treeHash(root, watched)).toBe(before);
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

  it("status lists what DKMS itself built and installed in its tree, where ootmod has no build of its own", async () => {
    // DKMS's copy, in use (its kernel-<kver>-<arch> link), of the module ootmod failed to build for this
    // kernel; and a DKMS build, not installed, for a kernel ootmod never built for.
    const tree = path.join(root, 'var/lib/dkms/ootmod-broken');
    const other = '6.1.0-99-amd64';
    for (const k of [kernel.release, other]) {
      mkdirSync(path.join(tree, '1.0', k, 'x86_64/module'), { recursive: true });
      writeFileSync(path.join(tree, '1.0', k, 'x86_64/module/ootmod_broken.ko.xz'), 'built by DKMS');
    }
    symlinkSync(`1.0/${kernel.release}/x86_64`, path.join(tree, `kernel-${kernel.release}-x86_64`));
    try {
      const s = await dkms(['status', 'ootmod-broken/1.0']);
      expect(s.code).toBe(0);
      expect(s.out.trim().split('\n')).toEqual([`ootmod-broken/1.0, ${other}, x86_64: built`, `ootmod-broken/1.0, ${kernel.release}, x86_64: installed`].sort());
      // ootmod's own failure for that kernel is still said.
      expect(s.err).toMatch(/ootmod-broken\/1\.0 failed to build for /);
      expect((await dkms(['status', '-k', other])).out).toContain(`ootmod-broken/1.0, ${other}, x86_64: built`);
      // A module ootmod installed for a kernel is ootmod's line, whatever DKMS's tree holds.
      mkdirSync(path.join(root, 'var/lib/dkms/ootmod-hello/1.0', other, 'x86_64/module'), { recursive: true });
      writeFileSync(path.join(root, 'var/lib/dkms/ootmod-hello/1.0', other, 'x86_64/module/ootmod_hello.ko'), 'built by DKMS');
      expect((await dkms(['status', 'ootmod-hello/1.0'])).out.trim().split('\n')).toEqual([`ootmod-hello/1.0, ${other}, x86_64: built`, `ootmod-hello/1.0, ${kernel.release}, x86_64: installed`].sort());
    } finally {
      for (const k of [kernel.release, other]) rmSync(path.join(tree, '1.0', k), { recursive: true, force: true });
      rmSync(path.join(tree, `kernel-${kernel.release}-x86_64`), { force: true });
      rmSync(path.join(root, 'var/lib/dkms/ootmod-hello/1.0', other), { recursive: true, force: true });
    }
  });

  it('inside dpkg, common.postinst registers and queues the module for the trigger and succeeds', async () => {
    const r = await dkms(['common.postinst', 'ootmod-exclusive', '1.0', '/usr/share/ootmod-exclusive-dkms', '', ''], { DPKG_MAINTSCRIPT_PACKAGE: 'ootmod-exclusive-dkms' });
    expect(r.code, r.err).toBe(0);
    expect(lstatSync(path.join(root, 'var/lib/dkms/ootmod-exclusive/1.0/source')).isSymbolicLink()).toBe(true);
    expect(readdirSync(path.join(root, 'var/lib/ootmod/queue'))).toContain('dkms@postinst@ootmod-exclusive@1.0');
  });

  it('--dry-run of remove --all prints the removals and the registry job, and changes nothing', async () => {
    const before = treeHash(root, watched);
    const r = await dkms(['--dry-run', 'remove', '-m', 'ootmod-hello', '-v', '1.0', '--all']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^would uninstall ootmod-hello\/1\.0 for /m);
    expect(r.out).toMatch(/^would remove ootmod-hello\/1\.0 from DKMS's registry \S+ and leave its source unbuilt until dkms add \(\S+ootmod-hello-1\.0\) \(dkms remove --all\)$/m);
    expect(r.out).not.toMatch(/Deleting module/);
    expect(treeHash(root, watched)).toBe(before);
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
    for (const args of [['mktarball', 'ootmod-hello/1.0'], ['ldtarball', '/tmp/x.tar.gz'], ['install', '--frobnicate'], ['install', '--directive', 'MAKE[0]=make', 'ootmod-hello/1.0']]) {
      const r = await dkms(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
    // Kept refused (README, "Differences from DKMS 3.2.2 kept"): the line names where an override stays.
    expect((await dkms(['build', '--directive=AUTOINSTALL=yes', 'ootmod-hello/1.0'])).err).toMatch(/--directive is not supported by ootmod-dkms.*\/etc\/dkms\/<module>\.conf/);
    expect((await dkms(['--version'])).out.trim()).toMatch(/^dkms-\d+\.\d+\.\d+$/);
  });
  // A source no `dkms add` registered (an ootmod-native one), with a version that holds '-<digit>'.
  const solo = () => {
    const dir = placeSource(root, path.join(FIXTURES, 'ootmod-hello-1.0'), 'ootmod-solo-1.2-3');
    writeFileSync(path.join(dir, 'dkms.conf'), readFileSync(path.join(dir, 'dkms.conf'), 'utf8').replace('"ootmod-hello"', '"ootmod-solo"').replace('"1.0"', '"1.2-3"'));
    return dir;
  };

  it('status lists only what dkms add registered, as DKMS; -m "" lists all; a version holding -<digit> splits as DKMS', async () => {
    solo();
    const built = await ootmod(['install', 'ootmod-solo/1.2-3', '-k', kernel.release]);
    expect(built.code, built.err).toBe(0);
    // ootmod's own status shows it; DKMS's would not: it is not in DKMS's registry.
    expect((await ootmod(['status', 'ootmod-solo'])).out).toMatch(/ootmod-solo\s+1\.2-3\s+\S+\s+\S+\s+installed/);
    const all = await dkms(['status']);
    expect(all.code).toBe(0);
    expect(all.out).not.toContain('ootmod-solo');
    expect(all.out.split('\n')).toContain('ootmod-broken/1.0: added');
    // What a package's postinst checks before `dkms add`, and an unset variable under set -e.
    expect((await dkms(['status', 'ootmod-solo'])).out.trim()).toBe('');
    const unset = await dkms(['status', '-m', '']);
    expect(unset.code, unset.err).toBe(0);
    expect(unset.out).toBe(all.out);
    const added = await dkms(['add', path.join(root, 'usr/src/ootmod-solo-1.2-3')]);
    expect(added.code, added.err).toBe(0);
    expect(readlinkSync(path.join(root, 'var/lib/dkms/ootmod-solo/1.2-3/source'))).toBe('/usr/src/ootmod-solo-1.2-3');
    expect((await dkms(['status', '-m', 'ootmod-solo/1.2-3'])).out.trim()).toBe(`ootmod-solo/1.2-3, ${kernel.release}, x86_64: installed`);
  });

  it('install /path and add /path copy over an existing /usr/src/NAME-VERSION, as DKMS', async () => {
    // A vendor installer's case: the old copy stays in /usr/src after dkms remove, the new one comes from elsewhere.
    expect((await dkms(['remove', 'ootmod-solo/1.2-3', '--all'])).code).toBe(0);
    const fresh = placeSource(root, solo(), '../vendor-module');
    writeFileSync(path.join(fresh, 'NEW'), 'from the vendor\n');
    const r = await dkms(['install', fresh, '-k', kernel.release]);
    expect(r.code, r.err).toBe(0);
    expect(readFileSync(path.join(root, 'usr/src/ootmod-solo-1.2-3/NEW'), 'utf8')).toBe('from the vendor\n');
    expect((await dkms(['status', 'ootmod-solo'])).out.trim()).toBe(`ootmod-solo/1.2-3, ${kernel.release}, x86_64: installed`);
    // add of a module already added: copied over, then DKMS's exit 3.
    writeFileSync(path.join(fresh, 'NEW'), 'again\n');
    const again = await dkms(['add', fresh]);
    expect(again.code).toBe(3);
    expect(again.err).toContain('DKMS tree already contains: ootmod-solo/1.2-3');
    expect(readFileSync(path.join(root, 'usr/src/ootmod-solo-1.2-3/NEW'), 'utf8')).toBe('again\n');
  });

  it('status works for a user who is not root (the state file stays root-only)', async () => {
    const asRoot = await dkms(['status']);
    const asNobody = await dkms(['status'], {}, 'nobody');
    expect(asNobody.code, asNobody.err).toBe(0);
    expect(asNobody.out).toBe(asRoot.out);
    expect(statSync(path.join(root, 'var/lib/ootmod/state.json')).mode & 0o777).toBe(0o600);
    expect((await ootmod(['status', 'ootmod-solo'], {}, 'nobody')).out).toMatch(/ootmod-solo\s+1\.2-3\s+\S+\s+\S+\s+installed/);
  });

  it("with ootmod-dkms installed: signs with DKMS's /var/lib/dkms/mok.key made on first need, honours framework.conf (post_transaction too), names what it ignores once", async () => {
    mkdirSync(path.join(root, 'usr/sbin'), { recursive: true });
    writeFileSync(path.join(root, 'usr/sbin/dkms'), `#!/bin/sh\n# ${DKMS_FRONT_END_MARK}\nexec ootmod dkms "$@"\n`);
    chmodSync(path.join(root, 'usr/sbin/dkms'), 0o755);
    mkdirSync(path.join(root, 'etc/dkms'), { recursive: true });
    writeFileSync(path.join(root, 'etc/dkms/framework.conf'), 'parallel_jobs=1\nsymlink_modules="yes"\npost_transaction="echo after $kernelver"\n');
    // A dry run shows post_transaction as a job of its plan, and runs nothing.
    const dry = await dkms(['install', 'ootmod-solo/1.2-3', '-k', kernel.release, '--force', '--dry-run']);
    expect(dry.code, dry.err).toBe(0);
    expect(dry.out).toContain(`would run framework.conf's post_transaction (echo after $kernelver) with kernelver=${kernel.release}, its output in ${path.join(root, 'var/lib/dkms/post_transaction.log')} (dkms install)`);
    expect(existsSync(path.join(root, 'var/lib/dkms/post_transaction.log'))).toBe(false);
    const r = await dkms(['install', 'ootmod-solo/1.2-3', '-k', kernel.release, '--force']);
    expect(r.code, r.err).toBe(0);
    expect(r.err.split('\n').filter((l) => l.includes('framework.conf'))).toEqual(['ootmod-dkms: ignoring symlink_modules from /etc/dkms/framework.conf (see README, "ootmod-dkms")']);
    // post_transaction ends the transaction, as DKMS runs it, its output in DKMS's log.
    expect(r.out).toContain('Executing post-transaction command... done.');
    const log = path.join(root, 'var/lib/dkms/post_transaction.log');
    expect(readFileSync(log, 'utf8')).toContain(`after ${kernel.release}`);
    // Inside dpkg the install is queued: post_transaction runs at the end of the trigger that installs it.
    expect((await dkms(['remove', 'ootmod-broken/1.0', '--all'])).code).toBe(0);
    expect((await dkms(['uninstall', 'ootmod-solo/1.2-3', '-k', kernel.release])).code).toBe(0);
    rmSync(log);
    const queued = await dkms(['install', 'ootmod-solo/1.2-3', '-k', kernel.release], { DPKG_MAINTSCRIPT_PACKAGE: 'ootmod-solo-dkms' });
    expect(queued.code, queued.err).toBe(0);
    expect(existsSync(log)).toBe(false);
    const trigger = await ootmod(['trigger']);
    expect(trigger.code, trigger.err).toBe(0);
    expect(trigger.out).toContain('Executing post-transaction command... done.');
    expect(readFileSync(log, 'utf8')).toContain(`after ${kernel.release}`);
    expect(statSync(path.join(root, 'var/lib/dkms/mok.key')).mode & 0o777).toBe(0o600);
    const ko = readdirSync(path.join(root, 'usr/lib/modules', kernel.release, 'updates/ootmod')).find((f) => f.startsWith('ootmod_hello.ko'))!;
    expect(modinfo('signer', path.join(root, 'usr/lib/modules', kernel.release, 'updates/ootmod', ko))).toBe('DKMS module signing key');
    expect((await dkms(['status'])).err).not.toContain('framework.conf');
    // The key in use and whether the firmware has it, by mokutil when there is one.
    const fake = path.join(root, 'tmp/bin');
    mkdirSync(fake, { recursive: true });
    writeFileSync(path.join(fake, 'mokutil'), '#!/bin/sh\necho "$2 is already enrolled"\nexit 1\n', { mode: 0o755 });
    const k = await ootmod(['kernels'], { PATH: `${fake}:${process.env.PATH}` });
    expect(k.out).toContain("signing key: /var/lib/dkms/mok.key, certificate /var/lib/dkms/mok.pub (DKMS's key); enrolled: yes");
    const v = await ootmod(['status', '--verbose'], { PATH: '/usr/bin:/bin' });
    expect(v.out).toMatch(/signing key: \/var\/lib\/dkms\/mok\.key, .*enrolled: unknown \(no mokutil\)/);
  });

  it('generate_mok makes DKMS\'s pair and prints what DKMS prints', async () => {
    const other = makeRoot('ootmod-dkms-mok-');
    const r = await execa(OOTMOD, ['--root', other, 'dkms', 'generate_mok'], { reject: false });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(String(r.stdout).split('\n')).toEqual(['Signing key: /var/lib/dkms/mok.key', 'Public certificate (MOK): /var/lib/dkms/mok.pub', 'Certificate or key are missing, generating self signed certificate for MOK...']);
    expect(statSync(path.join(other, 'var/lib/dkms/mok.key')).mode & 0o777).toBe(0o600);
    const again = await execa(OOTMOD, ['--root', other, 'dkms', 'generate_mok'], { reject: false });
    expect(String(again.stdout).split('\n')).toHaveLength(2);
  });
});
