// The boot guard with a real bootloader: a disk image with GRUB (grub-pc, BIOS) and two real Debian
// kernels (trixie's and sid's), booted under QEMU (TCG, SeaBIOS) so that GRUB's default entry chooses
// the kernel. A module that builds for the older kernel and not for the newer one, and that is needed in
// early boot (listed in initramfs-tools' modules, so it is in the initramfs: critical, and the default
// guard = auto acts): after the newer kernel comes with apt, GRUB still boots the older one, with the
// module loaded from its initramfs; once the fixed module is installed with `ootmod install` (which
// asks for the new initramfs of both kernels), GRUB boots the newer one, with the fixed module loaded
// from its initramfs. guard = no leaves GRUB's files as they are, and a dry run only prints what the
// guard would do.
//
// The image (the older kernel, its headers, ootmod's dependencies, GRUB in the boot sector) is built
// once per content (the kernel versions and the recipe below, hashed) and cached under
// <cache>/boot-image; each run works on a copy. The apt work is done in the image's filesystem mounted
// from a loop device (the booted system has no network); the boots run `init=` a small script that
// writes the kernel and the module to the second serial port, and the boot ends when its end marker
// is there.
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CACHE_ROOT, Chroot, currentKernel, ensureChroot, exec, freshChroot, hostDebianMirror, kernelGccPackage, type KernelInfo } from './lib/chroot.js';
import { buildDeb, buildOotmodIndepDebs, type OotmodIndepDebs } from './lib/debs.js';
import { bootDisk, makeDiskImage, withDiskMounted, type DiskBoot } from './lib/disk.js';
import { DEBS, copyDebs, re, tools } from './lib/system.js';

const log = (msg: string) => process.stderr.write(`[e2e] ${msg}\n`);

const IMAGE_DIR = path.join(CACHE_ROOT, 'boot-image');
/** The chroot the kernel versions are read from (sid, with trixie added), and the image tree's base. */
const PROBE_CHROOT = 'boot-e2e-sid';
const ROOTFS_CHROOT = 'boot-e2e-rootfs';
const IMAGE_BYTES = 4 * 1024 ** 3;
/** init= of every boot: writes what the test checks to the second serial port, then powers off. */
const PROBE = '/usr/local/sbin/ootmod-boot-probe';
const MODULE = 'ootmod_boot';
const PACKAGE = 'ootmod-boot';
const PROBE_END = '=== PROBE end';
/**
 * A boot under TCG took 100-110 s on the 2-core machine with a load of about 6, and 195 s with a load
 * of 14 (five test runs at once): three times that, and a boot that has not ended hangs (its console,
 * kept in boot-N.log, says where).
 */
const BOOT_TIMEOUT_MS = 600_000;

/**
 * Console lines whose arrival each boot logs: GRUB starts (its menu entry), GRUB has loaded the kernel
 * and starts loading the initramfs, the initramfs's init runs (the kernel has booted), the root is
 * mounted.
 */
const BOOT_MILESTONES = ['Booting `', 'Loading initial ramdisk', 'Loading, please wait', 'Begin: Running /scripts/init-bottom'];

/** What goes into the cached image besides the two kernels: its hash is part of the image's key. */
const IMAGE_PACKAGES = ['nodejs', 'make', 'gcc', 'binutils', 'patch', 'openssl', 'kmod', 'xz-utils', 'zstd', 'passwd', 'initramfs-tools', 'util-linux'];
/** A small initramfs (quick to make under every kernel install): what mounts an ext4 root on virtio. */
const INITRAMFS_CONF = 'MODULES=list\n';
const INITRAMFS_MODULES = ['virtio_pci', 'virtio_blk', 'ext4', 'crc32c_generic'];
/**
 * The e2e's GRUB settings (the admin's stay Debian's, GRUB_DEFAULT=0): the serial console, no menu
 * wait, the probe as init. root= last wins over GRUB's own (a loop device in the image build).
 * nowatchdog and no RCU stall reports: a TCG guest on a loaded host is slow, not stuck, and those
 * reports take minutes to print on an emulated UART. mitigations=off: page-table isolation makes every
 * kernel entry a TLB flush, which TCG pays dearly for.
 */
const GRUB_E2E_CFG = [
  'GRUB_TIMEOUT=0',
  'GRUB_TERMINAL=serial',
  'GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"',
  'GRUB_CMDLINE_LINUX_DEFAULT=""',
  `GRUB_CMDLINE_LINUX="console=ttyS0,115200 root=/dev/vda1 init=${PROBE} panic=-1 loglevel=4 nowatchdog rcupdate.rcu_cpu_stall_suppress=1 mitigations=off"`,
  '',
].join('\n');

/**
 * The probe, written at each run (not part of the cached image). It writes to /dev/ttyS1, QEMU's second
 * serial port (a file of the test, where no kernel message lands in its lines), and lets the port drain
 * (closing a tty waits for it) before the end marker; the test stops QEMU when the marker is there. The
 * power-off after it is for a run by hand.
 */
const PROBE_SCRIPT = `#!/bin/sh
# init= of ootmod's boot e2e test: which kernel GRUB started, and the module on it; then power off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sys /sys
exec 3>/dev/ttyS1
p() { echo "=== PROBE $*" >&3; }
p "uname $(uname -r)"
grep -q '^${MODULE} ' /proc/modules && p "early ${MODULE}"
modprobe ${MODULE}
p "modprobe rc=$?"
grep -q '^${MODULE} ' /proc/modules && p "lsmod ${MODULE}"
dmesg | grep '${MODULE}:' | while read -r l; do p "dmesg $l"; done
p "cmdline $(cat /proc/cmdline)"
exec 3>&-
echo "${PROBE_END}" > /dev/ttyS1
sleep 1
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

/** The lines the probe wrote (without the "=== PROBE " prefix). */
function probeLines(boot: DiskBoot): string[] {
  return boot.probe.split('\n').flatMap((l) => (l.startsWith('=== PROBE ') ? [l.slice('=== PROBE '.length).trim()] : []));
}

/** Runs fn and logs how long it took. */
async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    log(`time: ${label}: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
}

/**
 * The key of the cached image: the two kernels and a hash of everything that decides what goes into it
 * (the package list, the initramfs and GRUB settings, the code of the recipe itself), so that an image
 * is never reused for another content, and no version number needs bumping by hand.
 */
function imageKey(older: KernelInfo, newer: KernelInfo): string {
  const recipe = JSON.stringify([IMAGE_BYTES, IMAGE_PACKAGES, INITRAMFS_CONF, INITRAMFS_MODULES, GRUB_E2E_CFG, baseImage.toString(), makeDiskImage.toString()]);
  const hash = createHash('sha256').update(recipe).digest('hex').slice(0, 12);
  return `img-${older.kver}-${older.version}-${newer.kver}-${newer.version}-${hash}`.replace(/[^\w.+-]/g, '_');
}

/**
 * The cached disk image with the older kernel and GRUB, made when missing: a sid tree (ootmod's
 * dependencies, initramfs-tools with a small initramfs, the older kernel with its headers and compiler,
 * the newer kernel's .debs downloaded for the test's apt run), copied into an ext4 partition, then GRUB
 * installed into the disk's boot sector from inside it.
 */
async function baseImage(older: KernelInfo, newer: KernelInfo): Promise<BaseImage> {
  const key = imageKey(older, newer);
  const dir = path.join(IMAGE_DIR, key);
  const done = path.join(dir, 'complete.json');
  if (existsSync(done)) {
    log(`boot image: cached ${dir}`);
    return { image: path.join(dir, 'base.raw'), ...(JSON.parse(readFileSync(done, 'utf8')) as { uuid: string }) };
  }
  // Images of other contents are of no use any more (they are GBs).
  for (const e of existsSync(IMAGE_DIR) ? readdirSync(IMAGE_DIR) : []) if (/^(r\d+|img)-/.test(e) && e !== key) await fs.rm(path.join(IMAGE_DIR, e), { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  const t0 = Date.now();

  const rootfs = await freshChroot('sid', ROOTFS_CHROOT, { base: PROBE_CHROOT });
  const archives = path.join(CACHE_ROOT, 'apt-archives', ROOTFS_CHROOT);
  await timed('image: packages', () => rootfs.aptInstall(IMAGE_PACKAGES));
  writeFileSync(rootfs.path('/etc/initramfs-tools/conf.d/ootmod-e2e'), INITRAMFS_CONF);
  writeFileSync(rootfs.path('/etc/initramfs-tools/modules'), [...INITRAMFS_MODULES, ''].join('\n'));
  writeFileSync(rootfs.path('/etc/fstab'), '# the root filesystem is root= on the kernel command line\n');
  await timed('image: the older kernel', async () => {
    await rootfs.aptInstall([older.imagePackage, `${older.headersPackage}=${older.version}`]);
    await rootfs.aptInstall([await kernelGccPackage(rootfs, older.kver)]);
  });
  // The newer kernel's packages, so that the test's apt run needs no network.
  await timed('image: download the newer kernel', () => rootfs.run(['apt-get', 'install', '-y', '--no-install-recommends', '--download-only', newer.imagePackage, `${newer.headersPackage}=${newer.version}`]));

  const uuid = randomUUID();
  const tmp = path.join(dir, 'base.raw.tmp');
  log(`boot image: mkfs.ext4 -d ${rootfs.root}`);
  await timed('image: mkfs.ext4 -d', () => makeDiskImage(tmp, IMAGE_BYTES, rootfs.root, { uuid, label: 'ootmod-root' }));
  await exec('rm', ['-rf', '--one-file-system', rootfs.root]);

  await timed('image: GRUB', () => withDiskMounted(tmp, path.join(IMAGE_DIR, 'mnt'), async (loop) => {
    const image = new Chroot('sid', path.join(IMAGE_DIR, 'mnt'), archives, log);
    const run = (cmd: string[]) => image.run(cmd);
    await image.withMounts(async () => {
      await image.run(['debconf-set-selections'], { input: 'grub-pc grub-pc/install_devices_empty boolean true\ngrub-pc grub-pc/install_devices multiselect\n' });
      await run(['apt-get', 'install', '-y', '--no-install-recommends', 'grub-pc']);
      writeFileSync(image.path('/etc/default/grub.d/50-ootmod-e2e.cfg'), GRUB_E2E_CFG);
      await run(['grub-install', '--target=i386-pc', loop.disk]);
      await run(['update-grub']);
    });
    const cfg = readFileSync(image.path('/boot/grub/grub.cfg'), 'utf8');
    if (!cfg.includes(`vmlinuz-${older.kver}`)) throw new Error(`grub.cfg of the new image has no entry for ${older.kver}`);
  }));
  await fs.rename(tmp, path.join(dir, 'base.raw'));
  writeFileSync(done, `${JSON.stringify({ uuid, created: new Date().toISOString() })}\n`);
  log(`boot image: built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return { image: path.join(dir, 'base.raw'), uuid };
}

// Part of `npm run test:e2e` and .ci/run (lane A, after rust); OOTMOD_E2E_BOOT=0 leaves it out.
const BOOT = process.env.OOTMOD_E2E_BOOT !== '0';
describe.runIf(BOOT)('the boot guard with GRUB, booting real Debian kernels under QEMU', () => {
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
    const n = ++boots;
    // The whole serial console and the probe's port, kept for a look after a failure.
    const consoleFile = path.join(IMAGE_DIR, `boot-${n}.log`);
    const b = await bootDisk(work, { timeoutMs: BOOT_TIMEOUT_MS, consoleFile, probeFile: path.join(IMAGE_DIR, `boot-${n}.probe`), endMarker: PROBE_END, milestones: BOOT_MILESTONES });
    const when = Object.entries(b.milestones).map(([m, sec]) => `${sec} s ${JSON.stringify(m)}`).join(', ');
    log(`time: boot ${n} (${label}): ${(b.durationMs / 1000).toFixed(0)} s (${when}; serial console in ${consoleFile})`);
    expect(b.timedOut, `boot ${n} timed out after ${BOOT_TIMEOUT_MS / 1000} s; the end of its console (${consoleFile}):\n${b.log.slice(-4000)}`).toBe(false);
    expect(b.ended, `boot ${n}: the guest stopped before the probe's end marker; the end of its console (${consoleFile}):\n${b.log.slice(-4000)}\nprobe:\n${b.probe}`).toBe(true);
    return b;
  };

  beforeAll(async () => {
    debs = await timed('ootmod .debs', () => buildOotmodIndepDebs(log));
    const probe = await ensureChroot('sid', { name: PROBE_CHROOT });
    // trixie's kernel is the older one, sid's the newer: both from the host's mirror, read at run time.
    writeFileSync(probe.path('/etc/apt/sources.list.d/trixie.list'), `deb ${await hostDebianMirror()} trixie main\n`);
    await timed('kernel versions', async () => {
      newer = await currentKernel(probe);
      older = await currentKernel(probe, { suite: 'trixie' });
    });
    log(`kernels: older ${older.kver} (${older.version}), newer ${newer.kver} (${newer.version})`);
    const [o, n] = [kernelTriple(older.version), kernelTriple(newer.version)];
    expect(o[0] * 65536 + o[1] * 256 + Math.min(o[2], 255), `${older.version} must be older than ${newer.version}`).toBeLessThan(n[0] * 65536 + n[1] * 256 + Math.min(n[2], 255));

    const base = await timed('base image', () => baseImage(older, newer));
    work = path.join(IMAGE_DIR, 'work.raw');
    await timed('work copy', () => exec('cp', ['--sparse=always', base.image, work]));
    image = new Chroot('sid', mnt, path.join(CACHE_ROOT, 'apt-archives', ROOTFS_CHROOT), log);

    const fixtures = path.join(IMAGE_DIR, 'debs');
    const files = Object.fromEntries(Object.entries(moduleSource('1.0', n)).map(([f, content]) => [`/usr/src/${PACKAGE}-1.0/${f}`, { content }]));
    v1Deb = await buildDeb({ package: `${PACKAGE}-source`, version: '1.0', description: 'ootmod boot e2e module source', files }, fixtures);
  }, 3_600_000);

  afterAll(async () => {
    // OOTMOD_E2E_KEEP_IMAGE=1 keeps the image this run worked on, to look into (it is made anew by the next run).
    if (work && process.env.OOTMOD_E2E_KEEP_IMAGE !== '1') await fs.rm(work, { force: true });
  });

  /** The module files in a kernel's initramfs (lsinitramfs, in the image). */
  const initramfsHas = async (kver: string) => {
    const r = await t.sh(`lsinitramfs /boot/initrd.img-${kver} | grep -c '/${MODULE}\\.ko'`);
    return Number(r.out.trim() || '0') > 0;
  };

  it('installing the newer kernel with apt keeps GRUB\'s default on the older one (guard = auto: the module is in the initramfs)', async () => {
    await inImage(async () => {
      // This run's probe and console settings (not part of the cached image), and the module needed in
      // early boot: initramfs-tools puts it in the initramfs once it is installed.
      writeFileSync(image.path(PROBE), PROBE_SCRIPT, { mode: 0o755 });
      writeFileSync(image.path('/etc/default/grub.d/50-ootmod-e2e.cfg'), GRUB_E2E_CFG);
      writeFileSync(image.path('/etc/initramfs-tools/modules'), [...INITRAMFS_MODULES, MODULE, ''].join('\n'));
      await copyDebs(image, debs);
      writeFileSync(image.path(`${DEBS}/${path.basename(v1Deb)}`), readFileSync(v1Deb));
      const inst = await timed('apt: ootmod', () => t.apt(`install ${DEBS}/${path.basename(debs.ootmod)}`));
      expect(inst.code, inst.out.slice(-4000)).toBe(0);
      // The default guard.
      expect((await bootStatus()).mode).toBe('auto');
      const mod = await timed('apt: the module (1.0)', () => t.apt(`install ${DEBS}/${path.basename(v1Deb)}`));
      expect(mod.code, mod.out.slice(-4000)).toBe(0);
      expect((await t.status()).filter((r) => r.module === PACKAGE).map((r) => [r.kernel, r.status])).toEqual([[older.kver, 'installed']]);
      // The trigger asked for the older kernel's new initramfs (through initramfs-tools' trigger): the module is in it.
      expect(await initramfsHas(older.kver), mod.out.slice(-4000)).toBe(true);
      expect(firstEntryKernel()).toBe(older.kver);
      const before = await bootStatus();
      expect(before.intended).toMatchObject({ kernel: older.kver, ready: true });
      expect(before.state).toBeNull();

      const k = await timed('apt: the newer kernel', () => t.apt(`install ${newer.imagePackage} ${newer.headersPackage}=${newer.version}`, 1_800_000));
      expect(k.code, k.out.slice(-6000)).toBe(0);
      // The build failed for the newer kernel, with the module's own #error as the reason.
      const rows = (await t.status()).filter((r) => r.module === PACKAGE);
      expect(rows.find((r) => r.kernel === newer.kver)).toMatchObject({ status: 'failed' });
      expect(rows.find((r) => r.kernel === newer.kver)?.error ?? '').toMatch(/does not build for Linux/);
      expect(rows.find((r) => r.kernel === older.kver)).toMatchObject({ status: 'installed' });
      // The end of the apt run names the kernel and what it lacks, and the guard holds GRUB's default.
      expect(k.out).toMatch(new RegExp(`the kernel that boots next, ${re(newer.kver)}, is not ready`));
      expect(k.out).toMatch(new RegExp(`${re(PACKAGE)}/1\\.0 \\(critical: needed in early boot\\): failed: `));
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
      const kj = JSON.parse(kernels.out) as { bootsNext: unknown; kernels: { release: string; missing: { module: string; critical: boolean }[] }[] };
      expect(kj.bootsNext).toMatchObject({ kernel: older.kver, heldBack: newer.kver });
      expect(kj.kernels.find((x) => x.release === newer.kver)?.missing).toMatchObject([{ module: PACKAGE, critical: true }]);
    });
  });

  /** Boots the image: GRUB starts `kver`, whose initramfs loads the module of `version` in early boot. */
  async function expectBooted(kver: string, version: string): Promise<void> {
    const b = await boot(`expecting ${kver}`);
    const probe = probeLines(b);
    const context = `probe:\n${b.probe}\nthe end of the console:\n${b.log.slice(-4000)}`;
    expect(b.log, context).toContain(`Loading Linux ${kver} ...`);
    expect(probe, context).toContain(`uname ${kver}`);
    expect(probe, context).toContain(`early ${MODULE}`);
    expect(probe, context).toContain('modprobe rc=0');
    expect(probe, context).toContain(`lsmod ${MODULE}`);
    expect(probe.some((l) => l.includes(`${MODULE}: version ${version} loaded`)), context).toBe(true);
  }

  it('GRUB boots the older kernel, with the module loaded from its initramfs', async () => {
    await expectBooted(older.kver, '1.0');
  });

  it('the fixed module, installed with ootmod install, goes into both initramfs files and gives GRUB\'s default back', async () => {
    await inImage(async () => {
      // Outside /root (0700): the build user reads the source.
      const src = `/usr/local/src/${PACKAGE}-2.0`;
      await t.sh(`mkdir -p ${src}`);
      for (const [f, content] of Object.entries(moduleSource('2.0'))) writeFileSync(image.path(`${src}/${f}`), content);
      const r = await timed('ootmod install (2.0)', () => t.sh(`ootmod install ${src} 2>&1`));
      expect(r.code, r.out.slice(-4000)).toBe(0);
      const rows = (await t.status()).filter((x) => x.module === PACKAGE && x.version === '2.0');
      expect(rows.map((x) => [x.kernel, x.status]).sort()).toEqual([[newer.kver, 'installed'], [older.kver, 'installed']].sort());
      // The module is critical: the install asked for both kernels' new initramfs, which hold it.
      expect(await initramfsHas(newer.kver), r.out.slice(-4000)).toBe(true);
      expect(await initramfsHas(older.kver)).toBe(true);
      // Released exactly: no drop-in, no saved_entry (there was none), GRUB_DEFAULT=0 again.
      expect(r.out).toMatch(/boot guard: gave GRUB's default back/);
      expect(existsSync(image.path('/etc/default/grub.d/zz-ootmod-boot-guard.cfg'))).toBe(false);
      expect(savedEntry()).toBeUndefined();
      expect(readFileSync(image.path('/boot/grub/grub.cfg'), 'utf8')).toMatch(/set default="0"/);
      expect(firstEntryKernel()).toBe(newer.kver);
      const now = await bootStatus();
      expect(now.state).toBeNull();
      expect(now.intended).toMatchObject({ kernel: newer.kver, ready: true });
    });
  });

  it('GRUB boots the newer kernel, with the fixed module loaded from its initramfs', async () => {
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

      await setGuard('auto');
      const dry = await t.sh('ootmod boot apply --dry-run 2>&1');
      expect(dry.code, dry.out).toBe(0);
      expect(dry.out).toMatch(new RegExp(`set GRUB_DEFAULT=saved .*saved_entry=${re(guardEntry)} \\(${re(older.kver)}\\)`));
      expect((await t.sh(grubFiles)).out).toBe(before);
      expect(existsSync(image.path('/var/lib/ootmod/boot-guard.json'))).toBe(false);
    });
  });
});
