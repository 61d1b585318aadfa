// When a failed build is tried again: its inputs or the programs it runs changed, or it is asked for
// by name (ootmod build/install NAME, dkms build/install, a package's postinst queued inside dpkg).
// Plain autoinstall and the trigger leave an unchanged failure alone.
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { KernelConfig } from '../../src/kernel/config.js';
import { buildTools, toolsIdentity, type KernelTarget } from '../../src/kernel/inventory.js';
import type { ModuleSpec } from '../../src/modules/spec.js';
import { planModules as plan, type ModuleCandidate, type PlanRequest, type RecordView } from '../../src/plan/planner.js';
import { parseStat, transactionOf, type ProcessEntry } from '../../src/system/transaction.js';
import { tempDir } from '../support/roots.js';

const release = '8.1.4+deb15-amd64';
function kernel(extra: Partial<KernelTarget> = {}): KernelTarget {
  return {
    release,
    moduleDir: `/usr/lib/modules/${release}`,
    headersDir: `/usr/src/linux-headers-${release}`,
    config: KernelConfig.parse('CONFIG_64BIT=y'),
    arch: { machine: 'x86_64', srcArch: 'x86', dpkg: 'amd64', foreign: false },
    compiler: { clang: false, command: 'gcc-16', path: '/usr/bin/gcc-16' },
    compression: 'none',
    signing: { enabled: false, forced: false },
    rust: { enabled: false },
    problems: [],
    ...extra,
  };
}

const spec: ModuleSpec = {
  name: 'zfs', version: '2.4.4', sourceDir: '/usr/src/zfs-2.4.4', patches: [],
  modules: [{ index: 0, builtName: 'zfs', builtLocation: 'module/', destName: 'zfs', destLocation: '/extra', strip: true }],
  autoinstall: true, buildDepends: [], buildDependsRebuild: false, exclusive: { config: [] }, scripts: {}, warnings: [],
};
const cand = (toolsKey = 'gcc-16 as it is'): ModuleCandidate => ({ sourceDir: spec.sourceDir, kernel: release, spec, inputsKey: 'inputs', toolsKey });
const failed = (extra: Partial<RecordView> = {}): RecordView => ({
  module: 'zfs', version: '2.4.4', kernel: release, arch: 'x86_64', status: 'failed', inputsKey: 'inputs', toolsKey: 'gcc-16 as it is',
  built: [], installed: [], error: 'make failed', updatedAt: '', filesPresent: false, ...extra,
});
const autoinstall: PlanRequest = { action: 'install', force: false };
const missingGcc = `${release} was built with gcc-16, which is not installed: install gcc-16`;

describe('retrying failed builds', () => {
  it("fails, not skips, a module that must be built while the kernel's compiler is missing; a current one stays current", () => {
    const k = kernel({ problems: [missingGcc] });
    const p = plan({ kernels: [k], candidates: [cand()], records: [], request: autoinstall });
    expect(p.jobs).toEqual([]);
    expect(p.skipped).toEqual([]);
    // Marked to be recorded as failed, so status and dkms status say what to install.
    expect(p.failed).toEqual([{ module: 'zfs', version: '2.4.4', kernel: release, reason: missingGcc, cannotBuild: true }]);
    const installed = failed({ status: 'installed', filesPresent: true, installed: [{ module: 'zfs', path: '/x/zfs.ko' }] });
    const q = plan({ kernels: [k], candidates: [cand()], records: [installed], request: autoinstall });
    expect(q.failed).toEqual([]);
    expect(q.current).toHaveLength(1);
  });

  it('plans the build again once the compiler is there', () => {
    const p = plan({ kernels: [kernel()], candidates: [cand()], records: [], request: autoinstall });
    expect(p.jobs.map((j) => [j.id, j.reason, j.toolsKey])).toEqual([[`zfs/2.4.4@${release}`, 'not built yet', 'gcc-16 as it is']]);
    // As recorded when it could not be built (no inputs key): a plain autoinstall builds it.
    const recorded = failed({ inputsKey: '', toolsKey: undefined, error: missingGcc });
    const q = plan({ kernels: [kernel()], candidates: [cand()], records: [recorded], request: autoinstall });
    expect(q.jobs.map((j) => [j.id, j.reason])).toEqual([[`zfs/2.4.4@${release}`, 'failed before because of the machine, not the module']]);
  });

  it('leaves a failure with the same inputs and tools alone on autoinstall, saying what retries it', () => {
    const p = plan({ kernels: [kernel()], candidates: [cand()], records: [failed()], request: autoinstall });
    expect(p.jobs).toEqual([]);
    expect(p.failed[0]!.reason).toBe('failed before with the same inputs and tools (make failed); retried when they change, or by ootmod install zfs');
  });

  it('retries a failure when the programs its build runs changed (a compiler installed, upgraded or removed)', () => {
    const p = plan({ kernels: [kernel()], candidates: [cand('gcc-16 upgraded')], records: [failed()], request: autoinstall });
    expect(p.jobs.map((j) => j.reason)).toEqual(['failed before; its compiler or build tools changed']);
    // A failure recorded before tools were kept: retried once.
    const old = plan({ kernels: [kernel()], candidates: [cand()], records: [failed({ toolsKey: undefined })], request: autoinstall });
    expect(old.jobs).toHaveLength(1);
  });

  it('retries a failure asked for by name, or through the retry set of the trigger, and no other', () => {
    const named = plan({ kernels: [kernel()], candidates: [cand()], records: [failed()], request: { action: 'install', force: false, modules: [{ name: 'zfs' }] } });
    expect(named.jobs.map((j) => j.reason)).toEqual(['failed before, asked for again']);
    const queued = plan({ kernels: [kernel()], candidates: [cand()], records: [failed()], request: { ...autoinstall, retry: new Set(['zfs/2.4.4']) } });
    expect(queued.jobs).toHaveLength(1);
    const other = plan({ kernels: [kernel()], candidates: [cand()], records: [failed()], request: { ...autoinstall, retry: new Set(['spl/2.4.4']) } });
    expect(other.jobs).toEqual([]);
    // Named, but already tried in this run (the trigger's follow-up): an empty retry set.
    const tried = plan({ kernels: [kernel()], candidates: [cand()], records: [failed()], request: { action: 'install', force: false, modules: [{ name: 'zfs' }], retry: new Set() } });
    expect(tried.jobs).toEqual([]);
  });

  it('does not retry, even when asked for, a failure of the same package transaction; another transaction, no transaction, --force or changed tools retry', () => {
    const apt = 'apt-get:4242:1000@boot';
    const asked: PlanRequest = { ...autoinstall, retry: new Set(['zfs/2.4.4']), transaction: apt };
    const same = plan({ kernels: [kernel()], candidates: [cand()], records: [failed({ transaction: apt })], request: asked });
    expect(same.jobs).toEqual([]);
    expect(same.failed[0]!.reason).toBe('failed earlier in this package run with the same inputs and tools (make failed); not built twice in one run: retried when they change, by the next apt run that asks for it, or by ootmod install zfs');
    const named = plan({ kernels: [kernel()], candidates: [cand()], records: [failed({ transaction: apt })], request: { action: 'install', force: false, modules: [{ name: 'zfs' }], transaction: apt } });
    expect(named.jobs).toEqual([]);
    // The next apt run, and an admin's command outside dpkg.
    for (const transaction of ['apt-get:5151:2000@boot', undefined]) {
      const p = plan({ kernels: [kernel()], candidates: [cand()], records: [failed({ transaction: apt })], request: { ...asked, transaction } });
      expect(p.jobs.map((j) => j.reason), String(transaction)).toEqual(['failed before, asked for again']);
    }
    // A failure recorded outside dpkg is retried by a request inside it.
    expect(plan({ kernels: [kernel()], candidates: [cand()], records: [failed()], request: asked }).jobs).toHaveLength(1);
    expect(plan({ kernels: [kernel()], candidates: [cand()], records: [failed({ transaction: apt })], request: { ...asked, force: true } }).jobs).toHaveLength(1);
    // A compiler installed in the same apt run (ootmod's file trigger): its tools changed, retried.
    const gcc = plan({ kernels: [kernel()], candidates: [cand('gcc-16 installed')], records: [failed({ transaction: apt })], request: { ...autoinstall, transaction: apt } });
    expect(gcc.jobs.map((j) => [j.reason, j.transaction])).toEqual([['failed before; its compiler or build tools changed', apt]]);
  });

  it("rebuilds a current build its package's postinst asked for (a reinstall, a reconfigure), once per package run; a failure keeps the retry rules", () => {
    const apt = 'apt-get:4242:1000@boot';
    const installed = (extra: Partial<RecordView> = {}) => failed({ status: 'installed', filesPresent: true, installed: [{ module: 'zfs', path: '/x/zfs.ko' }], error: undefined, ...extra });
    const postinst: PlanRequest = { ...autoinstall, retry: new Set(['zfs/2.4.4']), rebuild: new Set(['zfs/2.4.4']), transaction: apt };
    const again = 'its package was configured again (installed, reinstalled or reconfigured): rebuilt, as DKMS does';
    // Built by an earlier apt run, or outside dpkg: built again, from its sources (not the built copy).
    for (const transaction of ['apt-get:1:1@boot', undefined]) {
      const p = plan({ kernels: [kernel()], candidates: [cand()], records: [installed({ transaction })], request: postinst });
      expect(p.jobs.map((j) => [j.reason, j.reuseBuilt]), String(transaction)).toEqual([[again, false]]);
    }
    // Built in this apt run already (an earlier trigger run of it): not twice.
    const same = plan({ kernels: [kernel()], candidates: [cand()], records: [installed({ transaction: apt })], request: postinst });
    expect(same.jobs).toEqual([]);
    expect(same.current).toHaveLength(1);
    // Another module's postinst, or none: current stays current.
    expect(plan({ kernels: [kernel()], candidates: [cand()], records: [installed()], request: { ...postinst, rebuild: new Set(['spl/2.4.4']) } }).jobs).toEqual([]);
    // A failure of this apt run is not forced by it: one attempt per run.
    expect(plan({ kernels: [kernel()], candidates: [cand()], records: [failed({ transaction: apt })], request: postinst }).jobs).toEqual([]);
    // A kernel whose compiler is missing keeps the build it has.
    const noGcc = plan({ kernels: [kernel({ problems: [missingGcc] })], candidates: [cand()], records: [installed()], request: postinst });
    expect(noGcc.jobs).toEqual([]);
    expect(noGcc.failed).toEqual([]);
  });
});

describe('the package transaction a run is part of', () => {
  const proc = (pid: number, comm: string, ppid: number, start = String(pid * 10)): ProcessEntry => ({ pid, comm, ppid, start });
  const trigger = [proc(900, 'node', 899), proc(899, 'sh', 898), proc(898, 'dpkg', 800)];

  it("is apt's run for every dpkg call apt makes, and the outermost of unattended-upgrades' processes", () => {
    expect(transactionOf([...trigger, proc(800, 'apt-get', 700), proc(700, 'bash', 1), proc(1, 'systemd', 0)])).toBe('apt-get:800:8000');
    const again = [proc(950, 'node', 949), proc(949, 'sh', 948), proc(948, 'dpkg', 800), proc(800, 'apt-get', 700)];
    expect(transactionOf(again)).toBe('apt-get:800:8000');
    expect(transactionOf([...trigger, proc(800, 'unattended-upgr', 790), proc(790, 'unattended-upgr', 1), proc(1, 'systemd', 0)])).toBe('unattended-upgr:790:7900');
  });

  it('is the dpkg run itself when dpkg runs by hand, by dpkg-reconfigure or by a daemon; none outside dpkg', () => {
    expect(transactionOf([...trigger, proc(800, 'bash', 1)])).toBe('dpkg:898:8980');
    expect(transactionOf([...trigger, proc(800, 'dpkg-reconfigur', 700), proc(700, 'bash', 1)])).toBe('dpkg:898:8980');
    expect(transactionOf([...trigger, proc(800, 'packagekitd', 1)])).toBe('dpkg:898:8980');
    // A later dpkg run by hand: another transaction (another pid, or the same pid started later).
    expect(transactionOf([proc(900, 'node', 899), proc(899, 'sh', 898), proc(898, 'dpkg', 800, '99999'), proc(800, 'bash', 1)])).toBe('dpkg:898:99999');
    expect(transactionOf([proc(900, 'node', 800), proc(800, 'bash', 1)])).toBeUndefined();
  });

  it("reads /proc/PID/stat, whose name may hold spaces and parentheses", () => {
    const stat = '4242 (a (b) c) S 4000 4242 4000 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 100 18446744073709551615';
    expect(parseStat(stat)).toEqual({ pid: 4242, comm: 'a (b) c', ppid: 4000, start: '123456' });
    expect(parseStat('garbage')).toBeUndefined();
  });
});

describe('the tools a failure is kept for', () => {
  it("are the kernel's compiler, linker, strip and make; cross and LLVM ones for such kernels", () => {
    expect(buildTools(kernel())).toEqual(['gcc-16', 'ld', 'strip', 'make']);
    const arm = kernel({ arch: { machine: 'aarch64', srcArch: 'arm64', dpkg: 'arm64', foreign: true, crossCompile: 'aarch64-linux-gnu-' }, compiler: { clang: false, command: 'aarch64-linux-gnu-gcc-16' } });
    expect(buildTools(arm)).toEqual(['aarch64-linux-gnu-gcc-16', 'aarch64-linux-gnu-ld', 'aarch64-linux-gnu-strip', 'make']);
    expect(buildTools(kernel({ compiler: { clang: true, command: 'clang' } }))).toEqual(['clang', 'ld.lld', 'llvm-strip', 'make']);
  });

  it('change when a program appears on PATH or is replaced', async () => {
    const bin = tempDir('ootmod-tools-');
    const saved = process.env.PATH;
    process.env.PATH = bin;
    try {
      const missing = await toolsIdentity(['gcc-16']);
      expect(missing).toBe('gcc-16=missing');
      const gcc = path.join(bin, 'gcc-16');
      writeFileSync(gcc, '#!/bin/sh\n');
      chmodSync(gcc, 0o755);
      const present = await toolsIdentity(['gcc-16']);
      expect(present).toMatch(new RegExp(`^gcc-16=${gcc}:10:\\d+$`));
      writeFileSync(gcc, '#!/bin/sh\nexit 0\n');
      expect(await toolsIdentity(['gcc-16'])).not.toBe(present);
    } finally {
      process.env.PATH = saved;
    }
  });
});

describe("ootmod's dpkg file triggers", () => {
  // What Debian's compiler packages ship (gcc-N and cpp-N of bookworm and sid, a cross gcc-N, clang, lld).
  const compilerFiles = [
    '/usr/lib/gcc/x86_64-linux-gnu/12/cc1',
    '/usr/lib/gcc/x86_64-linux-gnu/12/collect2',
    '/usr/libexec/gcc/x86_64-linux-gnu/16/cc1',
    '/usr/lib/gcc-cross/aarch64-linux-gnu/16/plugin/include/tree.h',
    '/usr/libexec/gcc-cross/aarch64-linux-gnu/16/cc1',
    '/usr/bin/clang',
    '/usr/bin/ld.lld',
  ];
  const otherFiles = ['/usr/bin/vim.basic', '/usr/lib/x86_64-linux-gnu/libz.so.1', '/usr/share/doc/gcc-16/copyright', '/usr/bin/gcc-16', '/etc/gcc.conf'];

  for (const file of ['debian/ootmod.triggers', 'debian/ootmod-static.triggers']) {
    it(`${file} fires when a compiler is installed, and not for other packages' files`, () => {
      const interests = readFileSync(path.join(__dirname, '../..', file), 'utf8').split('\n')
        .map((l) => /^interest-noawait (\/\S*)$/.exec(l)?.[1]).filter((p): p is string => Boolean(p));
      const fires = (f: string) => interests.some((i) => f === i || f.startsWith(`${i}/`));
      expect(compilerFiles.filter((f) => !fires(f))).toEqual([]);
      expect(otherFiles.filter(fires)).toEqual([]);
    });
  }
});
