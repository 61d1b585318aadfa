// Rust-for-Linux on stock Debian kernels, for real: in a debootstrapped chroot of each target, ootmod
// rebuilds the kernel's Rust tree, builds a Rust and a C module with it, and the real kernel loads them.
// On sid, a Rust module package made with Debian's dh_dkms also installs through ootmod-dkms with apt.
import { cpSync, chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { placeSource } from '../support/host.js';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKernel, ensureChroot, installRustKernel, type Chroot, type KernelInfo } from './lib/chroot.js';
import { buildOotmodIndepDebs, type OotmodIndepDebs } from './lib/debs.js';
import { buildFixtureDkmsPackage } from './lib/dkms.js';
import { bootWithModules } from './lib/qemu.js';

const REPO = path.resolve(__dirname, '../..');
const FIXTURES = ['ootmod-hello-1.0', 'ootmod-rust-hello-1.0'];
/** What the dh_dkms test installs in the (cached) chroot; removed before the other tests run. */
const PACKAGED = ['ootmod-rust-hello-dkms', 'dh-dkms', 'ootmod-dkms', 'ootmod'];
const log = (msg: string) => process.stderr.write(`[e2e] ${msg}\n`);
const re = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

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
  const apt = (args: string) => sh(`apt-get -y -o Dpkg::Use-Pty=0 --no-install-recommends ${args} 2>&1`);
  const vmlinuz = () =>
    [chroot.path(`/boot/vmlinuz-${kernel.kver}`), chroot.path(`/usr/lib/modules/${kernel.kver}/vmlinuz`)].find((p) => {
      try {
        return statSync(p).isFile();
      } catch {
        return false;
      }
    })!;
  /** The vermagic of a module Debian built for this kernel: the reference. */
  const kernelVermagic = async () => {
    const ownModule = (await sh(`find /usr/lib/modules/${kernel.kver}/kernel -name '*.ko*' | head -1`)).out.trim();
    const want = (await sh(`modinfo -F vermagic ${ownModule}`)).out.trim();
    expect(want).toMatch(new RegExp(`^${re(kernel.kver)} `));
    return want;
  };
  let debs: OotmodIndepDebs | undefined;
  /** Purges what the dh_dkms test installs, so the cached chroot is left as the other tests expect it. */
  const purgePackaged = async () => {
    const left = (await sh(`dpkg-query -W -f '\${db:Status-Abbrev} \${Package}\\n' ${PACKAGED.join(' ')} 2>/dev/null`)).out;
    const installed = left.split('\n').filter((l) => /^[ih]/.test(l)).map((l) => l.split(' ').pop()!);
    if (!installed.length) return;
    const r = await apt(`purge ${installed.join(' ')}`);
    if (r.code !== 0) throw new Error(`purging ${installed.join(' ')}: ${r.out.slice(-3000)}`);
  };

  beforeAll(async () => {
    chroot = await ensureChroot(suite);
    kernel = await currentKernel(chroot);
    // What the dh_dkms test of an interrupted earlier run installed (its kernel hooks and triggers
    // would build modules while the kernel is installed below): gone before anything else.
    await purgePackaged();
    skipReason = await installRustKernel(chroot, kernel);
    if (skipReason) return;
    // A fresh start every run: the Rust tree is built cold, the modules from scratch.
    for (const p of ['/var/lib/ootmod', `/usr/lib/modules/${kernel.kver}/updates/ootmod`]) rmSync(chroot.path(p), { recursive: true, force: true });
    cpSync(path.join(REPO, 'dist/ootmod'), chroot.path('/usr/sbin/ootmod'));
    chmodSync(chroot.path('/usr/sbin/ootmod'), 0o755);
    for (const f of FIXTURES) placeSource(chroot.root, path.join(REPO, 'test/fixtures', f));
    // ootmod's own .debs, for the dh_dkms package (sid only: the way packages install does not depend on the suite).
    if (suite === 'sid') debs = await buildOotmodIndepDebs(log);
  });

  afterAll(async () => {
    if (!debs) return;
    if (!debs.prebuilt) rmSync(debs.dir, { recursive: true, force: true });
    await purgePackaged();
  });

  it('prepares the kernel Rust tree, and its ABI matches the kernel', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    const r = await sh('ootmod rust prepare');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(new RegExp(`^built /var/lib/ootmod/rust/${kernel.kver.replace(/[+.]/g, '\\$&')}/x86_64/trees/\\w+`, 'm'));
    const { trees } = JSON.parse((await sh('ootmod rust status --json')).out);
    expect(trees).toHaveLength(1);
    // The default tree: the crates' metadata, no objects; its ABI check compares crate hashes.
    expect(trees[0]).toMatchObject({ kernel: kernel.kver, state: 'current', kind: 'metadata', abi: { ok: true } });
    expect(trees[0].abi.exported).toBeGreaterThan(0);
    expect(trees[0].abi.matched).toBe(trees[0].abi.exported);
    // The item paths those symbols name (kernel::net::phy, kernel::print::call_printk) are all in the tree's crates.
    expect(trees[0].abi.paths).toMatchObject({ lacking: [] });
    expect(trees[0].abi.paths.checked).toBe(trees[0].abi.exported);
    // The hashes are those of the kernel's own Module.symvers: every crate its Rust symbols name.
    const symvers = readFileSync(chroot.path(`/usr/src/linux-headers-${kernel.kver}/Module.symvers`), 'utf8');
    for (const crate of ['core', 'kernel']) {
      const [hash] = trees[0].abi.crates[crate].rebuilt as string[];
      expect(symvers).toContain(`Cs${hash}_${crate.length}${crate}`);
    }
    expect(readdirSync(chroot.path(`${treeDir()}/rust`)).filter((f) => f.endsWith('.o'))).toEqual([]);
    expect((await sh('ootmod rust status')).out).toMatch(new RegExp(`^${re(kernel.kver)}\\s+amd64\\s+x86_64\\s+current\\s+metadata\\s+\\d+ MB\\s+ok (\\d+)/\\1 symbols \\(crate hashes\\)`, 'm'));
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
    const want = await kernelVermagic();
    for (const m of ['ootmod_rust_hello', 'ootmod_hello']) {
      const got = await sh(`modinfo -F vermagic /usr/lib/modules/${kernel.kver}/updates/ootmod/${m}.ko*`);
      expect(got.out.trim()).toBe(want);
    }
  });

  it('loads both modules in the real kernel under QEMU, with parameters, and unloads them', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    const dir = chroot.path(`/usr/lib/modules/${kernel.kver}/updates/ootmod`);
    const file = (m: string) => path.join(dir, readdirSync(dir).find((f) => f.startsWith(`${m}.ko`))!);
    const boot = await bootWithModules({
      vmlinuz: vmlinuz(),
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

  it('refuses a tree whose crate hashes are not the kernel\'s (another rustc build of the same version), in one line', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    if (suite !== 'sid') ctx.skip('the ABI check does not depend on the suite: checked on sid only, to save a tree build');
    // What a different rustc does to the crates: the same --version, other crate hashes (rustc mixes its
    // version into every StableCrateId; RUSTC_FORCE_RUSTC_VERSION replaces it).
    const rustc = (await sh('command -v rustc')).out.trim();
    writeFileSync(chroot.path('/tmp/rustc-other-hashes'), `#!/bin/sh\nRUSTC_FORCE_RUSTC_VERSION=ootmod-e2e-other exec ${rustc} "$@"\n`, { mode: 0o755 });
    const before = (await sh('readlink -f ' + treeDir())).out.trim();
    const r = await sh('ootmod rust prepare --force', { RUSTC: '/tmp/rustc-other-hashes' });
    expect(r.code).toBe(1);
    // Beside the job's progress lines ("building the Rust tree", "... failed: <the same>"), the one line.
    const lines = r.err.trim().split('\n').filter((l) => l.startsWith('rust prepare '));
    expect(lines, r.err).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^rust prepare ${re(kernel.kver)}: Rust tree for ${re(kernel.kver)}: ABI check failed: the tree's (core|kernel) crate is Cs\\w+_ but the kernel exports \\1 symbols of Cs\\w+_: the rustc or \\.config differ from the kernel build; the tree was refused$`));
    // The tree in use was kept.
    expect((await sh('readlink -f ' + treeDir())).out.trim()).toBe(before);
    expect((await sh('ootmod rust status')).out).toMatch(/current/);
  });

  it('refuses a tree built from another .config (CONFIG_CPU_FREQ off: the kernel::cpufreq the kernel exports is not in it), in one line', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    if (suite !== 'sid') ctx.skip('the ABI check does not depend on the suite: checked on sid only, to save a tree build');
    // What the tree build reads of the .config, as `make olddefconfig` with CONFIG_CPU_FREQ off writes
    // it for Rust: the .config, include/config/auto.conf, and rustc's --cfg flags (include/generated/
    // rustc_cfg; `#[cfg(CONFIG_CPU_FREQ)] pub mod cpufreq;` in rust/kernel/lib.rs). Their times are kept,
    // so that kbuild does not run syncconfig (Debian's headers have no Kconfig files).
    const h = `/usr/src/linux-headers-${kernel.kver}`;
    const files = ['.config', 'include/config/auto.conf', 'include/generated/rustc_cfg'];
    // The kernel's exported symbols of kernel::cpufreq, and of the private kernel::opp::freq (FreqTable) that the option gates too.
    const symvers = readFileSync(chroot.path(`${h}/Module.symvers`), 'utf8').split('\n');
    const exported = symvers.filter((l) => /\t_R\w*6kernel7cpufreq\w*\tvmlinux\t/.test(l)).length;
    const oppFreq = symvers.filter((l) => /\t_R\w*6kernel3opp4freq\w*\tvmlinux\t/.test(l)).length;
    expect(exported, 'the kernel exports kernel::cpufreq symbols').toBeGreaterThan(0);
    const before = (await sh('readlink -f ' + treeDir())).out.trim();
    const saved = await sh(files.map((f) => `cp -p ${h}/${f} /root/saved-${path.basename(f)}`).join(' && '));
    expect(saved.code, saved.err).toBe(0);
    try {
      const edit = await sh([
        `sed -i 's/^CONFIG_CPU_FREQ=y$/# CONFIG_CPU_FREQ is not set/' ${h}/.config`,
        `sed -i '/^CONFIG_CPU_FREQ=y$/d' ${h}/include/config/auto.conf`,
        `sed -i '/^--cfg=CONFIG_CPU_FREQ\\(="y"\\)\\?$/d' ${h}/include/generated/rustc_cfg`,
        ...files.map((f) => `touch -r /root/saved-${path.basename(f)} ${h}/${f}`),
        `! grep -qx -e '--cfg=CONFIG_CPU_FREQ' -e '--cfg=CONFIG_CPU_FREQ="y"' ${h}/include/generated/rustc_cfg`,
      ].join(' && '));
      expect(edit.code, `editing the .config: ${edit.err}`).toBe(0);
      const r = await sh('ootmod rust prepare --force');
      expect(r.code, r.out + r.err).toBe(1);
      const lines = r.err.trim().split('\n').filter((l) => l.startsWith('rust prepare '));
      expect(lines, r.err).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^rust prepare ${re(kernel.kver)}: Rust tree for ${re(kernel.kver)}: ABI check failed: the kernel exports ${exported} symbols of kernel::cpufreq, which the tree's kernel crate lacks${oppFreq ? ` \\(and ${oppFreq} of kernel::opp::freq\\)` : ''}: the \\.config differs from the kernel build; the tree was refused$`));
      // The tree in use was kept.
      expect((await sh('readlink -f ' + treeDir())).out.trim()).toBe(before);
    } finally {
      const restored = await sh(files.map((f) => `mv /root/saved-${path.basename(f)} ${h}/${f}`).join(' && '));
      expect(restored.code, restored.err).toBe(0);
    }
    expect((await sh('ootmod rust status')).out).toMatch(/current/);
  });

  it('detects a deleted .rmeta and rebuilds the tree', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    if (suite !== 'sid') ctx.skip('how a damaged tree is found and rebuilt does not depend on the suite: checked on sid only, to save a tree build');
    rmSync(chroot.path(`${treeDir()}/rust/libkernel.rmeta`));
    expect((await sh('ootmod rust status')).out).toMatch(/damaged\s.*rust\/libkernel\.rmeta is missing/);
    const r = await sh('ootmod rust prepare');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^built .*\(damaged: rust\/libkernel\.rmeta is missing or changed\)/m);
    expect(statSync(chroot.path(`${treeDir()}/rust/libkernel.rmeta`)).size).toBeGreaterThan(0);
    expect((await sh('ootmod rust status')).out).toMatch(/current/);
  });

  describe('a Rust module package made with Debian\'s dh_dkms, with ootmod-dkms as dkms', () => {
    const DEBS = '/root/debs';
    const MODULE = 'ootmod_rust_hello';
    let deb = '';
    let ko = '';
    const skipUnlessSid = (ctx: { skip: (reason: string) => void }) => {
      if (skipReason) ctx.skip(skipReason);
      if (suite !== 'sid') ctx.skip('module packages install the same way on every suite: checked on sid only');
    };
    const expectDpkgClean = async () => {
      expect((await sh('dpkg --audit')).out.trim(), 'dpkg --audit').toBe('');
    };

    it('installs ootmod and ootmod-dkms from their .debs, and makes the package with dh_dkms', async (ctx) => {
      skipUnlessSid(ctx);
      mkdirSync(chroot.path(DEBS), { recursive: true });
      for (const f of [debs!.ootmod, debs!.ootmodDkms]) writeFileSync(chroot.path(`${DEBS}/${path.basename(f)}`), readFileSync(f));
      const r = await apt(`install ${DEBS}/${path.basename(debs!.ootmod)} ${DEBS}/${path.basename(debs!.ootmodDkms)}`);
      expect(r.code, r.out.slice(-4000)).toBe(0);
      // dh-dkms depends on dkms: ootmod-dkms provides it.
      const dh = await apt('install dh-dkms debhelper');
      expect(dh.code, dh.out.slice(-3000)).toBe(0);
      expect(dh.out).not.toMatch(/^Unpacking dkms /m);
      await expectDpkgClean();
      deb = await buildFixtureDkmsPackage(chroot, 'ootmod-rust-hello-1.0', MODULE);
      const info = await sh(`dpkg-deb -I ${deb} postinst; dpkg-deb -c ${deb}`);
      expect(info.out).toMatch(/\/usr\/lib\/dkms\/common\.postinst/);
      expect(info.out).toMatch(/usr\/src\/ootmod-rust-hello-1\.0\/ootmod_rust_hello\.rs/);
      // Its dkms.conf is dh_dkms's, with the version put in for #MODULE_VERSION#.
      const conf = await sh(`dpkg-deb --fsys-tarfile ${deb} | tar -xO ./usr/src/ootmod-rust-hello-1.0/dkms.conf`);
      expect(conf.out).toMatch(/^PACKAGE_VERSION="?1\.0"?$/m);
      // The fixture placed for the tests above, unpackaged: removed, so the package's source is the only one.
      const rm = await sh('ootmod remove ootmod-rust-hello/1.0 && rm -rf /usr/src/ootmod-rust-hello-1.0');
      expect(rm.code, rm.err).toBe(0);
      expect((await sh(`ls /usr/lib/modules/${kernel.kver}/updates/ootmod/`)).out).not.toMatch(new RegExp(MODULE));
    });

    it('apt installs it: built against the existing Rust tree, installed for the kernel, dkms status says so', async (ctx) => {
      skipUnlessSid(ctx);
      expect(deb, 'the package was made').not.toBe('');
      const tree = (await sh(`readlink -f ${treeDir()}`)).out.trim();
      const r = await apt(`install ${deb}`);
      expect(r.code, r.out.slice(-6000)).toBe(0);
      expect(r.out).toMatch(/queued; ootmod builds it at the end of this dpkg run/);
      expect(r.out).toMatch(/Processing triggers for ootmod /);
      await expectDpkgClean();
      const dkms = await sh('dkms status');
      expect(dkms.code, dkms.err).toBe(0);
      expect(dkms.out.trim().split('\n')).toContain(`ootmod-rust-hello/1.0, ${kernel.kver}, x86_64: installed`);
      const { modules } = JSON.parse((await sh('ootmod status --json')).out) as { modules: { module: string; version: string; kernel: string | null; status: string; files: string[] }[] };
      const row = modules.find((m) => m.module === 'ootmod-rust-hello' && m.kernel === kernel.kver);
      expect(row?.status, JSON.stringify(modules)).toBe('installed');
      ko = row!.files.find((f) => path.basename(f).startsWith(`${MODULE}.ko`)) ?? '';
      expect(ko, JSON.stringify(row)).toMatch(new RegExp(`^/usr/lib/modules/${re(kernel.kver)}/updates/ootmod/${MODULE}\\.ko`));
      expect(statSync(chroot.path(ko)).size).toBeGreaterThan(0);
      expect((await sh(`modinfo -F vermagic ${ko}`)).out.trim()).toBe(await kernelVermagic());
      expect((await sh(`cat /usr/lib/modules/${kernel.kver}/modules.dep`)).out).toMatch(new RegExp(`^updates/ootmod/${MODULE}\\.ko`, 'm'));
      // Built with rustc against the Rust tree the tests above left, which was neither rebuilt nor replaced.
      const make = readFileSync(chroot.path(`/var/lib/ootmod/built/${kernel.kver}/ootmod-rust-hello/1.0/make.log`), 'utf8');
      expect(make).toMatch(/RUSTC \[M\] .*ootmod_rust_hello\.o/);
      expect(make).not.toMatch(/undefined!/);
      expect((await sh(`readlink -f ${treeDir()}`)).out.trim()).toBe(tree);
      expect(r.out).not.toMatch(/^built \/var\/lib\/ootmod\/rust\//m);
    });

    it('the packaged module loads in the real kernel under QEMU', async (ctx) => {
      skipUnlessSid(ctx);
      expect(ko, 'the module was installed').not.toBe('');
      const boot = await bootWithModules({ vmlinuz: vmlinuz(), modules: [{ path: chroot.path(ko), params: ['greeting=8'] }], timeoutMs: 180_000 });
      expect(boot.done, boot.log.slice(-3000)).toBe(true);
      expect(boot.insmod).toEqual({ [MODULE]: 0 });
      expect(boot.log).toContain(`${MODULE}: Rust out-of-tree module (init)`);
      expect(boot.log).toContain(`${MODULE}: greeting: 8`);
    });

    it('apt-get remove removes the module and modules.dep forgets it', async (ctx) => {
      skipUnlessSid(ctx);
      expect(ko, 'the module was installed').not.toBe('');
      const r = await apt('remove ootmod-rust-hello-dkms');
      expect(r.code, r.out.slice(-4000)).toBe(0);
      await expectDpkgClean();
      expect(() => statSync(chroot.path(ko))).toThrow(/ENOENT/);
      expect((await sh(`cat /usr/lib/modules/${kernel.kver}/modules.dep`)).out).not.toMatch(new RegExp(MODULE));
      expect((await sh('dkms status')).out).not.toMatch(/ootmod-rust-hello/);
      // The C module, which no package owns, stays.
      expect((await sh(`cat /usr/lib/modules/${kernel.kver}/modules.dep`)).out).toMatch(/^updates\/ootmod\/ootmod_hello\.ko/m);
    });
  });
});
