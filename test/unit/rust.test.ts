import { existsSync, mkdirSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { KernelConfig } from '../../src/kernel/config.js';
import type { KernelTarget } from '../../src/kernel/inventory.js';
import { compareAbi, crateRoots, exportedRustSymbols } from '../../src/rust/abi.js';
import { parseMakefileVersion } from '../../src/rust/kernelsource.js';
import { ProbeCache, findRustToolchain } from '../../src/rust/toolchain.js';
import { assessRustTree, buildArch, removeStrayTrees, strayTrees, treeInUse, type RustTreeManifest } from '../../src/rust/tree.js';
import { createLayout } from '../../src/system/layout.js';
import { loadConfig } from '../../src/system/config.js';

const CORE = 'CsbZfwWpAStWS_4core';
const KERNEL = 'CsdJ13ReMSUMg_6kernel';

describe('v0 crate roots', () => {
  it('finds the crate hash and name of each root in a symbol', () => {
    expect(crateRoots(`_RNvNt${CORE}9panicking19assert_failed_inner`)).toEqual(['core:bZfwWpAStWS']);
    expect(crateRoots(`_RINvNt${KERNEL}5print11call_printkINt${CORE}3fmt9ArgumentsEB4_`)).toEqual(['kernel:dJ13ReMSUMg', 'core:bZfwWpAStWS']);
    expect(crateRoots('_RNvCs1234_3foo3bar')).toEqual(['foo:1234']);
    expect(crateRoots('memcpy')).toEqual([]);
  });

  it('reads the exported Rust symbols of vmlinux from Module.symvers', () => {
    const symvers = [
      `0x00000000\t_RNvNt${CORE}3fmt5write\tvmlinux\tEXPORT_SYMBOL_GPL\t`,
      '0x00000000\tprintk\tvmlinux\tEXPORT_SYMBOL\t',
      `0x00000000\t_RNvCsXyz_6othermod1f\tdrivers/x\tEXPORT_SYMBOL_GPL\t`,
    ].join('\n');
    expect(exportedRustSymbols(symvers)).toEqual([`_RNvNt${CORE}3fmt5write`]);
  });
});

describe('compareAbi', () => {
  const exported = [`_RNvNt${CORE}3fmt5write`, `_RNvNt${KERNEL}5print11call_printk`];
  it('accepts rebuilt crates that define every exported symbol with the same hashes', () => {
    const r = compareAbi(exported, new Set([...exported, `_RNvNt${CORE}3fmt5other`]));
    expect(r).toMatchObject({ ok: true, exported: 2, matched: 2, missing: [] });
    expect(r.crates.core).toEqual({ kernel: ['bZfwWpAStWS'], rebuilt: ['bZfwWpAStWS'] });
  });
  it('refuses a rebuilt crate with another hash', () => {
    const r = compareAbi(exported, new Set([`_RNvNtCsOTHER_4core3fmt5write`, `_RNvNt${KERNEL}5print11call_printk`]));
    expect(r.ok).toBe(false);
    expect(r.crates.core!.rebuilt).toEqual(['OTHER']);
  });
  it('refuses when an exported symbol is missing from the rebuilt crates', () => {
    const r = compareAbi(exported, new Set([exported[0]!]));
    expect(r.ok).toBe(false);
    expect(r.missing).toEqual([exported[1]]);
  });
});

describe('kernel Makefile version', () => {
  it('reads VERSION, PATCHLEVEL and SUBLEVEL', () => {
    expect(parseMakefileVersion('# SPDX\nVERSION = 7\nPATCHLEVEL = 3\nSUBLEVEL = 4\nEXTRAVERSION =\n')).toEqual({ version: 7, patchlevel: 3, sublevel: 4 });
    expect(parseMakefileVersion('all:\n\techo hi\n')).toBeUndefined();
  });
});

function rustKernel(rustc: string, bindgen = 'bindgen 0.72.1'): KernelTarget {
  return {
    release: '9.9.9-test-amd64', moduleDir: '/nonexistent', headersDir: '/nonexistent', config: KernelConfig.parse('CONFIG_RUST=y'),
    arch: { machine: 'x86_64', foreign: false }, compiler: { clang: false }, compression: 'none', signing: { enabled: false, forced: false },
    rust: { enabled: true, rustcVersionText: rustc, bindgenVersionText: bindgen }, problems: [],
  };
}

function fakeProgram(dir: string, name: string, output: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\necho '${output}'\n`, { mode: 0o755 });
  return file;
}

describe('findRustToolchain', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ootmod-rustc-'));
  it('says in one line what the kernel needs, what is installed, and how to fix it', async () => {
    const other = fakeProgram(dir, 'rustc-other', 'rustc 1.2.3 (abc 2020-01-01)');
    const err = await findRustToolchain(rustKernel('rustc 9.8.7 (def 2030-01-01) (built from a source tarball)'), { rustc: other }).catch((e) => e);
    expect(err.line()).toMatch(/^9\.9\.9-test-amd64 was built with rustc 9\.8\.7 \(def 2030-01-01\) \(built from a source tarball\), installed: rustc 1\.2\.3 \(abc 2020-01-01\) at .*rustc-other: install rustc and rust-src 9\.8\.7 .*or set RUSTC to a matching binary$/);
    expect(err.line()).not.toContain('\n');
    expect(err.exitCode).toBe(5);
  });
  it('names a rustc that does not run', async () => {
    const err = await findRustToolchain(rustKernel('rustc 9.8.7 (def 2030-01-01)'), { rustc: path.join(dir, 'missing-rustc') }).catch((e) => e);
    expect(err.line()).toMatch(/installed: .*missing-rustc, which does not run/);
  });
  it('caches --version per binary identity', async () => {
    const prog = fakeProgram(dir, 'probe-me', 'probe 1.0');
    const cacheFile = path.join(dir, 'probes.json');
    const cache = new ProbeCache(cacheFile);
    expect(await cache.probe(prog, ['--version'])).toBe('probe 1.0');
    await cache.save();
    const again = new ProbeCache(cacheFile);
    writeFileSync(path.join(dir, 'unused'), '');
    expect(await again.probe(prog, ['--version'])).toBe('probe 1.0');
    // A different binary at the same path (another size) is asked again.
    writeFileSync(prog, "#!/bin/sh\necho 'probe 2.0 with a longer text'\n", { mode: 0o755 });
    expect(await again.probe(prog, ['--version'])).toBe('probe 2.0 with a longer text');
  });
});

describe('ootmod.conf', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ootmod-conf-'));
  it('has defaults when missing and reads the sections', () => {
    expect(loadConfig(path.join(dir, 'none.conf'))).toMatchObject({ strict: false, jobs: 0, rust: true, buildTimeout: 3600 });
    const file = path.join(dir, 'ootmod.conf');
    writeFileSync(file, '; comment\n[build]\njobs = 3\ntimeout = 60\nunconfined = foo-dkms, bar\n[rust]\nenabled = no\nrustc = /opt/rustc\n[trigger]\nstrict = yes\n[boot]\nneeded = zfs, nvidia-current\noptional = v4l2loopback\nguard = yes\n');
    expect(loadConfig(file)).toEqual({
      strict: true, jobs: 3, buildTimeout: 60, rust: false, rustc: '/opt/rustc', kernelSource: undefined, bindgen: undefined, unconfined: ['foo-dkms', 'bar'],
      boot: { needed: ['zfs', 'nvidia-current'], optional: ['v4l2loopback'], guard: 'yes' },
    });
    expect(loadConfig(path.join(dir, 'none.conf')).boot).toEqual({ needed: [], optional: [], guard: 'auto' });
  });
  it('refuses a guard mode it does not know, in one line', () => {
    const file = path.join(dir, 'guard.conf');
    writeFileSync(file, '[boot]\nguard = maybe\n');
    expect(() => loadConfig(file)).toThrow(/guard = maybe is not auto, yes or no/);
  });
  it('refuses a bad value in one line', () => {
    const file = path.join(dir, 'bad.conf');
    writeFileSync(file, '[trigger]\nstrict = perhaps\n');
    expect(() => loadConfig(file)).toThrow(/strict = perhaps is not yes or no/);
  });
});

describe('the Rust tree in use', () => {
  const kver = '9.9.9-test-amd64';
  const good: RustTreeManifest = {
    key: 'k', parts: {} as RustTreeManifest['parts'], files: [{ path: 'rust/libkernel.rmeta', size: 1 }],
    abi: { ok: true } as RustTreeManifest['abi'], builtAt: '2026-01-01T00:00:00Z', durationMs: 1, bytes: 1,
  };
  /** A root whose `current` link names a tree with this manifest text (none: no manifest file). */
  const rootWith = (manifest?: string) => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'ootmod-tree-'));
    const layout = createLayout(root);
    const base = layout.rustDir(kver, buildArch());
    mkdirSync(path.join(base, 'trees/k'), { recursive: true });
    if (manifest !== undefined) writeFileSync(path.join(base, 'trees/k/ootmod-rust.json'), manifest);
    symlinkSync('trees/k', path.join(base, 'current'));
    return layout;
  };

  it('is none without a current link', async () => {
    expect(await treeInUse(createLayout(mkdtempSync(path.join(os.tmpdir(), 'ootmod-tree-'))), kver)).toEqual({ state: 'none' });
  });
  it('is ok with a whole manifest', async () => {
    expect(await treeInUse(rootWith(JSON.stringify(good)), kver)).toMatchObject({ state: 'ok', tree: { manifest: { key: 'k' } } });
  });
  for (const [what, text] of [
    ['a truncated manifest', JSON.stringify(good).slice(0, 40)],
    ['an empty manifest', ''],
    ['null', 'null'],
    ['an object without a file list', JSON.stringify({ ...good, files: 'x' })],
    ['an object without an ABI report', JSON.stringify({ ...good, abi: null })],
    ['no manifest at all', undefined],
  ] as const) {
    it(`is corrupt, with its fix and exit 5, for ${what}`, async () => {
      const t = await treeInUse(rootWith(text), kver);
      expect(t.state).toBe('corrupt');
      if (t.state !== 'corrupt') return;
      expect(t.error.line()).toMatch(new RegExp(`^the Rust tree manifest .*/trees/k/ootmod-rust\\.json is corrupt \\(.+\\): rebuild the tree: ootmod rust prepare -k ${kver.replace(/\./g, '\\.')}$`));
      expect(t.error.exitCode).toBe(5);
    });
  }
  it('makes prepare rebuild a tree whose manifest is corrupt, without reading it', async () => {
    const layout = rootWith('{"key": "k"');
    const headersDir = mkdtempSync(path.join(os.tmpdir(), 'ootmod-headers-'));
    writeFileSync(path.join(headersDir, '.config'), 'CONFIG_RUST=y\n');
    const kernel = { ...rustKernel('rustc 9.8.7'), headersDir };
    const toolchain = { rustc: 'rustc', rustcVersion: 'rustc 9.8.7', sysroot: '/', bindgen: 'bindgen', bindgenVersion: 'bindgen 1' };
    const a = await assessRustTree(layout, kernel, toolchain, { kind: 'dir', dir: '/nonexistent', identity: 'x' }, false);
    expect(a.buildReason).toBe('corrupt manifest');
    expect(a.current).toBeUndefined();
  });
});

describe('removeStrayTrees', () => {
  it('removes what a killed build left beside the tree in use, and nothing else', async () => {
    const base = path.join(mkdtempSync(path.join(os.tmpdir(), 'ootmod-stray-')), 'rust/9.9.9-test-amd64/x86_64');
    for (const d of ['trees/k/rust', 'trees/k-mx4nkbzx/.src/rust']) mkdirSync(path.join(base, d), { recursive: true });
    writeFileSync(path.join(base, 'trees/k/ootmod-rust.json'), '{}');
    writeFileSync(path.join(base, 'build.log'), '');
    symlinkSync('trees/k', path.join(base, 'current'));
    symlinkSync('trees/k-mx4nkbzx', path.join(base, '.current-1234'));
    // What `rust prepare` plans (a rust-stray job) is what the job removes.
    const planned = strayTrees(path.join(base, 'trees/k'));
    const gone = await removeStrayTrees(path.join(base, 'trees/k'));
    expect(planned.sort()).toEqual(gone.sort());
    expect(strayTrees(path.join(base, 'trees/k'))).toEqual([]);
    expect(gone.sort()).toEqual([path.join(base, '.current-1234'), path.join(base, 'trees/k-mx4nkbzx')]);
    expect(readdirSync(path.join(base, 'trees'))).toEqual(['k']);
    expect(readdirSync(base).sort()).toEqual(['build.log', 'current', 'trees']);
    expect(existsSync(path.join(base, 'current/ootmod-rust.json'))).toBe(true);
    expect(await removeStrayTrees(path.join(base, 'trees/k'))).toEqual([]);
  });
});
