// The boot guard with a real bootloader: a disk image with GRUB (grub-pc, BIOS) and two real Debian
// kernels (trixie's and sid's), booted under QEMU (TCG, SeaBIOS) so that GRUB's default entry chooses
// the kernel. A module that builds for the older kernel and not for the newer one: after the newer
// kernel comes with apt, GRUB still boots the older one, with the module loaded; once the fixed module is
// installed with `ootmod install`, GRUB boots the newer one, with the module loaded. guard = no leaves
// GRUB's files as they are, and a dry run only prints what the guard would do.
//
// The image (the older kernel, its headers, ootmod's dependencies, GRUB in the boot sector) is built
// once per pair of kernel versions and cached under <cache>/boot-image; each run works on a copy. The
// apt work is done in the image's filesystem mounted from a loop device (the booted system has no
// network); the boots run `init=` a small script that prints the kernel and the module, and powers off.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CACHE_ROOT, Chroot, currentKernel, ensureChroot, exec, freshChroot, hostDebianMirror, kernelGccPackage, type KernelInfo } from './lib/chroot.js';
import { buildDeb, buildOotmodIndepDebs, type OotmodIndepDebs } from './lib/debs.js';
import { bootDisk, makeDiskImage, withDiskMounted, type DiskBoot } from './lib/disk.js';
import { DEBS, copyDebs, re, tools } from './lib/system.js';

const log = (msg: string) => process.stderr.write(`[e2e] ${msg}\n`);

/** Bumped when what goes into the cached base image changes (older images are then made anew). */
const RECIPE = 1;
const IMAGE_DIR = path.join(CACHE_ROOT, 'boot-image');
/** The chroot the kernel versions are read from (sid, with trixie added), and the image tree's base. */
const PROBE_CHROOT = 'boot-e2e-sid';
const ROOTFS_CHROOT = 'boot-e2e-rootfs';
const IMAGE_BYTES = 6 * 1024 ** 3;
/** init= of every boot: prints what the test checks on the serial console, then powers off. */
const PROBE = '/usr/local/sbin/ootmod-boot-probe';
const MODULE = 'ootmod_boot';
const PACKAGE = 'ootmod-boot';
const BOOT_TIMEOUT_MS = 900_000;

const PROBE_SCRIPT = `#!/bin/sh
# init= of ootmod's boot e2e test: which kernel GRUB started, and the module on it; then power off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sys /sys
echo "=== PROBE uname $(uname -r)"
modprobe ${MODULE}
echo "=== PROBE modprobe rc=$?"
grep -q '^${MODULE} ' /proc/modules && echo "=== PROBE lsmod ${MODULE}"
dmesg | grep '${MODULE}:' | sed 's/^/=== PROBE dmesg /'
echo "=== PROBE cmdline $(cat /proc/cmdline)"
echo o > /proc/sysrq-trigger
sleep 60
`;

/** X.Y.Z of a Debian kernel version ("6.12.48-1" -> [6, 12, 48]). */
function kernelTriple(version: string): [number, number, number] {
  const m = /^(?:\d+:)?(\d+)\.(\d+)(?:\.(\d+))?/.exec(version);
  if (!m) throw new Error(`cannot parse the kernel version ${version}`);
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

/**
 * The module source of `version`: with `breaksAt`, it does not build for that kernel version and newer
 * (an #error on LINUX_VERSION_CODE, as a module that lags behind the kernel's API does).
 */
function moduleSource(version: string, breaksAt?: [number, number, number]): Record<string, string> {
  const guard = breaksAt
    ? `#if LINUX_VERSION_CODE >= KERNEL_VERSION(${breaksAt.join(', ')})\n#error "${PACKAGE} ${version} does not build for Linux ${breaksAt.join('.')} and newer"\n#endif\n`
    : '';
  return {
    'dkms.conf': `PACKAGE_NAME="${PACKAGE}"\nPACKAGE_VERSION="${version}"\nBUILT_MODULE_NAME[0]="${MODULE}"\nDEST_MODULE_LOCATION[0]="/updates/dkms"\nAUTOINSTALL="yes"\n`,
    Makefile: `obj-m := ${MODULE}.o\n`,
    [`${MODULE}.c`]: `// SPDX-License-Identifier: GPL-2.0
#include <linux/init.h>
#include <linux/module.h>
#include <linux/version.h>
${guard}
static int __init ${MODULE}_init(void)
{
	pr_info("${MODULE}: version ${version} loaded\\n");
	return 0;
}

static void __exit ${MODULE}_exit(void)
{
}

module_init(${MODULE}_init);
module_exit(${MODULE}_exit);
MODULE_LICENSE("GPL");
MODULE_VERSION("${version}");
`,
  };
}

interface BaseImage {
  image: string;
  /** The root filesystem's UUID. */
  uuid: string;
}

/** The lines the probe printed (without the "=== PROBE " prefix). */
function probeLines(boot: DiskBoot): string[] {
  return boot.log.split('\n').flatMap((l) => (l.startsWith('=== PROBE ') ? [l.slice('=== PROBE '.length).trim()] : []));
}

/**
 * The cached disk image with the older kernel and GRUB, made when missing: a sid tree (ootmod's
 * dependencies, initramfs-tools with a small initramfs, the older kernel with its headers and compiler,
 * the newer kernel's .debs downloaded for the test's apt run), copied into an ext4 partition, then GRUB
 * installed into the disk's boot sector from inside it.
 */
async function baseImage(older: KernelInfo, newer: KernelInfo): Promise<BaseImage> {
  const key = `r${RECIPE}-${older.kver}-${older.version}-${newer.kver}-${newer.version}`.replace(/[^\w.+-]/g, '_');
  const dir = path.join(IMAGE_DIR, key);
  const done = path.join(dir, 'complete.json');
  if (existsSync(done)) {
    log(`boot image: cached ${dir}`);
    return { image: path.join(dir, 'base.raw'), ...(JSON.parse(readFileSync(done, 'utf8')) as { uuid: string }) };
  }
  // Images of other kernel versions are of no use any more (they are GBs).
  for (const e of existsSync(IMAGE_DIR) ? readdirSync(IMAGE_DIR) : []) if (/^r\d+-/.test(e)) await fs.rm(path.join(IMAGE_DIR, e), { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  const t0 = Date.now();

  const rootfs = await freshChroot('sid', ROOTFS_CHROOT, { base: PROBE_CHROOT });
  const archives = path.join(CACHE_ROOT, 'apt-archives', ROOTFS_CHROOT);
  await rootfs.aptInstall(['nodejs', 'make', 'gcc', 'binutils', 'patch', 'openssl', 'kmod', 'xz-utils', 'zstd', 'passwd', 'initramfs-tools', 'util-linux']);
  // A small initramfs (quick to make under every kernel install): what mounts an ext4 root on virtio.
  writeFileSync(rootfs.path('/etc/initramfs-tools/conf.d/ootmod-e2e'), 'MODULES=list\n');
  writeFileSync(rootfs.path('/etc/initramfs-tools/modules'), ['virtio_pci', 'virtio_blk', 'ext4', 'crc32c_generic', ''].join('\n'));
  writeFileSync(rootfs.path('/etc/fstab'), '# the root filesystem is root= on the kernel command line\n');
  writeFileSync(rootfs.path(PROBE), PROBE_SCRIPT, { mode: 0o755 });
  await rootfs.aptInstall([older.imagePackage, `${older.headersPackage}=${older.version}`]);
  await rootfs.aptInstall([await kernelGccPackage(rootfs, older.kver)]);
  // The newer kernel's packages, so that the test's apt run needs no network.
  await rootfs.run(['apt-get', 'install', '-y', '--no-install-recommends', '--download-only', newer.imagePackage, `${newer.headersPackage}=${newer.version}`]);

  const uuid = randomUUID();
  const tmp = path.join(dir, 'base.raw.tmp');
  log(`boot image: mkfs.ext4 -d ${rootfs.root}`);
  await makeDiskImage(tmp, IMAGE_BYTES, rootfs.root, { uuid, label: 'ootmod-root' });
  await exec('rm', ['-rf', '--one-file-system', rootfs.root]);

  await withDiskMounted(tmp, path.join(IMAGE_DIR, 'mnt'), async (loop) => {
    const image = new Chroot('sid', path.join(IMAGE_DIR, 'mnt'), archives, log);
    const run = (cmd: string[]) => image.run(cmd);
    await image.withMounts(async () => {
      await image.run(['debconf-set-selections'], { input: 'grub-pc grub-pc/install_devices_empty boolean true\ngrub-pc grub-pc/install_devices multiselect\n' });
      await run(['apt-get', 'install', '-y', '--no-install-recommends', 'grub-pc']);
      // The admin's settings stay Debian's (GRUB_DEFAULT=0); these only make it boot on the serial
      // console, at once, into the probe. root= last wins over GRUB's own (a loop device here).
      writeFileSync(
        image.path('/etc/default/grub.d/50-ootmod-e2e.cfg'),
        [
          'GRUB_TIMEOUT=0',
          'GRUB_TERMINAL=serial',
          'GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"',
          'GRUB_CMDLINE_LINUX_DEFAULT=""',
          `GRUB_CMDLINE_LINUX="console=ttyS0,115200 root=/dev/vda1 init=${PROBE} panic=-1 loglevel=4"`,
          '',
        ].join('\n'),
      );
      await run(['grub-install', '--target=i386-pc', loop.disk]);
      await run(['update-grub']);
    });
    const cfg = readFileSync(image.path('/boot/grub/grub.cfg'), 'utf8');
    if (!cfg.includes(`vmlinuz-${older.kver}`)) throw new Error(`grub.cfg of the new image has no entry for ${older.kver}`);
  });
  await fs.rename(tmp, path.join(dir, 'base.raw'));
  writeFileSync(done, `${JSON.stringify({ uuid, created: new Date().toISOString() })}\n`);
  log(`boot image: built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return { image: path.join(dir, 'base.raw'), uuid };
}

// Opt-in (OOTMOD_E2E_BOOT=1, `npm run test:e2e:boot`) until it has passed in `.ci/run` on main: about
// 25 minutes warm on the 2-core machine under load, plus about 15 minutes for the cold disk image, which
// beside the other lanes would leave too little of CI's time.
const BOOT = process.env.OOTMOD_E2E_BOOT === '1';
describe.runIf(BOOT)('the boot guard with GRUB, booting real Debian kernels under QEMU (OOTMOD_E2E_BOOT=1)', () => {
  let debs: OotmodIndepDebs;
  let older: KernelInfo;
  let newer: KernelInfo;
  /** The image this run works on (a copy of the cached base). */
  let work: string;
  const mnt = path.join(IMAGE_DIR, 'mnt');
  let image: Chroot;
  const t = tools(() => image);
  let v1Deb: string;
  /** saved_entry the guard set: the older kernel's entry. */
  let guardEntry = '';

  /** Runs fn with the work image mounted (the boots need it unmounted). */
  const inImage = <T>(fn: () => Promise<T>) => withDiskMounted(work, mnt, () => image.withMounts(fn));
  const grubenv = () => readFileSync(image.path('/boot/grub/grubenv'), 'utf8');
  const savedEntry = () => /^saved_entry=(.*)$/m.exec(grubenv())?.[1];
  /** The kernel of the first menu entry of grub.cfg (what GRUB_DEFAULT=0 boots). */
  const firstEntryKernel = () => /^\s*linux\s+\S*\/vmlinuz-(\S+)/m.exec(readFileSync(image.path('/boot/grub/grub.cfg'), 'utf8'))?.[1];
  const bootStatus = async () => {
    const r = await t.sh('ootmod boot status --json');
    expect(r.code, r.all).toBe(0);
    return JSON.parse(r.out) as { mode: string; bootloader: string; intended: { kernel: string | null; ready: boolean | null }; state: { kernel: string; heldBack: string; entry: string } | null; now: { action: string } };
  };
  const setGuard = async (mode: string) => {
    const r = await t.sh(`sed -i -E 's/^#?guard = .*/guard = ${mode}/' /etc/ootmod/ootmod.conf && grep -x 'guard = ${mode}' /etc/ootmod/ootmod.conf`);
    expect(r.code, r.all).toBe(0);
  };
  let boots = 0;
  const boot = async (label: string) => {
    log(`boot: ${label}`);
    const b = await bootDisk(work, { timeoutMs: BOOT_TIMEOUT_MS });
    // The whole serial console, for a look after a failure.
    const file = path.join(IMAGE_DIR, `boot-${++boots}.log`);
    writeFileSync(file, b.log);
    log(`boot: ${label}: ${(b.durationMs / 1000).toFixed(0)} s (serial console in ${file})`);
    expect(b.timedOut, `boot timed out:\n${b.log.slice(-4000)}`).toBe(false);
    return b;
  };

  beforeAll(async () => {
    debs = await buildOotmodIndepDebs(log);
    const probe = await ensureChroot('sid', { name: PROBE_CHROOT });
    // trixie's kernel is the older one, sid's the newer: both from the host's mirror, read at run time.
    writeFileSync(probe.path('/etc/apt/sources.list.d/trixie.list'), `deb ${await hostDebianMirror()} trixie main\n`);
    newer = await currentKernel(probe);
    older = await currentKernel(probe, { suite: 'trixie' });
    log(`kernels: older ${older.kver} (${older.version}), newer ${newer.kver} (${newer.version})`);
    const [o, n] = [kernelTriple(older.version), kernelTriple(newer.version)];
    expect(o[0] * 65536 + o[1] * 256 + Math.min(o[2], 255), `${older.version} must be older than ${newer.version}`).toBeLessThan(n[0] * 65536 + n[1] * 256 + Math.min(n[2], 255));

    const base = await baseImage(older, newer);
    work = path.join(IMAGE_DIR, 'work.raw');
    const t0 = Date.now();
    await exec('cp', ['--sparse=always', base.image, work]);
    log(`boot image: work copy in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    image = new Chroot('sid', mnt, path.join(CACHE_ROOT, 'apt-archives', ROOTFS_CHROOT), log);

    const fixtures = path.join(IMAGE_DIR, 'debs');
    const files = Object.fromEntries(Object.entries(moduleSource('1.0', n)).map(([f, content]) => [`/usr/src/${PACKAGE}-1.0/${f}`, { content }]));
    v1Deb = await buildDeb({ package: `${PACKAGE}-source`, version: '1.0', description: 'ootmod boot e2e module source', files }, fixtures);
  }, 3_600_000);

  afterAll(async () => {
    // OOTMOD_E2E_KEEP_IMAGE=1 keeps the image this run worked on, to look into (it is made anew by the next run).
    if (work && process.env.OOTMOD_E2E_KEEP_IMAGE !== '1') await fs.rm(work, { force: true });
  });

  it('installing the newer kernel with apt keeps GRUB\'s default on the older one', async () => {
    await inImage(async () => {
      await copyDebs(image, debs);
      writeFileSync(image.path(`${DEBS}/${path.basename(v1Deb)}`), readFileSync(v1Deb));
      const inst = await t.apt(`install ${DEBS}/${path.basename(debs.ootmod)}`);
      expect(inst.code, inst.out.slice(-4000)).toBe(0);
      await setGuard('yes');
      const mod = await t.apt(`install ${DEBS}/${path.basename(v1Deb)}`);
      expect(mod.code, mod.out.slice(-4000)).toBe(0);
      expect((await t.status()).filter((r) => r.module === PACKAGE).map((r) => [r.kernel, r.status])).toEqual([[older.kver, 'installed']]);
      expect(firstEntryKernel()).toBe(older.kver);
      const before = await bootStatus();
      expect(before.intended).toMatchObject({ kernel: older.kver, ready: true });
      expect(before.state).toBeNull();

      const k = await t.apt(`install ${newer.imagePackage} ${newer.headersPackage}=${newer.version}`, 1_800_000);
      expect(k.code, k.out.slice(-6000)).toBe(0);
      // The build failed for the newer kernel, with the module's own #error as the reason.
      const rows = (await t.status()).filter((r) => r.module === PACKAGE);
      expect(rows.find((r) => r.kernel === newer.kver)).toMatchObject({ status: 'failed' });
      expect(rows.find((r) => r.kernel === newer.kver)?.error ?? '').toMatch(/does not build for Linux/);
      expect(rows.find((r) => r.kernel === older.kver)).toMatchObject({ status: 'installed' });
      // The end of the apt run names the kernel and what it lacks, and the guard holds GRUB's default.
      expect(k.out).toMatch(new RegExp(`the kernel that boots next, ${re(newer.kver)}, is not ready`));
      expect(k.out).toMatch(new RegExp(`boot guard keeps GRUB's default on ${re(older.kver)}`));
      await t.expectDpkgClean();

      // update-grub put the newer kernel first (GRUB_DEFAULT=0 would boot it); the guard's drop-in and
      // saved_entry point GRUB at the older kernel's entry.
      expect(firstEntryKernel()).toBe(newer.kver);
      expect(existsSync(image.path('/etc/default/grub.d/zz-ootmod-boot-guard.cfg'))).toBe(true);
      expect(readFileSync(image.path('/boot/grub/grub.cfg'), 'utf8')).toMatch(/set default="\$\{saved_entry\}"/);
      guardEntry = savedEntry() ?? '';
      expect(guardEntry).toMatch(new RegExp(`^gnulinux-advanced-[\\w-]+>gnulinux-${re(older.kver)}-advanced-[\\w-]+$`));
      const held = await bootStatus();
      expect(held.state).toMatchObject({ kernel: older.kver, heldBack: newer.kver, entry: guardEntry });
      expect(held.intended).toMatchObject({ kernel: newer.kver, ready: false });
      const kernels = await t.sh('ootmod kernels --json');
      expect(JSON.parse(kernels.out).bootsNext).toMatchObject({ kernel: older.kver, heldBack: newer.kver });
    });
  });

  /** Boots the image: GRUB starts `kver`, whose probe loads the module of `version`. */
  async function expectBooted(kver: string, version: string): Promise<void> {
    const b = await boot(`expecting ${kver}`);
    expect(b.log).toContain(`Loading Linux ${kver} ...`);
    const probe = probeLines(b);
    expect(probe, b.log.slice(-4000)).toContain(`uname ${kver}`);
    expect(probe).toContain('modprobe rc=0');
    expect(probe).toContain(`lsmod ${MODULE}`);
    expect(probe.some((l) => l.includes(`${MODULE}: version ${version} loaded`))).toBe(true);
  }

  it('GRUB boots the older kernel, with the module loaded', async () => {
    await expectBooted(older.kver, '1.0');
  });

  it('the fixed module, installed with ootmod install, gives GRUB\'s default back', async () => {
    await inImage(async () => {
      // Outside /root (0700): the build user reads the source.
      const src = `/usr/local/src/${PACKAGE}-2.0`;
      await t.sh(`mkdir -p ${src}`);
      for (const [f, content] of Object.entries(moduleSource('2.0'))) writeFileSync(image.path(`${src}/${f}`), content);
      const r = await t.sh(`ootmod install ${src} 2>&1`);
      expect(r.code, r.out.slice(-4000)).toBe(0);
      const rows = (await t.status()).filter((x) => x.module === PACKAGE && x.version === '2.0');
      expect(rows.map((x) => [x.kernel, x.status]).sort()).toEqual([[newer.kver, 'installed'], [older.kver, 'installed']].sort());
      // Released exactly: no drop-in, no saved_entry (there was none), GRUB_DEFAULT=0 again.
      expect(existsSync(image.path('/etc/default/grub.d/zz-ootmod-boot-guard.cfg'))).toBe(false);
      expect(savedEntry()).toBeUndefined();
      expect(readFileSync(image.path('/boot/grub/grub.cfg'), 'utf8')).toMatch(/set default="0"/);
      expect(firstEntryKernel()).toBe(newer.kver);
      const now = await bootStatus();
      expect(now.state).toBeNull();
      expect(now.intended).toMatchObject({ kernel: newer.kver, ready: true });
    });
  });

  it('GRUB boots the newer kernel, with the fixed module loaded', async () => {
    await expectBooted(newer.kver, '2.0');
  });

  it('guard = no leaves GRUB\'s files as they are; a dry run only prints what the guard would do', async () => {
    await inImage(async () => {
      const grubFiles = 'sha256sum /boot/grub/grub.cfg /boot/grub/grubenv /etc/default/grub; ls -la /etc/default/grub.d';
      const before = (await t.sh(grubFiles)).out;
      await setGuard('no');
      // The newer kernel loses the module: not ready, and guard = no only reports it.
      const rm = await t.sh(`ootmod remove ${PACKAGE} -k ${newer.kver} 2>&1`);
      expect(rm.code, rm.out).toBe(0);
      const kernels = JSON.parse((await t.sh('ootmod kernels --json')).out) as { kernels: { release: string; ready: boolean }[] };
      expect(kernels.kernels.find((k) => k.release === newer.kver)?.ready).toBe(false);
      const apply = await t.sh('ootmod boot apply 2>&1');
      expect(apply.code, apply.out).toBe(0);
      expect(apply.out).toMatch(/guard = no/);
      expect((await t.sh(grubFiles)).out).toBe(before);
      expect(existsSync(image.path('/var/lib/ootmod/boot-guard.json'))).toBe(false);

      await setGuard('yes');
      const dry = await t.sh('ootmod boot apply --dry-run 2>&1');
      expect(dry.code, dry.out).toBe(0);
      expect(dry.out).toMatch(new RegExp(`set GRUB_DEFAULT=saved .*saved_entry=${re(guardEntry)} \\(${re(older.kver)}\\)`));
      expect((await t.sh(grubFiles)).out).toBe(before);
      expect(existsSync(image.path('/var/lib/ootmod/boot-guard.json'))).toBe(false);
    });
  });
});
