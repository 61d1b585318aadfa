/**
 * Disk images for the e2e tests that boot through a real bootloader: a raw disk with an MBR partition
 * table and one ext4 partition made from a chroot's tree (mkfs.ext4 -d), attached to a loop device to
 * work in it as a chroot (so GRUB's tools see a real disk), and booted under QEMU (SeaBIOS, TCG) from
 * its own boot sector: the bootloader on the disk chooses the kernel.
 *
 * Needs root (losetup, mount). No udev is assumed: a partition the kernel did not scan is added with
 * partx, and a missing device node is made from sysfs.
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync, writeSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ensureHostPackages, exec } from './chroot.js';

const SECTOR = 512;
/** The partition starts at 1 MiB: sectors 1..2047 hold GRUB's core.img (the "post-MBR gap"). */
const FIRST_SECTOR = 2048;

/** An MBR with one bootable Linux partition from 1 MiB to the end of a disk of `bytes`. */
export function mbr(bytes: number): Buffer {
  const sectors = Math.floor(bytes / SECTOR);
  if (sectors - FIRST_SECTOR <= 0 || sectors > 0xffffffff) throw new Error(`mbr: a disk of ${bytes} bytes does not fit one MBR partition`);
  const b = Buffer.alloc(SECTOR);
  const entry = 446;
  b[entry] = 0x80; // bootable
  b.set([0xfe, 0xff, 0xff], entry + 1); // CHS start: "use LBA"
  b[entry + 4] = 0x83; // Linux
  b.set([0xfe, 0xff, 0xff], entry + 5); // CHS end: "use LBA"
  b.writeUInt32LE(FIRST_SECTOR, entry + 8);
  b.writeUInt32LE(sectors - FIRST_SECTOR, entry + 12);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

/** A loop device holding a disk image, with its first partition's device. */
export interface LoopDisk {
  disk: string;
  partition: string;
  /** A node this code made (no devtmpfs/udev made it): removed on detach. */
  madeNode?: string;
}

export async function attachDisk(image: string): Promise<LoopDisk> {
  const disk = (await exec('losetup', ['--find', '--show', '--partscan', image])).stdout.trim();
  const name = path.basename(disk);
  const sysPart = `/sys/block/${name}/${name}p1`;
  try {
    // The kernel may not have scanned the table yet (or at all, in some containers): ask with partx.
    for (let i = 0; i < 20 && !existsSync(sysPart); i++) {
      if (i === 5) await exec('partx', ['--add', disk], { reject: false });
      await new Promise((r) => setTimeout(r, 200));
    }
    if (!existsSync(sysPart)) throw new Error(`${disk}: no partition 1 after losetup --partscan and partx --add`);
    const partition = `${disk}p1`;
    let madeNode: string | undefined;
    for (let i = 0; i < 10 && !existsSync(partition); i++) await new Promise((r) => setTimeout(r, 200));
    if (!existsSync(partition)) {
      const [major, minor] = readFileSync(`${sysPart}/dev`, 'utf8').trim().split(':');
      await exec('mknod', ['-m', '600', partition, 'b', major!, minor!]);
      madeNode = partition;
    }
    return { disk, partition, madeNode };
  } catch (e) {
    await exec('losetup', ['--detach', disk], { reject: false });
    throw e;
  }
}

/**
 * Detaches the loop device and waits until the kernel has let go of the image (a detach can complete
 * after losetup returns), so that QEMU, which reads the file, sees everything the loop device wrote.
 */
export async function detachDisk(loop: LoopDisk): Promise<void> {
  const backing = `/sys/block/${path.basename(loop.disk)}/loop/backing_file`;
  await exec('losetup', ['--detach', loop.disk], { reject: false });
  for (let i = 0; i < 100 && existsSync(backing); i++) await new Promise((r) => setTimeout(r, 200));
  if (loop.madeNode) await fs.rm(loop.madeNode, { force: true });
}

/**
 * Makes `image` (sparse, `bytes` long): an MBR, and partition 1 as ext4 with the given UUID and label
 * holding a copy of the directory `tree` (which must have nothing mounted in it).
 */
export async function makeDiskImage(image: string, bytes: number, tree: string, filesystem: { uuid: string; label: string }): Promise<void> {
  await fs.rm(image, { force: true });
  await exec('truncate', ['-s', String(bytes), image]);
  const fd = openSync(image, 'r+');
  try {
    writeSync(fd, mbr(bytes), 0, SECTOR, 0);
  } finally {
    closeSync(fd);
  }
  const loop = await attachDisk(image);
  try {
    await exec('mkfs.ext4', ['-q', '-F', '-L', filesystem.label, '-U', filesystem.uuid, '-d', tree, loop.partition]);
  } finally {
    await detachDisk(loop);
  }
}

/**
 * Runs fn with the image's partition mounted at `mnt` (made if missing); unmounts and detaches after,
 * also when fn throws. Whatever fn mounted below `mnt` must be unmounted when it returns.
 */
export async function withDiskMounted<T>(image: string, mnt: string, fn: (loop: LoopDisk) => Promise<T>): Promise<T> {
  await fs.mkdir(mnt, { recursive: true });
  const loop = await attachDisk(image);
  try {
    await exec('mount', [loop.partition, mnt]);
    try {
      return await fn(loop);
    } finally {
      await exec('umount', [mnt]);
    }
  } finally {
    await detachDisk(loop);
  }
}

export interface DiskBoot {
  /** Everything the first serial port (the console) printed: SeaBIOS, GRUB, the kernel, init; \n line ends. */
  log: string;
  /** What the guest wrote to the second serial port (/dev/ttyS1), the channel of the test's probe. */
  probe: string;
  /** The probe's end marker came: its output is whole (QEMU was then stopped, not waited for). */
  ended: boolean;
  timedOut: boolean;
  durationMs: number;
  /** Seconds from QEMU's start to the first console line holding each of the asked-for texts (polled twice a second). */
  milestones: Record<string, number>;
}

/**
 * Boots a raw disk image under qemu-system-x86_64 (TCG, SeaBIOS) from its boot sector. The console
 * (the first serial port) goes to `consoleFile` as it comes; the second serial port, a channel of its
 * own for what the test checks (no kernel message lands in the middle of its lines), to `probeFile`.
 * The boot ends when the probe file has `endMarker` (QEMU is stopped at once: the test does not wait
 * for the guest's power-off), when the guest powers off or panics (`-no-reboot`), or after `timeoutMs`. `-snapshot`: the image is not written. No network device:
 * SeaBIOS has no iPXE ROM to run.
 */
export async function bootDisk(image: string, opts: { timeoutMs: number; consoleFile: string; probeFile: string; endMarker: string; milestones?: string[]; memoryMb?: number }): Promise<DiskBoot> {
  await ensureHostPackages(['qemu-system-x86']);
  await fs.rm(opts.probeFile, { force: true });
  const t0 = Date.now();
  const args = [
    ...['-accel', 'tcg', '-m', String(opts.memoryMb ?? 1024), '-smp', '1', '-no-reboot', '-snapshot', '-nic', 'none'],
    ...['-display', 'none', '-monitor', 'none', '-serial', `file:${opts.consoleFile}`, '-serial', `file:${opts.probeFile}`],
    ...['-drive', `file=${image},format=raw,if=virtio`],
  ];
  const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => resolve(code));
  });
  const probeText = () => (existsSync(opts.probeFile) ? readFileSync(opts.probeFile, 'utf8') : '');
  let ended = false;
  let timedOut = false;
  let code: number | null | undefined;
  const milestones: Record<string, number> = {};
  const consoleText = () => (existsSync(opts.consoleFile) ? readFileSync(opts.consoleFile, 'utf8') : '');
  for (;;) {
    code = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 500))]);
    if (code !== undefined) break;
    const waiting = (opts.milestones ?? []).filter((m) => !(m in milestones));
    if (waiting.length) {
      const text = consoleText();
      for (const m of waiting) if (text.includes(m)) milestones[m] = Math.round((Date.now() - t0) / 1000);
    }
    if (probeText().includes(opts.endMarker)) ended = true;
    else if (Date.now() - t0 > opts.timeoutMs) timedOut = true;
    if (ended || timedOut) {
      child.kill('SIGTERM');
      const killed = await Promise.race([exited, new Promise<'late'>((r) => setTimeout(() => r('late'), 10_000))]);
      if (killed === 'late') child.kill('SIGKILL');
      await exited;
      break;
    }
  }
  const log = consoleText().replace(/\r\n?/g, '\n');
  const probe = probeText().replace(/\r\n?/g, '\n');
  ended ||= probe.includes(opts.endMarker);
  if (!ended && !timedOut && code !== 0) throw new Error(`qemu-system-x86_64 exited with ${code}: ${stderr}\n${log.slice(-4000)}`);
  return { log, probe, ended, timedOut, durationMs: Date.now() - t0, milestones };
}
