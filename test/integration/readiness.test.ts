// Kernel-upgrade readiness against real headers, in a sandbox root: the fixture modules built for the
// host's kernel, a newer kernel installed without headers, GRUB's default entry, [boot] needed.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { findOnPath } from '../../src/system/programs.js';
import { ootmod, ootmodEnv } from '../support/cli.js';
import { FIXTURES, hostKernel, linkHostKernel, placeSource } from '../support/host.js';
import { makeRoot } from '../support/roots.js';

interface KernelsJson {
  kernels: { release: string; ready: boolean | null; missing: { module: string; version: string | null; why: string; critical: boolean }[]; excluded: { module: string; why: string }[]; bootsNext: boolean }[];
  bootsNext: { kernel: string | null; bootloader: string; how: string; ready: boolean | null };
  readiness: { needed: { module: string; critical: boolean }[] };
}

describe('kernel-upgrade readiness', () => {
  const kernel = hostKernel();
  // A newer release of the same flavour, derived from the host's (its ABI number + 1).
  const newer = /^(\d+\.\d+\.\d+-)(\d+)(.*)$/.test(kernel.release)
    ? kernel.release.replace(/^(\d+\.\d+\.\d+-)(\d+)(.*)$/, (_m, a: string, n: string, b: string) => `${a}${Number(n) + 1}${b}`)
    : `${kernel.release}.1`;
  const root = makeRoot();
  const notice = path.join(root, 'run/ootmod/next-boot-not-ready');
  const kernels = async (): Promise<KernelsJson> => {
    const r = await ootmod(root, 'kernels', '--json');
    expect(r.exitCode, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as KernelsJson;
  };
  const of = (j: KernelsJson, release: string) => j.kernels.find((k) => k.release === release)!;

  beforeAll(() => {
    linkHostKernel(root, kernel.release, kernel.headers);
    writeFileSync(path.join(root, 'boot', `vmlinuz-${kernel.release}`), '');
    for (const f of ['ootmod-hello-1.0', 'ootmod-broken-1.0', 'ootmod-exclusive-1.0']) placeSource(root, path.join(FIXTURES, f));
  });

  it('a kernel with every installed module is ready, and boots next', async () => {
    const r = await ootmod(root, 'trigger');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/is not ready/);
    const j = await kernels();
    expect(j.readiness.needed.map((n) => n.module)).toEqual(['ootmod-hello']);
    expect(of(j, kernel.release)).toMatchObject({ ready: true, missing: [], bootsNext: true });
    expect(j.bootsNext).toMatchObject({ kernel: kernel.release, bootloader: 'none', ready: true });
    expect(existsSync(notice)).toBe(false);
  });

  it('a newer kernel without headers is not ready: the end of the run says so and the notice is written', async () => {
    mkdirSync(path.join(root, 'usr/lib/modules', newer), { recursive: true });
    writeFileSync(path.join(root, 'boot', `vmlinuz-${newer}`), '');
    const r = await ootmodEnv(root, { DEB_MAINT_PARAMS: 'configure' }, 'hook', 'postinst', newer, `/boot/vmlinuz-${newer}`);
    expect(r.exitCode, r.stderr).toBe(0);
    const block = [
      `ootmod: the kernel that boots next, ${newer}, is not ready (no GRUB or systemd-boot configuration found: the newest kernel, as Debian orders its boot menus):`,
      `  ootmod-hello/1.0: skipped: no headers for ${newer}: install linux-headers-${newer}`,
      `ootmod: a reboot now starts ${newer} without it; see ootmod kernels (and ootmod status for the build logs)`,
    ];
    expect(r.stderr).toContain(block.join('\n'));
    expect(readFileSync(notice, 'utf8')).toBe(`${block.join('\n')}\n`);
    const j = await kernels();
    expect(of(j, newer)).toMatchObject({ ready: false, bootsNext: true, missing: [{ module: 'ootmod-hello', version: '1.0', why: `skipped: no headers for ${newer}: install linux-headers-${newer}`, critical: false }] });
    expect(of(j, kernel.release).ready).toBe(true);
    const status = await ootmod(root, 'status');
    expect(status.stderr.split('\n')[0]).toBe(`ootmod: the next boot's kernel ${newer} is not ready: ootmod-hello (skipped: no headers for ${newer}: install linux-headers-${newer}): run ootmod kernels`);
    // A dry run plans the notice job and changes nothing.
    const dry = await ootmod(root, 'trigger', '--dry-run');
    expect(dry.stdout).toMatch(/^would update the notices of the next boot's readiness after the other jobs: .*next-boot-not-ready/m);
  });

  it('with GRUB\'s saved default on the ready kernel, the next trigger removes the notice', async () => {
    const id = (k: string) => `gnulinux-${k}-advanced-UUID`;
    const entry = (k: string) => `\tmenuentry 'Debian GNU/Linux, with Linux ${k}' $menuentry_id_option '${id(k)}' {\n\t\tlinux /boot/vmlinuz-${k} root=UUID=x ro\n\t}\n`;
    mkdirSync(path.join(root, 'boot/grub'), { recursive: true });
    mkdirSync(path.join(root, 'etc/default'), { recursive: true });
    writeFileSync(path.join(root, 'boot/grub/grub.cfg'), `submenu 'Advanced options' $menuentry_id_option 'gnulinux-advanced-UUID' {\n${entry(newer)}${entry(kernel.release)}}\n`);
    writeFileSync(path.join(root, 'etc/default/grub'), 'GRUB_DEFAULT=saved\n');
    writeFileSync(path.join(root, 'boot/grub/grubenv'), `# GRUB Environment Block\nsaved_entry=gnulinux-advanced-UUID>${id(kernel.release)}\n${'#'.repeat(900)}`);
    const j = await kernels();
    expect(j.bootsNext).toMatchObject({ kernel: kernel.release, bootloader: 'grub', ready: true });
    const r = await ootmod(root, 'trigger');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/is not ready/);
    expect(existsSync(notice)).toBe(false);
    expect((await ootmod(root, 'status')).stderr).not.toMatch(/not ready/);
  });

  it('[boot] needed adds modules: a failed one makes the kernel not ready, an excluded one does not', async () => {
    mkdirSync(path.join(root, 'etc/ootmod'), { recursive: true });
    writeFileSync(path.join(root, 'etc/ootmod/ootmod.conf'), '[boot]\nneeded = ootmod-broken, ootmod-exclusive\n');
    const j = await kernels();
    const host = of(j, kernel.release);
    expect(host.ready).toBe(false);
    expect(host.missing.map((m) => m.module)).toEqual(['ootmod-broken']);
    expect(host.missing[0]!.why).toMatch(/^failed: make exited with 2 \(ootmod_broken\.c:\d+:\d+: error: /);
    expect(host.excluded).toEqual([{ module: 'ootmod-exclusive', why: expect.stringMatching(/^BUILD_EXCLUSIVE_CONFIG: CONFIG_OOTMOD_TEST_NEVER_SET is not set/) }]);
    const status = await ootmod(root, 'status');
    expect(status.stderr.split('\n')[0]).toMatch(new RegExp(`^ootmod: the next boot's kernel ${kernel.release.replaceAll('.', '\\.')} is not ready: ootmod-broken \\(failed: make exited with 2 .*\\): run ootmod kernels$`));
  });

  it('reads the initramfs for what early boot needs: in ootmod kernels always, in the trigger only when something is missing', async () => {
    writeFileSync(path.join(root, 'etc/ootmod/ootmod.conf'), '');
    writeFileSync(path.join(root, 'boot', `initrd.img-${kernel.release}`), '');
    // A stand-in for initramfs-tools' lsinitramfs that logs its calls and lists the hello module.
    const bin = path.join(root, 'fake-bin');
    mkdirSync(bin, { recursive: true });
    const calls = path.join(root, 'lsinitramfs.calls');
    writeFileSync(path.join(bin, 'lsinitramfs'), `#!/bin/sh\necho "$1" >> ${calls}\necho usr/lib/modules/${kernel.release}/updates/ootmod/ootmod_hello.ko\n`, { mode: 0o755 });
    const env = { PATH: `${bin}:${process.env.PATH}` };
    const j = JSON.parse((await ootmodEnv(root, env, 'kernels', '--json')).stdout) as KernelsJson;
    expect(j.readiness.needed).toEqual([expect.objectContaining({ module: 'ootmod-hello', critical: true })]);
    expect(readFileSync(calls, 'utf8')).toBe(`${path.join(root, 'boot', `initrd.img-${kernel.release}`)}\n`);
    // The kernel that boots next is ready: the trigger's jobs list no initramfs.
    rmSync(calls);
    const r = await ootmodEnv(root, env, 'hook', 'postinst', kernel.release);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/is not ready/);
    expect(existsSync(calls)).toBe(false);
  });

  it.skipIf(!findOnPath('grub-editenv'))('the boot guard holds GRUB\'s default on the ready kernel, and lets go when the kernel it held back is removed', async () => {
    const id = (k: string) => `gnulinux-${k}-advanced-UUID`;
    const entry = (k: string) => `\tmenuentry 'Debian GNU/Linux, with Linux ${k}' $menuentry_id_option '${id(k)}' {\n\t\tlinux /boot/vmlinuz-${k} root=UUID=x ro\n\t}\n`;
    // grub.cfg as update-grub writes it: the newest kernel first, then the submenu with every kernel.
    const grubCfg = (kernels: string[]) => `menuentry 'Debian GNU/Linux' $menuentry_id_option 'gnulinux-simple-UUID' {\n\tlinux /boot/vmlinuz-${kernels[0]} root=UUID=x ro\n}\n` +
      `submenu 'Advanced options' $menuentry_id_option 'gnulinux-advanced-UUID' {\n${kernels.map(entry).join('')}}\n`;
    const grubenv = path.join(root, 'boot/grub/grubenv');
    const env = () => execFileSync('grub-editenv', [grubenv, 'list'], { encoding: 'utf8' });
    writeFileSync(path.join(root, 'etc/ootmod/ootmod.conf'), '[boot]\nguard = yes\n');
    writeFileSync(path.join(root, 'etc/default/grub'), 'GRUB_DEFAULT=0\n');
    writeFileSync(path.join(root, 'boot/grub/grub.cfg'), grubCfg([newer, kernel.release]));
    rmSync(grubenv);
    execFileSync('grub-editenv', [grubenv, 'create']);
    rmSync(path.join(root, 'boot', `initrd.img-${kernel.release}`));

    const apply = await ootmod(root, 'boot', 'apply');
    expect(apply.exitCode, apply.stderr).toBe(0);
    expect(env()).toBe(`saved_entry=gnulinux-advanced-UUID>${id(kernel.release)}\n`);
    expect(readFileSync(path.join(root, 'etc/default/grub.d/zz-ootmod-boot-guard.cfg'), 'utf8')).toMatch(/^GRUB_DEFAULT=saved$/m);
    expect((await kernels()).bootsNext).toMatchObject({ kernel: kernel.release, heldBack: newer, ready: true });
    expect(readFileSync(notice, 'utf8')).toMatch(new RegExp(`the boot guard keeps GRUB's default on ${kernel.release.replaceAll('.', '\\.')} until ${newer.replaceAll('.', '\\.')} is ready`));

    // The newer kernel goes (its package's postrm: files removed, update-grub), then ootmod's postrm hook.
    rmSync(path.join(root, 'usr/lib/modules', newer), { recursive: true });
    rmSync(path.join(root, 'boot', `vmlinuz-${newer}`));
    writeFileSync(path.join(root, 'boot/grub/grub.cfg'), grubCfg([kernel.release]));
    const r = await ootmodEnv(root, { DEB_MAINT_PARAMS: 'remove' }, 'hook', 'postrm', newer, `/boot/vmlinuz-${newer}`);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^boot guard: gave GRUB's default back .*: [^ ]+, which GRUB's setting boots, is ready/m);
    expect(env()).toBe('');
    expect(existsSync(path.join(root, 'etc/default/grub.d/zz-ootmod-boot-guard.cfg'))).toBe(false);
    expect(existsSync(path.join(root, 'var/lib/ootmod/boot-guard.json'))).toBe(false);
    expect(existsSync(notice)).toBe(false);
  });
});

describe.skipIf(!findOnPath('grub-editenv'))('the boot guard and ootmod install', () => {
  const kernel = hostKernel();
  // An older release of the same flavour (its ABI number - 1) that has the module: the guard's fallback.
  const older = kernel.release.replace(/^(\d+\.\d+\.\d+-)(\d+)(.*)$/, (_m, a: string, n: string, b: string) => `${a}${Math.max(0, Number(n) - 1)}${b}`);
  const root = makeRoot();
  const grubenv = path.join(root, 'boot/grub/grubenv');
  const dropIn = path.join(root, 'etc/default/grub.d/zz-ootmod-boot-guard.cfg');
  const id = (k: string) => `gnulinux-${k}-advanced-UUID`;
  const entry = (k: string) => `\tmenuentry 'Debian GNU/Linux, with Linux ${k}' $menuentry_id_option '${id(k)}' {\n\t\tlinux /boot/vmlinuz-${k} root=UUID=x ro\n\t}\n`;

  beforeAll(() => {
    linkHostKernel(root, kernel.release, kernel.headers);
    placeSource(root, path.join(FIXTURES, 'ootmod-hello-1.0'));
    // ootmod-hello is installed for the older kernel (no headers here: its record and file are made).
    const ko = path.join(root, 'usr/lib/modules', older, 'updates/ootmod/ootmod_hello.ko');
    mkdirSync(path.dirname(ko), { recursive: true });
    writeFileSync(ko, '');
    const record = { module: 'ootmod-hello', version: '1.0', kernel: older, arch: 'x86_64', status: 'installed', inputsKey: 'k', built: [], installed: [{ module: 'ootmod_hello', path: ko }], updatedAt: new Date().toISOString() };
    mkdirSync(path.join(root, 'var/lib/ootmod'), { recursive: true });
    writeFileSync(path.join(root, 'var/lib/ootmod/state.json'), JSON.stringify({ format: 1, records: { [`ootmod-hello/1.0/${older}`]: record } }));
    for (const k of [kernel.release, older]) writeFileSync(path.join(root, 'boot', `vmlinuz-${k}`), '');
    mkdirSync(path.join(root, 'boot/grub'), { recursive: true });
    mkdirSync(path.join(root, 'etc/default'), { recursive: true });
    mkdirSync(path.join(root, 'etc/ootmod'), { recursive: true });
    writeFileSync(path.join(root, 'etc/ootmod/ootmod.conf'), '[boot]\nguard = yes\n');
    writeFileSync(path.join(root, 'etc/default/grub'), 'GRUB_DEFAULT=0\n');
    // As update-grub writes it: the newest kernel first, then the submenu with every kernel.
    writeFileSync(path.join(root, 'boot/grub/grub.cfg'), `menuentry 'Debian GNU/Linux' $menuentry_id_option 'gnulinux-simple-UUID' {\n\tlinux /boot/vmlinuz-${kernel.release} root=UUID=x ro\n}\n` +
      `submenu 'Advanced options' $menuentry_id_option 'gnulinux-advanced-UUID' {\n${entry(kernel.release)}${entry(older)}}\n`);
    execFileSync('grub-editenv', [grubenv, 'create']);
  });

  it('installing the module the held-back kernel lacked gives GRUB\'s default back in the same run', async () => {
    const apply = await ootmod(root, 'boot', 'apply');
    expect(apply.exitCode, apply.stderr).toBe(0);
    expect(execFileSync('grub-editenv', [grubenv, 'list'], { encoding: 'utf8' })).toBe(`saved_entry=gnulinux-advanced-UUID>${id(older)}\n`);
    expect(existsSync(dropIn)).toBe(true);

    // A dry run of the install plans the guard after the build (as things are now, it keeps the
    // default: the build has not happened), and changes nothing.
    const dry = await ootmod(root, 'install', 'ootmod-hello', '--dry-run');
    expect(dry.exitCode, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/^would run the boot guard after the other jobs .*as things are now it would keep GRUB's default as it is/m);
    expect(existsSync(dropIn)).toBe(true);

    const r = await ootmod(root, 'install', 'ootmod-hello');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(`${r.stdout}\n${r.stderr}`).toMatch(/boot guard: gave GRUB's default back/);
    expect(execFileSync('grub-editenv', [grubenv, 'list'], { encoding: 'utf8' })).toBe('');
    expect(existsSync(dropIn)).toBe(false);
    expect(existsSync(path.join(root, 'var/lib/ootmod/boot-guard.json'))).toBe(false);
    expect(existsSync(path.join(root, 'run/ootmod/next-boot-not-ready'))).toBe(false);
  });
});
