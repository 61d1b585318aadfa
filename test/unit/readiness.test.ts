import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { updateBootNotices, noticeFiles } from '../../src/execute/notices.js';
import { modulesInListing } from '../../src/kernel/initramfs.js';
import { findGrubEntry, grubNextBoot, parseGrubCfg, systemdBootNextBoot, loaderEntryKernel } from '../../src/kernel/boot.js';
import { jobRunner } from '../../src/execute/steps.js';
import type { JobResult } from '../../src/execute/executor.js';
import { composePlan } from '../../src/plan/compose.js';
import type { StateStore } from '../../src/state/store.js';
import { computeReadiness, earlyBootKernels, notReadyBlock, pairKey, sourceQuestions, type ReadinessInput, type ReadinessRecord, type ReadinessView } from '../../src/plan/readiness.js';
import { createLayout } from '../../src/system/layout.js';
import { tempDir } from '../support/roots.js';
import { unconfinedRun } from '../support/run.js';

const OLD = '6.1.0-30-amd64';
const NEW = '6.1.0-31-amd64';

function rec(module: string, kernel: string, status: ReadinessRecord['status'] = 'installed', extra: Partial<ReadinessRecord> = {}): ReadinessRecord {
  const ko = module.replaceAll('-', '_');
  return { module, version: '1.0', kernel, status, installedModules: status === 'installed' ? [ko] : [], filesPresent: status === 'installed', ...extra };
}

function input(records: ReadinessRecord[], extra: Partial<ReadinessInput> = {}): ReadinessInput {
  return {
    kernels: [{ release: NEW, headers: true }, { release: OLD, headers: true }],
    running: OLD,
    records,
    declared: { needed: [], optional: [] },
    ...extra,
  };
}

const of = (report: ReturnType<typeof computeReadiness>, kernel: string) => report.kernels.find((k) => k.release === kernel)!;

describe('kernel readiness', () => {
  it('all ready: every module installed for the running kernel is installed for the new one', () => {
    const r = computeReadiness(input([rec('zfs', OLD), rec('zfs', NEW), rec('nvidia-current', OLD), rec('nvidia-current', NEW)]));
    expect(r.basis.kernel).toBe(OLD);
    expect(r.needed.map((n) => n.module)).toEqual(['nvidia-current', 'zfs']);
    expect(of(r, NEW)).toMatchObject({ ready: true, missing: [] });
    expect(of(r, OLD).ready).toBe(true);
  });

  it('a needed module that failed on the new kernel makes it not ready, with its first error', () => {
    const r = computeReadiness(input([rec('zfs', OLD), rec('zfs', NEW, 'failed', { error: 'make exited with 2 (zfs.c:1:2: error: boom)\nmore' })]));
    expect(of(r, NEW).ready).toBe(false);
    expect(of(r, NEW).missing).toEqual([{ module: 'zfs', version: '1.0', why: 'failed: make exited with 2 (zfs.c:1:2: error: boom)', critical: false }]);
    // A failed rebuild whose older build stays installed is still there.
    const kept = computeReadiness(input([rec('zfs', OLD), rec('zfs', NEW, 'failed', { installedModules: ['zfs'], filesPresent: true })]));
    expect(of(kept, NEW).ready).toBe(true);
  });

  it('a module BUILD_EXCLUSIVE excludes on the new kernel counts as ready', () => {
    const i = input([rec('ootmod-exclusive', OLD)]);
    expect(sourceQuestions(i)).toEqual([{ module: 'ootmod-exclusive', kernel: NEW }]);
    i.sources = new Map([[pairKey('ootmod-exclusive', NEW), { excluded: `kernel ${NEW} is newer than BUILD_EXCLUSIVE_KERNEL_MAX 6.1.0-30-amd64` }]]);
    const r = computeReadiness(i);
    expect(of(r, NEW)).toMatchObject({ ready: true, missing: [], excluded: [{ module: 'ootmod-exclusive', why: expect.stringMatching(/BUILD_EXCLUSIVE_KERNEL_MAX/) }] });
    // Without the exclusion it is simply not built.
    expect(of(computeReadiness(input([rec('ootmod-exclusive', OLD)])), NEW).missing[0]!.why).toBe('not built');
  });

  it('says why a module is missing: no headers, built only, not AUTOINSTALL, no source', () => {
    const noHeaders = computeReadiness(input([rec('zfs', OLD)], { kernels: [{ release: NEW, headers: false }, { release: OLD, headers: true }] }));
    expect(of(noHeaders, NEW).missing[0]!.why).toBe(`skipped: no headers for ${NEW}: install linux-headers-${NEW}`);
    expect(of(computeReadiness(input([rec('zfs', OLD), rec('zfs', NEW, 'built')])), NEW).missing[0]!.why).toMatch(/^built, not installed/);
    const i = input([rec('a', OLD), rec('b', OLD)]);
    i.sources = new Map([[pairKey('a', NEW), { notAutoinstall: true }], [pairKey('b', NEW), { noSource: true }]]);
    expect(of(computeReadiness(i), NEW).missing.map((m) => m.why)).toEqual([
      `not built: its dkms.conf does not say AUTOINSTALL=yes (ootmod install a -k ${NEW})`,
      'not built: no source of b under /usr/src',
    ]);
  });

  it('a module in the running kernel\'s initramfs is critical, and a kernel whose initramfs lacks it is not ready', () => {
    const initramfs = new Map([[OLD, new Set(['zfs', 'spl', 'ext4'])], [NEW, new Set(['ext4'])]]);
    const records = [rec('zfs', OLD, 'installed', { installedModules: ['zfs', 'spl'] }), rec('zfs', NEW, 'installed', { installedModules: ['zfs', 'spl'] }), rec('v4l2loopback', OLD), rec('v4l2loopback', NEW)];
    const r = computeReadiness(input(records, { initramfs }));
    expect(r.needed.find((n) => n.module === 'zfs')).toMatchObject({ critical: true, because: expect.stringMatching(/in the initramfs of 6.1.0-30-amd64/) });
    expect(r.needed.find((n) => n.module === 'v4l2loopback')!.critical).toBe(false);
    expect(of(r, NEW).ready).toBe(false);
    expect(of(r, NEW).missing).toEqual([{ module: 'zfs', version: '1.0', why: `not in the initramfs of ${NEW} (update-initramfs -u -k ${NEW})`, critical: true }]);
    // Its initramfs has it: ready. Not installed at all: missing, and critical.
    expect(of(computeReadiness(input(records, { initramfs: new Map([[OLD, new Set(['zfs'])], [NEW, new Set(['zfs', 'spl'])]]) })), NEW).ready).toBe(true);
    const failed = computeReadiness(input([rec('zfs', OLD), rec('zfs', NEW, 'failed', { error: 'boom' })], { initramfs }));
    expect(of(failed, NEW).missing[0]).toMatchObject({ module: 'zfs', critical: true, why: 'failed: boom' });
  });

  it('in a chroot or under --root, a module in any installed kernel\'s initramfs is critical, and a new kernel\'s initramfs must hold it', () => {
    // No running kernel: NEW (all its modules) is the basis, but its initramfs was rebuilt without zfs.
    const records = [rec('zfs', OLD), rec('zfs', NEW), rec('v4l2loopback', OLD), rec('v4l2loopback', NEW)];
    const base = input(records, { running: undefined });
    expect(earlyBootKernels(base)).toEqual([NEW, OLD]);
    // With the running kernel installed, only its initramfs tells.
    expect(earlyBootKernels(input(records))).toEqual([OLD]);
    const r = computeReadiness({ ...base, initramfs: new Map([[NEW, new Set(['ext4'])], [OLD, new Set(['zfs', 'ext4'])]]) });
    expect(r.needed.find((n) => n.module === 'zfs')).toMatchObject({ critical: true, because: expect.stringMatching(/in the initramfs of 6\.1\.0-30-amd64/) });
    expect(of(r, NEW).missing).toEqual([{ module: 'zfs', version: '1.0', why: `not in the initramfs of ${NEW} (update-initramfs -u -k ${NEW})`, critical: true }]);
    expect(of(r, OLD).ready).toBe(true);
    // dracut makes the initramfs here: its command rebuilds it.
    expect(of(computeReadiness({ ...base, initramfsGenerator: 'dracut', initramfs: new Map([[NEW, new Set<string>()], [OLD, new Set(['zfs'])]]) }), NEW).missing[0]!.why).toBe(`not in the initramfs of ${NEW} (dracut --force /boot/initrd.img-${NEW} ${NEW})`);
  });

  it('the module of the root filesystem is critical', () => {
    const r = computeReadiness(input([rec('zfs', OLD), rec('zfs', NEW, 'failed')], { rootFsType: 'zfs' }));
    expect(r.needed[0]).toMatchObject({ module: 'zfs', critical: true, because: expect.stringMatching(/provides the root filesystem \(zfs\)/) });
    expect(of(r, NEW).missing[0]!.critical).toBe(true);
  });

  it('in a chroot (the running kernel is not installed) the newest kernel with all its modules gives the needed set', () => {
    const NEWEST = '6.1.0-32-amd64';
    const kernels = [{ release: NEWEST, headers: true }, { release: NEW, headers: true }, { release: OLD, headers: true }];
    // The newest has a failure; the next one has all its modules; the oldest has a module more.
    const records = [rec('a', NEWEST), rec('b', NEWEST, 'failed', { error: 'boom' }), rec('a', NEW), rec('b', NEW), rec('a', OLD), rec('b', OLD), rec('old-only', OLD)];
    const r = computeReadiness(input(records, { kernels, running: '6.18.0-cloud' }));
    expect(r.basis.kernel).toBe(NEW);
    expect(r.basis.how).toMatch(/running kernel 6.18.0-cloud is not installed here: what is installed for 6.1.0-31-amd64, the newest kernel that has all its modules/);
    expect(r.needed.map((n) => n.module)).toEqual(['a', 'b']);
    expect(of(r, NEWEST).missing.map((m) => m.module)).toEqual(['b']);
    expect(of(r, OLD).ready).toBe(true);
    // Under --root (no running kernel) the same rule applies.
    expect(computeReadiness(input(records, { kernels, running: undefined })).basis.kernel).toBe(NEW);
  });

  it('with no kernel that has all its modules, every installed module is needed, and the newest such kernel\'s initramfs tells the critical ones', () => {
    const records = [rec('zfs', NEW), rec('broken', NEW, 'failed', { error: 'boom' }), rec('v4l2loopback', OLD), rec('broken', OLD, 'failed', { error: 'boom' })];
    const r = computeReadiness(input(records, { running: undefined, initramfs: new Map([[NEW, new Set(['zfs'])]]) }));
    expect(r.basis.kernel).toBeUndefined();
    expect(r.basis).toMatchObject({ earlyBoot: NEW, how: expect.stringMatching(/no kernel has all its modules/) });
    expect(r.needed.map((n) => [n.module, n.critical])).toEqual([['v4l2loopback', false], ['zfs', true]]);
    expect(of(r, OLD).missing).toEqual([expect.objectContaining({ module: 'zfs', critical: true, why: 'not built' })]);
  });

  it('adds the modules the admin declares needed and drops those declared optional', () => {
    const records = [rec('zfs', OLD), rec('v4l2loopback', OLD), rec('ootmod-broken', NEW, 'failed', { error: 'boom' })];
    const r = computeReadiness(input(records, { declared: { needed: ['ootmod-broken', 'wifi'], optional: ['v4l2loopback'] } }));
    expect(r.needed.map((n) => n.module)).toEqual(['ootmod-broken', 'wifi', 'zfs']);
    expect(r.needed.find((n) => n.module === 'wifi')!.because).toBe('needed = in [boot] of ootmod.conf');
    expect(of(r, NEW).missing.map((m) => `${m.module}: ${m.why}`)).toEqual(['ootmod-broken: failed: boom', 'wifi: not built', 'zfs: not built']);
    // A declared name may be the .ko name of a module.
    const byKo = computeReadiness(input([rec('nvidia-current', OLD, 'installed', { installedModules: ['nvidia', 'nvidia-drm'] })], { declared: { needed: [], optional: ['nvidia_drm'] } }));
    expect(byKo.needed).toEqual([]);
  });
});

describe('notices and the end-of-apt block', () => {
  const view = (ready: boolean): ReadinessView => {
    const r = computeReadiness(input(ready ? [rec('zfs', OLD), rec('zfs', NEW)] : [rec('zfs', OLD), rec('zfs', NEW, 'failed', { error: 'make exited with 2 (zfs.c:1: error: x)' })]));
    return { report: r, nextBoot: { kernel: NEW, bootloader: 'grub', how: 'GRUB_DEFAULT=0: the first menu entry' }, next: of(r, NEW), notes: [] };
  };

  it('names the kernel, each missing module with its first error, and the command that shows more', () => {
    expect(notReadyBlock(view(false))).toEqual([
      `ootmod: the kernel that boots next, ${NEW}, is not ready (grub: GRUB_DEFAULT=0: the first menu entry):`,
      '  zfs/1.0: failed: make exited with 2 (zfs.c:1: error: x)',
      `ootmod: a reboot now starts ${NEW} without it; see ootmod kernels (and ootmod status for the build logs)`,
    ]);
    expect(notReadyBlock(view(true))).toBeUndefined();
  });

  it('the end-of-apt block for the four cases: all ready, a failed module, an excluded one, a critical one missing from the initramfs', () => {
    const block = (i: ReadinessInput) => {
      const r = computeReadiness(i);
      return notReadyBlock({ report: r, nextBoot: { kernel: NEW, bootloader: 'none', how: 'the newest kernel' }, next: of(r, NEW), notes: [] });
    };
    expect(block(input([rec('zfs', OLD), rec('zfs', NEW)]))).toBeUndefined();
    expect(block(input([rec('zfs', OLD), rec('zfs', NEW, 'failed', { error: 'make exited with 2 (a.c:1: error: b)' })]))![1]).toBe('  zfs/1.0: failed: make exited with 2 (a.c:1: error: b)');
    const excluded = input([rec('zfs', OLD)]);
    excluded.sources = new Map([[pairKey('zfs', NEW), { excluded: 'BUILD_EXCLUSIVE_KERNEL_MAX' }]]);
    expect(block(excluded)).toBeUndefined();
    const initramfs = new Map([[OLD, new Set(['zfs'])], [NEW, new Set<string>()]]);
    expect(block(input([rec('zfs', OLD), rec('zfs', NEW)], { initramfs }))).toEqual([
      `ootmod: the kernel that boots next, ${NEW}, is not ready (the newest kernel):`,
      `  zfs/1.0 (critical: needed in early boot): not in the initramfs of ${NEW} (update-initramfs -u -k ${NEW})`,
      `ootmod: a reboot now starts ${NEW} without it; see ootmod kernels (and ootmod status for the build logs)`,
    ]);
  });

  it('writes the notices when the next kernel is not ready and removes them when it is', async () => {
    const root = tempDir('ootmod-notice-');
    mkdirSync(path.join(root, 'var/lib/update-notifier/user.d'), { recursive: true });
    const layout = createLayout(root);
    const files = noticeFiles(layout);
    expect(files).toEqual([path.join(root, 'run/ootmod/next-boot-not-ready'), path.join(root, 'var/lib/update-notifier/user.d/ootmod-next-boot-not-ready')]);
    expect(await updateBootNotices(layout, files, view(false))).toMatch(/^wrote .*next-boot-not-ready/);
    expect(readFileSync(files[0]!, 'utf8')).toMatch(/zfs\/1.0: failed: make exited with 2/);
    expect(readFileSync(files[1]!, 'utf8')).toMatch(/^Name: .*\nPriority: high\n[\s\S]*DisplayIf: test -e \/run\/ootmod\/next-boot-not-ready\n[\s\S]*Description: /);
    expect(await updateBootNotices(layout, files, view(false))).toMatch(/^notices unchanged/);
    expect(existsSync(path.join(root, 'run/reboot-required'))).toBe(false);
    expect(await updateBootNotices(layout, files, view(true))).toMatch(/^removed .* is ready\)$/);
    expect(files.some((f) => existsSync(f))).toBe(false);
  });

  it('is one job of the plan, after every other job, and only with other jobs unless asked', () => {
    const files = ['/run/ootmod/next-boot-not-ready'];
    expect(composePlan({ depmodKernels: new Set(), bootNotice: { files, always: false } }).jobs).toEqual([]);
    expect(composePlan({ depmodKernels: new Set(), bootNotice: { files, always: true } }).jobs.map((j) => j.kind)).toEqual(['boot-notice']);
    const plan = composePlan({ depmodKernels: new Set([OLD]), rustClean: [{ kernel: NEW, reason: 'x' }], forgetKernels: [NEW], bootNotice: { files, always: false } });
    const notice = plan.jobs.at(-1)!;
    expect(notice.kind).toBe('boot-notice');
    expect(notice.after).toEqual(plan.jobs.slice(0, -1).map((j) => j.id));
  });

  it('does not check an initramfs that initramfs-tools\' trigger rebuilds after the run, and checks one the run rebuilt', async () => {
    const removal = { record: { module: 'zfs', version: '1.0', kernel: NEW, arch: 'x86_64', status: 'installed' as const, inputsKey: '', built: [], installed: [], updatedAt: '' }, forget: false, reason: 'x' };
    const plan = composePlan({
      removals: [removal], depmodKernels: new Set([NEW]), initramfs: { kernels: new Set([NEW]), newest: NEW, inDpkg: true },
      bootNotice: { files: [path.join(tempDir('ootmod-notice-'), 'n')], always: false },
    });
    const notice = plan.jobs.at(-1)!;
    expect(notice).toMatchObject({ kind: 'boot-notice', initramfsJobs: [{ job: `initramfs:${NEW}`, kernel: NEW, viaTrigger: true }] });
    const asked: string[][] = [];
    const runner = jobRunner({
      layout: createLayout(tempDir('ootmod-notice-')), kernels: new Map(), store: {} as StateStore, timeoutMs: 1000, log: { write: async () => {} }, ...unconfinedRun(),
      readiness: async ({ initramfsPending, initramfsRebuilt }) => {
        asked.push(initramfsPending);
        expect(initramfsRebuilt).toEqual([]);
        const r = computeReadiness(input([]));
        return { report: r, nextBoot: { kernel: NEW, bootloader: 'none', how: 'x' }, next: of(r, NEW), notes: [] };
      },
    });
    const done = new Map<string, JobResult>([[`initramfs:${NEW}`, { status: 'done' }]]);
    expect((await runner.run(notice, done)).status).toBe('done');
    expect((await runner.run(notice, new Map([[`initramfs:${NEW}`, { status: 'skipped' }]]))).readiness?.next?.ready).toBe(true);
    expect(asked).toEqual([[NEW], []]);
    // Outside dpkg the initramfs is rebuilt by the run itself: the reader is told, to check it.
    const outside = composePlan({
      removals: [removal], depmodKernels: new Set([NEW]), initramfs: { kernels: new Set([NEW]), newest: NEW, inDpkg: false },
      bootNotice: { files: [path.join(tempDir('ootmod-notice-'), 'n')], always: false },
    }).jobs.at(-1)!;
    const rebuilt: string[][] = [];
    const runner2 = jobRunner({
      layout: createLayout(tempDir('ootmod-notice-')), kernels: new Map(), store: {} as StateStore, timeoutMs: 1000, log: { write: async () => {} }, ...unconfinedRun(),
      readiness: async ({ initramfsPending, initramfsRebuilt }) => {
        rebuilt.push([...initramfsPending, '|', ...initramfsRebuilt]);
        const r = computeReadiness(input([]));
        return { report: r, nextBoot: { kernel: NEW, bootloader: 'none', how: 'x' }, next: of(r, NEW), notes: [] };
      },
    });
    await runner2.run(outside, done);
    expect(rebuilt).toEqual([['|', NEW]]);
  });
});

describe('the kernel that boots next', () => {
  const cfg = `
function load_video {
  insmod all_video
}
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-UUID' {
\tload_video
\tlinux\t/boot/vmlinuz-${NEW} root=UUID=x ro quiet
}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-UUID' {
\tmenuentry 'Debian GNU/Linux, with Linux ${NEW}' --class debian $menuentry_id_option 'gnulinux-${NEW}-advanced-UUID' {
\t\tlinux\t/boot/vmlinuz-${NEW} root=UUID=x ro quiet
\t}
\tmenuentry 'Debian GNU/Linux, with Linux ${OLD}' --class debian $menuentry_id_option 'gnulinux-${OLD}-advanced-UUID' {
\t\tif [ x$feature_all_video_module = xy ]; then
\t\t  insmod all_video
\t\tfi
\t\tlinux\t/vmlinuz-${OLD} root=UUID=x ro quiet
\t}
}
menuentry 'UEFI Firmware Settings' $menuentry_id_option 'uefi-firmware' {
\tfwsetup
}
`;
  const installed = [NEW, OLD];

  it('reads grub.cfg\'s menu with its submenus', () => {
    const entries = parseGrubCfg(cfg);
    expect(entries.map((e) => [e.positions.join('>'), e.kernel])).toEqual([['0', NEW], ['1>0', NEW], ['1>1', OLD], ['2', undefined]]);
    expect(findGrubEntry(entries, `gnulinux-advanced-UUID>gnulinux-${OLD}-advanced-UUID`)?.kernel).toBe(OLD);
    expect(findGrubEntry(entries, `Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux ${OLD}`)?.kernel).toBe(OLD);
  });

  it('follows GRUB_DEFAULT, saved_entry and next_entry', () => {
    expect(grubNextBoot({ defaults: ['GRUB_DEFAULT=0\n'], grubCfg: cfg }, installed)).toMatchObject({ kernel: NEW, bootloader: 'grub' });
    expect(grubNextBoot({ defaults: ['GRUB_DEFAULT="1>1"\n'], grubCfg: cfg }, installed).kernel).toBe(OLD);
    const saved = `# GRUB Environment Block\nsaved_entry=gnulinux-advanced-UUID>gnulinux-${OLD}-advanced-UUID\n#####`;
    expect(grubNextBoot({ defaults: ['GRUB_DEFAULT=saved\n'], grubenv: saved, grubCfg: cfg }, installed)).toMatchObject({ kernel: OLD, how: expect.stringMatching(/^GRUB_DEFAULT=saved, saved_entry=/) });
    // A drop-in read after /etc/default/grub wins; grub-reboot's next_entry wins over both.
    expect(grubNextBoot({ defaults: ['GRUB_DEFAULT=0\n', 'GRUB_DEFAULT=saved\n'], grubenv: saved, grubCfg: cfg }, installed).kernel).toBe(OLD);
    expect(grubNextBoot({ defaults: ['GRUB_DEFAULT=saved\n'], grubenv: `${saved}\nnext_entry=0\n`, grubCfg: cfg }, installed).kernel).toBe(NEW);
    const firmware = grubNextBoot({ defaults: ['GRUB_DEFAULT=2\n'], grubCfg: cfg }, installed);
    expect(firmware.kernel).toBeUndefined();
    expect(firmware.how).toBe('unknown (GRUB_DEFAULT=2 names "UEFI Firmware Settings", which boots no Linux kernel)');
    expect(grubNextBoot({ defaults: ['GRUB_DEFAULT=7\n'], grubCfg: cfg }, installed).how).toMatch(/^unknown \(GRUB_DEFAULT=7 names no entry of grub.cfg\)/);
    // No grub.cfg yet: the first entry is the newest kernel.
    expect(grubNextBoot({ defaults: [''] }, installed)).toMatchObject({ kernel: NEW });
  });

  it('follows systemd-boot\'s EFI variables and loader.conf', () => {
    const entries = [
      { id: `abc-${NEW}`, kernel: loaderEntryKernel(`title Debian\nversion ${NEW}\nlinux /abc/${NEW}/linux\n`, installed) },
      { id: `abc-${OLD}`, kernel: loaderEntryKernel(`title Debian\nlinux /vmlinuz-${OLD}\n`, installed) },
    ];
    expect(entries.map((e) => e.kernel)).toEqual([NEW, OLD]);
    expect(systemdBootNextBoot(undefined, entries, {}).kernel).toBe(NEW);
    expect(systemdBootNextBoot(`timeout 3\ndefault abc-${OLD}.conf\n`, entries, {}).kernel).toBe(OLD);
    expect(systemdBootNextBoot('default abc-*\n', entries, {}).kernel).toBe(NEW);
    expect(systemdBootNextBoot('default abc-*\n', entries, { default: `abc-${OLD}` }).kernel).toBe(OLD);
    expect(systemdBootNextBoot(undefined, entries, { default: `abc-${OLD}`, oneShot: `abc-${NEW}` }).kernel).toBe(NEW);
  });

  it('reads module names from lsinitramfs and lsinitrd listings', () => {
    const lsinitramfs = 'usr/lib/modules/6.1.0-30-amd64/updates/ootmod/zfs.ko\nusr/lib/modules/6.1.0-30-amd64/kernel/fs/ext4/ext4.ko.xz\nusr/bin/zfs\n';
    const lsinitrd = '-rw-r--r--   1 root     root        12345 Jan  1 00:00 usr/lib/modules/6.1.0-30-amd64/extra/nvidia-drm.ko.zst\n';
    expect([...modulesInListing(lsinitramfs)]).toEqual(['zfs', 'ext4']);
    expect([...modulesInListing(lsinitrd)]).toEqual(['nvidia_drm']);
  });
});
