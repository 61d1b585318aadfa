// The module packages of Debian's contrib and non-free areas through ootmod-dkms, for real, on a sid
// chroot with contrib, non-free and non-free-firmware enabled.
//
// Always (CI): zfs-dkms installed with one apt-get through ootmod-dkms builds zfs.ko and spl.ko for the
// kernel, and they work: Debian's real kernel under QEMU loads them and, with the zfs tools from the
// archive, creates a pool on a file, writes a file into it, exports and imports the pool and reads the
// file back.
//
// With OOTMOD_E2E_CONTRIB_DKMS=1 (`npm run test:e2e:contrib-dkms`, too slow for CI: ZFS and NVIDIA's
// module built three times): zfs-dkms, an NVIDIA module package and a main one installed with one apt-get
// through ootmod-dkms and, in another fresh chroot, through Debian's dkms, compared; then that DKMS
// machine moved to ootmod-dkms, whose modules must be signed with the key DKMS made.
import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALL_COMPONENTS, currentKernel, freshChroot, kernelConfig, type Chroot, type KernelInfo } from './lib/chroot.js';
import { buildOotmodIndepDebs, type OotmodIndepDebs } from './lib/debs.js';
import { contribDkmsPackages } from './lib/dkms.js';
import { bootWithModules } from './lib/qemu.js';
import { copyDebs, installHeaders, ootmodDebArgs, re, tools, vmlinuzOf, type StatusRow, type Tools } from './lib/system.js';

const log = (msg: string) => process.stderr.write(`[e2e] ${msg}\n`);
const CONTRIB_DKMS = process.env.OOTMOD_E2E_CONTRIB_DKMS === '1';
/** One pristine sid base with every archive area, copied for each system below. */
const CHROOT_OPTS = { base: 'contrib-e2e-base', components: ALL_COMPONENTS };
/** A ZFS build takes about ten minutes on two idle cores; apt runs that build it get this long. */
const BUILD_TIMEOUT_MS = 3_600_000;

let debs: OotmodIndepDebs;

beforeAll(async () => {
  debs = await buildOotmodIndepDebs(log);
});

afterAll(() => {
  if (debs && !debs.prebuilt) rmSync(debs.dir, { recursive: true, force: true });
});

/** A fresh sid system with contrib/non-free, the current kernel (image, headers, its gcc) and ootmod's .debs copied in. */
async function kernelSystem(name: string): Promise<{ chroot: Chroot; kernel: KernelInfo }> {
  const chroot = await freshChroot('sid', name, CHROOT_OPTS);
  const t = tools(() => chroot);
  const kernel = await currentKernel(chroot);
  await copyDebs(chroot, debs);
  // The image too: its own modules give the reference vermagic, and QEMU boots it.
  await installHeaders(t, chroot, kernel, kernel.imagePackage);
  return { chroot, kernel };
}

/** What `ootmod status` and the build's make.log say about a module that did not install, for a failure message. */
async function whyNot(t: Tools, rows: StatusRow[], module: string, kver: string): Promise<string> {
  const row = rows.find((x) => x.module === module && x.kernel === kver);
  if (!row) return `no ${module} row for ${kver} in ootmod status: ${JSON.stringify(rows)}`;
  const make = await t.sh(`tail -n 60 /var/lib/ootmod/built/${kver}/${module}/${row.version}/make.log`);
  return `${module} ${row.version} is ${row.status}: ${row.error ?? ''}\n--- make.log (tail) ---\n${make.out}`;
}

/** The module files (basename without .ko[.ext]) directly in `dir` of the chroot, sorted. */
async function koNames(t: Tools, dir: string): Promise<string[]> {
  const r = await t.sh(`ls ${dir} 2>/dev/null`);
  return r.out.split('\n').filter((f) => /\.ko(\.\w+)?$/.test(f)).map((f) => f.replace(/\.ko(\.\w+)?$/, '')).sort();
}

/** Checks every module file in `dir` has `vermagic`; returns the names. */
async function expectVermagic(t: Tools, dir: string, vermagic: string): Promise<string[]> {
  const names = await koNames(t, dir);
  for (const n of names) expect((await t.sh(`modinfo -F vermagic ${dir}/${n}.ko*`)).out.trim(), `${dir}/${n}`).toBe(vermagic);
  return names;
}

// Part of `npm run test:e2e` and of .ci/run (lane C, after cross): about 25 minutes here, mostly the ZFS build.
describe('zfs-dkms through ootmod-dkms (contrib), and ZFS working in the real kernel', () => {
  let chroot: Chroot;
  let kernel: KernelInfo;
  const t = tools(() => chroot);
  let zfsVersion = '';

  beforeAll(async () => {
    ({ chroot, kernel } = await kernelSystem('contrib-e2e'));
    const r = await t.apt(`install ${ootmodDebArgs(debs)}`);
    expect(r.code, r.out.slice(-4000)).toBe(0);
  });

  it(
    'one apt-get install zfs-dkms: apt exits 0, nothing unconfigured, zfs and spl installed for the kernel with its vermagic, dkms status says installed',
    async () => {
      const t0 = Date.now();
      const r = await t.apt('install zfs-dkms', BUILD_TIMEOUT_MS);
      log(`apt-get install zfs-dkms (ootmod-dkms): exit ${r.code} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
      expect(r.code, r.out.slice(-6000)).toBe(0);
      // Its dkms dependency is ootmod-dkms, and the license note did not stop it.
      expect(r.out).not.toMatch(/^Unpacking dkms /m);
      await t.expectDpkgClean();

      const rows = await t.status();
      const zfs = rows.find((x) => x.module === 'zfs' && x.kernel === kernel.kver);
      expect(zfs?.status, await whyNot(t, rows, 'zfs', kernel.kver)).toBe('installed');
      zfsVersion = zfs!.version;
      // The version of the zfs-dkms package that was installed (upstream part).
      const pkgVersion = (await t.sh("dpkg-query -W -f '${Version}' zfs-dkms")).out;
      expect(pkgVersion.replace(/^\d+:/, '')).toMatch(new RegExp(`^${re(zfsVersion)}[-+~]`));

      const dir = `/usr/lib/modules/${kernel.kver}/updates/ootmod`;
      const vermagic = await t.kernelVermagic(kernel.kver);
      const names = await expectVermagic(t, dir, vermagic);
      expect(names).toEqual(expect.arrayContaining(['spl', 'zfs']));
      for (const m of ['spl', 'zfs']) {
        expect(zfs!.files.some((f) => f.startsWith(`${dir}/${m}.ko`)), JSON.stringify(zfs)).toBe(true);
        expect(await t.modulesDep(kernel.kver)).toMatch(new RegExp(`^updates/ootmod/${m}\\.ko`, 'm'));
      }

      const dkms = await t.sh('dkms status zfs');
      expect(dkms.code, dkms.all).toBe(0);
      expect(dkms.out.trim().split('\n')).toContain(`zfs/${zfsVersion}, ${kernel.kver}, x86_64: installed`);
      // DKMS's tree, as its readers look for it.
      expect(await koNames(t, `/var/lib/dkms/zfs/${zfsVersion}/${kernel.kver}/x86_64/module`)).toEqual(expect.arrayContaining(['spl', 'zfs']));
    },
    BUILD_TIMEOUT_MS + 600_000,
  );

  it('spl and zfs load in the real kernel under QEMU; a pool on a file is created, written, exported, imported and read back with the archive\'s zfs tools', async (ctx) => {
    if (!zfsVersion) ctx.skip('zfs was not built (see the test above)');
    const inst = await t.apt('install zfsutils-linux');
    expect(inst.code, inst.out.slice(-4000)).toBe(0);

    // spl and zfs with the kernel's own modules they need (not built in), in load order.
    const deps = await t.sh(`modprobe -S ${kernel.kver} --show-depends zfs`);
    expect(deps.code, deps.all).toBe(0);
    const chain = [...deps.out.matchAll(/^insmod (\S+)/gm)].map((m) => m[1]);
    log(`zfs's modules in load order:\n${chain.join('\n')}`);
    const ours = chain.filter((f) => f.includes('/updates/ootmod/'));
    expect(ours.map((f) => path.basename(f).replace(/\.ko.*$/, ''))).toEqual(['spl', 'zfs']);
    for (const f of chain.filter((x) => !ours.includes(x))) expect(f).toMatch(new RegExp(`^/(usr/)?lib/modules/${re(kernel.kver)}/kernel/`));
    // What modinfo says zfs and spl depend on is all in that chain (or built into the kernel).
    const builtin = (await t.sh(`cat /usr/lib/modules/${kernel.kver}/modules.builtin`)).out;
    for (const m of ours) {
      for (const dep of (await t.sh(`modinfo -F depends ${m}`)).out.trim().split(',').filter(Boolean)) {
        const inChain = chain.some((f) => path.basename(f).replace(/\.ko.*$/, '').replace(/-/g, '_') === dep.replace(/-/g, '_'));
        expect(inChain || new RegExp(`/${re(dep)}\\.ko$`, 'm').test(builtin), `${path.basename(m)} depends on ${dep}`).toBe(true);
      }
    }

    // The tools from zfsutils-linux and their shared libraries (as ldd resolves them in the chroot).
    const progs = ['zpool', 'zfs'];
    const where = await t.sh(`for p in ${progs.join(' ')}; do command -v $p; done`);
    const programs = where.out.trim().split('\n');
    expect(programs, where.all).toHaveLength(progs.length);
    const ldd = await t.sh(`ldd ${programs.join(' ')}`);
    expect(ldd.code, ldd.all).toBe(0);
    const libs = [...new Set([...ldd.out.matchAll(/(?:=>\s*)?(\/\S+) \(0x/g)].map((m) => m[1]))];
    const files: Record<string, string> = {};
    for (const f of [...programs, ...libs]) {
      // Resolved inside the chroot: a link there may be absolute.
      const real = (await t.sh(`readlink -f ${f}`)).out.trim();
      files[f] = chroot.path(real);
    }
    const libDirs = [...new Set(libs.map((l) => path.dirname(l)))].join(':');
    const [zpool, zfs] = programs;
    const content = `written on ZFS by ootmod's e2e test`;
    const vmlinuz = vmlinuzOf(chroot, kernel.kver);
    expect(vmlinuz).toBeDefined();
    const boot = await bootWithModules({
      vmlinuz: vmlinuz!,
      modules: chain.map((f) => ({ path: chroot.path(f) })),
      files,
      memoryMb: 2048,
      script: [
        `export LD_LIBRARY_PATH=${libDirs}`,
        'mkdir -p /tmp /etc/zfs && mount -t tmpfs tmpfs /tmp',
        'dd if=/dev/zero of=/tmp/pool.img bs=1M count=0 seek=256',
        `${zpool} create -f -o cachefile=none -O mountpoint=/tank tank /tmp/pool.img`,
        `echo "${content}" > /tank/hello.txt`,
        `${zfs} list -H -o name,mountpoint tank`,
        `${zpool} export tank`,
        `test ! -e /tank/hello.txt`,
        `${zpool} import -d /tmp -o cachefile=none tank`,
        `echo "read back: $(cat /tank/hello.txt)"`,
        `${zpool} list -H -o name,health tank`,
        `${zpool} export tank`,
      ],
      timeoutMs: 900_000,
    });
    const tail = boot.log.slice(-5000);
    expect(boot.done, tail).toBe(true);
    expect(boot.insmod.spl, tail).toBe(0);
    expect(boot.insmod.zfs, tail).toBe(0);
    for (const name of Object.keys(boot.insmod)) expect(boot.insmod[name], `insmod ${name}\n${tail}`).toBe(0);
    // Every command of the script exited 0.
    const rcs = [...boot.log.matchAll(/^=== run: (.*)\n(?:[^]*?)^=== run rc=(\d+)$/gm)].map((m) => `${m[2]} ${m[1]}`);
    expect(rcs, tail).toHaveLength(12);
    expect(rcs.filter((l) => !l.startsWith('0 ')), tail).toEqual([]);
    expect(boot.log).toMatch(new RegExp(`ZFS: Loaded module v${re(zfsVersion)}`));
    expect(boot.log).toMatch(/^tank\t\/tank$/m);
    expect(boot.log).toContain(`read back: ${content}`);
    expect(boot.log).toMatch(/^tank\tONLINE$/m);
    expect(boot.rmmod).toMatchObject({ zfs: 0, spl: 0 });
    log(`QEMU: ZFS boot took ${(boot.durationMs / 1000).toFixed(0)} s`);
  }, 1_800_000);
});

interface Outcome {
  packages: string[];
  aptExit: number;
  aptSeconds: number;
  modules: string[];
  dkmsStatus: string[];
}

describe.runIf(CONTRIB_DKMS)("contrib/non-free module packages: ootmod-dkms beside Debian's dkms (OOTMOD_E2E_CONTRIB_DKMS=1)", () => {
  let ootmodSide: { chroot: Chroot; kernel: KernelInfo };
  let dkmsSide: { chroot: Chroot; kernel: KernelInfo };
  const o = tools(() => ootmodSide.chroot);
  const d = tools(() => dkmsSide.chroot);
  let ours: Outcome;
  let theirs: Outcome;

  beforeAll(async () => {
    ootmodSide = await kernelSystem('contrib-e2e-ootmod');
    const r = await o.apt(`install ${ootmodDebArgs(debs)}`);
    expect(r.code, r.out.slice(-4000)).toBe(0);
    dkmsSide = await kernelSystem('contrib-e2e-dkms');
    expect(dkmsSide.kernel.kver).toBe(ootmodSide.kernel.kver);
  });

  /** One apt-get install of the packages; what it left. */
  const installAll = async (t: Tools, kver: string, modulesDir: string, packages: string[], extra = ''): Promise<Outcome> => {
    const t0 = Date.now();
    const r = await t.apt(`install ${extra} ${packages.join(' ')}`, BUILD_TIMEOUT_MS * 2);
    const aptSeconds = Math.round((Date.now() - t0) / 1000);
    log(`apt-get install ${extra} ${packages.join(' ')}: exit ${r.code} in ${aptSeconds} s\n${r.out.slice(-3000)}`);
    const dkmsStatus = (await t.sh('dkms status')).out.trim().split('\n').filter(Boolean).sort();
    const modules = await expectVermagic(t, `/usr/lib/modules/${kver}/${modulesDir}`, await t.kernelVermagic(kver));
    log(`${modulesDir}: ${modules.join(' ')}\ndkms status:\n${dkmsStatus.join('\n')}`);
    return { packages, aptExit: r.code, aptSeconds, modules, dkmsStatus };
  };

  it(
    'the same apt-get install of zfs-dkms, NVIDIA and v4l2loopback-dkms: ootmod-dkms exits 0 and installs the modules DKMS installs, each with the kernel\'s vermagic; the same dkms status',
    async () => {
      const { kernel } = ootmodSide;
      const packages = await contribDkmsPackages(ootmodSide.chroot, log);
      ours = await installAll(o, kernel.kver, 'updates/ootmod', packages);
      expect(ours.aptExit).toBe(0);
      await o.expectDpkgClean();
      theirs = await installAll(d, kernel.kver, 'updates/dkms', packages, 'dkms');
      log(`comparison: ${JSON.stringify({ ours, theirs }, null, 1)}`);

      // DKMS's apt exit: 0 when every module built, 100 when one failed on this kernel (its postinst fails).
      const dkmsFailed = theirs.dkmsStatus.filter((l) => !/: installed$/.test(l));
      log(`DKMS: apt exit ${theirs.aptExit}; not installed: ${dkmsFailed.join('; ') || 'none'}`);
      expect([0, 100]).toContain(theirs.aptExit);
      expect(ours.modules).toEqual(theirs.modules);
      expect(ours.modules).toEqual(expect.arrayContaining(['spl', 'zfs', 'v4l2loopback']));
      // Built by both, or failed for both: the same status lines (ootmod-dkms shows a failed build as added).
      expect(ours.dkmsStatus).toEqual(theirs.dkmsStatus);
      if (theirs.aptExit === 100) {
        const rows = await o.status();
        expect(rows.filter((x) => x.kernel === kernel.kver && x.status === 'failed').length, JSON.stringify(rows)).toBeGreaterThan(0);
      }
    },
    BUILD_TIMEOUT_MS * 4,
  );

  it("moving that DKMS machine to ootmod-dkms: every module ootmod installs is signed with DKMS's key (/var/lib/dkms/mok.key)", async () => {
    const { kernel } = dkmsSide;
    const config = await kernelConfig(dkmsSide.chroot, kernel.kver);
    expect(config.get('CONFIG_MODULE_SIG')).toBe('y');
    expect((await d.sh('test -f /var/lib/dkms/mok.key && test -f /var/lib/dkms/mok.pub')).code).toBe(0);
    const cert = await d.sh('openssl x509 -inform DER -in /var/lib/dkms/mok.pub -noout -serial -subject -nameopt multiline');
    expect(cert.code, cert.all).toBe(0);
    const serial = /^serial=([0-9A-F]+)$/im.exec(cert.out)![1].toUpperCase().replace(/^0+/, '');
    const cn = /commonName\s*=\s*(.+)$/m.exec(cert.out)![1].trim();
    // DKMS signed its own builds with it.
    expect(await d.signer(`$(ls /usr/lib/modules/${kernel.kver}/updates/dkms/v4l2loopback.ko*)`)).toBe(cn);

    const t0 = Date.now();
    const r = await d.apt(`install ${ootmodDebArgs(debs)}`, BUILD_TIMEOUT_MS * 2);
    log(`DKMS -> ootmod-dkms: apt exit ${r.code} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    expect(r.code, r.out.slice(-6000)).toBe(0);
    await d.expectDpkgClean();
    const dir = `/usr/lib/modules/${kernel.kver}/updates/ootmod`;
    const installed = await expectVermagic(d, dir, await d.kernelVermagic(kernel.kver));
    // What DKMS had built, ootmod built again.
    expect(installed).toEqual(theirs.modules);
    for (const m of installed) {
      const sig = await d.sh(`modinfo -F signer ${dir}/${m}.ko* && modinfo -F sig_key ${dir}/${m}.ko*`);
      const [signer, sigKey] = sig.out.trim().split('\n');
      expect(signer, m).toBe(cn);
      expect(sigKey.replace(/:/g, '').toUpperCase().replace(/^0+/, ''), m).toBe(serial);
    }
  }, BUILD_TIMEOUT_MS * 2 + 600_000);
});
