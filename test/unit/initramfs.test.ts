// The initramfs check of kernel-upgrade readiness: which tool makes this machine's initramfs, the
// modules a real initramfs holds (made here with cpio: an early uncompressed archive and a compressed
// main one, listed by the real lsinitramfs / lsinitrd when installed), the cache keyed by the file,
// and `ootmod kernels` / `ootmod hook initramfs` on a root whose new kernel's initramfs lacks a
// critical module.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { requestInitramfs } from '../../src/execute/initramfs.js';
import { composePlan } from '../../src/plan/compose.js';
import { cachedInitramfsModules, initramfsGenerator, initramfsModules, listingTools } from '../../src/kernel/initramfs.js';
import { findOnPath } from '../../src/system/programs.js';
import { createLayout, type Layout } from '../../src/system/layout.js';
import { tempDir } from '../support/roots.js';

const OLD = '6.1.0-30-amd64';
const NEW = '6.1.0-31-amd64';
const OOTMOD = path.resolve(__dirname, '../../dist/ootmod');

/**
 * Writes an initramfs as initramfs-tools and dracut lay it out: an uncompressed early cpio (CPU
 * microcode), then the main cpio compressed with `compress`, holding these module files.
 */
function makeInitrd(file: string, kver: string, modules: string[], compress: 'zstd' | 'xz' | 'gzip' | 'none' = 'zstd'): void {
  const work = tempDir('ootmod-initrd-');
  mkdirSync(path.join(work, 'early/kernel/x86/microcode'), { recursive: true });
  writeFileSync(path.join(work, 'early/kernel/x86/microcode/GenuineIntel.bin'), 'microcode');
  for (const m of modules) {
    const f = path.join(work, 'main/usr/lib/modules', kver, m);
    mkdirSync(path.dirname(f), { recursive: true });
    writeFileSync(f, `module ${m}`);
  }
  mkdirSync(path.join(work, 'main/usr/bin'), { recursive: true });
  writeFileSync(path.join(work, 'main/usr/bin/zfs'), '');
  const cpio = (dir: string) => execFileSync('sh', ['-c', 'find . | LC_ALL=C sort | cpio -o -H newc --quiet'], { cwd: path.join(work, dir) });
  const main = cpio('main');
  const packed = compress === 'none' ? main : execFileSync(compress, compress === 'zstd' ? ['-q', '-c'] : ['-c'], { input: main });
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, Buffer.concat([compress === 'none' ? Buffer.alloc(0) : cpio('early'), packed]));
}

/** A root whose initramfs is made by `generator` (its kernel hook is there). */
function rootWith(generator?: 'initramfs-tools' | 'dracut'): Layout {
  const root = tempDir('ootmod-initramfs-');
  const hook = generator && path.join(root, 'etc/kernel/postinst.d', generator);
  if (hook) {
    mkdirSync(path.dirname(hook), { recursive: true });
    writeFileSync(hook, '#!/bin/sh\n', { mode: 0o755 });
  }
  mkdirSync(path.join(root, 'boot'), { recursive: true });
  return createLayout(root);
}

const MODULES = ['updates/ootmod/zfs.ko.zst', 'updates/ootmod/spl.ko.xz', 'kernel/fs/ext4/ext4.ko', 'updates/dkms/nvidia-drm.ko.gz'];
const NAMES = ['ext4', 'nvidia_drm', 'spl', 'zfs'];

describe('which tool makes the initramfs', () => {
  it('is told by the kernel hook of initramfs-tools or dracut; their -core packages alone make none', () => {
    expect(initramfsGenerator(rootWith('initramfs-tools'))).toBe('initramfs-tools');
    expect(initramfsGenerator(rootWith('dracut'))).toBe('dracut');
    const coreOnly = rootWith();
    mkdirSync(coreOnly.at('/usr/bin'), { recursive: true });
    writeFileSync(coreOnly.at('/usr/bin/dracut'), '', { mode: 0o755 });
    expect(initramfsGenerator(coreOnly)).toBeUndefined();
    // Newer dracut packages ship an update-initramfs too: their kernel hook tells.
    const sidDracut = rootWith('dracut');
    mkdirSync(sidDracut.at('/usr/sbin'), { recursive: true });
    writeFileSync(sidDracut.at('/usr/sbin/update-initramfs'), '', { mode: 0o755 });
    expect(initramfsGenerator(sidDracut)).toBe('dracut');
    expect(listingTools('dracut')).toEqual(['lsinitrd', 'lsinitramfs']);
    expect(listingTools('initramfs-tools')).toEqual(['lsinitramfs', 'lsinitrd']);
    expect(listingTools(undefined)).toEqual(['lsinitramfs', 'lsinitrd']);
  });
});

describe.skipIf(!findOnPath('cpio'))('the modules in a real initramfs', () => {
  for (const [tool, generator] of [['lsinitramfs', 'initramfs-tools'], ['lsinitrd', 'dracut']] as const) {
    it.skipIf(!findOnPath(tool))(`${tool} lists .ko, .ko.xz, .ko.zst and .ko.gz names, after an early cpio, from zstd, xz and gzip images`, async () => {
      for (const compress of ['zstd', 'xz', 'gzip'] as const) {
        const layout = rootWith(generator);
        makeInitrd(layout.initramfs(NEW), NEW, MODULES, compress);
        const listing = await initramfsModules(layout, NEW, { save: true });
        expect([...(listing.modules ?? [])].sort(), `${tool} ${compress}: ${listing.why}`).toEqual(NAMES);
        const cache = JSON.parse(readFileSync(layout.at('/var/lib/ootmod/cache/initramfs.json'), 'utf8')) as { files: Record<string, { tool: string }> };
        expect(cache.files[layout.initramfs(NEW)]!.tool).toBe(tool);
      }
    });
  }
});

describe('the listing cache', () => {
  /** A stand-in lister on PATH that logs its calls and lists the module names written in the file. */
  function fakeLister(name: 'lsinitramfs' | 'lsinitrd'): { bin: string; calls: () => string[] } {
    const bin = tempDir('ootmod-lister-');
    const log = path.join(bin, 'calls');
    writeFileSync(path.join(bin, name), `#!/bin/sh\necho "$1" >> ${log}\ncat "$1"\n`, { mode: 0o755 });
    return { bin, calls: () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []) };
  }

  async function withPath<T>(bin: string, fn: () => Promise<T>): Promise<T> {
    const saved = process.env.PATH;
    process.env.PATH = `${bin}:${saved}`;
    try {
      return await fn();
    } finally {
      process.env.PATH = saved;
    }
  }

  it('lists a file once while its size, mtime and inode stay, again when it is rebuilt, and keeps nothing without save', async () => {
    const layout = rootWith('initramfs-tools');
    const file = layout.initramfs(NEW);
    writeFileSync(file, `usr/lib/modules/${NEW}/updates/ootmod/zfs.ko.xz\n`);
    const lister = fakeLister('lsinitramfs');
    await withPath(lister.bin, async () => {
      expect(cachedInitramfsModules(layout, NEW)).toBeUndefined();
      // Without save (a dry run, a user other than root): listed, nothing kept.
      expect([...(await initramfsModules(layout, NEW)).modules!]).toEqual(['zfs']);
      expect(existsSync(layout.at('/var/lib/ootmod/cache/initramfs.json'))).toBe(false);
      expect((await initramfsModules(layout, NEW, { save: true })).cached).toBeUndefined();
      expect(await initramfsModules(layout, NEW, { save: true })).toMatchObject({ cached: true, file });
      expect(lister.calls()).toEqual([file, file]);
      expect([...cachedInitramfsModules(layout, NEW)!.modules!]).toEqual(['zfs']);
      // Rebuilt (by initramfs-tools' trigger, dracut, the admin): listed again.
      rmSync(file);
      writeFileSync(file, `usr/lib/modules/${NEW}/kernel/fs/ext4/ext4.ko\nusr/lib/modules/${NEW}/updates/ootmod/zfs.ko.zst\n`);
      expect(cachedInitramfsModules(layout, NEW)).toBeUndefined();
      expect([...(await initramfsModules(layout, NEW, { save: true })).modules!].sort()).toEqual(['ext4', 'zfs']);
      expect(lister.calls()).toHaveLength(3);
    });
  });

  it('says why when the kernel has no initramfs or no listing tool is installed, and takes dracut\'s name', async () => {
    const layout = rootWith('dracut');
    expect(await initramfsModules(layout, NEW)).toEqual({ why: `${NEW} has no initramfs` });
    writeFileSync(path.join(layout.bootDir, `initramfs-${NEW}.img`), `usr/lib/modules/${NEW}/extra/nvidia.ko\n`);
    const lister = fakeLister('lsinitrd');
    expect([...(await withPath(lister.bin, () => initramfsModules(layout, NEW))).modules!]).toEqual(['nvidia']);
    const saved = process.env.PATH;
    process.env.PATH = tempDir('ootmod-empty-path-');
    try {
      expect((await initramfsModules(layout, NEW)).why).toBe('neither lsinitramfs (initramfs-tools-core) nor lsinitrd (dracut-core) is installed');
    } finally {
      process.env.PATH = saved;
    }
  });
});

describe('asking for a new initramfs', () => {
  it('runs dracut --force on the kernel\'s file where dracut makes it (never through a trigger), update-initramfs -u -k elsewhere, both marked as ootmod\'s', async () => {
    const bin = tempDir('ootmod-generators-');
    const log = path.join(bin, 'calls');
    for (const tool of ['dracut', 'update-initramfs']) writeFileSync(path.join(bin, tool), `#!/bin/sh\necho "${tool} $* OOTMOD_INITRAMFS_JOB=$OOTMOD_INITRAMFS_JOB" >> ${log}\n`, { mode: 0o755 });
    const layout = rootWith('dracut');
    writeFileSync(layout.initramfs(NEW), '');
    const saved = process.env.PATH;
    process.env.PATH = `${bin}:${saved}`;
    try {
      expect(await requestInitramfs(layout, NEW, { viaTrigger: false, tool: 'dracut' })).toBeUndefined();
      expect(await requestInitramfs(layout, NEW, { viaTrigger: false, tool: 'update-initramfs' })).toBeUndefined();
    } finally {
      process.env.PATH = saved;
    }
    expect(readFileSync(log, 'utf8')).toBe(`dracut -q --force ${layout.initramfs(NEW)} ${NEW} OOTMOD_INITRAMFS_JOB=1\nupdate-initramfs -u -k ${NEW} OOTMOD_INITRAMFS_JOB=1\n`);
    // The plan: with dracut no kernel goes through initramfs-tools' trigger, inside dpkg or not.
    const removal = { record: { module: 'zfs', version: '1.0', kernel: NEW, arch: 'x86_64', status: 'installed' as const, inputsKey: '', built: [], installed: [], updatedAt: '' }, forget: false, reason: 'x' };
    const plan = composePlan({ removals: [removal], depmodKernels: new Set([NEW]), initramfs: { kernels: new Set([NEW]), inDpkg: true, tool: 'dracut' } });
    expect(plan.jobs.find((j) => j.kind === 'initramfs')).toMatchObject({ kernel: NEW, viaTrigger: false, tool: 'dracut' });
  });
});

describe.skipIf(!existsSync(OOTMOD) || !findOnPath('cpio'))('ootmod and a new kernel\'s initramfs', () => {
  /**
   * OLD and NEW with zfs installed for both (a fake system under --root, so no installed kernel runs:
   * every kernel's initramfs tells what early boot needs). OLD's initramfs holds zfs; NEW's does not.
   * With the real lsinitramfs when installed (zstd images), else a stand-in that lists a plain cpio.
   */
  function fakeSystem(): { root: string; env: NodeJS.ProcessEnv; rebuild: (k: string, modules: string[]) => void } {
    const layout = rootWith('initramfs-tools');
    const root = layout.root;
    const records: Record<string, unknown> = {};
    for (const k of [NEW, OLD]) {
      const ko = path.join(root, 'usr/lib/modules', k, 'updates/ootmod/zfs.ko');
      mkdirSync(path.dirname(ko), { recursive: true });
      writeFileSync(ko, '');
      writeFileSync(path.join(root, 'boot', `vmlinuz-${k}`), '');
      records[`zfs/2.2.7/${k}`] = { module: 'zfs', version: '2.2.7', kernel: k, arch: 'x86_64', status: 'installed', inputsKey: 'k', built: [], installed: [{ module: 'zfs', path: ko }], updatedAt: 'x' };
    }
    mkdirSync(path.join(root, 'var/lib/ootmod'), { recursive: true });
    writeFileSync(path.join(root, 'var/lib/ootmod/state.json'), JSON.stringify({ format: 1, records }));
    const real = Boolean(findOnPath('lsinitramfs'));
    const bin = tempDir('ootmod-lister-');
    if (!real) writeFileSync(path.join(bin, 'lsinitramfs'), '#!/bin/sh\ncpio -t --quiet < "$1"\n', { mode: 0o755 });
    const rebuild = (k: string, modules: string[]) => {
      rmSync(layout.initramfs(k), { force: true });
      makeInitrd(layout.initramfs(k), k, modules, real ? 'zstd' : 'none');
    };
    rebuild(OLD, ['updates/ootmod/zfs.ko', 'kernel/fs/ext4/ext4.ko']);
    rebuild(NEW, ['kernel/fs/ext4/ext4.ko']);
    return { root, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, rebuild };
  }
  interface KernelsJson {
    kernels: { release: string; ready: boolean; missing: { module: string; why: string; critical: boolean }[] }[];
    bootsNext: { kernel: string; ready: boolean };
  }

  it('a critical module missing from the new kernel\'s initramfs: not ready, with the reason, until the initramfs has it', () => {
    const { root, env, rebuild } = fakeSystem();
    const cli = (...args: string[]) => spawnSync(OOTMOD, ['--root', root, ...args], { encoding: 'utf8', env });
    const kernels = () => JSON.parse(cli('kernels', '--json').stdout) as KernelsJson;
    const j = kernels();
    expect(j.kernels.find((k) => k.release === NEW)).toMatchObject({ ready: false, missing: [{ module: 'zfs', why: `not in the initramfs of ${NEW} (update-initramfs -u -k ${NEW})`, critical: true }] });
    expect(j.kernels.find((k) => k.release === OLD)!.ready).toBe(true);
    expect(j.bootsNext).toMatchObject({ kernel: NEW, ready: false });
    // status lists no initramfs, but takes the listings cached for unchanged files.
    expect(cli('status').stderr.split('\n')[0]).toBe(`ootmod: the next boot's kernel ${NEW} is not ready: zfs (not in the initramfs of ${NEW} (update-initramfs -u -k ${NEW})): run ootmod kernels`);
    // The jobs of a plan (here boot apply's notice) take a quick look first, which counts the cached listing.
    const apply = cli('boot', 'apply');
    expect(apply.status, apply.stderr).toBe(0);
    expect(readFileSync(path.join(root, 'run/ootmod/next-boot-not-ready'), 'utf8')).toContain(`  zfs/2.2.7 (critical: needed in early boot): not in the initramfs of ${NEW}`);
    rmSync(path.join(root, 'run/ootmod/next-boot-not-ready'));
    const text = cli('kernels').stdout;
    expect(text).toContain(`zfs (not in the initramfs of ${NEW} (update-initramfs -u -k ${NEW}))`);
    // The listings are cached by file: both initramfs files are in it.
    const cache = JSON.parse(readFileSync(path.join(root, 'var/lib/ootmod/cache/initramfs.json'), 'utf8')) as { files: Record<string, unknown> };
    expect(Object.keys(cache.files).sort()).toEqual([OLD, NEW].map((k) => path.join(root, 'boot', `initrd.img-${k}`)).sort());

    // initramfs-tools' post-update hook after its own trigger rebuilt NEW's initramfs, still without zfs:
    // the end-of-apt block and the notice. One that ootmod's own job asked for is left to that run.
    const skipped = spawnSync(OOTMOD, ['--root', root, 'hook', 'initramfs', NEW, `/boot/initrd.img-${NEW}`], { encoding: 'utf8', env: { ...env, OOTMOD_INITRAMFS_JOB: '1' } });
    expect(skipped.status).toBe(0);
    // Inside dpkg with ootmod's trigger still to run (a kernel's postinst: initramfs-tools' kernel hook
    // runs before ootmod's; or a queued kernel): left to the trigger.
    // (initramfs-tools' and dracut's triggers run update-initramfs with DPKG_MAINTSCRIPT_PACKAGE='', as dpkg's
    // DPKG_RUNNING_VERSION stays.)
    const inDpkg = (pkg: string) => spawnSync(OOTMOD, ['--root', root, 'hook', 'initramfs', NEW, `/boot/initrd.img-${NEW}`], { encoding: 'utf8', env: { ...env, DPKG_MAINTSCRIPT_PACKAGE: pkg, DPKG_RUNNING_VERSION: '1.22.21' } });
    expect(inDpkg(`linux-image-${NEW}`).status).toBe(0);
    mkdirSync(path.join(root, 'var/lib/ootmod/queue'), { recursive: true });
    writeFileSync(path.join(root, 'var/lib/ootmod/queue', NEW), 'postinst\n');
    expect(inDpkg('').status).toBe(0);
    expect(existsSync(path.join(root, 'run/ootmod/next-boot-not-ready'))).toBe(false);
    rmSync(path.join(root, 'var/lib/ootmod/queue', NEW));
    // The update-initramfs trigger, after ootmod's: checked.
    expect(inDpkg('').stderr).toContain(`ootmod: the kernel that boots next, ${NEW}, is not ready`);
    rmSync(path.join(root, 'run/ootmod/next-boot-not-ready'));
    const hook = cli('hook', 'initramfs', NEW, `/boot/initrd.img-${NEW}`);
    expect(hook.status, hook.stderr).toBe(0);
    expect(hook.stderr).toContain(`ootmod: the kernel that boots next, ${NEW}, is not ready`);
    expect(hook.stderr).toContain(`  zfs/2.2.7 (critical: needed in early boot): not in the initramfs of ${NEW}`);
    expect(readFileSync(path.join(root, 'run/ootmod/next-boot-not-ready'), 'utf8')).toContain(`not in the initramfs of ${NEW}`);

    // Rebuilt with zfs (a compressed .ko): ready, the cache does not hide it, and the hook takes the notice down.
    rebuild(NEW, ['kernel/fs/ext4/ext4.ko', 'updates/ootmod/zfs.ko.xz']);
    expect(cli('status').stderr).not.toMatch(/is not ready/);
    expect(kernels().kernels.find((k) => k.release === NEW)).toMatchObject({ ready: true, missing: [] });
    // kernel-install's last plugin (95-ootmod-boot.install) checks the same way; inside dpkg it leaves it to the trigger.
    rebuild(NEW, ['kernel/fs/ext4/ext4.ko']);
    rmSync(path.join(root, 'run/ootmod/next-boot-not-ready'));
    expect(spawnSync(OOTMOD, ['--root', root, 'hook', 'boot-entry', NEW], { encoding: 'utf8', env: { ...env, DPKG_MAINTSCRIPT_PACKAGE: 'linux-image-x' } }).status).toBe(0);
    expect(existsSync(path.join(root, 'run/ootmod/next-boot-not-ready'))).toBe(false);
    const entry = cli('hook', 'boot-entry', NEW);
    expect(entry.stderr).toContain(`  zfs/2.2.7 (critical: needed in early boot): not in the initramfs of ${NEW}`);
    expect(existsSync(path.join(root, 'run/ootmod/next-boot-not-ready'))).toBe(true);
    rebuild(NEW, ['kernel/fs/ext4/ext4.ko', 'updates/ootmod/zfs.ko.xz']);
    const again = cli('hook', 'initramfs', NEW, `/boot/initrd.img-${NEW}`);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/is not ready/);
    expect(existsSync(path.join(root, 'run/ootmod/next-boot-not-ready'))).toBe(false);
  });
});
