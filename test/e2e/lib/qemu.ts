/**
 * Boots a kernel under QEMU (TCG; the test machines have no KVM) with a throw-away busybox
 * initramfs that loads the given modules, and returns what the serial console printed.
 *
 * The initramfs contains no other modules, so each module must be self-contained apart from
 * symbols built into the kernel, or be listed after the modules it depends on.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ensureHostPackages, exec } from './chroot.js';

export interface BootModule {
  /** Host path of the .ko; .ko.xz, .ko.zst and .ko.gz are decompressed first. */
  path: string;
  /** insmod parameters, one `name=value` each. */
  params?: string[];
}

export interface BootOptions {
  /** Host path of the kernel image. */
  vmlinuz: string;
  /** Loaded in this order, unloaded in reverse order. */
  modules: BootModule[];
  /** Shell commands run by init after the insmods and before the rmmods. */
  script?: string[];
  timeoutMs: number;
  /**
   * The guest: x86_64 (default, qemu-system-x86_64) or aarch64 (qemu-system-aarch64 -M virt -cpu max).
   * A foreign guest needs its own busybox (e.g. from busybox-static:arm64).
   */
  machine?: 'x86_64' | 'aarch64';
  /** Host path of the guest's static busybox (default: the host's /bin/busybox). */
  busybox?: string;
  /**
   * More files for the initramfs: path in the guest -> host path (symlinks followed), e.g. programs
   * and the shared libraries they need. Directories are made; the mode is kept.
   */
  files?: Record<string, string>;
  /** Guest memory in MiB (default 1024). */
  memoryMb?: number;
}

interface Machine {
  qemu: string;
  pkg: string;
  args: string[];
  console: string;
}

const MACHINES: Record<'x86_64' | 'aarch64', Machine> = {
  x86_64: { qemu: 'qemu-system-x86_64', pkg: 'qemu-system-x86', args: [], console: 'ttyS0' },
  aarch64: { qemu: 'qemu-system-aarch64', pkg: 'qemu-system-arm', args: ['-M', 'virt', '-cpu', 'max'], console: 'ttyAMA0' },
};

export interface BootResult {
  /** Everything printed on the serial console (kernel and init), with \n line ends. */
  log: string;
  /** init reached its end (`=== DONE`). */
  done: boolean;
  timedOut: boolean;
  /** insmod exit status per module name; modules whose insmod failed are not rmmod'ed. */
  insmod: Record<string, number>;
  rmmod: Record<string, number>;
  durationMs: number;
}

const DECOMPRESSORS: Record<string, { pkg: string; cmd: string }> = {
  '.xz': { pkg: 'xz-utils', cmd: 'xz' },
  '.zst': { pkg: 'zstd', cmd: 'zstd' },
  '.gz': { pkg: 'gzip', cmd: 'gzip' },
};

/** The kernel's name for a module file: basename without .ko[.ext], with - turned into _. */
export function moduleName(file: string): string {
  return path.basename(file).replace(/\.ko(\.\w+)?$/, '').replace(/-/g, '_');
}

const shQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function initScript(names: string[], modules: BootModule[], script: string[]): string {
  const lines = [
    '#!/bin/busybox sh',
    '/bin/busybox --install -s /bin',
    'mount -t proc proc /proc',
    'mount -t sysfs sys /sys',
    'mount -t devtmpfs dev /dev',
    'echo "=== INIT kernel $(uname -r)"',
  ];
  modules.forEach((m, i) => {
    const params = (m.params ?? []).map(shQuote).join(' ');
    lines.push(
      `echo "=== insmod ${names[i]}"`,
      `insmod /mods/${names[i]}.ko ${params}`,
      `ins_${i}=$?`,
      `echo "=== insmod ${names[i]} rc=$ins_${i}"`,
    );
  });
  for (const cmd of script) lines.push(`echo ${shQuote(`=== run: ${cmd}`)}`, cmd, 'echo "=== run rc=$?"');
  for (let i = modules.length - 1; i >= 0; i--) {
    lines.push(`if [ "$ins_${i}" = 0 ]; then rmmod ${names[i]}; echo "=== rmmod ${names[i]} rc=$?"; fi`);
  }
  lines.push('echo "=== DONE"', 'poweroff -f', '');
  return lines.join('\n');
}

/** Builds a gzip'ed newc initramfs in `dir` and returns its path. */
async function buildInitramfs(dir: string, names: string[], opts: BootOptions): Promise<string> {
  const root = path.join(dir, 'root');
  for (const d of ['bin', 'mods', 'dev', 'proc', 'sys']) await fs.mkdir(path.join(root, d), { recursive: true });
  await fs.copyFile(opts.busybox ?? '/bin/busybox', path.join(root, 'bin/busybox'));
  await fs.chmod(path.join(root, 'bin/busybox'), 0o755);
  // init's stdin/stdout/stderr are opened on /dev/console before devtmpfs is mounted.
  await exec('mknod', ['-m', '600', path.join(root, 'dev/console'), 'c', '5', '1']);

  for (const [i, m] of opts.modules.entries()) {
    const dest = path.join(root, 'mods', `${names[i]}.ko`);
    const decompressor = DECOMPRESSORS[path.extname(m.path)];
    if (decompressor) {
      await ensureHostPackages([decompressor.pkg]);
      await exec(decompressor.cmd, ['-dc', m.path], { stdout: { file: dest } });
    } else {
      await fs.copyFile(m.path, dest);
    }
  }
  for (const [inGuest, from] of Object.entries(opts.files ?? {})) {
    if (!path.isAbsolute(inGuest) || inGuest.split('/').includes('..')) throw new Error(`initramfs file ${inGuest}: not an absolute path without '..'`);
    const dest = path.join(root, inGuest);
    await fs.mkdir(path.dirname(dest), { recursive: true });
    await fs.copyFile(from, dest);
    await fs.chmod(dest, (await fs.stat(from)).mode & 0o7777);
  }
  await fs.writeFile(path.join(root, 'init'), initScript(names, opts.modules, opts.script ?? []), { mode: 0o755 });

  const image = path.join(dir, 'initramfs.cpio.gz');
  await exec('bash', [
    '-c',
    'set -o pipefail; cd "$1" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1 > "$2"',
    'bash',
    root,
    image,
  ]);
  return image;
}

function markers(log: string, what: 'insmod' | 'rmmod'): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of log.matchAll(new RegExp(`=== ${what} (\\S+) rc=(\\d+)`, 'g'))) out[m[1]] = Number(m[2]);
  return out;
}

/** Boots `vmlinuz` with an initramfs that insmods `modules`, runs `script`, rmmods and powers off. */
export async function bootWithModules(opts: BootOptions): Promise<BootResult> {
  const machine = MACHINES[opts.machine ?? 'x86_64'];
  await ensureHostPackages([machine.pkg, ...(opts.busybox ? [] : ['busybox-static']), 'cpio']);
  const names = opts.modules.map((m) => moduleName(m.path));
  if (new Set(names).size !== names.length) throw new Error(`duplicate module names: ${names.join(' ')}`);

  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ootmod-qemu-'));
  try {
    const initrd = await buildInitramfs(dir, names, opts);
    const t0 = Date.now();
    // panic=-1 reboots at once on a panic (e.g. init dying), and -no-reboot turns that into an exit.
    const r = await exec(
      machine.qemu,
      [
        ...machine.args,
        ...['-accel', 'tcg', '-m', String(opts.memoryMb ?? 1024), '-smp', '1', '-nographic', '-no-reboot'],
        ...['-kernel', opts.vmlinuz, '-initrd', initrd],
        ...['-append', `console=${machine.console} panic=-1 loglevel=7`],
      ],
      { stdin: 'ignore', timeout: opts.timeoutMs, reject: false },
    );
    const log = r.stdout.replace(/\r\n?/g, '\n');
    if (!r.timedOut && r.exitCode !== 0) {
      throw new Error(`${machine.qemu} exited with ${r.exitCode}: ${r.stderr}\n${log}`);
    }
    return {
      log,
      done: /^=== DONE$/m.test(log),
      timedOut: r.timedOut,
      insmod: markers(log, 'insmod'),
      rmmod: markers(log, 'rmmod'),
      durationMs: Date.now() - t0,
    };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
