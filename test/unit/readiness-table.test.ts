// The readiness table of `ootmod kernels` (its READY column and the lines below it) and the end-of-apt
// text (the notice that `ootmod boot apply`'s notice job writes, the same lines the trigger prints) on
// a fake root with two kernels, for the four cases of issue 18: all ready, a needed module failed on
// the new kernel, a module BUILD_EXCLUSIVE excludes on the new kernel, a critical module missing from
// the new kernel's initramfs.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeRoot } from '../support/roots.js';

const OLD = '6.1.0-30-amd64';
const NEW = '6.1.0-31-amd64';
const OOTMOD = path.resolve(__dirname, '../../dist/ootmod');
const NEWEST = 'no GRUB or systemd-boot configuration found: the newest kernel, as Debian orders its boot menus';
const re = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

type Case = 'all ready' | 'failed' | 'excluded' | 'not in the initramfs';

/** OLD and NEW (images, and headers as far as ootmod looks); demo/1.0 installed on OLD, and on NEW as the case has it. */
function fakeSystem(c: Case): { root: string; env: NodeJS.ProcessEnv } {
  const root = makeRoot('ootmod-table-');
  const records: Record<string, unknown> = {};
  for (const k of [OLD, NEW]) {
    writeFileSync(path.join(root, 'boot', `vmlinuz-${k}`), '');
    const headers = path.join(root, 'usr/src', `linux-headers-${k}`);
    mkdirSync(path.join(headers, 'scripts/mod'), { recursive: true });
    writeFileSync(path.join(headers, '.config'), 'CONFIG_MODULES=y\n');
    writeFileSync(path.join(headers, 'Makefile'), 'all:\n');
    const ko = path.join(root, 'usr/lib/modules', k, 'updates/ootmod/demo.ko');
    mkdirSync(path.dirname(ko), { recursive: true });
    if (k === NEW && c === 'excluded') continue;
    const installed = !(k === NEW && c === 'failed');
    if (installed) writeFileSync(ko, '');
    records[`demo/1.0/${k}`] = {
      module: 'demo', version: '1.0', kernel: k, arch: 'x86_64', status: installed ? 'installed' : 'failed', inputsKey: 'k', built: [],
      installed: installed ? [{ module: 'demo', path: ko }] : [], error: installed ? undefined : 'make exited with 2 (demo.c:3:2: error: #error "too new")', updatedAt: 'x',
    };
  }
  mkdirSync(path.join(root, 'var/lib/ootmod'), { recursive: true });
  writeFileSync(path.join(root, 'var/lib/ootmod/state.json'), JSON.stringify({ format: 1, records }));
  // The source, whose dkms.conf tells an excluded kernel from one the module was not built for.
  const src = path.join(root, 'usr/src/demo-1.0');
  mkdirSync(src, { recursive: true });
  const exclusive = c === 'excluded' ? `BUILD_EXCLUSIVE_KERNEL="^${re(OLD)}$"\n` : '';
  writeFileSync(path.join(src, 'dkms.conf'), `PACKAGE_NAME="demo"\nPACKAGE_VERSION="1.0"\nBUILT_MODULE_NAME[0]="demo"\nDEST_MODULE_LOCATION[0]="/updates"\nAUTOINSTALL="yes"\n${exclusive}`);
  writeFileSync(path.join(src, 'Makefile'), 'obj-m := demo.o\n');
  // initramfs-tools makes the initramfs; a stand-in lsinitramfs lists demo.ko in OLD's in the last case only (then demo is critical).
  const hook = path.join(root, 'etc/kernel/postinst.d/initramfs-tools');
  mkdirSync(path.dirname(hook), { recursive: true });
  writeFileSync(hook, '#!/bin/sh\n', { mode: 0o755 });
  for (const k of [OLD, NEW]) writeFileSync(path.join(root, 'boot', `initrd.img-${k}`), k);
  const bin = path.join(root, 'fake-bin');
  mkdirSync(bin, { recursive: true });
  const holding = c === 'not in the initramfs' ? OLD : 'none';
  writeFileSync(path.join(bin, 'lsinitramfs'), `#!/bin/sh\nk=$(cat "$1")\necho usr/lib/modules/$k/kernel/fs/ext4/ext4.ko\n[ "$k" != ${holding} ] || echo usr/lib/modules/$k/updates/ootmod/demo.ko\n`, { mode: 0o755 });
  return { root, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } };
}

/** `ootmod kernels`: READY of each kernel, and the lines below the table. */
function kernelsTable(c: Case): { ready: Record<string, string>; lines: string[]; root: string; env: NodeJS.ProcessEnv } {
  const { root, env } = fakeSystem(c);
  const r = spawnSync(OOTMOD, ['--root', root, 'kernels'], { encoding: 'utf8', env });
  expect(r.status, r.stderr).toBe(0);
  const lines = r.stdout.split('\n');
  const header = lines.findIndex((l) => l.startsWith('KERNEL '));
  expect(lines[header]).toMatch(/ READY$/);
  const ready: Record<string, string> = {};
  for (const l of lines.slice(header + 1)) {
    const cols = l.trim().split(/\s+/);
    if ([OLD, NEW].includes(cols[0]!)) ready[cols[0]!] = cols.at(-1)!;
  }
  return { ready, lines, root, env };
}

/** What the end of an apt run prints: the notice written by the notice job, or nothing. */
function endOfApt(root: string, env: NodeJS.ProcessEnv): string | undefined {
  const r = spawnSync(OOTMOD, ['--root', root, 'boot', 'apply'], { encoding: 'utf8', env });
  expect(r.status, r.stderr).toBe(0);
  const notice = path.join(root, 'run/ootmod/next-boot-not-ready');
  return existsSync(notice) ? readFileSync(notice, 'utf8') : undefined;
}

describe.skipIf(!existsSync(OOTMOD))('the readiness table and the end-of-apt block', () => {
  it('all ready: READY yes for both kernels, the newer boots next, no block', () => {
    const { ready, lines, root, env } = kernelsTable('all ready');
    expect(ready).toEqual({ [OLD]: 'yes', [NEW]: 'yes' });
    expect(lines).toContain(`boots next: ${NEW} (ready; ${NEWEST})`);
    expect(lines.filter((l) => l.includes('not ready'))).toEqual([]);
    expect(endOfApt(root, env)).toBeUndefined();
  });

  it('a needed module failed on the new kernel: READY no, with its first error, and the block names it', () => {
    const { ready, lines, root, env } = kernelsTable('failed');
    expect(ready).toEqual({ [OLD]: 'yes', [NEW]: 'no' });
    expect(lines).toContain(`  ${NEW}: not ready: demo (failed: make exited with 2 (demo.c:3:2: error: #error "too new"))`);
    expect(lines).toContain(`boots next: ${NEW} (NOT READY; ${NEWEST})`);
    expect(endOfApt(root, env)).toBe([
      `ootmod: the kernel that boots next, ${NEW}, is not ready (${NEWEST}):`,
      '  demo/1.0: failed: make exited with 2 (demo.c:3:2: error: #error "too new")',
      `ootmod: a reboot now starts ${NEW} without it; see ootmod kernels (and ootmod status for the build logs)`,
      '',
    ].join('\n'));
  });

  it('a module excluded on the new kernel: READY yes, the exclusion is said, no block', () => {
    const { ready, lines, root, env } = kernelsTable('excluded');
    expect(ready).toEqual({ [OLD]: 'yes', [NEW]: 'yes' });
    expect(lines.find((l) => l.startsWith(`  ${NEW}: demo is not needed there (`))).toMatch(/BUILD_EXCLUSIVE_KERNEL/);
    expect(lines).toContain(`boots next: ${NEW} (ready; ${NEWEST})`);
    expect(endOfApt(root, env)).toBeUndefined();
  });

  it('a critical module missing from the new kernel\'s initramfs: READY no, with the command that fixes it, and the block names it', () => {
    const { ready, lines, root, env } = kernelsTable('not in the initramfs');
    expect(ready).toEqual({ [OLD]: 'yes', [NEW]: 'no' });
    expect(lines).toContain(`  ${NEW}: not ready: demo (not in the initramfs of ${NEW} (update-initramfs -u -k ${NEW}))`);
    expect(lines.find((l) => l.startsWith('needed modules: '))).toMatch(/^needed modules: demo \(critical\) /);
    expect(endOfApt(root, env)).toBe([
      `ootmod: the kernel that boots next, ${NEW}, is not ready (${NEWEST}):`,
      `  demo/1.0 (critical: needed in early boot): not in the initramfs of ${NEW} (update-initramfs -u -k ${NEW})`,
      `ootmod: a reboot now starts ${NEW} without it; see ootmod kernels (and ootmod status for the build logs)`,
      '',
    ].join('\n'));
  });
});
