// The compiler and linker a kernel's modules are built with.
import { findOnPath } from '../system/programs.js';
import type { KernelTarget } from './inventory.js';

/**
 * What DKMS exports before PRE_BUILD (do_build), so PRE_BUILD, MAKE and POST_BUILD see it: CC and
 * KERNEL_CC, the kernel's compiler (.kernelvariables' CC; then CONFIG_CC_VERSION_TEXT's first word when
 * that is installed; then `clang` for a clang-built kernel when clang is installed), and LD and
 * KERNEL_LD = ld.lld for an lld-linked kernel when ld.lld is installed. DKMS has no cross builds: for a
 * kernel of another architecture ootmod gives the cross compiler, and ARCH and CROSS_COMPILE as its make
 * gets them. A variable DKMS would leave unset is undefined (removed from the environment).
 */
export function kernelToolEnv(kernel: Pick<KernelTarget, 'arch' | 'compiler' | 'config'>, onPath: (cmd: string) => string | undefined = findOnPath): Record<string, string | undefined> {
  const { arch, compiler, config } = kernel;
  if (arch.foreign && arch.srcArch && arch.crossCompile) {
    return { CC: compiler.command, KERNEL_CC: compiler.command, ARCH: arch.srcArch, CROSS_COMPILE: arch.crossCompile };
  }
  let cc = compiler.command;
  let kernelCc: string | undefined;
  const named = compiler.versionText?.split(/\s+/)[0];
  if (named && onPath(named)) cc = kernelCc = named;
  if (compiler.clang && onPath('clang')) cc = kernelCc = 'clang';
  const lld = config?.builtin('LD_IS_LLD') && onPath('ld.lld') ? 'ld.lld' : undefined;
  return { CC: cc, KERNEL_CC: kernelCc, ...(lld ? { LD: lld, KERNEL_LD: lld } : {}) };
}
