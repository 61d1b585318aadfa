// The boot guard on systemd-boot: its decision (loader.conf's default, the EFI variables that override
// it, boot counting), and its changes on a fake ESP tree laid out as kernel-install and bootctl make it
// (Type #1 entries named MACHINE-ID-KVER[+LEFT[-DONE]].conf): engaged and released byte for byte,
// nothing with guard = no, and what a dry run prints.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyGuard, guardInput, readGuardState, type GrubTools } from '../../src/execute/bootguard.js';
import type { JobResult } from '../../src/execute/executor.js';
import { jobRunner } from '../../src/execute/steps.js';
import { bootloaderOf, loaderEntryName, readLoaderEntries, readNextBoot } from '../../src/kernel/boot.js';
import { decideGuard, guardLine, type GuardInput } from '../../src/plan/bootguard.js';
import { composePlan } from '../../src/plan/compose.js';
import { computeReadiness, type ReadinessRecord, type ReadinessView } from '../../src/plan/readiness.js';
import type { StateStore } from '../../src/state/store.js';
import type { GuardMode } from '../../src/system/config.js';
import { createLayout, type Layout } from '../../src/system/layout.js';
import { treeContents, writeZfsState } from '../support/boot.js';
import { tempDir } from '../support/roots.js';
import { unconfinedRun } from '../support/run.js';

const OLDER = '6.1.0-29-amd64';
const OLD = '6.1.0-30-amd64';
const NEW = '6.1.0-31-amd64';
const MID = '0123456789abcdef0123456789abcdef';
const OOTMOD = path.resolve(__dirname, '../../dist/ootmod');
const LOADER_CONF = 'timeout 3\ndefault 0123456789abcdef0123456789abcdef-*\neditor no\n';

/** GRUB's tools must not be used on a systemd-boot machine. */
const noGrub: GrubTools = {
  async setSavedEntry() {
    throw new Error('grub-editenv used on systemd-boot');
  },
  async updateGrub() {
    throw new Error('update-grub used on systemd-boot');
  },
};

function rec(module: string, kernel: string, status: ReadinessRecord['status'] = 'installed'): ReadinessRecord {
  return { module, version: '1.0', kernel, status, error: status === 'failed' ? 'make exited with 2 (zfs.c:1: error: x)' : undefined, installedModules: status === 'installed' ? [module] : [], filesPresent: status === 'installed' };
}

/** zfs (critical: in the running OLD's initramfs) on OLD and OLDER; on NEW, `newZfs`. */
function view(newZfs: ReadinessRecord['status'], how = 'default 0123...-* in loader.conf'): ReadinessView {
  const records = [rec('zfs', OLD), rec('zfs', OLDER), rec('zfs', NEW, newZfs)];
  const report = computeReadiness({
    kernels: [NEW, OLD, OLDER].map((release) => ({ release, headers: true })), running: OLD, records, declared: { needed: [], optional: [] },
    initramfs: new Map([[OLD, new Set(['zfs'])]]),
  });
  return { report, nextBoot: { kernel: NEW, bootloader: 'systemd-boot', how }, next: report.kernels.find((k) => k.release === NEW), notes: [], images: [NEW, OLD, OLDER] };
}

const entries = (extra: Partial<Record<string, boolean>> = {}) => [NEW, OLD, OLDER].map((k) => ({ id: `${MID}-${k}`, kernel: k, bad: extra[k] ?? false }));

function decide(mode: GuardMode, v: ReadinessView, sdboot: Partial<NonNullable<GuardInput['sdboot']>> = {}, extra: Partial<GuardInput> = {}) {
  return decideGuard({ mode, report: v.report, intended: v.nextBoot, images: v.images!, sdboot: { entries: entries(), adminDefault: `${MID}-*`, defaultNow: `${MID}-*`, ...sdboot }, ...extra });
}

describe('the boot guard\'s decision on systemd-boot', () => {
  it('sets loader.conf\'s default to the newest older ready kernel\'s entry; guard = no and a ready kernel leave it', () => {
    const d = decide('auto', view('failed'));
    expect(d).toEqual({ action: 'engage', entry: `${MID}-${OLD}.conf`, kernel: OLD, heldBack: NEW, savedMode: 'loader.conf', why: `${NEW} lacks zfs: systemd-boot's default goes to ${OLD}, the newest ready kernel, until it is ready` });
    expect(guardLine(d)).toBe(`set default ${MID}-${OLD}.conf in systemd-boot's loader.conf (${OLD}): ${NEW} lacks zfs: systemd-boot's default goes to ${OLD}, the newest ready kernel, until it is ready`);
    expect(decide('no', view('failed'))).toMatchObject({ action: 'none', why: expect.stringMatching(/guard = no/) });
    expect(decide('auto', view('installed'))).toMatchObject({ action: 'none', why: `${NEW}, which systemd-boot's setting boots, is ready` });
    // No default line at all (systemd-boot boots the newest entry): the guard acts too.
    expect(decide('auto', view('failed'), { adminDefault: undefined, defaultNow: undefined })).toMatchObject({ action: 'engage', kernel: OLD });
  });

  it('leaves the admin\'s own choices: LoaderEntryDefault, a one-shot entry, a pinned or @saved default', () => {
    const v = view('failed');
    expect(decide('auto', v, { efiDefault: `${MID}-${NEW}.conf` })).toMatchObject({ action: 'none', why: expect.stringMatching(/^LoaderEntryDefault=.* overrides loader.conf: left as it is$/) });
    expect(decide('auto', v, { oneShot: `${MID}-${NEW}.conf` })).toMatchObject({ action: 'none', why: expect.stringMatching(/LoaderEntryOneShot/) });
    expect(decide('auto', v, { adminDefault: `${MID}-${NEW}.conf` })).toMatchObject({ action: 'none', why: expect.stringMatching(/in loader.conf is the admin's choice/) });
    expect(decide('auto', v, { adminDefault: '@saved' })).toMatchObject({ action: 'none' });
  });

  it('never falls back on an entry whose boot counter ran out, and releases when someone changed the default since', () => {
    expect(decide('auto', view('failed'), { entries: entries({ [OLD]: true }) })).toMatchObject({ action: 'engage', entry: `${MID}-${OLDER}.conf`, kernel: OLDER });
    expect(loaderEntryName(`${MID}-${OLD}+0-3.conf`)).toEqual({ id: `${MID}-${OLD}`, bad: true });
    expect(loaderEntryName(`${MID}-${NEW}+2-1.conf`)).toEqual({ id: `${MID}-${NEW}`, bad: false });
    expect(loaderEntryName(`${MID}-${NEW}+3.conf`)).toEqual({ id: `${MID}-${NEW}`, bad: false });
    const state = { bootloader: 'systemd-boot' as const, entry: `${MID}-${OLD}.conf`, kernel: OLD, heldBack: NEW, previousSavedEntry: null, dropIn: null, loaderConf: '/boot/efi/loader/loader.conf', previousDefaultLine: `default ${MID}-*`, since: 'x' };
    expect(decide('auto', view('failed'), { defaultNow: `${MID}-${OLD}.conf` }, { state })).toMatchObject({ action: 'keep', loader: 'systemd-boot' });
    expect(decide('auto', view('failed'), { defaultNow: 'other.conf' }, { state })).toMatchObject({ action: 'release', why: expect.stringMatching(/not the guard's/) });
    expect(decide('auto', view('installed'), { defaultNow: `${MID}-${OLD}.conf` }, { state })).toMatchObject({ action: 'release', loader: 'systemd-boot' });
  });
});

/**
 * A root laid out as bootctl install and kernel-install make it: the ESP at /boot/efi with systemd-boot
 * and (unless `noLoaderConf`) loader.conf; Type #1 entries on the ESP, NEW's with a boot counter.
 */
function espRoot(opts: { loaderConf?: string | null; xbootldr?: boolean } = {}): Layout {
  const root = tempDir('ootmod-sdboot-');
  const esp = path.join(root, 'boot/efi');
  mkdirSync(path.join(esp, 'EFI/systemd'), { recursive: true });
  writeFileSync(path.join(esp, 'EFI/systemd/systemd-bootx64.efi'), '');
  const entriesDir = path.join(opts.xbootldr ? path.join(root, 'boot') : esp, 'loader/entries');
  mkdirSync(entriesDir, { recursive: true });
  const loaderConf = opts.loaderConf === undefined ? LOADER_CONF : opts.loaderConf;
  if (loaderConf !== null) writeFileSync(path.join(esp, 'loader/loader.conf'), loaderConf);
  for (const k of [NEW, OLD, OLDER]) {
    const name = k === NEW ? `${MID}-${k}+3.conf` : `${MID}-${k}.conf`;
    writeFileSync(path.join(entriesDir, name), `title      Debian GNU/Linux 12 (bookworm)\nversion    ${k}\nmachine-id ${MID}\nlinux      /${MID}/${k}/linux\ninitrd     /${MID}/${k}/initrd.img-${k}\n`);
    writeFileSync(path.join(root, 'boot', `vmlinuz-${k}`), '');
  }
  return createLayout(root);
}

/** Every file under the root's /boot and /etc (what the guard may touch), with its content. */
const bootContents = (layout: Layout) => treeContents(layout, ['/boot', '/etc']);

const loaderConfOf = (layout: Layout) => readFileSync(layout.at('/boot/efi/loader/loader.conf'), 'utf8');

describe('the boot guard on a systemd-boot ESP', () => {
  it('reads the entries (boot counter stripped) and tells systemd-boot from GRUB and from neither', () => {
    const layout = espRoot();
    expect(bootloaderOf(layout)).toBe('systemd-boot');
    expect(readLoaderEntries(layout, [NEW, OLD, OLDER]).map((e) => [e.id, e.kernel])).toEqual([OLDER, OLD, NEW].map((k) => [`${MID}-${k}`, k]));
    expect(readNextBoot(layout, [NEW, OLD, OLDER])).toEqual({ bootloader: 'systemd-boot', kernel: NEW, how: `default ${MID}-* in loader.conf` });
    expect(bootloaderOf(createLayout(tempDir('ootmod-noloader-')))).toBe('none');
    // GRUB's files too (grub-common left from an earlier install): not booted by systemd-boot, so GRUB.
    mkdirSync(layout.at('/etc/default'), { recursive: true });
    writeFileSync(layout.at('/etc/default/grub'), 'GRUB_DEFAULT=0\n');
    expect(bootloaderOf(layout)).toBe('grub');
  });

  it('replaces the admin\'s default line under a comment that keeps it; release gives the file back byte for byte', async () => {
    const layout = espRoot();
    const before = bootContents(layout);
    const v = view('failed');
    const state = await applyGuard(layout, decideGuard(guardInput(layout, 'auto', v, v.images!)), undefined, noGrub);
    expect(state).toMatchObject({ bootloader: 'systemd-boot', entry: `${MID}-${OLD}.conf`, kernel: OLD, heldBack: NEW, loaderConf: '/boot/efi/loader/loader.conf', previousDefaultLine: `default ${MID}-*`, createdLoaderConf: false });
    expect(loaderConfOf(layout)).toBe(`timeout 3\n#ootmod-boot-guard: default ${MID}-*\ndefault ${MID}-${OLD}.conf\neditor no\n`);
    // systemd-boot now boots OLD; the admin's own setting still names NEW.
    expect(readNextBoot(layout, [NEW, OLD, OLDER]).kernel).toBe(OLD);
    expect(readNextBoot(layout, [NEW, OLD, OLDER], { loaderDefaultLine: `default ${MID}-*` }).kernel).toBe(NEW);
    expect(readGuardState(layout)).toEqual(state);
    expect(decideGuard(guardInput(layout, 'auto', v, v.images!))).toMatchObject({ action: 'keep' });
    // NEW is ready: released.
    const ready = view('installed');
    const decision = decideGuard(guardInput(layout, 'auto', ready, ready.images!));
    expect(decision).toMatchObject({ action: 'release', loader: 'systemd-boot' });
    expect(guardLine(decision, true)).toMatch(/^gave systemd-boot's default back \(loader.conf's default line as it was\): /);
    expect(await applyGuard(layout, decision, readGuardState(layout), noGrub)).toBeUndefined();
    expect(bootContents(layout)).toEqual(before);
    expect(readGuardState(layout)).toBeUndefined();
  });

  it('moves to the next older ready kernel when the one it keeps the default on is removed, and still releases exactly', async () => {
    const layout = espRoot();
    const before = bootContents(layout);
    const v = view('failed');
    const first = await applyGuard(layout, decideGuard(guardInput(layout, 'auto', v, v.images!)), undefined, noGrub);
    // OLD goes (kernel-install remove deletes its entry; the kernel postrm hook runs the guard again).
    rmSync(layout.at(`/boot/efi/loader/entries/${MID}-${OLD}.conf`));
    const gone = { ...v, images: [NEW, OLDER] };
    const moved = decideGuard(guardInput(layout, 'auto', gone, gone.images));
    expect(moved).toMatchObject({ action: 'engage', entry: `${MID}-${OLDER}.conf`, kernel: OLDER });
    const second = await applyGuard(layout, moved, first, noGrub);
    expect(second).toMatchObject({ previousDefaultLine: `default ${MID}-*`, since: first!.since });
    expect(loaderConfOf(layout)).toBe(`timeout 3\n#ootmod-boot-guard: default ${MID}-*\ndefault ${MID}-${OLDER}.conf\neditor no\n`);
    await applyGuard(layout, { action: 'release', why: 'test', loader: 'systemd-boot' }, second, noGrub);
    delete before[`boot/efi/loader/entries/${MID}-${OLD}.conf`];
    expect(bootContents(layout)).toEqual(before);
  });

  it('without loader.conf (entries on XBOOTLDR) it writes one on the ESP, and release removes it', async () => {
    const layout = espRoot({ loaderConf: null, xbootldr: true });
    const before = bootContents(layout);
    expect(readNextBoot(layout, [NEW, OLD, OLDER])).toMatchObject({ kernel: NEW, how: 'no default set: the newest entry' });
    const v = view('failed', 'no default set: the newest entry');
    const state = await applyGuard(layout, decideGuard(guardInput(layout, 'auto', v, v.images!)), undefined, noGrub);
    expect(state).toMatchObject({ previousDefaultLine: null, createdLoaderConf: true });
    expect(loaderConfOf(layout)).toBe(`#ootmod-boot-guard:\ndefault ${MID}-${OLD}.conf\n`);
    expect(readNextBoot(layout, [NEW, OLD, OLDER]).kernel).toBe(OLD);
    await applyGuard(layout, { action: 'release', why: 'test', loader: 'systemd-boot' }, state, noGrub);
    expect(bootContents(layout)).toEqual(before);
  });

  it('leaves a default someone set after it, and takes only its comment away', async () => {
    const layout = espRoot();
    const v = view('failed');
    const state = await applyGuard(layout, decideGuard(guardInput(layout, 'auto', v, v.images!)), undefined, noGrub);
    writeFileSync(layout.at('/boot/efi/loader/loader.conf'), loaderConfOf(layout).replace(`default ${MID}-${OLD}.conf`, `default ${MID}-${NEW}.conf`));
    const decision = decideGuard(guardInput(layout, 'auto', v, v.images!));
    expect(decision).toMatchObject({ action: 'release', why: expect.stringMatching(/not the guard's/) });
    await applyGuard(layout, decision, state, noGrub);
    expect(loaderConfOf(layout)).toBe(`timeout 3\ndefault ${MID}-${NEW}.conf\neditor no\n`);
  });

  it('the package\'s postrm gives loader.conf back without ootmod when prerm could not (its awk program, run on the guard\'s file)', async () => {
    const postrm = readFileSync(path.resolve(__dirname, '../../debian/ootmod.postrm'), 'utf8');
    const program = /awk -v entry="\$entry" '([\s\S]*?)' "\$conf"/.exec(postrm)![1]!;
    const restore = (file: string, entry: string) => spawnSync('awk', ['-v', `entry=${entry}`, program, file], { encoding: 'utf8' }).stdout;
    const layout = espRoot();
    const v = view('failed');
    const state = (await applyGuard(layout, decideGuard(guardInput(layout, 'auto', v, v.images!)), undefined, noGrub))!;
    const conf = layout.at('/boot/efi/loader/loader.conf');
    expect(restore(conf, state.entry)).toBe(LOADER_CONF);
    expect(restore(conf, '')).toBe(LOADER_CONF);
    // Someone set another default since: theirs stays, the comment goes.
    writeFileSync(conf, loaderConfOf(layout).replace(`default ${state.entry}`, 'default other.conf'));
    expect(restore(conf, state.entry)).toBe('timeout 3\ndefault other.conf\neditor no\n');
    // The guard wrote the file (no default line before): nothing left, and postrm removes the empty file.
    const made = espRoot({ loaderConf: null });
    const s2 = (await applyGuard(made, decideGuard(guardInput(made, 'auto', v, v.images!)), undefined, noGrub))!;
    expect(restore(made.at('/boot/efi/loader/loader.conf'), s2.entry)).toBe('');
  });

  it('with guard = no, the job changes nothing', async () => {
    const layout = espRoot();
    const before = bootContents(layout);
    const plan = composePlan({ depmodKernels: new Set(), bootNotice: { files: [layout.at('/run/ootmod/next-boot-not-ready')], always: true }, bootGuard: { mode: 'no', loader: 'systemd-boot' } });
    const runner = jobRunner({ layout, kernels: new Map(), store: {} as StateStore, timeoutMs: 1000, log: { write: async () => {} }, ...unconfinedRun(), readiness: async () => view('failed'), grubTools: noGrub });
    const results = new Map<string, JobResult>();
    for (const job of plan.jobs) results.set(job.id, await runner.run(job, results));
    expect(results.get('boot-guard')).toMatchObject({ status: 'skipped', detail: expect.stringMatching(/^did nothing: guard = no/) });
    expect(bootContents(layout)).toEqual(before);
  });
});

describe.skipIf(!existsSync(OOTMOD))('ootmod boot on systemd-boot', () => {
  /** NEW has a failed zfs, OLD has it installed; systemd-boot's `default MID-*` boots NEW. */
  function fakeSystem(guard: GuardMode): Layout {
    const layout = espRoot();
    writeZfsState(layout.root, OLD, NEW, guard);
    return layout;
  }
  const cli = (root: string, ...args: string[]) => spawnSync(OOTMOD, ['--root', root, ...args], { encoding: 'utf8' });

  it('--dry-run prints what the guard would do and changes nothing; apply does it; release undoes it', () => {
    const layout = fakeSystem('yes');
    const root = layout.root;
    const before = bootContents(layout);
    const dry = cli(root, 'boot', 'apply', '--dry-run');
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(`would run the boot guard after the other jobs (guard = yes: any needed module missing on the kernel systemd-boot's setting boots holds it back); as things are now it would set default ${MID}-${OLD}.conf in systemd-boot's loader.conf (${OLD}): ${NEW} lacks zfs`);
    expect(bootContents(layout)).toEqual(before);
    expect(existsSync(path.join(root, 'var/lib/ootmod/boot-guard.json'))).toBe(false);

    expect(cli(root, 'boot').stdout).toMatch(new RegExp(`^bootloader: systemd-boot; its setting boots ${NEW} \\(default ${MID}-\\* in loader.conf\\): NOT READY: zfs`, 'm'));
    const apply = cli(root, 'boot', 'apply');
    expect(apply.status, apply.stderr).toBe(0);
    expect(apply.stderr).toMatch(new RegExp(`^boot guard: set default ${MID}-${OLD}.conf in systemd-boot's loader.conf`, 'm'));
    expect(loaderConfOf(layout)).toContain(`\ndefault ${MID}-${OLD}.conf\n`);
    const shown = cli(root, 'boot').stdout;
    expect(shown).toContain(`held: systemd-boot's default is on ${OLD} (default ${MID}-${OLD}.conf in /boot/efi/loader/loader.conf)`);
    expect(shown).toContain(`undone by release: the line back to 'default ${MID}-*'`);
    const kernels = JSON.parse(cli(root, 'kernels', '--json').stdout) as { bootsNext: { kernel: string; heldBack: string | null; ready: boolean } };
    expect(kernels.bootsNext).toMatchObject({ kernel: OLD, heldBack: NEW, ready: true });
    expect(cli(root, 'status').stderr.split('\n')[0]).toMatch(new RegExp(`^ootmod: ${NEW}, which systemd-boot's setting boots, is not ready: zfs \\(failed: .*\\): the boot guard keeps systemd-boot's default on ${OLD} \\(ootmod boot\\); run ootmod kernels$`));
    expect(readFileSync(path.join(root, 'run/ootmod/next-boot-not-ready'), 'utf8')).toContain(`the boot guard keeps systemd-boot's default on ${OLD} until ${NEW} is ready`);

    const release = cli(root, 'boot', 'release', '--dry-run');
    expect(release.stdout).toContain("would give systemd-boot's default entry back as the admin had it");
    expect(cli(root, 'boot', 'release').status).toBe(0);
    expect(bootContents(layout)).toEqual(before);
  });

  it('with guard = no, apply changes nothing', () => {
    const layout = fakeSystem('no');
    const before = bootContents(layout);
    const r = cli(layout.root, 'boot', 'apply');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^boot guard: did nothing: guard = no/m);
    expect(bootContents(layout)).toEqual(before);
  });
});
