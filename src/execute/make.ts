// The MAKE command as DKMS runs it. Pure.

export interface MakeContext {
  kernelver: string;
  kernelBuildDir: string;
  buildDir: string;
  jobs: number;
  /** The kernel was built with clang: kbuild needs LLVM=1. */
  llvm: boolean;
}

/**
 * DKMS's default is `make -C <kernel build dir> M=<build dir>`. A command that starts with the word
 * `make` gets `-jN KERNELRELEASE=KVER` (and LLVM=1 for clang kernels) right after it; commands that
 * start otherwise (`cd x && make`, `(./configure; make)`, `'make'`) are run as written.
 */
export function makeCommandLine(make: string | undefined, ctx: MakeContext): string {
  const command = make?.trim() || `make -C ${ctx.kernelBuildDir} M=${ctx.buildDir}`;
  const m = /^make(\s|$)/.exec(command);
  if (!m) return command;
  const injected = [`-j${ctx.jobs}`, `KERNELRELEASE=${ctx.kernelver}`, ...(ctx.llvm ? ['LLVM=1'] : [])].join(' ');
  return `make ${injected}${command.slice(4)}`;
}
