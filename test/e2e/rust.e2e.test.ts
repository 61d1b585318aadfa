// Rust-for-Linux on stock Debian kernels, for real: in a debootstrapped chroot of each target, ootmod
// rebuilds the kernel's Rust tree, builds a Rust and a C module with it, and the real kernel loads them.
import { cpSync, chmodSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { placeSource } from '../support/host.js';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { currentKernel, ensureChroot, installRustKernel, type Chroot, type KernelInfo } from './lib/chroot.js';
import { bootWithModules } from './lib/qemu.js';

const REPO = path.resolve(__dirname, '../..');
const FIXTURES = ['ootmod-hello-1.0', 'ootmod-rust-hello-1.0'];

interface Target {
  suite: 'sid' | 'trixie';
  what: string;
}

// (a) trixie with the trixie-backports kernel, built by Debian with trixie's own rustc;
// (b) sid with its current kernel. Versions are derived at run time.
const TARGETS: Target[] = [
  { suite: 'trixie', what: 'Debian 13 trixie with the trixie-backports kernel' },
  { suite: 'sid', what: 'Debian sid with its current kernel' },
];

describe.each(TARGETS)('$what', ({ suite }) => {
  let chroot: Chroot;
  let kernel: KernelInfo;
  let skipReason: string | undefined;
  const sh = async (script: string, env: Record<string, string> = {}) => {
    const r = await chroot.run(['bash', '-c', script], { reject: false, env, timeoutMs: 1_500_000 });
    return { code: r.exitCode, out: r.stdout, err: r.stderr };
  };
  const treeDir = () => `/var/lib/ootmod/rust/${kernel.kver}/x86_64/current`;

  beforeAll(async () => {
    chroot = await ensureChroot(suite);
    kernel = await currentKernel(chroot);
    skipReason = await installRustKernel(chroot, kernel);
    if (skipReason) return;
    // A fresh start every run: the Rust tree is built cold, the modules from scratch.
    for (const p of ['/var/lib/ootmod', `/usr/lib/modules/${kernel.kver}/updates/ootmod`]) rmSync(chroot.path(p), { recursive: true, force: true });
    cpSync(path.join(REPO, 'dist/ootmod'), chroot.path('/usr/sbin/ootmod'));
    chmodSync(chroot.path('/usr/sbin/ootmod'), 0o755);
    for (const f of FIXTURES) placeSource(chroot.root, path.join(REPO, 'test/fixtures', f));
  });

  it('prepares the kernel Rust tree, and its ABI matches the kernel', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    const r = await sh('ootmod rust prepare');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(new RegExp(`^built /var/lib/ootmod/rust/${kernel.kver.replace(/[+.]/g, '\\$&')}/x86_64/trees/\\w+`, 'm'));
    const { trees } = JSON.parse((await sh('ootmod rust status --json')).out);
    expect(trees).toHaveLength(1);
    expect(trees[0]).toMatchObject({ kernel: kernel.kver, state: 'current', abi: { ok: true } });
    expect(trees[0].abi.exported).toBeGreaterThan(0);
    expect(trees[0].abi.matched).toBe(trees[0].abi.exported);
    for (const f of ['rust/libkernel.rmeta', 'rust/libcore.rmeta', 'rust/libmacros.so', 'scripts/target.json']) {
      expect(statSync(chroot.path(`${treeDir()}/${f}`)).size).toBeGreaterThan(0);
    }
  });

  it('makes a second prepare a cache hit', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    const r = await sh('ootmod rust prepare');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^current \/var\/lib\/ootmod\/rust\//m);
    expect(r.err).not.toMatch(/building/);
  });

  it('builds the Rust and the C module against it: no undefined symbols, the kernel vermagic', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    const r = await sh('ootmod autoinstall');
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toMatch(/^autoinstall: 2 installed, 0 built, 0 current, 0 skipped, 0 failed$/m);
    const log = readFileSync(chroot.path(`/var/lib/ootmod/built/${kernel.kver}/ootmod-rust-hello/1.0/make.log`), 'utf8');
    expect(log).toMatch(/RUSTC \[M\] .*ootmod_rust_hello\.o/);
    expect(log).toMatch(/MODPOST/);
    expect(log).not.toMatch(/undefined!/);
    expect(log).toMatch(new RegExp(`make -C ${treeDir().replace('current', 'trees/\\w+')}|-C /var/lib/ootmod/rust/`));
    // The vermagic of a module Debian built for this kernel is the reference.
    const ownModule = (await sh(`find /usr/lib/modules/${kernel.kver}/kernel -name '*.ko*' | head -1`)).out.trim();
    const want = (await sh(`modinfo -F vermagic ${ownModule}`)).out.trim();
    expect(want).toMatch(new RegExp(`^${kernel.kver.replace(/[+.]/g, '\\$&')} `));
    for (const m of ['ootmod_rust_hello', 'ootmod_hello']) {
      const got = await sh(`modinfo -F vermagic /usr/lib/modules/${kernel.kver}/updates/ootmod/${m}.ko*`);
      expect(got.out.trim()).toBe(want);
    }
  });

  it('loads both modules in the real kernel under QEMU, with parameters, and unloads them', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    const dir = chroot.path(`/usr/lib/modules/${kernel.kver}/updates/ootmod`);
    const file = (m: string) => path.join(dir, readdirSync(dir).find((f) => f.startsWith(`${m}.ko`))!);
    const vmlinuz = [chroot.path(`/boot/vmlinuz-${kernel.kver}`), chroot.path(`/usr/lib/modules/${kernel.kver}/vmlinuz`)].find((p) => {
      try {
        return statSync(p).isFile();
      } catch {
        return false;
      }
    })!;
    const boot = await bootWithModules({
      vmlinuz,
      modules: [
        { path: file('ootmod_hello'), params: ['greeting=5'] },
        { path: file('ootmod_rust_hello'), params: ['greeting=42'] },
      ],
      timeoutMs: 180_000,
    });
    expect(boot.done, boot.log.slice(-3000)).toBe(true);
    expect(boot.insmod).toEqual({ ootmod_hello: 0, ootmod_rust_hello: 0 });
    expect(boot.log).toContain(`ootmod_hello: Hello from C out-of-tree module (greeting=5, built for ${kernel.kver})`);
    expect(boot.log).toContain('ootmod_rust_hello: Rust out-of-tree module (init)');
    expect(boot.log).toContain('ootmod_rust_hello: greeting: 42');
    expect(boot.rmmod.ootmod_rust_hello).toBe(0);
    expect(boot.log).toContain('ootmod_rust_hello: numbers [72, 108], goodbye (exit)');
  });

  it('on a kernel with no Rust tree yet, installs the C module before the tree is done, and the Rust module after', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    if (suite !== 'sid') ctx.skip('the order of jobs does not depend on the suite: checked on sid only, to save a tree build');
    expect((await sh(`ootmod rust clean -k ${kernel.kver}`)).code).toBe(0);
    const r = await sh('ootmod autoinstall --force --json');
    expect(r.code, r.err).toBe(0);
    const { plan } = JSON.parse(r.out) as { plan: { jobs: { id: string; kind: string; module: string | null; status: string; started: number; finished: number }[] } };
    const find = (kind: string, module?: string) => plan.jobs.find((j) => j.kind === kind && (!module || j.module === module))!;
    const tree = find('rust-tree');
    expect(tree.status).toBe('done');
    expect(find('install', 'ootmod-hello').status).toBe('done');
    expect(find('install', 'ootmod-hello').finished).toBeLessThan(tree.finished);
    expect(find('build', 'ootmod-rust-hello').started).toBeGreaterThanOrEqual(tree.finished);
    expect(find('install', 'ootmod-rust-hello').status).toBe('done');
    // The C module built against the headers, not the Rust tree.
    const log = readFileSync(chroot.path(`/var/lib/ootmod/built/${kernel.kver}/ootmod-hello/1.0/make.log`), 'utf8');
    expect(log).toMatch(new RegExp(`-C /usr/src/linux-headers-${kernel.kver.replace(/[+.]/g, '\\$&')} `));
  });

  it('refuses a mismatched rustc with one line: what the kernel needs, what is there, the fix', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    writeFileSync(chroot.path('/tmp/other-rustc'), '#!/bin/sh\necho "rustc 1.2.3 (abcdef012 2020-01-01)"\n', { mode: 0o755 });
    const r = await sh('ootmod rust prepare --force', { RUSTC: '/tmp/other-rustc' });
    expect(r.code).toBe(5);
    const lines = r.err.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^rust prepare ${kernel.kver.replace(/[+.]/g, '\\$&')}: ${kernel.kver.replace(/[+.]/g, '\\$&')} was built with rustc \\d+\\.\\d+\\.\\d+ .*, installed: rustc 1\\.2\\.3 .* at /tmp/other-rustc: install rustc=`));
    // The tree in use was not touched.
    expect((await sh('ootmod rust status')).out).toMatch(/current/);
  });

  it('detects a deleted .rmeta and rebuilds the tree', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    rmSync(chroot.path(`${treeDir()}/rust/libkernel.rmeta`));
    expect((await sh('ootmod rust status')).out).toMatch(/damaged\s.*rust\/libkernel\.rmeta is missing/);
    const r = await sh('ootmod rust prepare');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^built .*\(damaged: rust\/libkernel\.rmeta is missing or changed\)/m);
    expect(statSync(chroot.path(`${treeDir()}/rust/libkernel.rmeta`)).size).toBeGreaterThan(0);
    expect((await sh('ootmod rust status')).out).toMatch(/current/);
  });
});
