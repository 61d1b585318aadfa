// The metadata tree's parts that need no kernel: crate hashes from rustc's StableCrateId, the ABI check
// from crate hashes, the make goals read from rust/Makefile, and extracting a few dirs from a
// multi-block .tar.xz by its blocks (real tar and xz, compared with tar's own extraction).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compareCrateHashes, crateMismatch, parseCrateRoot, v0CrateHash } from '../../src/rust/abi.js';
import { metadataGoals, treeKindFor } from '../../src/rust/tree.js';
import { comparePaths, extractByBlocks, parseXzBlocks } from '../../src/rust/xzseek.js';

const CORE = 'CsbZfwWpAStWS_4core';
const KERNEL = 'CsdJ13ReMSUMg_6kernel';

describe('crate hashes', () => {
  it('are the base-62 of the StableCrateId minus 2, as in v0 symbol names', () => {
    // rustc 1.97: `rustc -Zls=root libt2.rlib` said StableCrateId(2339366237256256281), nm said _RNvCs2MOjYtPrClN_2t21f.
    expect(v0CrateHash(2339366237256256281n)).toBe('2MOjYtPrClN');
    expect(v0CrateHash(2n)).toBe('0');
    expect(v0CrateHash(63n)).toBe('Z');
    expect(v0CrateHash(64n)).toBe('10');
    const ls = 'Crate info:\nname kernel\nhash 827a9e7ca0471443b83f07450e577236 stable_crate_id StableCrateId(2339366237256256281)\nproc_macro false\n';
    expect(parseCrateRoot(ls)).toEqual({ name: 'kernel', hash: '2MOjYtPrClN' });
    expect(parseCrateRoot('error: not a crate')).toBeUndefined();
  });
});

describe('the ABI check from crate hashes', () => {
  const exported = [
    `_RNvNt${CORE}3fmt5write`,
    `_RNvNt${KERNEL}5print11call_printk`,
    `_RNvXs_NtCsdJ13ReMSUMg_6kernel4syncNtB4_4LockNtCskXvcgJiAKcm_8pin_init7PinInit13___pinned_init`,
    '_RNvCsjJ6pmSBbkgH_7___rustc17rust_begin_unwind',
  ];
  const tree = new Map([['core', 'bZfwWpAStWS'], ['kernel', 'dJ13ReMSUMg'], ['pin_init', 'kXvcgJiAKcm'], ['macros', 'zzz']]);
  it('accepts a tree whose crates have the hashes of every crate the exported symbols name', () => {
    const r = compareCrateHashes(exported, tree);
    // rustc's own ___rustc symbols belong to no crate of the tree and are not counted.
    expect(r).toMatchObject({ ok: true, exported: 3, matched: 3, missing: [] });
    expect(r.crates.pin_init).toEqual({ kernel: ['kXvcgJiAKcm'], rebuilt: ['kXvcgJiAKcm'] });
    expect(crateMismatch(r)).toBeUndefined();
  });
  it('refuses a tree with another hash of a crate, naming both', () => {
    const r = compareCrateHashes(exported, new Map([...tree, ['pin_init', 'OTHER']]));
    expect(r).toMatchObject({ ok: false, exported: 3, matched: 2 });
    expect(crateMismatch(r)).toBe("the tree's pin_init crate is CsOTHER_ but the kernel exports pin_init symbols of CskXvcgJiAKcm_");
  });
  it('refuses a tree without a crate the kernel exports, and a kernel that exports none', () => {
    const r = compareCrateHashes(exported, new Map([['core', 'bZfwWpAStWS']]));
    expect(r.ok).toBe(false);
    expect(crateMismatch(r)).toMatch(/^the tree's kernel crate is missing but/);
    expect(compareCrateHashes([], tree).ok).toBe(false);
  });
});

describe('the make goals of a metadata tree', () => {
  // The shape of 7.2's rust/Makefile.
  const makefile = [
    'obj-$(CONFIG_RUST) += core.o compiler_builtins.o ffi.o',
    'always-$(CONFIG_RUST) += exports_core_generated.h',
    'obj-$(CONFIG_RUST) += helpers/helpers.o',
    'always-$(CONFIG_RUST) += bindings/bindings_generated.rs bindings/bindings_helpers_generated.rs',
    'obj-$(CONFIG_RUST) += bindings.o pin_init.o kernel.o',
    'obj-$(CONFIG_RUST) += exports.o',
    'always-$(CONFIG_RUST) += libproc_macro2.rlib libquote.rlib libsyn.rlib',
    'obj-$(CONFIG_RUST_KERNEL_DOCTESTS) += doctests_kernel_generated.o',
    'always-$(subst y,$(CONFIG_RUST),$(CONFIG_JUMP_LABEL)) += kernel/generated_arch_static_branch_asm.rs',
    'always-$(subst y,$(CONFIG_RUST),$(CONFIG_BUG)) += kernel/generated_arch_warn_asm.rs kernel/generated_arch_reachable_asm.rs',
    'libmacros_name := $(call procmacro-name,macros)',
    'libpin_init_internal_name := $(call procmacro-name,pin_init_internal)',
    'always-$(CONFIG_RUST) += $(libmacros_name) $(libpin_init_internal_name)',
  ].join('\n');
  it('are the crates, the proc macros and the generated_arch files the .config enables', () => {
    expect(metadataGoals(makefile, 'CONFIG_RUST=y\nCONFIG_BUG=y\n# CONFIG_JUMP_LABEL is not set\n').sort()).toEqual([
      'rust/bindings.o', 'rust/compiler_builtins.o', 'rust/core.o', 'rust/ffi.o',
      'rust/kernel.o', 'rust/kernel/generated_arch_reachable_asm.rs', 'rust/kernel/generated_arch_warn_asm.rs',
      'rust/libmacros.so', 'rust/libpin_init_internal.so', 'rust/pin_init.o',
    ]);
    expect(metadataGoals('always-$(CONFIG_RUST) += libmacros.so\nobj-$(CONFIG_RUST) += core.o kernel.o\n', 'CONFIG_RUST=y\n')).toEqual(['rust/libmacros.so', 'rust/core.o', 'rust/kernel.o']);
    expect(metadataGoals(makefile, '# CONFIG_RUST is not set\n')).toEqual([]);
  });
  it('are a full tree when the kernel inlines the C helpers as bitcode', () => {
    expect(treeKindFor('CONFIG_RUST=y\n', 'metadata')).toEqual({ kind: 'metadata' });
    expect(treeKindFor('CONFIG_RUST=y\nCONFIG_RUST_INLINE_HELPERS=y\n', 'metadata').kind).toBe('full');
    expect(treeKindFor('CONFIG_RUST=y\n', 'full')).toEqual({ kind: 'full' });
  });
});

describe('extracting by xz blocks', () => {
  it('orders paths as tar --sort=name does', () => {
    expect(comparePaths('l/rust', 'l/scripts')).toBeLessThan(0);
    expect(comparePaths('l/rust/kernel/lib.rs', 'l/rust')).toBeGreaterThan(0);
    expect(comparePaths('l/drivers/base/base.h', 'l/drivers/base-x')).toBeLessThan(0);
  });

  it('writes what tar writes for the wanted members, reading only some blocks', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ootmod-xzseek-'));
    const top = path.join(dir, 'src/linux-source-9.9');
    // Enough incompressible data between the members that they land in different 64 KiB blocks.
    for (const [f, kb] of [['arch/x.c', 300], ['drivers/base/base.h', 1], ['drivers/zz.c', 300], ['rust/kernel/lib.rs', 2], ['rust/Makefile', 1], ['rust/macros/lib.rs', 100], ['scripts/Makefile.build', 1], ['scripts/basic/fixdep.c', 1], ['scripts/generate_rust_target.rs', 1], ['tools/t.c', 300]] as const) {
      mkdirSync(path.dirname(path.join(top, f)), { recursive: true });
      writeFileSync(path.join(top, f), kb > 50 ? execFileSync('head', ['-c', `${kb * 1024}`, '/dev/urandom']) : `${f}\n`.repeat(kb * 20));
    }
    const tarball = path.join(dir, 'linux-source-9.9.tar.xz');
    execFileSync('sh', ['-c', `tar -C ${dir}/src --sort=name -c linux-source-9.9 | xz --block-size=64KiB > ${tarball}`]);
    expect(parseXzBlocks(execFileSync('xz', ['--robot', '-lvv', tarball]).toString())!.blocks.length).toBeGreaterThan(10);
    const out = path.join(dir, 'out');
    const n = await extractByBlocks(tarball, [
      { prefix: 'linux-source-9.9/rust' },
      { prefix: 'linux-source-9.9/scripts', match: /^scripts\/(Makefile.*|.*rust.*)$/ },
      { prefix: 'linux-source-9.9/drivers/base/base.h' },
    ], out);
    expect(n).toBe(6);
    const ref = path.join(dir, 'ref');
    mkdirSync(ref);
    execFileSync('tar', ['-C', ref, '--strip-components=1', '--wildcards', '-xJf', tarball, 'linux-source-9.9/rust', 'linux-source-9.9/scripts/Makefile*', 'linux-source-9.9/scripts/*rust*', 'linux-source-9.9/drivers/base/base.h']);
    expect(execFileSync('diff', ['-r', ref, out]).toString()).toBe('');
    expect(readFileSync(path.join(out, 'rust/macros/lib.rs')).equals(readFileSync(path.join(top, 'rust/macros/lib.rs')))).toBe(true);
    // Not a wanted path in the archive: undefined, the caller runs tar.
    expect(await extractByBlocks(tarball, [{ prefix: 'linux-source-9.9/nothere' }], path.join(dir, 'none'))).toBeUndefined();
    // One block: nothing to seek in.
    const single = path.join(dir, 'one.tar.xz');
    execFileSync('sh', ['-c', `tar -C ${dir}/src -c linux-source-9.9 | xz > ${single}`]);
    expect(await extractByBlocks(single, [{ prefix: 'linux-source-9.9/rust' }], path.join(dir, 'one'))).toBeUndefined();
  });
});
