// The metadata tree's parts that need no kernel: crate hashes from rustc's StableCrateId, the ABI check
// from crate hashes, the make goals read from rust/Makefile, and extracting a few dirs from a
// multi-block .tar.xz by its blocks (real tar and xz, compared with tar's own extraction).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compareCrateHashes, compareItemPaths, crateMismatch, parseCrateRoot, pathMismatch, v0CrateHash } from '../../src/rust/abi.js';
import { lackingPrefix, parseItemListing, symbolPaths } from '../../src/rust/v0.js';
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

// Exported symbols of sid's 7.2.13 kernel (its Module.symvers), and what they name.
const SYMBOLS = {
  fn: `_RNvNt${KERNEL}5print11call_printk`,
  staticInFn: `_RNvNvNt${KERNEL}12module_param9set_param4ONCE`,
  staticInMod: `_RNvNtNt${KERNEL}5print14format_strings5EMERG`,
  inherent: `_RNvMNtNt${KERNEL}3net3phyNtB2_6Device10start_aneg`,
  cpufreq: `_RNvMs6_Nt${KERNEL}7cpufreqNtB5_12TableBuilder3add`,
  oppFreq: `_RNvMNtNt${KERNEL}3opp4freqNtB2_9FreqTable3new`,
  traitImpl: `_RNvXs2_Nt${KERNEL}12module_paramaNtB5_11ModuleParam18try_from_param_arg`,
  closure: `_RNvNCNvMs_NtNt${KERNEL}3gpu5buddyNtB8_13GpuBuddyInner3new05CLASS`,
  closureGeneric: `_RNvNCNCNvMs0_Nt${KERNEL}8configfsINtBb_9SubsystempE3news_005CLASS`,
  pinInit: `_RNvXs_Nt${KERNEL}4syncNtB4_4LockNtCskXvcgJiAKcm_8pin_init7PinInit13___pinned_init`,
  coreGeneric: `_RINvNt${CORE}9panicking13assert_failedjjEB4_`,
  coreStr: `_RNvMNt${CORE}3stre12escape_debug`,
};
const named = (symbol: string) => symbolPaths(symbol)?.map((p) => [p.crate, ...p.segments.map((s) => `${s.ns}:${s.name}`)].join('::'));

describe('the item paths a v0 symbol names', () => {
  it('are the module path and the item from the crate root, through backrefs, impls, closures and generic arguments', () => {
    expect(named(SYMBOLS.fn)).toEqual(['kernel::t:print::v:call_printk']);
    expect(named(SYMBOLS.staticInFn)).toEqual(['kernel::t:module_param::v:set_param::v:ONCE']);
    expect(named(SYMBOLS.staticInMod)).toEqual(['kernel::t:print::t:format_strings::v:EMERG']);
    // An inherent impl's method: the impl's module and its self type (B2_ = kernel::net::phy); not the method.
    expect(named(SYMBOLS.inherent)).toEqual(['kernel::t:net::t:phy', 'kernel::t:net::t:phy::t:Device']);
    expect(named(SYMBOLS.cpufreq)).toEqual(['kernel::t:cpufreq', 'kernel::t:cpufreq::t:TableBuilder']);
    // <i8 as kernel::module_param::ModuleParam>::try_from_param_arg: the impl's module and the trait.
    expect(named(SYMBOLS.traitImpl)).toEqual(['kernel::t:module_param', 'kernel::t:module_param::t:ModuleParam']);
    // Closures (NC, empty names: `0` then `5CLASS`) are not listed items: the path stops before them.
    expect(named(SYMBOLS.closure)).toEqual(['kernel::t:gpu::t:buddy', 'kernel::t:gpu::t:buddy::t:GpuBuddyInner']);
    expect(named(SYMBOLS.closureGeneric)).toEqual(['kernel::t:configfs', 'kernel::t:configfs::t:Subsystem']);
    // Two crates: kernel's Lock and pin_init's PinInit.
    expect(named(SYMBOLS.pinInit)).toEqual(['kernel::t:sync', 'kernel::t:sync::t:Lock', 'pin_init::t:PinInit']);
    // A generic instantiation with its instantiating crate (B4_ = core) after the path.
    expect(named(SYMBOLS.coreGeneric)).toEqual(['core::t:panicking::v:assert_failed']);
    expect(named(SYMBOLS.coreStr)).toEqual(['core::t:str']);
    expect(symbolPaths(`_RNvNt${CORE}3fmt5wri`)).toBeUndefined();
    expect(symbolPaths('rust_helper_foo')).toBeUndefined();
  });
});

// The shape of `rustc -Zls=root -Zls=items libkernel.rmeta` (rustc 1.9x), cut down.
const listing = (withCpufreq: boolean) => [
  'Crate info:', 'name kernel', 'hash 0 stable_crate_id StableCrateId(1)', '=External Dependencies=', '1 core-0 hash 0 host_hash None kind Explicit public', '',
  '=Items=',
  'Public Mod crate {',
  ...(withCpufreq ? ['    Public Mod cpufreq {', '        Public Struct TableBuilder {}', '        Public Ctor(Struct, Const) ??? {}', '    }'] : []),
  '    Public Mod gpu {', '        Public Mod buddy {', '            Public Struct GpuBuddyInner {}', '        }', '    }',
  '    Public Mod configfs {', '        Public Struct Subsystem {}', '    }',
  '    Public Mod module_param {', '        Public Trait ModuleParam {', '            Public AssocFn try_from_param_arg {}', '        }', '        Public Fn set_param {}', '    }',
  '    Public Mod net {', '        Public Mod phy {', '            Public Struct Device {}', '        }', '    }',
  '    Public Mod opp {', ...(withCpufreq ? ['        Restricted("crate") Mod freq {', '            Public Struct FreqTable {}', '        }'] : []), '    }',
  '    Public Mod print {', '        Public Fn call_printk {}', '        Public Mod format_strings {',
  '            Public Static { safety: Safe, mutability: Not, nested: false } EMERG {}', '        }', '    }',
  '    Public Mod sync {', '        Public Struct Lock {}', '    }',
  '}', '',
].join('\n');

describe('the ABI check of item paths', () => {
  const exported = Object.values(SYMBOLS);
  const tree = new Map([['core', 'bZfwWpAStWS'], ['kernel', 'dJ13ReMSUMg'], ['pin_init', 'kXvcgJiAKcm']]);
  it('reads the listing: each item by its path, nested modules, statics and private modules', () => {
    const items = parseItemListing(listing(true))!;
    expect(items.get('net::phy::Device')).toEqual(new Set(['Struct']));
    expect(items.get('print::format_strings::EMERG')).toEqual(new Set(['Static']));
    expect(items.get('opp::freq')).toEqual(new Set(['Mod']));
    expect(items.has('cpufreq::???')).toBe(false);
    expect(parseItemListing('Crate info:\nname kernel\n')).toBeUndefined();
  });
  it('finds every path of the kernel\'s symbols in a tree built with the kernel\'s .config', () => {
    const r = compareItemPaths(exported, tree, new Map([['kernel', parseItemListing(listing(true))!]]));
    // core has no listing here: its symbols are not counted.
    expect(r).toEqual({ checked: 10, lacking: [] });
    expect(pathMismatch(r)).toBeUndefined();
  });
  it('names what a tree built without CONFIG_CPU_FREQ lacks: kernel::cpufreq and kernel::opp::freq', () => {
    const r = compareItemPaths(exported, tree, new Map([['kernel', parseItemListing(listing(false))!]]));
    expect(r.lacking).toEqual([{ path: 'kernel::cpufreq', symbols: 1 }, { path: 'kernel::opp::freq', symbols: 1 }]);
    expect(pathMismatch(r)).toBe("the kernel exports 1 symbol of kernel::cpufreq, which the tree's kernel crate lacks (and 1 of kernel::opp::freq)");
  });
  it('goes down modules only: a missing function directly in a module counts, what is inside a function or type does not', () => {
    const items = parseItemListing(listing(true))!;
    const p = (symbol: string) => symbolPaths(symbol)![0]!;
    expect(lackingPrefix(p(`_RNvNt${KERNEL}5print12other_printk`), items)).toEqual(['print', 'other_printk']);
    expect(lackingPrefix(p(`_RNvNvNt${KERNEL}12module_param9set_param5TWICE`), items)).toBeUndefined();
    expect(lackingPrefix(p(`_RNvNtNt${KERNEL}3net3phy8register`), items)).toEqual(['net', 'phy', 'register']);
    expect(lackingPrefix(p(`_RNvNtNt${KERNEL}3net4mdio8register`), items)).toEqual(['net', 'mdio']);
  });
  it('leaves symbols of crates with another hash to the crate hash check', () => {
    const r = compareItemPaths([SYMBOLS.cpufreq], new Map([['kernel', 'OTHER']]), new Map([['kernel', parseItemListing(listing(false))!]]));
    expect(r).toEqual({ checked: 0, lacking: [] });
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
