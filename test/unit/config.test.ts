import { describe, expect, it } from 'vitest';
import { KernelConfig } from '../../src/kernel/config.js';
import { compareKernelVersions } from '../../src/kernel/version.js';
import { compilerFromKernelVariables, compressionOf, kernelArch, parseKernelVariables, toolPackage } from '../../src/kernel/inventory.js';
import { kernelToolEnv } from '../../src/kernel/toolchain.js';
import { archFromDebian, archFromTriplet, dpkgTables, type ArchInfo } from '../../src/kernel/dpkgarch.js';

const SAMPLE = `
CONFIG_64BIT=y
CONFIG_X86_64=y
CONFIG_MODULES=m
CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14) 12.2.0"
CONFIG_RUSTC_VERSION_TEXT="rustc 1.85.1 (4eb161250 2025-03-15) (built from a source tarball)"
CONFIG_QUOTED="a \\"quoted\\" word"
CONFIG_NR_CPUS=8192
# CONFIG_MODULE_SIG_FORCE is not set
CONFIG_MODULE_COMPRESS_XZ=y
# a comment
`;

describe('KernelConfig', () => {
  const c = KernelConfig.parse(SAMPLE);
  it('reads y, m, strings and numbers', () => {
    expect(c.builtin('64BIT')).toBe(true);
    expect(c.enabled('CONFIG_MODULES')).toBe(true);
    expect(c.builtin('MODULES')).toBe(false);
    expect(c.string('CC_VERSION_TEXT')).toBe('gcc-12 (Debian 12.2.0-14) 12.2.0');
    expect(c.string('QUOTED')).toBe('a "quoted" word');
    expect(c.number('NR_CPUS')).toBe(8192);
  });
  it('tells "is not set" from absent', () => {
    expect(c.explicitlyUnset('MODULE_SIG_FORCE')).toBe(true);
    expect(c.enabled('MODULE_SIG_FORCE')).toBe(false);
    expect(c.explicitlyUnset('NOT_THERE')).toBe(false);
    expect(c.raw('NOT_THERE')).toBeUndefined();
  });
  it('derives compression', () => {
    expect(compressionOf(c)).toBe('xz');
    expect(compressionOf(KernelConfig.parse('CONFIG_MODULE_COMPRESS_ZSTD=y'))).toBe('zstd');
    expect(compressionOf(KernelConfig.parse('CONFIG_MODULE_COMPRESS_NONE=y'))).toBe('none');
  });
});

/** bookworm's amd64 headers' .kernelvariables. */
const BOOKWORM_KVARS = `override ARCH = x86
override KERNELRELEASE = 6.1.0-56-amd64
CCACHE = ccache
CC = $(if $(DEBIAN_KERNEL_USE_CCACHE),$(CCACHE)) $(CROSS_COMPILE)gcc-12
ifneq ($(DEB_BUILD_ARCH),$(DEB_HOST_ARCH))
override CROSS_COMPILE = $(DEB_HOST_GNU_TYPE)-
endif`;

describe('.kernelvariables', () => {
  const text = BOOKWORM_KVARS;
  it('finds ARCH and the compiler command', () => {
    const vars = parseKernelVariables(text);
    expect(vars.get('ARCH')).toBe('x86');
    // Set only under a make condition (bookworm's headers): not a value ootmod can use.
    expect(vars.has('CROSS_COMPILE')).toBe(false);
    expect(compilerFromKernelVariables(vars.get('CC'))).toBe('gcc-12');
    expect(compilerFromKernelVariables('$(CROSS_COMPILE)clang-19')).toBe('clang-19');
  });
});

// dpkg's real tables on this (Debian) machine: the names come from dpkg, not from a list in ootmod.
const tables = dpkgTables();
describe.skipIf(!tables)('architectures from dpkg tables', () => {
  const amd64: ArchInfo = { debian: 'amd64', triplet: 'x86_64-linux-gnu', gnuCpu: 'x86_64' };
  it('maps Debian architectures to GNU triplets and back, as dpkg-architecture does', () => {
    expect(archFromDebian(tables!, 'arm64')).toEqual({ debian: 'arm64', triplet: 'aarch64-linux-gnu', gnuCpu: 'aarch64' });
    expect(archFromDebian(tables!, 'amd64')).toEqual(amd64);
    expect(archFromDebian(tables!, 'armhf')?.triplet).toBe('arm-linux-gnueabihf');
    expect(archFromDebian(tables!, 'ppc64el')?.triplet).toBe('powerpc64le-linux-gnu');
    expect(archFromTriplet(tables!, 'aarch64-linux-gnu')?.debian).toBe('arm64');
    expect(archFromTriplet(tables!, 'arm-linux-gnueabihf')?.debian).toBe('armhf');
    expect(archFromTriplet(tables!, 'riscv64-linux-gnu')?.debian).toBe('riscv64');
    expect(archFromDebian(tables!, 'no-such-arch')).toBeUndefined();
  });
  it('makes an arm64 kernel on amd64 a foreign kernel with DKMS arch aarch64', () => {
    const kvars = parseKernelVariables('override ARCH = arm64\noverride CROSS_COMPILE = aarch64-linux-gnu-\nCC = $(CROSS_COMPILE)gcc-16\n');
    expect(kernelArch('arm64', kvars, tables, amd64)).toEqual({
      dpkg: 'arm64', srcArch: 'arm64', machine: 'aarch64', triplet: 'aarch64-linux-gnu', crossCompile: 'aarch64-linux-gnu-', build: 'amd64', foreign: true,
    });
    // Without the package database, the triplet of CROSS_COMPILE says the same.
    expect(kernelArch(undefined, kvars, tables, amd64)).toMatchObject({ dpkg: 'arm64', machine: 'aarch64', foreign: true });
    expect(kernelArch('amd64', parseKernelVariables('override ARCH = x86\n'), tables, amd64)).toMatchObject({ dpkg: 'amd64', foreign: false });
    // bookworm's arm64 headers set CROSS_COMPILE only under a make condition: the triplet of the package's architecture.
    const bookworm = parseKernelVariables('override ARCH = arm64\nifneq ($(DEB_BUILD_ARCH),$(DEB_HOST_ARCH))\noverride CROSS_COMPILE = $(DEB_HOST_GNU_TYPE)-\nendif\n');
    expect(kernelArch('arm64', bookworm, tables, amd64)).toMatchObject({ triplet: 'aarch64-linux-gnu', crossCompile: 'aarch64-linux-gnu-', foreign: true });
    expect(kernelArch('amd64', parseKernelVariables(BOOKWORM_KVARS), tables, amd64)).toMatchObject({ triplet: 'x86_64-linux-gnu', crossCompile: undefined, foreign: false });
  });
  it('names the cross compiler package for a foreign kernel and the native one otherwise', () => {
    expect(toolPackage('gcc-16', 'aarch64-linux-gnu', amd64)).toBe('gcc-16-aarch64-linux-gnu');
    expect(toolPackage('gcc-16', 'x86_64-linux-gnu', amd64)).toBe('gcc-16');
    expect(toolPackage('clang-19', 'aarch64-linux-gnu', amd64)).toBe('clang-19');
  });
});

describe('kernelToolEnv: what DKMS 3.2.2 exports before PRE_BUILD', () => {
  const native = { machine: 'x86_64', foreign: false };
  const installed = (...cmds: string[]) => (c: string) => (cmds.includes(c) ? `/usr/bin/${c}` : undefined);
  const config = (text: string) => KernelConfig.parse(text);

  it("gives a gcc kernel's compiler as CC and KERNEL_CC, and no LD", () => {
    const k = { arch: native, compiler: { command: 'gcc-12', versionText: 'gcc-12 (Debian 12.2.0-14) 12.2.0', clang: false }, config: config('') };
    expect(kernelToolEnv(k, installed('gcc-12'))).toEqual({ CC: 'gcc-12', KERNEL_CC: 'gcc-12' });
  });

  it('takes CONFIG_CC_VERSION_TEXT\'s first word only when it is installed, as DKMS does (else only CC, from .kernelvariables)', () => {
    const k = { arch: native, compiler: { command: 'gcc-12', versionText: 'x86_64-linux-gnu-gcc-12 (Ubuntu) 12.3.0', clang: false }, config: config('') };
    expect(kernelToolEnv(k, installed('x86_64-linux-gnu-gcc-12'))).toEqual({ CC: 'x86_64-linux-gnu-gcc-12', KERNEL_CC: 'x86_64-linux-gnu-gcc-12' });
    expect(kernelToolEnv(k, installed())).toEqual({ CC: 'gcc-12', KERNEL_CC: undefined });
  });

  it('gives clang, and ld.lld as LD and KERNEL_LD, for an LLVM kernel when they are installed', () => {
    const k = { arch: native, compiler: { command: 'clang-19', versionText: 'Debian clang version 19.1.7 (3)', clang: true }, config: config('CONFIG_CC_IS_CLANG=y\nCONFIG_LD_IS_LLD=y\n') };
    expect(kernelToolEnv(k, installed('clang', 'ld.lld'))).toEqual({ CC: 'clang', KERNEL_CC: 'clang', LD: 'ld.lld', KERNEL_LD: 'ld.lld' });
    expect(kernelToolEnv(k, installed())).toEqual({ CC: 'clang-19', KERNEL_CC: undefined });
  });

  it('gives a foreign kernel its cross compiler, ARCH and CROSS_COMPILE (DKMS has no cross builds)', () => {
    const k = {
      arch: { machine: 'aarch64', foreign: true, srcArch: 'arm64', crossCompile: 'aarch64-linux-gnu-' },
      compiler: { command: 'aarch64-linux-gnu-gcc-12', versionText: 'gcc-12 (Debian 12.2.0-14) 12.2.0', clang: false },
      config: config(''),
    };
    expect(kernelToolEnv(k, installed('gcc-12', 'aarch64-linux-gnu-gcc-12'))).toEqual({ CC: 'aarch64-linux-gnu-gcc-12', KERNEL_CC: 'aarch64-linux-gnu-gcc-12', ARCH: 'arm64', CROSS_COMPILE: 'aarch64-linux-gnu-' });
  });
});

describe('compareKernelVersions', () => {
  it('orders numerically, not as text', () => {
    expect(compareKernelVersions('6.10.0', '6.9.0')).toBeGreaterThan(0);
    expect(compareKernelVersions('8.1.14+deb15-amd64', '8.1.9+deb15-amd64')).toBeGreaterThan(0);
    expect(compareKernelVersions('6.1.0-28-amd64', '6.1')).toBeGreaterThan(0);
    expect(compareKernelVersions('5.15', '6.1.0-28-amd64')).toBeLessThan(0);
    expect(compareKernelVersions('6.1.0', '6.1.0')).toBe(0);
  });
});
