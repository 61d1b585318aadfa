/**
 * Disk images for the e2e tests that boot through a real bootloader: a raw disk with an MBR partition
 * table and one ext4 partition made from a chroot's tree (mkfs.ext4 -d), attached to a loop device to
 * work in it as a chroot (so GRUB's tools see a real disk), and booted under QEMU (SeaBIOS, TCG) from
 * its own boot sector: the bootloader on the disk chooses the kernel.
 *
 * Needs root (losetup, mount). No udev is assumed: a partition the kernel did not scan is added with
 * partx, and a missing device node is made from sysfs.
 */
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
  await exec('sync', [image]);
}

export interface DiskBoot {
  /** Everything the serial console printed (SeaBIOS, GRUB, the kernel, init), with \n line ends. */
  log: string;
  timedOut: boolean;
  durationMs: number;
}

/**
 * Boots a raw disk image under qemu-system-x86_64 (TCG, SeaBIOS) from its boot sector, with the serial
 * port on stdout, until the guest powers off (or `timeoutMs`). `-snapshot`: the image is not written.
 */
export async function bootDisk(image: string, opts: { timeoutMs: number; memoryMb?: number }): Promise<DiskBoot> {
  await ensureHostPackages(['qemu-system-x86']);
  const t0 = Date.now();
  const r = await exec(
    'qemu-system-x86_64',
    [
      ...['-accel', 'tcg', '-m', String(opts.memoryMb ?? 1024), '-smp', '1', '-nographic', '-no-reboot', '-snapshot'],
      ...['-drive', `file=${image},format=raw,if=virtio`],
    ],
    { stdin: 'ignore', timeout: opts.timeoutMs, reject: false },
  );
  const log = r.stdout.replace(/\r\n?/g, '\n');
  if (!r.timedOut && r.exitCode !== 0) throw new Error(`qemu-system-x86_64 exited with ${r.exitCode}: ${r.stderr}\n${log}`);
  return { log, timedOut: r.timedOut, durationMs: Date.now() - t0 };
}
