// The benchmark's own Debian sid chroot (named `bench-sid`, apart from the e2e suite's `sid`): the current
// sid kernel's headers and linux-source of exactly the headers' version, the kernel's gcc, and the rustc,
// rust-src and bindgen it was built with, all derived from the archive at run time. Debootstrapped and
// set up on first use (a few minutes and a few hundred MB from the host's Debian mirror), cached after.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { currentKernel, ensureChroot, kernelGccPackage, kernelRustToolchain, type Chroot, type KernelInfo } from '../test/e2e/lib/chroot';
import { onInterrupt, step } from './lib';

/** The chroot's name under /var/cache/ootmod-test/chroots (OOTMOD_BENCH_CHROOT: another one, e.g. a copy). */
export const BENCH_CHROOT = process.env.OOTMOD_BENCH_CHROOT ?? 'bench-sid';

export interface RustChroot {
  chroot: Chroot;
  kernel: KernelInfo;
}

/** The bench chroot with everything a cold Rust tree build needs, or the reason it cannot have it. */
export async function rustChroot(ootmodBundle: string): Promise<RustChroot> {
  const log = (m: string) => step(m);
  const chroot = await ensureChroot('sid', { name: BENCH_CHROOT, log });
  const kernel = await currentKernel(chroot);
  await chroot.withMounts(async () => {
    const have = (p: string) => existsSync(chroot.path(p));
    if (!have('/usr/bin/node') || !have('/usr/bin/patch') || !have('/usr/bin/xz')) {
      await chroot.aptInstall(['nodejs', 'make', 'binutils', 'kmod', 'openssl', 'xz-utils', 'zstd', 'patch', 'ca-certificates', 'bc']);
    }
    if (!have(`/usr/src/linux-headers-${kernel.kver}/.config`) || !have(`/usr/src/linux-source-${kernel.upstream}.tar.xz`)) {
      // No kernel image: the row needs the headers and sources of a kernel, not a bootable one.
      await chroot.aptInstall([`${kernel.headersPackage}=${kernel.version}`, `${kernel.sourcePackage}=${kernel.version}`], { target: kernel.suite });
    }
    const gcc = await kernelGccPackage(chroot, kernel.kver);
    if (!have(`/usr/bin/${gcc}`)) await chroot.aptInstall([gcc]);
    const toolchain = await kernelRustToolchain(chroot, kernel.kver);
    if (!toolchain.ok) throw new Error(`no rustc matching ${kernel.kver} in the archive: ${toolchain.reason}`);
    const rustc = await chroot.run(['bash', '-c', 'rustc --version 2>/dev/null; true']);
    if (rustc.stdout.trim() !== toolchain.rustcText || !have('/usr/bin/bindgen')) await chroot.aptInstall(toolchain.packages, { target: toolchain.suite });
  });
  unmountOnInterrupt(chroot.root);
  copyFileSync(ootmodBundle, chroot.path('/usr/sbin/ootmod'));
  chmodSync(chroot.path('/usr/sbin/ootmod'), 0o755);
  return { chroot, kernel };
}

let hooked = false;
/** On Ctrl-C the chroot's mounts must not outlive the benchmark (withMounts' finally never runs then). */
function unmountOnInterrupt(root: string): void {
  if (hooked) return;
  hooked = true;
  onInterrupt(() => {
    const points = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((p) => p.startsWith(`${root}/`))
      .sort((a, b) => b.length - a.length);
    for (const p of points) {
      try {
        execFileSync('umount', ['-R', '-l', p], { stdio: 'ignore' });
      } catch {
        /* already gone with its parent */
      }
    }
    // The lock, only when this process holds it (it holds the pid of its owner).
    const owner = existsSync(`${root}.lock`) ? readFileSync(`${root}.lock`, 'utf8').trim() : '';
    if (owner === String(process.pid)) rmSync(`${root}.lock`, { force: true });
  });
}
