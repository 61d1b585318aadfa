// The per-build dir and DKMS's tree: the file operations (src/execute/dkmstree.ts) and where the plan
// puts them (build, install, forget and dkms-tree jobs carry the dir in DKMS's tree).
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freshPerBuildDir, keepPerBuildDir, removeDkmsTree, restorePerBuildDir, writeDkmsTree } from '../../src/execute/dkmstree.js';
import type { ModuleSpec } from '../../src/modules/spec.js';
import { composePlan } from '../../src/plan/compose.js';
import { planJson } from '../../src/cli/progress.js';
import type { ModuleJob } from '../../src/plan/planner.js';
import type { BuildRecord } from '../../src/state/store.js';
import { tempDir } from '../support/roots.js';

describe('the per-build dir', () => {
  it('is fresh for each build; a failed build puts the previous one back, a successful one drops it', async () => {
    const dir = path.join(tempDir('ootmod-perbuild-'), 'zfs/2.4.4/6.1.0-1-amd64/x86_64');
    await freshPerBuildDir(dir);
    writeFileSync(path.join(dir, 'zfs_config.h'), 'first\n');
    await keepPerBuildDir(dir, { built: [] });
    await freshPerBuildDir(dir);
    expect(readdirSync(dir)).toEqual([]);
    writeFileSync(path.join(dir, 'zfs_config.h'), 'half\n');
    await restorePerBuildDir(dir);
    expect(readFileSync(path.join(dir, 'zfs_config.h'), 'utf8')).toBe('first\n');
    await freshPerBuildDir(dir);
    writeFileSync(path.join(dir, 'zfs_config.h'), 'second\n');
    await keepPerBuildDir(dir, { built: [] });
    await restorePerBuildDir(dir);
    expect(readFileSync(path.join(dir, 'zfs_config.h'), 'utf8')).toBe('second\n');
    expect(readdirSync(path.dirname(dir))).toEqual(['x86_64']);
  });

  it("gets DKMS's module/ (the built files, the same inodes) and log/make.log", async () => {
    const base = tempDir('ootmod-perbuild-');
    const built = path.join(base, 'built');
    mkdirSync(built);
    for (const f of ['zfs.ko.xz', 'spl.ko.xz', 'make.log', 'Module.symvers']) writeFileSync(path.join(built, f), f);
    const dir = path.join(base, 'tree/x86_64');
    await keepPerBuildDir(dir, { built: ['zfs.ko.xz', 'spl.ko.xz'].map((f) => path.join(built, f)), log: path.join(built, 'make.log'), symvers: path.join(built, 'Module.symvers') });
    expect(readdirSync(path.join(dir, 'module')).sort()).toEqual(['Module.symvers', 'spl.ko.xz', 'zfs.ko.xz']);
    expect(statSync(path.join(dir, 'module/zfs.ko.xz')).ino).toBe(statSync(path.join(built, 'zfs.ko.xz')).ino);
    // The symvers comes from the build user's dir: a copy, not a link.
    expect(statSync(path.join(dir, 'module/Module.symvers')).ino).not.toBe(statSync(path.join(built, 'Module.symvers')).ino);
    expect(readFileSync(path.join(dir, 'log/make.log'), 'utf8')).toBe('make.log');
  });

  it('never writes through a link the build left where module/ or log/ go', async () => {
    const base = tempDir('ootmod-perbuild-');
    const elsewhere = path.join(base, 'etc');
    mkdirSync(elsewhere);
    const dir = path.join(base, 'tree/x86_64');
    mkdirSync(dir, { recursive: true });
    symlinkSync(elsewhere, path.join(dir, 'module'));
    symlinkSync(elsewhere, path.join(dir, 'log'));
    writeFileSync(path.join(base, 'zfs.ko'), 'ko');
    writeFileSync(path.join(base, 'make.log'), 'log');
    await keepPerBuildDir(dir, { built: [path.join(base, 'zfs.ko')], log: path.join(base, 'make.log') });
    expect(readdirSync(elsewhere)).toEqual([]);
    expect(lstatSync(path.join(dir, 'module')).isDirectory()).toBe(true);
    expect(readdirSync(path.join(dir, 'module'))).toEqual(['zfs.ko']);
  });
});

describe("DKMS's tree", () => {
  it('is a copy of the per-build dir: files linked, links kept as links, fifos left out; replaced whole', async () => {
    const base = tempDir('ootmod-dkmstree-');
    const from = path.join(base, 'perbuild');
    mkdirSync(path.join(from, 'module'), { recursive: true });
    writeFileSync(path.join(from, 'module/zfs.ko'), 'ko');
    writeFileSync(path.join(from, 'zfs_config.h'), 'h');
    symlinkSync('/etc/shadow', path.join(from, 'sneaky'));
    execFileSync('mkfifo', [path.join(from, 'fifo')]);
    const to = path.join(base, 'var/lib/dkms/zfs/2.4.4/6.1.0-1-amd64/x86_64');
    mkdirSync(to, { recursive: true });
    writeFileSync(path.join(to, 'stale'), 'old build');
    await writeDkmsTree(from, to);
    expect(readdirSync(to).sort()).toEqual(['module', 'sneaky', 'zfs_config.h']);
    expect(statSync(path.join(to, 'module/zfs.ko')).ino).toBe(statSync(path.join(from, 'module/zfs.ko')).ino);
    expect(lstatSync(path.join(to, 'sneaky')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(path.join(to, 'sneaky'))).toBe('/etc/shadow');
    expect(readdirSync(path.dirname(to))).toEqual(['x86_64']);
  });

  it('goes with the build, with the kernel dir it leaves empty; the registration stays', async () => {
    const base = tempDir('ootmod-dkmstree-');
    const version = path.join(base, 'zfs/2.4.4');
    mkdirSync(path.join(version, '6.1.0-1-amd64/x86_64/module'), { recursive: true });
    mkdirSync(path.join(version, '6.1.0-2-amd64/x86_64'), { recursive: true });
    symlinkSync('/usr/src/zfs-2.4.4', path.join(version, 'source'));
    await removeDkmsTree(path.join(version, '6.1.0-1-amd64/x86_64'));
    expect(readdirSync(version).sort()).toEqual(['6.1.0-2-amd64', 'source']);
    await removeDkmsTree(path.join(version, '6.1.0-2-amd64/x86_64'));
    expect(readdirSync(version)).toEqual(['source']);
    expect(existsSync(base)).toBe(true);
  });
});

describe("DKMS's tree in the plan", () => {
  const spec = { name: 'zfs', version: '2.4.4', modules: [] } as unknown as ModuleSpec;
  const job = (action: 'build' | 'install', reuseBuilt = false): ModuleJob => ({
    id: `zfs/2.4.4@k1`, action, module: 'zfs', version: '2.4.4', kernel: 'k1', spec, inputsKey: 'x', after: [], reuseBuilt, replaces: [], reason: 'not built yet',
  });
  const dkmsTree = (m: string, v: string, k: string) => (m === 'zfs' ? `/var/lib/dkms/${m}/${v}/${k}/x86_64` : undefined);
  const modules = (jobs: ModuleJob[], current: { module: string; version: string; kernel: string; reason: string }[] = []) => ({ jobs, current, skipped: [], failed: [], invalid: [] });

  it('build and install jobs of a registered module carry its dir, shown in the JSON plan', () => {
    const plan = composePlan({ modules: modules([job('install')]), depmodKernels: new Set(), dkmsTree });
    const out = planJson(plan) as { jobs: { kind: string; dkmsTree?: string }[] };
    expect(out.jobs.map((j) => [j.kind, j.dkmsTree])).toEqual([['build', '/var/lib/dkms/zfs/2.4.4/k1/x86_64'], ['install', '/var/lib/dkms/zfs/2.4.4/k1/x86_64']]);
  });

  it('a current module missing from it gets a dkms-tree job; one that is there, or unregistered, none', () => {
    const current = [{ module: 'zfs', version: '2.4.4', kernel: 'k1', reason: 'installed and current' }, { module: 'other', version: '1', kernel: 'k1', reason: 'installed and current' }];
    const missing = composePlan({ modules: modules([], current), depmodKernels: new Set(), dkmsTree, dkmsTreeMissing: () => true });
    expect(missing.jobs.map((j) => [j.kind, j.id])).toEqual([['dkms-tree', 'dkms-tree:zfs/2.4.4@k1']]);
    const there = composePlan({ modules: modules([], current), depmodKernels: new Set(), dkmsTree, dkmsTreeMissing: () => false });
    expect(there.jobs).toEqual([]);
  });

  it('the forget job of a removal removes it; an uninstall keeps it', () => {
    const record = { module: 'zfs', version: '2.4.4', kernel: 'k1', arch: 'x86_64' } as BuildRecord;
    const plan = composePlan({ removals: [{ record, forget: true, reason: 'ootmod remove', dkmsTree: '/var/lib/dkms/zfs/2.4.4/k1/x86_64' }], depmodKernels: new Set() });
    expect(plan.jobs.map((j) => [j.kind, 'dkmsTree' in j ? j.dkmsTree : undefined])).toEqual([['uninstall', undefined], ['forget', '/var/lib/dkms/zfs/2.4.4/k1/x86_64']]);
  });
});
