import { describe, expect, it } from 'vitest';
import { KernelConfig } from '../../src/kernel/config.js';
import { compareKernelVersions } from '../../src/kernel/version.js';
import { compilerFromKernelVariables, compressionOf, machineArch, parseKernelVariables } from '../../src/kernel/inventory.js';

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

describe('.kernelvariables', () => {
  const text = `override ARCH = x86
override KERNELRELEASE = 6.1.0-56-amd64
CCACHE = ccache
CC = $(if $(DEBIAN_KERNEL_USE_CCACHE),$(CCACHE)) $(CROSS_COMPILE)gcc-12
ifneq ($(DEB_BUILD_ARCH),$(DEB_HOST_ARCH))
override CROSS_COMPILE = $(DEB_HOST_GNU_TYPE)-
endif`;
  it('finds ARCH and the compiler command', () => {
    const vars = parseKernelVariables(text);
    expect(vars.get('ARCH')).toBe('x86');
    expect(compilerFromKernelVariables(vars.get('CC'))).toBe('gcc-12');
    expect(compilerFromKernelVariables('$(CROSS_COMPILE)clang-19')).toBe('clang-19');
  });
  it('maps SRCARCH to the machine name DKMS calls arch', () => {
    expect(machineArch('x86', KernelConfig.parse('CONFIG_64BIT=y'))).toBe('x86_64');
    expect(machineArch('arm64', KernelConfig.parse('CONFIG_64BIT=y'))).toBe('aarch64');
    expect(machineArch('powerpc', KernelConfig.parse('CONFIG_64BIT=y\nCONFIG_CPU_LITTLE_ENDIAN=y'))).toBe('ppc64le');
  });
});

describe('compareKernelVersions', () => {
  it('orders numerically, not as text', () => {
    expect(compareKernelVersions('6.10.0', '6.9.0')).toBeGreaterThan(0);
    expect(compareKernelVersions('7.2.13+deb14-amd64', '7.2.9+deb14-amd64')).toBeGreaterThan(0);
    expect(compareKernelVersions('6.1.0-28-amd64', '6.1')).toBeGreaterThan(0);
    expect(compareKernelVersions('5.15', '6.1.0-28-amd64')).toBeLessThan(0);
    expect(compareKernelVersions('6.1.0', '6.1.0')).toBe(0);
  });
});
