// ootmod-dkms where DKMS 3.2.2 decides whether to build on its own (its common.postinst, autoinstall and
// /etc/dkms/no-autoinstall) and where a module is built already: DKMS's lines and exits, against the
// host's real Debian headers in a sandbox root.
import { execa } from 'execa';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, OOTMOD, hostKernel, linkHostKernel, placeSource } from '../support/host.js';
import { DKMS_FRONT_END_MARK } from '../../src/modules/names.js';
import { makeRoot } from '../support/roots.js';

describe("ootmod-dkms's automatic builds, as DKMS 3.2.2's", () => {
  const kernel = hostKernel();
  const root = makeRoot('ootmod-dkms-auto-');
  const ootmod = async (args: string[], env: Record<string, string | undefined> = {}) => {
    const r = await execa(OOTMOD, ['--root', root, ...args], { reject: false, env: { LANG: 'C.UTF-8', DPKG_MAINTSCRIPT_PACKAGE: undefined, DEB_MAINT_PARAMS: undefined, ...env } });
    return { code: r.exitCode ?? -1, out: String(r.stdout), err: String(r.stderr) };
  };
  const dkms = (args: string[], env: Record<string, string | undefined> = {}) => ootmod(['dkms', ...args], env);
  const inDpkg = (pkg: string) => ({ DPKG_MAINTSCRIPT_PACKAGE: pkg });
  const queue = () => (existsSync(path.join(root, 'var/lib/ootmod/queue')) ? readdirSync(path.join(root, 'var/lib/ootmod/queue')) : []);
  /** Builds of NAME/1.0 for the host kernel that a run started (its job lines). */
  const builds = (r: { out: string; err: string }, name: string) => `${r.out}\n${r.err}`.split('\n').filter((l) => l.startsWith(`start    ${name}/1.0 for ${kernel.release} (build`));
  const status = async (name: string) => (await dkms(['status', name])).out.trim();
  const noAutoinstall = path.join(root, 'etc/dkms/no-autoinstall');
  const frontEnd = path.join(root, 'usr/sbin/dkms');
  const installFrontEnd = () => {
    mkdirSync(path.dirname(frontEnd), { recursive: true });
    writeFileSync(frontEnd, `#!/bin/sh\n# ${DKMS_FRONT_END_MARK}\nexec ootmod dkms "$@"\n`);
    chmodSync(frontEnd, 0o755);
  };

  beforeAll(() => {
    linkHostKernel(root, kernel.release, kernel.headers);
    placeSource(root, path.join(FIXTURES, 'ootmod-hello-1.0'));
    // The same source as a package whose dkms.conf has no AUTOINSTALL line.
    const manual = placeSource(root, path.join(FIXTURES, 'ootmod-hello-1.0'), 'ootmod-manual-1.0');
    const conf = path.join(manual, 'dkms.conf');
    writeFileSync(conf, readFileSync(conf, 'utf8').replace('"ootmod-hello"', '"ootmod-manual"').replace(/^AUTOINSTALL=.*\n/m, ''));
  });

  it('common.postinst registers a module without AUTOINSTALL, builds nothing and says so in DKMS\'s words, inside dpkg or not', async () => {
    for (const env of [{}, inDpkg('ootmod-manual-dkms')]) {
      const r = await dkms(['common.postinst', 'ootmod-manual', '1.0', '/usr/share/ootmod-manual-dkms', '', ''], env);
      expect(r.code, r.err).toBe(0);
      expect(r.out.trim().split('\n'), JSON.stringify(env)).toEqual(['Loading new ootmod-manual/1.0 DKMS files...', 'Not building the ootmod-manual module which does not have AUTOINSTALL enabled.']);
      expect(builds(r, 'ootmod-manual')).toEqual([]);
    }
    expect(queue()).toEqual([]);
    expect(lstatSync(path.join(root, 'var/lib/dkms/ootmod-manual/1.0/source')).isSymbolicLink()).toBe(true);
    expect(await status('ootmod-manual')).toBe('ootmod-manual/1.0: added');
    // What its package's own postinst runs then builds it.
    const own = await dkms(['install', 'ootmod-manual/1.0', '-k', kernel.release]);
    expect(own.code, own.err).toBe(0);
    expect(builds(own, 'ootmod-manual')).toHaveLength(1);
    expect((await dkms(['remove', 'ootmod-manual/1.0', '--all'])).code).toBe(0);
  });

  it('dkms build and install of a module built and installed already exit 0 with DKMS\'s line, and build nothing', async () => {
    const first = await dkms(['install', 'ootmod-hello/1.0', '-k', kernel.release]);
    expect(first.code, first.err).toBe(0);
    const build = await dkms(['build', 'ootmod-hello/1.0', '-k', kernel.release]);
    expect(build.code, build.err).toBe(0);
    expect(build.out.split('\n')).toContain(`Module ootmod-hello/1.0 already built for kernel ${kernel.release} (x86_64), skip. You may override by specifying --force.`);
    expect(builds(build, 'ootmod-hello')).toEqual([]);
    const install = await dkms(['install', 'ootmod-hello/1.0', '-k', kernel.release]);
    expect(install.code, install.err).toBe(0);
    expect(install.out.split('\n')).toContain(`Module ootmod-hello/1.0 already installed on kernel ${kernel.release} (x86_64), skip. You may override by specifying --force.`);
    // --force builds it again, as DKMS's.
    const forced = await dkms(['build', 'ootmod-hello/1.0', '-k', kernel.release, '--force']);
    expect(forced.code, forced.err).toBe(0);
    expect(forced.out).not.toContain('already built');
    expect(builds(forced, 'ootmod-hello')).toHaveLength(1);
  });

  it("a package configured again (reinstall, dpkg-reconfigure) rebuilds its current module, as DKMS's common.postinst removes and rebuilds it", async () => {
    expect(await status('ootmod-hello')).toBe(`ootmod-hello/1.0, ${kernel.release}, x86_64: installed`);
    const now = await dkms(['common.postinst', 'ootmod-hello', '1.0', '/usr/share/ootmod-hello-dkms', '', '']);
    expect(now.code, now.err).toBe(0);
    expect(builds(now, 'ootmod-hello')).toEqual([`start    ootmod-hello/1.0 for ${kernel.release} (build: its package was configured again (installed, reinstalled or reconfigured): rebuilt, as DKMS does)`]);
    // Inside dpkg: queued, and rebuilt by the trigger at the end of the run.
    const queued = await dkms(['common.postinst', 'ootmod-hello', '1.0', '/usr/share/ootmod-hello-dkms', '', ''], inDpkg('ootmod-hello-dkms'));
    expect(queued.code, queued.err).toBe(0);
    expect(queue()).toEqual(['dkms@postinst@ootmod-hello@1.0']);
    const trigger = await ootmod(['trigger']);
    expect(trigger.code, trigger.err).toBe(0);
    expect(builds(trigger, 'ootmod-hello')).toHaveLength(1);
    expect(trigger.out).toContain('queued by hooks: common.postinst ootmod-hello/1.0');
    // A plain trigger or autoinstall leaves the current build alone.
    expect(builds(await ootmod(['trigger']), 'ootmod-hello')).toEqual([]);
    expect(await status('ootmod-hello')).toBe(`ootmod-hello/1.0, ${kernel.release}, x86_64: installed`);
  });

  it('/etc/dkms/no-autoinstall: dkms autoinstall and kernel_postinst build nothing and say what DKMS says; with ootmod-dkms, neither do the hooks, the trigger nor ootmod autoinstall', async () => {
    // An AUTOINSTALL module that is not built: what autoinstall would build.
    expect((await ootmod(['remove', 'ootmod-hello'])).code).toBe(0);
    mkdirSync(path.dirname(noAutoinstall), { recursive: true });
    writeFileSync(noAutoinstall, '');
    try {
      for (const args of [['autoinstall'], ['autoinstall', '-k', kernel.release], ['kernel_postinst', '-k', kernel.release]]) {
        for (const env of [{}, inDpkg('linux-image-x')]) {
          const r = await dkms(args, env);
          expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0);
          expect(r.out.trim(), args.join(' ')).toBe('Automatic installation of modules has been disabled.');
          expect(builds(r, 'ootmod-hello')).toEqual([]);
        }
      }
      expect(queue()).toEqual([]);
      // common.postinst stops before it registers anything, as DKMS's.
      const postinst = await dkms(['common.postinst', 'ootmod-hello', '1.0', '/usr/share/ootmod-hello-dkms', '', '']);
      expect(postinst.out.trim()).toBe('autoinstall for dkms modules has been disabled.');

      // With ootmod-dkms installed, ootmod's own automatic builds honour DKMS's file too.
      installFrontEnd();
      const auto = await ootmod(['autoinstall', '-k', kernel.release]);
      expect(auto.code, auto.err).toBe(0);
      expect(auto.out.trim()).toBe('Automatic installation of modules has been disabled (/etc/dkms/no-autoinstall): ootmod install NAME builds one, or remove the file');
      for (const args of [['hook', 'postinst', kernel.release], ['hook', 'header_postinst', kernel.release], ['trigger']]) {
        const r = await ootmod(args);
        expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0);
        expect(builds(r, 'ootmod-hello'), args.join(' ')).toEqual([]);
        expect(r.err, args.join(' ')).toContain("ootmod: automatic installation of modules has been disabled (/etc/dkms/no-autoinstall, as DKMS's autoinstall): only modules asked for by name are built");
      }
      expect(await status('ootmod-hello')).toBe('ootmod-hello/1.0: added');
      // What is asked for by name is built, as under DKMS: by dkms install, and queued inside dpkg.
      const queued = await dkms(['install', 'ootmod-hello/1.0', '-k', kernel.release], inDpkg('vendor-tool'));
      expect(queued.code, queued.err).toBe(0);
      const trigger = await ootmod(['trigger']);
      expect(builds(trigger, 'ootmod-hello'), trigger.err).toHaveLength(1);
      expect(await status('ootmod-hello')).toBe(`ootmod-hello/1.0, ${kernel.release}, x86_64: installed`);

      // Without ootmod-dkms the file is DKMS's alone: ootmod autoinstall builds.
      rmSync(frontEnd);
      expect((await ootmod(['remove', 'ootmod-hello'])).code).toBe(0);
      const plain = await ootmod(['autoinstall', '-k', kernel.release]);
      expect(plain.code, plain.err).toBe(0);
      expect(builds(plain, 'ootmod-hello')).toHaveLength(1);
    } finally {
      rmSync(noAutoinstall, { force: true });
      rmSync(frontEnd, { force: true });
    }
  });
});
