// Builds and installs the fixture C modules against the host's real Debian linux-headers into a sandbox root.
import { existsSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ootmod, statusJson, type CliResult } from '../support/cli.js';
import { FIXTURES, compressionSuffix, expectedVermagic, hostKernel, linkHostKernel, modinfo, placeSource } from '../support/host.js';
import { makeRoot } from '../support/roots.js';

const FIXTURE_DIRS = ['ootmod-hello-1.0', 'ootmod-pair-2.1', 'ootmod-patched-1.0', 'ootmod-exclusive-1.0', 'ootmod-broken-1.0'];

describe('C modules from dkms.conf against real Debian headers', () => {
  const kernel = hostKernel();
  const suffix = compressionSuffix(kernel.config);
  const root = makeRoot();
  const moduleDir = path.join(root, 'usr/lib/modules', kernel.release);
  const installed = (name: string) => path.join(moduleDir, 'updates/ootmod', `${name}.ko${suffix}`);
  let first: CliResult;

  beforeAll(async () => {
    linkHostKernel(root, kernel.release, kernel.headers);
    for (const f of FIXTURE_DIRS) placeSource(root, path.join(FIXTURES, f));
    first = await ootmod(root, 'autoinstall');
  });

  it('reports one summary and fails only because of the broken module', () => {
    expect(first.stdout).toMatch(/^autoinstall: 3 installed, 0 built, 0 current, 1 skipped, 1 failed$/m);
    expect(first.exitCode).toBe(1);
    expect(first.stderr).toMatch(/skip +ootmod-exclusive\/1.0 for .*: BUILD_EXCLUSIVE_CONFIG: CONFIG_OOTMOD_TEST_NEVER_SET is not set/);
  });

  it.each(['ootmod_hello', 'pair_alpha', 'ootmod_pair_beta', 'ootmod_patched'])('installs %s at the right path, for this kernel', (name) => {
    const file = installed(name);
    expect(existsSync(file)).toBe(true);
    expect(modinfo('vermagic', file)).toBe(expectedVermagic(kernel.release, kernel.config));
    if (kernel.config.builtin('MODULE_SIG')) expect(modinfo('signer', file)).toBe('ootmod module signing key');
  });

  it('lists the modules in modules.dep', () => {
    const dep = readFileSync(path.join(moduleDir, 'modules.dep'), 'utf8');
    for (const name of ['ootmod_hello', 'pair_alpha', 'ootmod_pair_beta', 'ootmod_patched']) {
      expect(dep).toMatch(new RegExp(`^updates/ootmod/${name}\\.ko${suffix.replace('.', '\\.')}:`, 'm'));
    }
  });

  it('compresses as the kernel config says', () => {
    const magic = readFileSync(installed('ootmod_hello')).subarray(0, 6).toString('hex');
    if (suffix === '.xz') expect(magic).toBe('fd377a585a00');
    else if (suffix === '.zst') expect(magic.slice(0, 8)).toBe('28b52ffd');
    else if (suffix === '.gz') expect(magic.slice(0, 4)).toBe('1f8b');
    else expect(magic.slice(0, 8)).toBe('7f454c46');
  });

  it('applies PATCH entries whose PATCH_MATCH matches, and only those', () => {
    const text = execFileSync('bash', ['-c', `modinfo -F filename ${installed('ootmod_patched')} >/dev/null; ${suffix === '.xz' ? 'xzcat' : suffix === '.zst' ? 'zstdcat' : suffix === '.gz' ? 'zcat' : 'cat'} ${installed('ootmod_patched')} | strings`], { encoding: 'utf8', maxBuffer: 64 << 20 });
    expect(text).toContain('state=PATCHED-OK');
    expect(text).not.toContain('WRONG-PATCH');
  });

  it('ran PRE_BUILD in the build dir with the kernel release', () => {
    const log = readFileSync(path.join(root, 'var/lib/ootmod/built', kernel.release, 'ootmod-hello/1.0/make.log'), 'utf8');
    expect(log).toMatch(/# command: .*gen-header\.sh/);
    expect(log).toMatch(/# exit code: 0/);
    expect(log).toMatch(/# elapsed time: [\d.]+s/);
  });

  it('reports installed, added and failed modules in status --json', async () => {
    const { modules } = await statusJson(root);
    const by = Object.fromEntries(modules.map((m) => [m.module, m]));
    expect(by['ootmod-hello']).toMatchObject({ status: 'installed', kernel: kernel.release, version: '1.0', files: [installed('ootmod_hello')] });
    expect(by['ootmod-pair']!.files.sort()).toEqual([installed('ootmod_pair_beta'), installed('pair_alpha')]);
    expect(by['ootmod-exclusive']!.status).toBe('added');
    expect(by['ootmod-broken']!.status).toBe('failed');
    expect(by['ootmod-broken']!.error).toMatch(/this_symbol_does_not_exist/);
    expect(readFileSync(by['ootmod-broken']!.log!, 'utf8')).toMatch(/error: .*this_symbol_does_not_exist/);
  });

  it('makes a repeated autoinstall a no-op that still reports the unchanged failure', async () => {
    const again = await ootmod(root, 'autoinstall');
    expect(again.stdout).toMatch(/^autoinstall: 0 installed, 0 built, 3 current, 1 skipped, 1 failed$/m);
    expect(again.stderr).toMatch(/ootmod-broken\/1.0 .*failed before with the same inputs/);
    expect(again.stderr).not.toMatch(/^start/m);
  });

  it('prints the plan on --dry-run and changes nothing', async () => {
    const before = readFileSync(path.join(root, 'var/lib/ootmod/state.json'), 'utf8');
    const dry = await ootmod(root, '--dry-run', 'install', 'ootmod-hello', '--force');
    expect(dry.exitCode).toBe(0);
    expect(dry.stdout).toMatch(/would install ootmod-hello\/1.0 for .* \(forced\)/);
    expect(readFileSync(path.join(root, 'var/lib/ootmod/state.json'), 'utf8')).toBe(before);
  });

  it('uninstalls, reinstalls from the kept build, and removes', async () => {
    const un = await ootmod(root, 'uninstall', 'ootmod-hello');
    expect(un.exitCode).toBe(0);
    expect(existsSync(installed('ootmod_hello'))).toBe(false);
    expect(readFileSync(path.join(moduleDir, 'modules.dep'), 'utf8')).not.toMatch(/ootmod_hello/);
    expect((await statusJson(root)).modules.find((m) => m.module === 'ootmod-hello')!.status).toBe('built');

    const re = await ootmod(root, 'install', 'ootmod-hello');
    expect(re.exitCode).toBe(0);
    expect(existsSync(installed('ootmod_hello'))).toBe(true);
    const log = readFileSync(path.join(root, 'var/lib/ootmod/built', kernel.release, 'ootmod-hello/1.0/make.log'), 'utf8');
    expect(log.match(/# command: bash -c 'make /g)).toHaveLength(1);

    const rm = await ootmod(root, 'remove', 'ootmod-pair');
    expect(rm.exitCode).toBe(0);
    expect(existsSync(installed('pair_alpha'))).toBe(false);
    expect(readFileSync(path.join(moduleDir, 'modules.dep'), 'utf8')).not.toMatch(/pair_alpha/);
    expect((await statusJson(root)).modules.find((m) => m.module === 'ootmod-pair')!.status).toBe('added');
  });

  it('exits 77 when every requested build is excluded, and 4 for an unknown module', async () => {
    expect((await ootmod(root, 'build', 'ootmod-exclusive')).exitCode).toBe(77);
    const unknown = await ootmod(root, 'build', 'no-such-module');
    expect(unknown.exitCode).toBe(4);
    expect(unknown.stderr.trim()).toMatch(/^ootmod: no module source no-such-module under .*: ootmod add <dir> first/);
  });
});
