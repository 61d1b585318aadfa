import { describe, expect, it } from 'vitest';
import { KernelConfig } from '../../src/kernel/config.js';
import type { KernelTarget } from '../../src/kernel/inventory.js';
import { makeCommandLine } from '../../src/execute/make.js';
import { exclusionReason } from '../../src/modules/exclusive.js';
import type { ModuleSpec } from '../../src/modules/spec.js';
import { planModules as plan, type ModuleCandidate, type PlanRequest, type RecordView } from '../../src/plan/planner.js';
import { composePlan } from '../../src/plan/compose.js';
import { planLines } from '../../src/cli/progress.js';

function kernel(release: string, extra: Partial<KernelTarget> = {}, config = 'CONFIG_64BIT=y\nCONFIG_FOO=m'): KernelTarget {
  return {
    release,
    moduleDir: `/usr/lib/modules/${release}`,
    headersDir: `/usr/src/linux-headers-${release}`,
    config: KernelConfig.parse(config),
    arch: { machine: 'x86_64', srcArch: 'x86', dpkg: 'amd64', foreign: false },
    compiler: { clang: false, command: 'gcc-12', path: '/usr/bin/gcc-12' },
    compression: 'none',
    signing: { enabled: false, forced: false },
    rust: { enabled: false },
    problems: [],
    ...extra,
  };
}

function spec(name: string, version = '1.0', extra: Partial<ModuleSpec> = {}): ModuleSpec {
  return {
    name,
    version,
    sourceDir: `/usr/src/${name}-${version}`,
    patches: [],
    modules: [{ index: 0, builtName: name, builtLocation: '', destName: name, destLocation: '/updates', strip: true }],
    autoinstall: true,
    buildDepends: [],
    buildDependsRebuild: false,
    exclusive: { config: [] },
    scripts: {},
    warnings: [],
    ...extra,
  };
}

const cand = (s: ModuleSpec, k: string, key = `key-${s.name}-${s.version}`): ModuleCandidate => ({ sourceDir: s.sourceDir, kernel: k, spec: s, inputsKey: key });
const auto: PlanRequest = { action: 'install', force: false };

function record(s: ModuleSpec, k: string, extra: Partial<RecordView> = {}): RecordView {
  return {
    module: s.name, version: s.version, kernel: k, arch: 'x86_64', status: 'installed', inputsKey: `key-${s.name}-${s.version}`,
    built: [], installed: [{ module: s.name, path: `/x/${s.name}.ko` }], updatedAt: '', filesPresent: true, ...extra,
  };
}

describe('plan', () => {
  const k7 = kernel('8.1.4+deb15-amd64');
  const k6 = kernel('6.1.0-28-amd64');

  it('plans every AUTOINSTALL module for every kernel with headers', () => {
    const a = spec('a');
    const manual = spec('manual', '1.0', { autoinstall: false });
    const p = plan({ kernels: [k7, k6], candidates: [cand(a, k7.release), cand(a, k6.release), cand(manual, k7.release)], records: [], request: auto });
    expect(p.jobs.map((j) => j.id).sort()).toEqual(['a/1.0@6.1.0-28-amd64', 'a/1.0@8.1.4+deb15-amd64']);
  });

  it('takes only the newest version of a module, and replaces an installed older one', () => {
    const old = spec('a', '1.9');
    const neu = spec('a', '1.10');
    const p = plan({ kernels: [k7], candidates: [cand(old, k7.release), cand(neu, k7.release)], records: [record(old, k7.release)], request: auto });
    expect(p.jobs).toHaveLength(1);
    expect(p.jobs[0]!.version).toBe('1.10');
    expect(p.jobs[0]!.replaces).toEqual(['1.9']);
  });

  it('is a no-op when inputs are unchanged and files are present', () => {
    const a = spec('a');
    const p = plan({ kernels: [k7], candidates: [cand(a, k7.release)], records: [record(a, k7.release)], request: auto });
    expect(p.jobs).toEqual([]);
    expect(p.current).toHaveLength(1);
  });

  it('rebuilds when inputs changed, files vanished, or --force', () => {
    const a = spec('a');
    const changed = plan({ kernels: [k7], candidates: [cand(a, k7.release, 'other')], records: [record(a, k7.release)], request: auto });
    expect(changed.jobs[0]!.reason).toBe('inputs changed');
    const gone = plan({ kernels: [k7], candidates: [cand(a, k7.release)], records: [record(a, k7.release, { filesPresent: false })], request: auto });
    expect(gone.jobs[0]!.reason).toBe('files missing');
    const forced = plan({ kernels: [k7], candidates: [cand(a, k7.release)], records: [record(a, k7.release)], request: { ...auto, force: true } });
    expect(forced.jobs[0]!.reason).toBe('forced');
  });

  it('installs a current build without rebuilding it', () => {
    const a = spec('a');
    const p = plan({ kernels: [k7], candidates: [cand(a, k7.release)], records: [record(a, k7.release, { status: 'built', installed: [] })], request: auto });
    expect(p.jobs[0]!.reuseBuilt).toBe(true);
  });

  it('skips kernels without headers and excluded kernels, with the reason', () => {
    const a = spec('a', '1.0', { exclusive: { config: [{ name: 'CONFIG_BAR', negate: false }] } });
    const b = spec('b');
    const noHeaders = kernel('7.3.0-1-amd64', { headersDir: undefined });
    const p = plan({ kernels: [k7, noHeaders], candidates: [cand(a, k7.release), cand(b, noHeaders.release)], records: [], request: auto });
    expect(p.jobs).toEqual([]);
    expect(p.skipped.map((s) => s.reason)).toEqual([
      'BUILD_EXCLUSIVE_CONFIG: CONFIG_BAR is not set in 8.1.4+deb15-amd64',
      'no headers for 7.3.0-1-amd64: install linux-headers-7.3.0-1-amd64',
    ]);
  });

  it('orders BUILD_DEPENDS and blocks dependants of missing or cyclic modules', () => {
    const base = spec('base');
    const top = spec('top', '1.0', { buildDepends: ['base'] });
    const lost = spec('lost', '1.0', { buildDepends: ['nowhere'] });
    const onLost = spec('onlost', '1.0', { buildDepends: ['lost'] });
    const c1 = spec('c1', '1.0', { buildDepends: ['c2'] });
    const c2 = spec('c2', '1.0', { buildDepends: ['c1'] });
    const p = plan({ kernels: [k7], candidates: [top, base, lost, onLost, c1, c2].map((s) => cand(s, k7.release)), records: [], request: auto });
    expect(p.jobs.map((j) => j.module).sort()).toEqual(['base', 'top']);
    expect(p.jobs.find((j) => j.module === 'top')!.after).toEqual(['base/1.0@8.1.4+deb15-amd64']);
    const reasons = Object.fromEntries(p.skipped.map((s) => [s.module, s.reason]));
    expect(reasons.lost).toMatch(/nowhere is not installed/);
    expect(reasons.onlost).toMatch(/lost cannot be built/);
    expect(reasons.c1).toMatch(/cycle/);
  });

  it('BUILD_DEPENDS_REBUILD: rebuilds an installed dependant when its dependency is rebuilt, transitively, as DKMS 3.2 does', () => {
    const base = spec('base', '2.0');
    const fs = spec('fs', '1.0', { buildDepends: ['base'], buildDependsRebuild: true, autoinstall: false });
    const tool = spec('tool', '1.0', { buildDepends: ['fs'], buildDependsRebuild: true, autoinstall: false });
    const plain = spec('plain', '1.0', { buildDepends: ['base'], autoinstall: false });
    const records = [record(base, k7.release, { inputsKey: 'old' }), record(fs, k7.release), record(tool, k7.release), record(plain, k7.release)];
    const candidates = [base, fs, tool, plain].map((s) => cand(s, k7.release));
    // Only base is asked for by name, and only its inputs changed.
    const p = plan({ kernels: [k7], candidates, records, request: { action: 'build', force: false, modules: [{ name: 'base' }] } });
    const jobs = Object.fromEntries(p.jobs.map((j) => [j.module, j]));
    expect(Object.keys(jobs).sort()).toEqual(['base', 'fs', 'tool']);
    expect(jobs.fs!.reason).toBe('BUILD_DEPENDS_REBUILD: base is rebuilt');
    expect(jobs.fs!.action).toBe('install');
    expect(jobs.fs!.after).toEqual(['base/2.0@8.1.4+deb15-amd64']);
    expect(jobs.tool!.reason).toBe('BUILD_DEPENDS_REBUILD: fs is rebuilt');
    expect(jobs.tool!.after).toEqual(['fs/1.0@8.1.4+deb15-amd64']);
    // Without the directive a dependant stays as it is; with base current nothing moves.
    const quiet = plan({ kernels: [k7], candidates, records: [record(base, k7.release), ...records.slice(1)], request: auto });
    expect(quiet.jobs).toEqual([]);
  });

  it('restricts to named modules and versions, regardless of AUTOINSTALL', () => {
    const a1 = spec('a', '1.0', { autoinstall: false });
    const a2 = spec('a', '2.0', { autoinstall: false });
    const p = plan({ kernels: [k7], candidates: [cand(a1, k7.release), cand(a2, k7.release), cand(spec('b'), k7.release)], records: [], request: { action: 'build', force: false, modules: [{ name: 'a', version: '1.0' }] } });
    expect(p.jobs.map((j) => j.id)).toEqual(['a/1.0@8.1.4+deb15-amd64']);
  });

  it('keeps a current Rust module when the Rust tree is unavailable, and fails one that must be rebuilt', () => {
    const rk = kernel('8.1.4+deb15-amd64', { rust: { enabled: true } });
    const r = spec('rusty');
    const unavailable = new Map([[rk.release, 'rustc mismatch']]);
    const rustCand = { ...cand(r, rk.release), usesRust: true };
    const keep = plan({ kernels: [rk], candidates: [rustCand], records: [record(r, rk.release)], request: auto, rustUnavailable: unavailable });
    expect(keep.current).toHaveLength(1);
    expect(keep.failed).toEqual([]);
    const rebuild = plan({ kernels: [rk], candidates: [{ ...rustCand, inputsKey: 'new' }], records: [record(r, rk.release)], request: auto, rustUnavailable: unavailable });
    expect(rebuild.failed[0]!.reason).toBe(`it has Rust code and the Rust tree of ${rk.release} is unavailable: rustc mismatch`);
    const noRustKernel = plan({ kernels: [k6], candidates: [{ ...cand(r, k6.release), usesRust: true }], records: [], request: auto });
    expect(noRustKernel.failed[0]!.reason).toMatch(/is not built with CONFIG_RUST/);
  });

  it('applies per-module BUILD_EXCLUSIVE_*[#]: an excluded module is left out, all excluded skips', () => {
    const two = spec('two', '1.0', {
      modules: [
        { index: 0, builtName: 'one', builtLocation: '', destName: 'one', destLocation: '/updates', strip: true },
        { index: 1, builtName: 'arm', builtLocation: '', destName: 'arm', destLocation: '/updates', strip: true, exclusive: { config: [], archPattern: 'aarch64', archMatches: false } },
      ],
    });
    const p = plan({ kernels: [k7], candidates: [cand(two, k7.release)], records: [], request: auto });
    expect(p.jobs[0]!.spec.modules.map((m) => m.builtName)).toEqual(['one']);
    const onlyArm = spec('onlyarm', '1.0', { modules: [two.modules[1]!] });
    const q = plan({ kernels: [k7], candidates: [cand(onlyArm, k7.release)], records: [], request: auto });
    expect(q.jobs).toEqual([]);
    expect(q.skipped[0]!.reason).toMatch(/^arm: BUILD_EXCLUSIVE_ARCH 'aarch64' does not match x86_64/);
  });

  it('finds two sources that would install the same module file, before building, naming both', () => {
    const mk = (name: string) => spec(name, '1.0', { modules: [{ index: 0, builtName: 'shared', builtLocation: '', destName: 'shared', destLocation: '/updates', strip: true }] });
    const p = plan({ kernels: [k7], candidates: [cand(mk('beta'), k7.release), cand(mk('alpha'), k7.release)], records: [], request: auto });
    expect(p.jobs.map((j) => j.module)).toEqual(['alpha']);
    expect(p.failed).toEqual([{ module: 'beta', version: '1.0', kernel: k7.release, reason: 'shared.ko would be installed by both alpha/1.0 and beta/1.0: remove one of the two sources, or rename the module in one dkms.conf' }]);
    // A module another, not planned, source installed keeps its file; '-' and '_' are the same name.
    const other = spec('other', '1.0', { autoinstall: false, modules: [{ index: 0, builtName: 'sha-red', builtLocation: '', destName: 'sha-red', destLocation: '/updates', strip: true }] });
    const underscore = spec('alpha', '1.0', { modules: [{ index: 0, builtName: 'sha_red', builtLocation: '', destName: 'sha_red', destLocation: '/updates', strip: true }] });
    const q = plan({ kernels: [k7], candidates: [cand(underscore, k7.release)], records: [record(other, k7.release, { installed: [{ module: 'sha-red', path: '/x/sha-red.ko' }] })], request: auto });
    expect(q.jobs).toEqual([]);
    expect(q.failed[0]!.reason).toMatch(/by both other\/1.0 and alpha\/1.0/);
  });

  it('lists invalid sources', () => {
    const p = plan({ kernels: [k7], candidates: [{ sourceDir: '/usr/src/x-1', kernel: k7.release, error: 'PACKAGE_NAME is missing' }], records: [], request: auto });
    expect(p.invalid).toEqual([{ module: '/usr/src/x-1', kernel: k7.release, reason: 'PACKAGE_NAME is missing' }]);
  });
});

describe('exclusionReason', () => {
  const k = { release: '6.1.0-28-amd64', machine: 'x86_64', config: KernelConfig.parse('CONFIG_FOO=m\n# CONFIG_BAR is not set') };
  it('applies MIN, MAX, OBSOLETE_BY, ARCH and CONFIG', () => {
    expect(exclusionReason({ config: [], kernelMin: '6.2' }, k)).toMatch(/older than BUILD_EXCLUSIVE_KERNEL_MIN 6.2/);
    expect(exclusionReason({ config: [], kernelMin: '6.1' }, k)).toBeUndefined();
    expect(exclusionReason({ config: [], kernelMax: '5.19' }, k)).toMatch(/newer than/);
    expect(exclusionReason({ config: [], obsoleteBy: '6.1' }, k)).toMatch(/obsolete/);
    expect(exclusionReason({ config: [], archPattern: 'aarch64', archMatches: false }, k)).toMatch(/ARCH/);
    expect(exclusionReason({ config: [{ name: 'CONFIG_FOO', negate: false }, { name: 'CONFIG_BAR', negate: true }] }, k)).toBeUndefined();
    expect(exclusionReason({ config: [{ name: 'CONFIG_FOO', negate: true }] }, k)).toMatch(/CONFIG_FOO is set/);
    expect(exclusionReason({ config: [], kernelPattern: '^7', kernelMatches: false }, k)).toMatch(/does not match/);
  });
});

describe('makeCommandLine', () => {
  const ctx = { kernelver: '6.1.0-28-amd64', kernelBuildDir: '/kb', buildDir: '/b', llvm: false };
  it('is DKMS default with KERNELRELEASE injected and no -j (the jobserver gives it)', () => {
    expect(makeCommandLine(undefined, ctx)).toBe('make KERNELRELEASE=6.1.0-28-amd64 -C /kb M=/b');
  });
  it('injects only into a leading make', () => {
    expect(makeCommandLine('make -C src all', ctx)).toBe('make KERNELRELEASE=6.1.0-28-amd64 -C src all');
    expect(makeCommandLine("'make' x", ctx)).toBe("'make' x");
    expect(makeCommandLine('(./configure && make)', ctx)).toBe('(./configure && make)');
    expect(makeCommandLine('makefoo', ctx)).toBe('makefoo');
  });
  it('drops a -jN of its own, which would run compilers beside the --jobs budget', () => {
    expect(makeCommandLine('make -j8 -C /kb M=/b', ctx)).toBe('make KERNELRELEASE=6.1.0-28-amd64 -C /kb M=/b');
    expect(makeCommandLine('cd src && make --jobs=4 all', ctx)).toBe('cd src && make all');
    expect(makeCommandLine('make -j 3 modules', ctx)).toBe('make KERNELRELEASE=6.1.0-28-amd64 modules');
    expect(makeCommandLine('./build.sh -j4', ctx)).toBe('./build.sh -j4');
  });
  it('adds LLVM=1 after make for clang kernels', () => {
    expect(makeCommandLine('make modules && echo done', { ...ctx, llvm: true })).toBe('make KERNELRELEASE=6.1.0-28-amd64 LLVM=1 modules && echo done');
  });
});

describe('the build-user job in a plan', () => {
  const k = kernel('8.1.4+deb15-amd64');
  const modules = (names: string[]) => plan({ kernels: [k], records: [], request: auto, candidates: names.map((n) => cand(spec(n), k.release)) });
  const user = { name: '_ootmod', confines: (n: string) => n !== 'allowed' };

  it('comes first, and every confined build needs it; a module allowed unconfined does not', () => {
    const plan = composePlan({ modules: modules(['a', 'allowed']), depmodKernels: new Set(), buildUser: user });
    expect(plan.jobs[0]).toMatchObject({ kind: 'build-user', id: 'build-user', user: '_ootmod' });
    const builds = plan.jobs.filter((j) => j.kind === 'build');
    expect(builds.find((j) => j.id.includes('a/1.0'))!.needs).toContain('build-user');
    expect(builds.find((j) => j.id.includes('allowed/'))!.needs).not.toContain('build-user');
    expect(planLines(plan)[0]).toBe('would create the system user _ootmod with useradd --system (module builds run as this unprivileged user, and it does not exist yet)');
  });

  it('is not in a plan that builds nothing confined', () => {
    expect(composePlan({ modules: modules(['allowed']), depmodKernels: new Set(), buildUser: user }).jobs.some((j) => j.kind === 'build-user')).toBe(false);
    expect(composePlan({ depmodKernels: new Set(), buildUser: user }).jobs).toEqual([]);
  });
});
