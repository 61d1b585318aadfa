// A Rust tree whose manifest is corrupt: `rust status` says so with the fix, and no command that reads
// the tree stops with an internal error (exit 70). A fake CONFIG_RUST kernel; no tree is really built.
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addFakeKernel } from '../faults/lib/system.js';
import { ootmodEnv } from '../support/cli.js';
import { makeRoot, tempDir } from '../support/roots.js';
import { buildArch } from '../../src/rust/tree.js';

const KVER = '6.1.0-ootmodrust-amd64';

function rootWithCorruptTree(manifest: string): string {
  const root = makeRoot('ootmod-rust-tree-');
  addFakeKernel(root, KVER, 'CONFIG_RUST=y\nCONFIG_RUSTC_VERSION_TEXT="rustc 9.8.7 (abcdef012 2030-01-01)"\nCONFIG_BINDGEN_VERSION_TEXT="bindgen 0.72.1"\n');
  const base = path.join(root, 'var/lib/ootmod/rust', KVER, buildArch());
  mkdirSync(path.join(base, 'trees/0123456789abcdef'), { recursive: true });
  writeFileSync(path.join(base, 'trees/0123456789abcdef/ootmod-rust.json'), manifest);
  symlinkSync('trees/0123456789abcdef', path.join(base, 'current'));
  return root;
}

describe('a Rust tree with a corrupt manifest', () => {
  // No rustc of that version exists: prepare cannot rebuild, which is the case where the tree is needed as it is.
  const env = { RUSTC: path.join(tempDir('ootmod-no-rustc-'), 'rustc') };
  for (const [what, manifest] of [
    ['truncated', '{"key": "0123456789abcdef", "parts": {'],
    ['of the wrong shape', '{"key": "0123456789abcdef"}'],
  ] as const) {
    it(`${what}: rust status says corrupt and how to fix it`, async () => {
      const root = rootWithCorruptTree(manifest);
      const r = await ootmodEnv(root, env, 'rust', 'status');
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^${KVER}\\s.*\\scorrupt\\s.*ootmod-rust\\.json is corrupt \\(.+\\): rebuild the tree: ootmod rust prepare -k ${KVER}$`, 'm'));
      const j = JSON.parse((await ootmodEnv(root, env, 'rust', 'status', '--json')).stdout) as { trees: { state: string; detail: string }[] };
      expect(j.trees).toEqual([expect.objectContaining({ state: 'corrupt', detail: expect.stringContaining(`ootmod rust prepare -k ${KVER}`) })]);
    });

    it(`${what}: rust prepare ends in one line and exit 5, autoinstall is not stopped`, async () => {
      const root = rootWithCorruptTree(manifest);
      const r = await ootmodEnv(root, env, 'rust', 'prepare', '-k', KVER);
      expect(r.exitCode, r.stderr).toBe(5);
      expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^rust prepare ${KVER}: .*set RUSTC to a matching binary$`))]);
      // No module needs the tree here: autoinstall notes the kernel in one line and succeeds.
      const auto = await ootmodEnv(root, env, 'autoinstall', '-k', KVER);
      expect(auto.exitCode, auto.stderr).toBe(0);
      expect(auto.stderr.trim().split('\n')).toHaveLength(1);
      // A dry run plans, and says why the tree cannot be built.
      const dry = await ootmodEnv(root, env, 'rust', 'prepare', '--dry-run', '-k', KVER);
      expect(dry.exitCode, dry.stderr).toBe(0);
      expect(dry.stdout).toMatch(new RegExp(`^rust\\s+no Rust tree can be built for ${KVER}: ${KVER} was built with rustc 9\\.8\\.7 .*set RUSTC to a matching binary$`, 'm'));
    });
  }
});
