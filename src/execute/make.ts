// The MAKE command as DKMS runs it, joined to ootmod's jobserver. Pure.

export interface MakeContext {
  kernelver: string;
  kernelBuildDir: string;
  buildDir: string;
  /** The kernel was built with clang: kbuild needs LLVM=1. */
  llvm: boolean;
  /** A kernel of another architecture: kbuild's ARCH and CROSS_COMPILE, from its headers' .kernelvariables. */
  cross?: { arch: string; crossCompile: string };
}

/** A `-jN`/`--jobs=N` on a make command line: it would start a job pool of its own beside ootmod's. */
const OWN_JOBS = /(^|\s)(-j\s*\d*|--jobs(=\d+)?)(?=\s|$)/g;

/**
 * DKMS's default is `make -C <kernel build dir> M=<build dir>`. A command that starts with the word
 * `make` gets `KERNELRELEASE=KVER` (and LLVM=1 for clang kernels, ARCH= CROSS_COMPILE= for
 * foreign ones) right after it, where DKMS also puts
 * `-j$parallel_jobs`; ootmod gives no `-j`: every make takes its parallelism from ootmod's jobserver
 * (MAKEFLAGS), and a `-jN` written in dkms.conf's MAKE is dropped for the same reason (it would run N
 * compilers beside the --jobs budget). Commands that start otherwise (`cd x && make`, `./configure; make`)
 * are run as written, minus any `-jN`.
 */
export function makeCommandLine(make: string | undefined, ctx: MakeContext): string {
  const written = make?.trim() || `make -C ${ctx.kernelBuildDir} M=${ctx.buildDir}`;
  const command = /\bmake\b/.test(written) ? written.replace(OWN_JOBS, '$1').replace(/\s{2,}/g, ' ').trim() : written;
  const m = /^make(\s|$)/.exec(command);
  if (!m) return command;
  const cross = ctx.cross ? [`ARCH=${ctx.cross.arch}`, `CROSS_COMPILE=${ctx.cross.crossCompile}`] : [];
  const injected = [`KERNELRELEASE=${ctx.kernelver}`, ...cross, ...(ctx.llvm ? ['LLVM=1'] : [])].join(' ');
  return `make ${injected}${command.slice(4)}`;
}
