// ootmod-dkms for real: Debian's own *-dkms packages from the archive (and one made with Debian's
// dh_dkms that does not build) installed with apt on sid chroots where ootmod-dkms provides dkms; and a
// machine moved from Debian's real dkms to ootmod-dkms and back. The dkms status lines are compared with
// what the real DKMS prints for the same modules.
import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKernel, freshChroot, kernelGccPackage, parseKernelConfig, type Chroot, type KernelInfo } from './lib/chroot.js';
import { buildOotmodIndepDebs, lintianProblems, type OotmodIndepDebs } from './lib/debs.js';
import { REAL_DKMS_PACKAGES, buildFailingDkmsPackage, buildRequestingPackage } from './lib/dkms.js';
import { DEBS, copyDebs, installHeaders, re, tools, type Tools } from './lib/system.js';

const log = (msg: string) => process.stderr.write(`[e2e] ${msg}\n`);
const BASE = 'dkms-e2e-base';
/** The three real module packages, and the module each installs. */
const REAL = REAL_DKMS_PACKAGES;
const REAL_PACKAGES = Object.keys(REAL).join(' ');

async function buildFailingPackage(t: Tools, chroot: Chroot): Promise<string> {
  const deb = await buildFailingDkmsPackage(chroot);
  const info = await t.sh(`dpkg-deb -I ${deb} postinst prerm; dpkg-deb -f ${deb} Depends; dpkg-deb -c ${deb}`);
  expect(info.out).toMatch(/\/usr\/lib\/dkms\/common\.postinst/);
  expect(info.out).toMatch(/dkms remove -m \$DKMS_NAME -v \$DKMS_VERSION --all/);
  expect(info.out).toMatch(/dkms \(>= /);
  expect(info.out).toMatch(/usr\/src\/ootmod-failing-1\.0\/dkms\.conf/);
  return deb;
}

// Only the packages these tests install: ootmod-static (debian.e2e covers it) would add minutes.
let debs: OotmodIndepDebs;

beforeAll(async () => {
  debs = await buildOotmodIndepDebs(log);
});

afterAll(() => {
  if (debs && !debs.prebuilt) rmSync(debs.dir, { recursive: true, force: true });
});

describe('ootmod-dkms: Debian module packages with no DKMS', () => {
  let chroot: Chroot;
  let kernel: KernelInfo;
  let second: KernelInfo;
  const t = tools(() => chroot);
  let failingDeb = '';

  beforeAll(async () => {
    chroot = await freshChroot('sid', 'dkms-e2e', { base: BASE });
    kernel = await currentKernel(chroot);
    second = await currentKernel(chroot, { flavour: 'cloud-amd64' });
    await copyDebs(chroot, debs);
    await installHeaders(t, chroot, kernel);
  });

  it('is a lintian-clean package', async () => {
    expect(await lintianProblems(debs.ootmodDkms)).toEqual([]);
    const fields = await t.sh(`dpkg-deb -f ${DEBS}/${path.basename(debs.ootmodDkms)} Provides Conflicts Replaces Depends`);
    expect(fields.out).toMatch(/^Provides: dkms \(= \d+\.\d+\.\d+\)$/m);
    expect(fields.out).toMatch(/^Conflicts: dkms$/m);
    expect(fields.out).toMatch(/^Depends: ootmod \(= \S+\) \| ootmod-static \(= \S+\)/m);
  });

  it('installs with ootmod; its dkms is ootmod', async () => {
    const r = await t.apt(`install ${DEBS}/${path.basename(debs.ootmod)} ${DEBS}/${path.basename(debs.ootmodDkms)}`);
    expect(r.code, r.out.slice(-4000)).toBe(0);
    await t.expectDpkgClean();
    expect((await t.sh('dpkg-query -W -f "${Status}" dkms')).out).not.toMatch(/installed/);
    const v = await t.sh('dkms --version');
    expect(v.code).toBe(0);
    expect(v.out.trim()).toMatch(/^dkms-\d+\.\d+\.\d+$/);
    expect((await t.sh('test -x /usr/lib/dkms/common.postinst')).code).toBe(0);
    const bad = await t.sh('dkms mktarball -m x -v 1');
    expect(bad.code).not.toBe(0);
    expect(bad.err.trim().split('\n')).toHaveLength(1);
    // dh-dkms (which depends on dkms) and debhelper, to make the failing package below.
    const dh = await t.apt('install dh-dkms debhelper');
    expect(dh.code, dh.out.slice(-3000)).toBe(0);
    expect((await t.sh('dpkg-query -W -f "${Status}" dkms')).out).not.toMatch(/installed/);
    failingDeb = await buildFailingPackage(t, chroot);
  });

  it('installs the real packages and a failing one in one apt run: apt exits 0, each module built once, one depmod', async () => {
    await t.countDepmod();
    const r = await t.apt(`install ${REAL_PACKAGES} ${failingDeb}`);
    expect(r.code, r.out.slice(-6000)).toBe(0);
    // apt resolved their dkms dependency to ootmod-dkms.
    expect(r.out).not.toMatch(/^Unpacking dkms /m);
    expect(r.out).toMatch(/queued; ootmod builds it at the end of this dpkg run/);
    expect(r.out).toMatch(/Processing triggers for ootmod /);
    await t.expectDpkgClean();
    expect(await t.depmodCalls(kernel.kver)).toBe(1);

    const rows = await t.status();
    for (const [pkg, module] of Object.entries(REAL)) {
      const name = pkg === 'dkms-test-dkms' ? 'dkms_test' : pkg.replace(/-dkms$/, '');
      const row = rows.find((x) => x.module === name && x.kernel === kernel.kver);
      expect(row?.status, `${pkg}: ${JSON.stringify(rows)}`).toBe('installed');
      const file = row!.files.find((f) => path.basename(f).startsWith(`${module}.ko`));
      expect(file, JSON.stringify(row)).toBeTruthy();
      expect((await t.sh(`modinfo -F vermagic ${file}`)).out).toMatch(new RegExp(`^${re(kernel.kver)} `));
      expect(await t.modulesDep(kernel.kver)).toMatch(new RegExp(`^updates/ootmod/${module}\\.ko`, 'm'));
    }
    const failed = rows.find((x) => x.module === 'ootmod-failing' && x.kernel === kernel.kver);
    expect(failed?.status).toBe('failed');
    expect(failed?.error).toMatch(/ootmod_failing\.c:\d+:\d+: error: .*ootmod_no_such_symbol/);

    const dkms = await t.sh('dkms status');
    expect(dkms.code).toBe(0);
    const lines = dkms.out.trim().split('\n');
    const acpi = rows.find((x) => x.module === 'acpi-call')!;
    expect(lines).toContain(`acpi-call/${acpi.version}, ${kernel.kver}, x86_64: installed`);
    for (const l of lines) expect(l).toMatch(/^[\w.+-]+\/[\w.+~:-]+(, \S+, \S+: (installed|built)|: added)$/);
    expect(lines).toContain('ootmod-failing/1.0: added');
    expect(dkms.err).toMatch(/ootmod-failing\/1\.0 failed to build .*error:/);
    // What dh_dkms's prerm asks.
    expect((await t.sh('dkms status -m dkms_test -v 1.0')).out.trim()).toBe(`dkms_test/1.0, ${kernel.kver}, x86_64: installed`);
  });

  it('builds every module once for a second kernel whose headers are installed', async () => {
    const before = await t.status();
    const r = await t.apt(`install ${second.headersPackage}=${second.version}`);
    expect(r.code, r.out.slice(-4000)).toBe(0);
    await t.expectDpkgClean();
    const rows = await t.status();
    // A module whose BUILD_EXCLUSIVE_CONFIG the second flavour lacks (cloud kernels have no V4L) is
    // skipped for it, as DKMS would: expected from the kernel's own .config.
    const config = parseKernelConfig((await t.sh(`cat /usr/src/linux-headers-${second.kver}/.config`)).out);
    const exclusive: Record<string, string> = { 'acpi-call': 'CONFIG_ACPI', v4l2loopback: 'CONFIG_VIDEO_DEV' };
    for (const name of ['dkms_test', 'acpi-call', 'v4l2loopback']) {
      const wanted = !exclusive[name] || ['y', 'm'].includes(config.get(exclusive[name]) ?? '');
      expect(rows.filter((x) => x.module === name && x.kernel === second.kver).map((x) => x.status), name).toEqual(wanted ? ['installed'] : []);
      // Not rebuilt for the first kernel.
      const was = before.find((x) => x.module === name && x.kernel === kernel.kver);
      expect(rows.find((x) => x.module === name && x.kernel === kernel.kver)?.updatedAt).toBe(was?.updatedAt);
    }
    expect(rows.find((x) => x.module === 'ootmod-failing' && x.kernel === second.kver)?.status).toBe('failed');
    expect(await t.depmodCalls(second.kver)).toBe(1);
  });

  it('apt-get remove of a module package removes its modules from every kernel and from modules.dep', async () => {
    const r = await t.apt('remove acpi-call-dkms');
    expect(r.code, r.out.slice(-4000)).toBe(0);
    await t.expectDpkgClean();
    for (const k of [kernel.kver, second.kver]) {
      expect(await t.modulesDep(k)).not.toMatch(/acpi_call/);
      expect((await t.sh(`ls /usr/lib/modules/${k}/updates/ootmod/`)).out).not.toMatch(/acpi_call/);
      // The other packages' modules stay.
      expect(await t.modulesDep(k)).toMatch(/^updates\/ootmod\/dkms_test\.ko/m);
    }
    expect((await t.status()).filter((x) => x.module === 'acpi-call')).toEqual([]);
    expect((await t.sh('dkms status')).out).not.toMatch(/acpi-call/);
  });
});

describe('ootmod-dkms: a module that fails is built once per apt run, and again when asked later or when its compiler comes', () => {
  let chroot: Chroot;
  let kernel: KernelInfo;
  const t = tools(() => chroot);
  let failing = '';
  let manual = '';
  /** Builds of NAME/1.0 for the kernel that ootmod started, from its job lines. */
  const builds = (out: string, name: string) => out.split('\n').filter((l) => new RegExp(`^start +${re(name)}/1\\.0 for ${re(kernel.kver)} \\(build`).test(l)).length;

  beforeAll(async () => {
    chroot = await freshChroot('sid', 'dkms-e2e-retry', { base: BASE });
    kernel = await currentKernel(chroot);
    await copyDebs(chroot, debs);
    await installHeaders(t, chroot, kernel);
    const r = await t.apt(`install ${DEBS}/${path.basename(debs.ootmod)} ${DEBS}/${path.basename(debs.ootmodDkms)} dh-dkms debhelper`);
    expect(r.code, r.out.slice(-4000)).toBe(0);
  });

  it('one apt run whose packages ask three times for two failing modules (AUTOINSTALL and not) builds each once', async () => {
    failing = await buildFailingDkmsPackage(chroot);
    // Without AUTOINSTALL: common.postinst only registers it (as DKMS's), its postinst's own `dkms install` asks for it.
    manual = await buildFailingDkmsPackage(chroot, { name: 'ootmod-manual', autoinstall: false });
    // As vendor packages do: dkms build, then dkms install, of modules another package installed.
    const again = await buildRequestingPackage(chroot, 'ootmod-asks-again', ['ootmod-failing/1.0', 'ootmod-manual/1.0']);
    // apt calls dpkg once per package and lets each call process the triggers: ootmod's trigger runs
    // several times in this one apt run (after each unpack: the sources in /usr/src; at the end, for the
    // three postinsts' requests).
    const r = await t.apt(`-o DPkg::MaxArgs=1 -o DPkg::NoTriggers=false -o DPkg::ConfigurePending=true install ${failing} ${manual} ${again}`);
    expect(r.code, r.out.slice(-6000)).toBe(0);
    log(`trigger runs in the apt run: ${r.out.match(/^Processing triggers for ootmod /gm)?.length ?? 0}`);
    expect(r.out.match(/^Processing triggers for ootmod /gm)?.length ?? 0, r.out.slice(-6000)).toBeGreaterThan(1);
    expect(builds(r.out, 'ootmod-failing'), r.out.slice(-8000)).toBe(1);
    expect(builds(r.out, 'ootmod-manual'), r.out.slice(-8000)).toBe(1);
    expect(r.out).toContain('Not building the ootmod-manual module which does not have AUTOINSTALL enabled.');
    expect(r.out).toMatch(/ootmod-(failing|manual)\/1\.0 for \S+: failed earlier in this package run with the same inputs and tools/);
    await t.expectDpkgClean();
    const rows = await t.status();
    for (const m of ['ootmod-failing', 'ootmod-manual']) expect(rows.find((x) => x.module === m && x.kernel === kernel.kver)?.status, m).toBe('failed');
  });

  it('the next apt run, dpkg-reconfigure, dkms install and ootmod install each build it again, AUTOINSTALL or not', async () => {
    const reinstall = await t.apt(`install --reinstall ${failing} ${manual}`);
    expect(reinstall.code, reinstall.out.slice(-4000)).toBe(0);
    expect(builds(reinstall.out, 'ootmod-failing'), reinstall.out.slice(-6000)).toBe(1);
    expect(builds(reinstall.out, 'ootmod-manual'), reinstall.out.slice(-6000)).toBe(1);
    for (const name of ['ootmod-failing', 'ootmod-manual']) {
      const r = await t.sh(`DEBIAN_FRONTEND=noninteractive dpkg-reconfigure ${name}-dkms 2>&1`);
      expect(r.code, r.out).toBe(0);
      expect(builds(r.out, name), `dpkg-reconfigure ${name}-dkms:\n${r.out}`).toBe(1);
      const dkms = await t.sh(`dkms install -m ${name} -v 1.0 2>&1`);
      expect(dkms.code, dkms.out).toBe(10);
      expect(builds(dkms.out, name), dkms.out).toBe(1);
      const ours = await t.sh(`ootmod install ${name} 2>&1`);
      expect(ours.code, ours.out).toBe(1);
      expect(builds(ours.out, name), ours.out).toBe(1);
    }
    await t.expectDpkgClean();
  });

  it("a module that failed for want of its kernel's compiler is built in the apt run that installs the compiler (file trigger), with no other command", async () => {
    // The kernel's compiler, from its headers (CONFIG_CC_VERSION_TEXT): gcc-N; its program is in
    // gcc-N-<triplet>, which the headers depend on (through gcc-N-for-host). Remove that package the hard
    // way, as a broken or stripped-down system has it. gcc-N stays: it provides c-compiler, which ootmod
    // depends on (with no C compiler at all, dpkg would hold ootmod's trigger back until one is installed).
    const gcc = await kernelGccPackage(chroot, kernel.kver);
    const compiler = JSON.parse((await t.sh(`ootmod kernels --json -k ${kernel.kver}`)).out).kernels[0].compiler as { command: string; path: string };
    const owner = (await t.sh(`dpkg -S "$(readlink -f ${compiler.path})"`)).out.split(':')[0]!;
    expect(owner).toMatch(new RegExp(`^${re(gcc)}(-|$)`));
    const removed = await t.sh(`dpkg --remove --force-depends ${owner} 2>&1`);
    expect(removed.code, removed.out).toBe(0);
    expect((await t.sh(`command -v ${compiler.command}`)).out.trim()).toBe('');

    // A module package that builds: the archive's dkms-test-dkms (made with dh_dkms), through ootmod-dkms.
    // apt installs nothing on a system with unmet dependencies but their fix (which would bring the
    // compiler back), so it goes in with dpkg -i, as vendor packages do; ootmod's trigger ends that run.
    const get = await t.sh('cd /root && apt-get download dkms-test-dkms 2>&1 && ls /root/dkms-test-dkms_*.deb');
    expect(get.code, get.out).toBe(0);
    const deb = get.out.trim().split('\n').at(-1)!;
    const inst = await t.sh(`dpkg -i ${deb} 2>&1`);
    expect(inst.code, inst.out).toBe(0);
    expect(inst.out).toMatch(/^Processing triggers for ootmod /m);
    await t.expectDpkgClean();
    const missing = `install ${gcc}`;
    const failed = (await t.status()).find((x) => x.module === 'dkms_test' && x.kernel === kernel.kver);
    expect(failed?.status, JSON.stringify(failed)).toBe('failed');
    expect(failed?.error).toMatch(new RegExp(`was built with ${re(compiler.command)}, which is not installed: ${re(missing)}$`));
    const status = await t.sh('ootmod status dkms_test');
    expect(status.all.split('\n').filter((l) => l.includes(missing)), status.all).toHaveLength(1);
    const dkms = await t.sh('dkms status -m dkms_test');
    expect(dkms.out.trim()).toBe('dkms_test/1.0: added');
    expect(dkms.err.split('\n').filter((l) => l.includes(missing)), dkms.err).toHaveLength(1);

    // The admin's one command. Not `apt-get install gcc-N`: gcc-N is still installed (only its dependency
    // is gone), so apt says it "is already the newest version" and stops at the unmet dependencies
    // (exit 100). apt's own advice is `apt-get -f install`, which installs the compiler's package.
    const fix = await t.apt('-f install');
    expect(fix.code, fix.out.slice(-6000)).toBe(0);
    const unpacked = fix.out.search(new RegExp(`^Unpacking ${re(owner)} `, 'm'));
    expect(unpacked, fix.out.slice(-6000)).toBeGreaterThanOrEqual(0);
    // In that same apt run, after the compiler was unpacked: ootmod's file trigger, and the build.
    const later = fix.out.slice(unpacked);
    log(`apt-get -f install, from the compiler's unpack:\n${later.split('\n').filter((l) => /^(Unpacking|Setting up|Processing triggers for ootmod|start|done|failed|ootmod trigger)/.test(l)).join('\n')}`);
    expect(later).toMatch(/^Processing triggers for ootmod /m);
    expect(later).toMatch(new RegExp(`^start +dkms_test/1\\.0 for ${re(kernel.kver)} \\(build`, 'm'));
    await t.expectDpkgClean();
    const row = (await t.status()).find((x) => x.module === 'dkms_test' && x.kernel === kernel.kver);
    expect(row?.status, JSON.stringify(row)).toBe('installed');
    const ko = row!.files.find((f) => path.basename(f).startsWith('dkms_test.ko'));
    expect(ko, JSON.stringify(row)).toBeTruthy();
    expect((await t.sh(`test -f ${ko}`)).code).toBe(0);
    expect((await t.sh(`modinfo -F vermagic ${ko}`)).out).toMatch(new RegExp(`^${re(kernel.kver)} `));
    expect(await t.modulesDep(kernel.kver)).toMatch(/^updates\/ootmod\/dkms_test\.ko/m);
    expect((await t.sh('dkms status -m dkms_test')).out.trim()).toBe(`dkms_test/1.0, ${kernel.kver}, x86_64: installed`);
  });
});

describe('ootmod-dkms: a machine moved from DKMS and back', () => {
  let chroot: Chroot;
  let kernel: KernelInfo;
  const t = tools(() => chroot);
  let realStatus: string[] = [];
  let dkmsSigner = '';
  let realAnswers: DkmsAnswers;

  /**
   * What dkms answers, without building anything (seconds): `dkms build` of a module built already,
   * `dkms autoinstall` while /etc/dkms/no-autoinstall exists, and common.postinst (what a dh_dkms
   * postinst runs) of a module without AUTOINSTALL; left behind: nothing.
   */
  type DkmsAnswers = Record<'build' | 'autoinstall' | 'postinst', { code: number; out: string[] }>;
  async function dkmsAnswers(built: string): Promise<DkmsAnswers> {
    const run = async (cmd: string) => {
      const r = await t.sh(cmd);
      return { code: r.code, out: r.out.trim().split('\n') };
    };
    const noauto = 'mkdir -p /usr/src/ootmod-noauto-1.0 && printf \'PACKAGE_NAME="ootmod-noauto"\\nPACKAGE_VERSION="1.0"\\nBUILT_MODULE_NAME[0]="ootmod_noauto"\\nDEST_MODULE_LOCATION[0]="/updates/dkms"\\n\' > /usr/src/ootmod-noauto-1.0/dkms.conf && echo "obj-m := ootmod_noauto.o" > /usr/src/ootmod-noauto-1.0/Kbuild';
    const answers = {
      build: await run(`dkms build ${built} -k ${kernel.kver}`),
      autoinstall: await run(`touch /etc/dkms/no-autoinstall && dkms autoinstall -k ${kernel.kver}; r=$?; rm -f /etc/dkms/no-autoinstall; exit $r`),
      postinst: await run(`${noauto} && /usr/lib/dkms/common.postinst ootmod-noauto 1.0 /usr/share/ootmod-noauto-dkms '' ''`),
    };
    await t.sh('dkms remove ootmod-noauto/1.0 --all >/dev/null 2>&1; rm -rf /usr/src/ootmod-noauto-1.0');
    return answers;
  }

  beforeAll(async () => {
    chroot = await freshChroot('sid', 'dkms-e2e-mig', { base: BASE });
    kernel = await currentKernel(chroot);
    await copyDebs(chroot, debs);
    await installHeaders(t, chroot, kernel);
  });

  it("starts with Debian's dkms, which builds the three packages and signs them with its key", async () => {
    const r = await t.apt(`install dkms ${REAL_PACKAGES}`);
    expect(r.code, r.out.slice(-6000)).toBe(0);
    // A source DKMS only added: its status line is compared too.
    const src = await t.sh('mkdir -p /usr/src/ootmod-added-1.0 && printf \'PACKAGE_NAME="ootmod-added"\\nPACKAGE_VERSION="1.0"\\nBUILT_MODULE_NAME[0]="ootmod_added"\\nDEST_MODULE_LOCATION[0]="/updates/dkms"\\n\' > /usr/src/ootmod-added-1.0/dkms.conf && echo "obj-m := ootmod_added.o" > /usr/src/ootmod-added-1.0/Kbuild && dkms add -m ootmod-added -v 1.0');
    expect(src.code, src.all).toBe(0);
    const s = await t.sh('dkms status');
    expect(s.code, s.err).toBe(0);
    realStatus = s.out.trim().split('\n');
    for (const m of Object.values(REAL)) {
      expect((await t.sh(`ls /usr/lib/modules/${kernel.kver}/updates/dkms/`)).out).toMatch(new RegExp(`^${m}\\.ko`, 'm'));
    }
    dkmsSigner = await t.signer(`$(ls /usr/lib/modules/${kernel.kver}/updates/dkms/dkms_test.ko*)`);
    log(`real dkms status:\n${realStatus.join('\n')}\nsigner: ${dkmsSigner}`);
    // Debian's kernels have CONFIG_MODULE_SIG: DKMS made its key and signed with it.
    expect(dkmsSigner).not.toBe('');
    expect((await t.sh('test -f /var/lib/dkms/mok.key && test -f /var/lib/dkms/mok.pub')).code).toBe(0);
    expect(realStatus.filter((l) => l.endsWith(': installed'))).toHaveLength(3);
    realAnswers = await dkmsAnswers(realStatus.find((l) => l.startsWith('dkms_test/'))!.split(',')[0]!);
    log(`real dkms answers: ${JSON.stringify(realAnswers)}`);
    expect((await t.sh('dkms status')).out.trim().split('\n')).toEqual(realStatus);
  });

  it("takes the modules over when ootmod-dkms replaces dkms: ootmod's, not in updates/dkms, signed with DKMS's key, the same dkms status, one depmod", async () => {
    await t.countDepmod();
    const r = await t.apt(`install ${DEBS}/${path.basename(debs.ootmod)} ${DEBS}/${path.basename(debs.ootmodDkms)}`);
    expect(r.code, r.out.slice(-6000)).toBe(0);
    expect(r.out).toMatch(/Removing dkms /);
    await t.expectDpkgClean();
    // The take-over is part of the trigger's plan: DKMS's copies go before the kernel's one depmod.
    expect(r.out).toMatch(/^took over dkms_test\/\S+ for \S+ from DKMS/m);
    expect(await t.depmodCalls(kernel.kver)).toBe(1);
    const rows = await t.status();
    for (const [pkg, module] of Object.entries(REAL)) {
      const row = rows.find((x) => x.kernel === kernel.kver && x.files.some((f) => path.basename(f).startsWith(`${module}.ko`)));
      expect(row?.status, `${pkg}: ${JSON.stringify(rows)}`).toBe('installed');
      const file = row!.files.find((f) => path.basename(f).startsWith(`${module}.ko`))!;
      expect(await t.signer(file)).toBe(dkmsSigner);
      expect((await t.sh(`ls /usr/lib/modules/${kernel.kver}/updates/dkms/ 2>/dev/null`)).out).not.toMatch(new RegExp(`^${module}\\.ko`, 'm'));
      const dep = await t.modulesDep(kernel.kver);
      expect(dep).toMatch(new RegExp(`^updates/ootmod/${module}\\.ko`, 'm'));
      expect(dep).not.toMatch(new RegExp(`^updates/dkms/${module}\\.ko`, 'm'));
    }
    const ours = await t.sh('dkms status');
    expect(ours.out.trim().split('\n')).toEqual(realStatus);
    // DKMS's answers where it decides not to build, the same (ootmod adds its summary line to dkms build's).
    const answers = await dkmsAnswers(realStatus.find((l) => l.startsWith('dkms_test/'))!.split(',')[0]!);
    expect(answers.build.code).toBe(realAnswers.build.code);
    expect(answers.build.out, JSON.stringify(answers.build)).toEqual(expect.arrayContaining(realAnswers.build.out));
    expect(answers.autoinstall).toEqual(realAnswers.autoinstall);
    expect(answers.postinst).toEqual(realAnswers.postinst);
    expect((await t.sh('dkms status')).out.trim().split('\n')).toEqual(realStatus);
  });

  it('gives the machine back when dkms is installed again', async () => {
    const r = await t.apt('install dkms ootmod-dkms-');
    expect(r.code, r.out.slice(-6000)).toBe(0);
    await t.expectDpkgClean();
    expect((await t.sh('head -c 200 /usr/sbin/dkms')).out).not.toMatch(/ootmod/);
    const rows = await t.status();
    for (const m of ['dkms_test', 'acpi-call', 'v4l2loopback']) expect(rows.filter((x) => x.module === m && x.kernel)).toEqual([]);
    for (const module of Object.values(REAL)) {
      expect((await t.sh(`ls /usr/lib/modules/${kernel.kver}/updates/dkms/`)).out).toMatch(new RegExp(`^${module}\\.ko`, 'm'));
      expect(await t.modulesDep(kernel.kver)).toMatch(new RegExp(`^updates/dkms/${module}\\.ko`, 'm'));
    }
    const s = await t.sh('dkms status');
    expect(s.out.trim().split('\n')).toEqual(realStatus);
  });
});
