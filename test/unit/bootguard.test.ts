// The boot guard (GRUB): its decision, and its changes on a fake /boot/grub tree made with GRUB's own
// grub-editenv (update-grub is counted, not run): engaged and released exactly, nothing with guard = no,
// and what a dry run prints.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyGuard, guardInput, readGuardState, type GrubTools } from '../../src/execute/bootguard.js';
import type { JobResult } from '../../src/execute/executor.js';
import { jobRunner } from '../../src/execute/steps.js';
import { findOnPath } from '../../src/system/programs.js';
import { readNextBoot, parseGrubCfg } from '../../src/kernel/boot.js';
import { decideGuard, type GuardInput } from '../../src/plan/bootguard.js';
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
const OOTMOD = path.resolve(__dirname, '../../dist/ootmod');

const entry = (k: string) => `\tmenuentry 'Debian GNU/Linux, with Linux ${k}' --class debian $menuentry_id_option 'gnulinux-${k}-advanced-UUID' {\n\t\tlinux\t/boot/vmlinuz-${k} root=UUID=x ro\n\t}\n`;
const GRUB_CFG = `menuentry 'Debian GNU/Linux' $menuentry_id_option 'gnulinux-simple-UUID' {\n\tlinux\t/boot/vmlinuz-${NEW} root=UUID=x ro\n}\n` +
  `submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-UUID' {\n${entry(NEW)}${entry(OLD)}${entry(OLDER)}}\n`;
const OLD_ENTRY = `gnulinux-advanced-UUID>gnulinux-${OLD}-advanced-UUID`;

function rec(module: string, kernel: string, status: ReadinessRecord['status'] = 'installed'): ReadinessRecord {
  return { module, version: '1.0', kernel, status, error: status === 'failed' ? 'make exited with 2 (zfs.c:1: error: x)' : undefined, installedModules: status === 'installed' ? [module] : [], filesPresent: status === 'installed' };
}

/** zfs (critical: in the initramfs) and v4l2loopback installed on OLD and OLDER; on NEW, `newState`. */
function view(newZfs: ReadinessRecord['status'] | 'none', newV4l: ReadinessRecord['status'] | 'none' = 'installed', adminDefault = '0'): { view: ReadinessView; grub: NonNullable<GuardInput['grub']> } {
  const records = [rec('zfs', OLD), rec('v4l2loopback', OLD), rec('zfs', OLDER), rec('v4l2loopback', OLDER)];
  if (newZfs !== 'none') records.push(rec('zfs', NEW, newZfs));
  if (newV4l !== 'none') records.push(rec('v4l2loopback', NEW, newV4l));
  const report = computeReadiness({
    kernels: [NEW, OLD, OLDER].map((release) => ({ release, headers: true })), running: OLD, records, declared: { needed: [], optional: [] },
    initramfs: new Map([[OLD, new Set(['zfs'])]]),
  });
  const next = report.kernels.find((k) => k.release === NEW);
  return {
    view: { report, nextBoot: { kernel: NEW, bootloader: 'grub', how: `GRUB_DEFAULT=${adminDefault}` }, next, notes: [], images: [NEW, OLD, OLDER] },
    grub: { entries: parseGrubCfg(GRUB_CFG), adminDefault },
  };
}

function decide(mode: GuardMode, v: ReturnType<typeof view>, extra: Partial<GuardInput> = {}) {
  return decideGuard({ mode, report: v.view.report, intended: v.view.nextBoot, grub: v.grub, images: v.view.images!, ...extra });
}

describe('the boot guard\'s decision', () => {
  it('auto acts only for a missing critical module; yes for any needed module; no never', () => {
    expect(decide('auto', view('failed'))).toMatchObject({ action: 'engage', entry: OLD_ENTRY, kernel: OLD, heldBack: NEW, savedMode: 'drop-in', why: expect.stringMatching(/lacks zfs/) });
    expect(decide('auto', view('installed', 'failed'))).toMatchObject({ action: 'none', why: expect.stringMatching(/is ready in what early boot needs/) });
    expect(decide('yes', view('installed', 'failed'))).toMatchObject({ action: 'engage', kernel: OLD, why: expect.stringMatching(/lacks v4l2loopback/) });
    expect(decide('no', view('failed'))).toMatchObject({ action: 'none', why: expect.stringMatching(/guard = no/) });
    expect(decide('auto', view('installed'))).toMatchObject({ action: 'none' });
  });

  it('keeps to the admin\'s own choices: a pinned GRUB_DEFAULT, grub-reboot, another bootloader', () => {
    const v = view('failed');
    expect(decide('auto', { ...v, grub: { ...v.grub, adminDefault: '1>2' } })).toMatchObject({ action: 'none', why: expect.stringMatching(/GRUB_DEFAULT=1>2 is the admin's choice/) });
    expect(decide('auto', { ...v, grub: { ...v.grub, nextEntry: '1>2' } })).toMatchObject({ action: 'none', why: expect.stringMatching(/grub-reboot/) });
    expect(decide('auto', v, { grub: undefined, intended: { kernel: NEW, bootloader: 'none', how: 'x' } })).toMatchObject({ action: 'none', why: expect.stringMatching(/^no GRUB or systemd-boot configuration is here/) });
    // GRUB_DEFAULT=saved already: no drop-in needed.
    expect(decide('auto', view('failed', 'installed', 'saved'))).toMatchObject({ action: 'engage', savedMode: 'saved' });
  });

  it('releases once the held-back kernel is ready, keeps an engaged guard as it is, and finds no fallback without an older ready kernel', () => {
    const state = { bootloader: 'grub' as const, entry: OLD_ENTRY, kernel: OLD, heldBack: NEW, previousSavedEntry: null, dropIn: '/etc/default/grub.d/zz-ootmod-boot-guard.cfg', since: 'x' };
    const held = (v: ReturnType<typeof view>) => ({ ...v, grub: { ...v.grub, savedEntryNow: OLD_ENTRY } });
    expect(decide('auto', held(view('failed')), { state })).toMatchObject({ action: 'keep' });
    expect(decide('auto', held(view('installed')), { state })).toMatchObject({ action: 'release', why: expect.stringMatching(/is ready/) });
    expect(decide('no', held(view('failed')), { state })).toMatchObject({ action: 'release' });
    // The admin picked another entry since (grub-set-default, or GRUB_SAVEDEFAULT): the guard lets go.
    const picked = view('failed');
    expect(decide('auto', { ...picked, grub: { ...picked.grub, savedEntryNow: '0' } }, { state })).toMatchObject({ action: 'release', why: 'saved_entry is 0 now, not the guard\'s: the admin\'s choice stays' });
    expect(decide('auto', view('failed'), { images: [NEW] })).toMatchObject({ action: 'none', why: expect.stringMatching(/no older ready kernel/) });
  });
});

/** A root with GRUB's files as Debian has them (the grubenv made by grub-editenv). */
function grubRoot(defaultLine: string, savedEntry?: string): Layout {
  const root = tempDir('ootmod-guard-');
  mkdirSync(path.join(root, 'boot/grub'), { recursive: true });
  mkdirSync(path.join(root, 'etc/default/grub.d'), { recursive: true });
  writeFileSync(path.join(root, 'boot/grub/grub.cfg'), GRUB_CFG);
  writeFileSync(path.join(root, 'etc/default/grub'), `GRUB_TIMEOUT=5\n${defaultLine}\n`);
  execFileSync('grub-editenv', [path.join(root, 'boot/grub/grubenv'), 'create']);
  if (savedEntry) execFileSync('grub-editenv', [path.join(root, 'boot/grub/grubenv'), 'set', `saved_entry=${savedEntry}`]);
  for (const k of [NEW, OLD, OLDER]) writeFileSync(path.join(root, 'boot', `vmlinuz-${k}`), '');
  return createLayout(root);
}

/** GRUB's real grub-editenv; update-grub only counted (it would regenerate this machine's grub.cfg). */
function tools(layout: Layout): GrubTools & { updates: number } {
  const grubenv = path.join(layout.bootDir, 'grub/grubenv');
  const t = {
    updates: 0,
    async setSavedEntry(e: string | null) {
      execFileSync('grub-editenv', e === null ? [grubenv, 'unset', 'saved_entry'] : [grubenv, 'set', `saved_entry=${e}`]);
    },
    async updateGrub() {
      t.updates++;
    },
  };
  return t;
}

/** Every file's content under the root's GRUB dirs (what the guard may touch). */
const grubContents = (layout: Layout) => treeContents(layout, ['/boot/grub', '/etc/default']);

describe.skipIf(!findOnPath('grub-editenv'))('the boot guard on a GRUB tree', () => {
  it('GRUB_DEFAULT=0: a drop-in for GRUB_DEFAULT=saved and the saved entry; released exactly as it was', async () => {
    const layout = grubRoot('GRUB_DEFAULT=0');
    const before = grubContents(layout);
    const t = tools(layout);
    const v = view('failed');
    const state = await applyGuard(layout, decide('auto', v), undefined, t);
    expect(state).toMatchObject({ entry: OLD_ENTRY, kernel: OLD, heldBack: NEW, previousSavedEntry: null, dropIn: '/etc/default/grub.d/zz-ootmod-boot-guard.cfg' });
    expect(readFileSync(layout.at('/etc/default/grub.d/zz-ootmod-boot-guard.cfg'), 'utf8')).toMatch(/^GRUB_DEFAULT=saved$/m);
    expect(t.updates).toBe(1);
    expect(execFileSync('grub-editenv', [path.join(layout.bootDir, 'grub/grubenv'), 'list'], { encoding: 'utf8' })).toBe(`saved_entry=${OLD_ENTRY}\n`);
    // GRUB now boots OLD; the admin's own setting still names NEW.
    expect(readNextBoot(layout, [NEW, OLD, OLDER]).kernel).toBe(OLD);
    expect(readNextBoot(layout, [NEW, OLD, OLDER], { savedEntry: null }).kernel).toBe(NEW);
    expect(readGuardState(layout)).toEqual(state);
    // Read back through guardInput, the same kernel is still held: keep.
    expect(decideGuard(guardInput(layout, 'auto', v.view, [NEW, OLD, OLDER])).action).toBe('keep');
    // NEW is ready: released, and GRUB's files are byte for byte as before.
    const ready = view('installed');
    const decision = decideGuard(guardInput(layout, 'auto', ready.view, [NEW, OLD, OLDER]));
    expect(decision.action).toBe('release');
    expect(await applyGuard(layout, decision, readGuardState(layout), t)).toBeUndefined();
    expect(t.updates).toBe(2);
    expect(grubContents(layout)).toEqual(before);
    expect(readGuardState(layout)).toBeUndefined();
  });

  it('leaves a saved_entry someone set after it alone when it lets go', async () => {
    const layout = grubRoot('GRUB_DEFAULT=0');
    const t = tools(layout);
    const v = view('failed');
    await applyGuard(layout, decide('auto', v), undefined, t);
    await t.setSavedEntry(`gnulinux-advanced-UUID>gnulinux-${NEW}-advanced-UUID`);
    const decision = decideGuard(guardInput(layout, 'auto', v.view, [NEW, OLD, OLDER]));
    expect(decision).toMatchObject({ action: 'release', why: expect.stringMatching(/not the guard's/) });
    await applyGuard(layout, decision, readGuardState(layout), t);
    expect(execFileSync('grub-editenv', [path.join(layout.bootDir, 'grub/grubenv'), 'list'], { encoding: 'utf8' })).toBe(`saved_entry=gnulinux-advanced-UUID>gnulinux-${NEW}-advanced-UUID\n`);
    expect(existsSync(layout.at('/etc/default/grub.d/zz-ootmod-boot-guard.cfg'))).toBe(false);
  });

  it('GRUB_DEFAULT=saved: only saved_entry changes, and gets its old value back', async () => {
    const layout = grubRoot('GRUB_DEFAULT=saved', `gnulinux-advanced-UUID>gnulinux-${NEW}-advanced-UUID`);
    const before = grubContents(layout);
    const t = tools(layout);
    const state = await applyGuard(layout, decide('auto', view('failed', 'installed', 'saved')), undefined, t);
    expect(state).toMatchObject({ previousSavedEntry: `gnulinux-advanced-UUID>gnulinux-${NEW}-advanced-UUID`, dropIn: null });
    expect(t.updates).toBe(0);
    expect(existsSync(layout.at('/etc/default/grub.d/zz-ootmod-boot-guard.cfg'))).toBe(false);
    expect(readNextBoot(layout, [NEW, OLD, OLDER]).kernel).toBe(OLD);
    await applyGuard(layout, { action: 'release', why: 'test' }, state, t);
    expect(grubContents(layout)).toEqual(before);
  });

  it('with guard = no, the job changes nothing in the bootloader', async () => {
    const layout = grubRoot('GRUB_DEFAULT=0');
    const before = grubContents(layout);
    const plan = composePlan({ depmodKernels: new Set(), bootNotice: { files: [layout.at('/run/ootmod/next-boot-not-ready')], always: true }, bootGuard: { mode: 'no', loader: 'grub' } });
    const t = tools(layout);
    const runner = jobRunner({ layout, kernels: new Map(), store: {} as StateStore, timeoutMs: 1000, log: { write: async () => {} }, ...unconfinedRun(), readiness: async () => view('failed').view, grubTools: t });
    const results = new Map<string, JobResult>();
    for (const job of plan.jobs) results.set(job.id, await runner.run(job, results));
    expect(results.get('boot-guard')).toMatchObject({ status: 'skipped', detail: expect.stringMatching(/^did nothing: guard = no/) });
    expect(t.updates).toBe(0);
    expect(grubContents(layout)).toEqual(before);
    // The notice still tells.
    expect(readFileSync(layout.at('/run/ootmod/next-boot-not-ready'), 'utf8')).toMatch(/zfs\/1.0 \(critical: needed in early boot\): failed/);
  });
});

describe.skipIf(!existsSync(OOTMOD))('ootmod boot', () => {
  /** NEW has a failed zfs, OLD has it installed; GRUB boots the first entry (NEW). */
  function fakeSystem(guard: GuardMode): string {
    const layout = grubRoot('GRUB_DEFAULT=0');
    writeZfsState(layout.root, OLD, NEW, guard);
    return layout.root;
  }
  const cli = (root: string, ...args: string[]) => spawnSync(OOTMOD, ['--root', root, ...args], { encoding: 'utf8' });

  it('--dry-run prints what the guard would do and changes nothing; apply does it; release undoes it', () => {
    const root = fakeSystem('yes');
    const layout = createLayout(root);
    const before = grubContents(layout);
    const dry = cli(root, 'boot', 'apply', '--dry-run');
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(`would run the boot guard after the other jobs (guard = yes: any needed module missing on the kernel GRUB's setting boots holds it back); as things are now it would set GRUB_DEFAULT=saved (a drop-in, then update-grub) and set saved_entry=${OLD_ENTRY} (${OLD}): ${NEW} lacks zfs`);
    expect(grubContents(layout)).toEqual(before);
    expect(existsSync(path.join(root, 'var/lib/ootmod/boot-guard.json'))).toBe(false);
    expect(existsSync(path.join(root, 'run/ootmod'))).toBe(false);

    const shown = cli(root, 'boot');
    expect(shown.stdout).toMatch(new RegExp(`^bootloader: grub; its setting boots ${NEW} \\(GRUB_DEFAULT=0: the first menu entry\\): NOT READY: zfs \\(failed: make exited with 2`, 'm'));
    expect(shown.stdout).toMatch(/^held: nothing/m);

    const apply = cli(root, 'boot', 'apply');
    expect(apply.status, apply.stderr).toBe(0);
    expect(apply.stderr).toMatch(/^boot guard: set GRUB_DEFAULT=saved .* \(update-grub is not run under --root: run it inside the root\)$/m);
    expect(execFileSync('grub-editenv', [path.join(root, 'boot/grub/grubenv'), 'list'], { encoding: 'utf8' })).toBe(`saved_entry=${OLD_ENTRY}\n`);
    const kernels = JSON.parse(cli(root, 'kernels', '--json').stdout) as { bootsNext: { kernel: string; heldBack: string | null; ready: boolean } };
    expect(kernels.bootsNext).toMatchObject({ kernel: OLD, heldBack: NEW, ready: true });
    expect(cli(root, 'status').stderr.split('\n')[0]).toMatch(new RegExp(`^ootmod: ${NEW}, which GRUB's setting boots, is not ready: zfs \\(failed: .*\\): the boot guard keeps GRUB's default on ${OLD} \\(ootmod boot\\); run ootmod kernels$`));
    expect(readFileSync(path.join(root, 'run/ootmod/next-boot-not-ready'), 'utf8')).toMatch(/the boot guard keeps GRUB's default on/);

    const release = cli(root, 'boot', 'release');
    expect(release.status, release.stderr).toBe(0);
    expect(grubContents(layout)).toEqual(before);
  });

  it('with guard = no, apply changes nothing in the bootloader', () => {
    const root = fakeSystem('no');
    const layout = createLayout(root);
    const before = grubContents(layout);
    const r = cli(root, 'boot', 'apply');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^boot guard: did nothing: guard = no/m);
    expect(grubContents(layout)).toEqual(before);
  });
});
