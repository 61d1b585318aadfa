/**
 * Self-check of the e2e infrastructure: `npx tsx test/e2e/lib/selfcheck.ts sid|trixie` (as root).
 *
 * sid:    installs the current kernel image and headers in the sid chroot, builds a trivial C module
 *         against them with the kernel's own gcc, boots the kernel under QEMU with the module and
 *         checks its printk line.
 * trixie: installs the trixie-backports kernel headers and linux-source, asks kernelRustToolchain
 *         which rustc matches, installs that toolchain in its own transaction and checks that
 *         `rustc --version` is the kernel's CONFIG_RUSTC_VERSION_TEXT.
 */
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import {
  type Chroot,
  type KernelInfo,
  type Suite,
  currentKernel,
  ensureChroot,
  kernelGccPackage,
  kernelRustToolchain,
} from './chroot.js';
import { bootWithModules } from './qemu.js';

const HELLO_C = `// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>
#include <linux/init.h>

static int __init selfcheck_init(void)
{
	pr_info("ootmod_selfcheck: hello from the e2e self-check\\n");
	return 0;
}

static void __exit selfcheck_exit(void)
{
	pr_info("ootmod_selfcheck: goodbye\\n");
}

module_init(selfcheck_init);
module_exit(selfcheck_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("ootmod e2e self-check module");
`;

async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const result = await fn();
  console.log(`-- ${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return result;
}

async function findVmlinuz(chroot: Chroot, kver: string): Promise<string> {
  const candidates = [`/boot/vmlinuz-${kver}`, `/usr/lib/modules/${kver}/vmlinuz`].map((p) => chroot.path(p));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`no vmlinuz for ${kver} (looked at ${candidates.join(', ')})`);
  return found;
}

async function checkSid(chroot: Chroot, kernel: KernelInfo): Promise<void> {
  const { kver } = kernel;
  await step('install kernel image + headers', () =>
    chroot.aptInstall([kernel.imagePackage, kernel.headersPackage], { target: kernel.suite }),
  );
  const gcc = await kernelGccPackage(chroot, kver);
  await step(`install ${gcc}`, () => chroot.aptInstall([gcc, 'make']));
  console.log('rust toolchain:', JSON.stringify(await kernelRustToolchain(chroot, kver), null, 2));

  const modDir = '/tmp/ootmod-selfcheck';
  await fs.rm(chroot.path(modDir), { recursive: true, force: true });
  await fs.mkdir(chroot.path(modDir), { recursive: true });
  await fs.writeFile(chroot.path(`${modDir}/ootmod_selfcheck.c`), HELLO_C);
  await fs.writeFile(chroot.path(`${modDir}/Kbuild`), 'obj-m := ootmod_selfcheck.o\n');
  await step('build C module', () =>
    chroot.run(['make', '-C', `/usr/lib/modules/${kver}/build`, `M=${modDir}`, 'modules']),
  );

  const boot = await step('boot under QEMU', async () =>
    bootWithModules({
      vmlinuz: await findVmlinuz(chroot, kver),
      modules: [{ path: chroot.path(`${modDir}/ootmod_selfcheck.ko`) }],
      script: ['cat /proc/modules'],
      timeoutMs: 180_000,
    }),
  );
  const printed = boot.log.includes('ootmod_selfcheck: hello from the e2e self-check');
  console.log(`boot: done=${boot.done} timedOut=${boot.timedOut} insmod=${JSON.stringify(boot.insmod)} ` +
    `rmmod=${JSON.stringify(boot.rmmod)} printk=${printed} qemu=${(boot.durationMs / 1000).toFixed(1)} s`);
  if (!boot.done || boot.insmod.ootmod_selfcheck !== 0 || boot.rmmod.ootmod_selfcheck !== 0 || !printed) {
    throw new Error(`boot check failed; serial log:\n${boot.log}`);
  }
}

async function checkTrixie(chroot: Chroot, kernel: KernelInfo): Promise<void> {
  await step('install backports headers + linux-source', () =>
    chroot.aptInstall([kernel.headersPackage, `${kernel.sourcePackage}=${kernel.version}`], {
      target: kernel.suite,
    }),
  );
  const toolchain = await kernelRustToolchain(chroot, kernel.kver);
  console.log('rust toolchain:', JSON.stringify(toolchain, null, 2));
  if (!toolchain.ok) throw new Error(toolchain.reason);
  // A transaction of its own: with -t trixie-backports apt would pick backports' newer rustc.
  await step(`install rust toolchain from ${toolchain.suite}`, () =>
    chroot.aptInstall([...toolchain.packages, 'make'], { target: toolchain.suite }),
  );
  const { stdout } = await chroot.run(['rustc', '--version']);
  console.log(`rustc --version: ${stdout}`);
  if (stdout.trim() !== toolchain.rustcText) {
    throw new Error(`rustc is "${stdout.trim()}", kernel wants "${toolchain.rustcText}"`);
  }
}

async function main(): Promise<void> {
  const suite = process.argv[2];
  if (suite !== 'sid' && suite !== 'trixie') throw new Error('usage: selfcheck.ts sid|trixie');
  const chroot = await step(`ensure ${suite} chroot`, () => ensureChroot(suite as Suite));
  await step('apt-get update', () => chroot.aptUpdate());
  const kernel = await currentKernel(chroot);
  console.log('kernel:', JSON.stringify(kernel, null, 2));
  if (suite === 'sid') await checkSid(chroot, kernel);
  else await checkTrixie(chroot, kernel);
  console.log(`selfcheck ${suite}: OK`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
