// Real Debian dkms.conf lines (test/fixtures/real-dkms-conf) read and run by ootmod give the commands
// DKMS 3.2.2 gives. The expected argv were derived by running DKMS 3.2.2's own functions by hand: its
// read_conf (with safe_source), run_build_script and invoke_command, cut out of the dkms script of
// Debian's dkms 3.2.2-1 .deb (usr/sbin/dkms) with sed into a bash harness, with the same kernelver, arch,
// kernel_source_dir and dkms_tree as here, recorder scripts at configure and scripts/dkms.postbuild, and
// `make` and `env` recorder functions for the MAKE line; `CROSS_COMPILE=aarch64-linux-gnu-
// ICP_ROOT=/opt/qat` in the environment for the cross case. Where ootmod differs by design it is said
// at the case: DKMS's make gets `-j$parallel_jobs`, ootmod's gets its jobserver instead (README).
// test/integration/dkms-parity.test.ts runs the real dkms script itself on the zfs lines when it is there.
import { chmodSync, copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeCommandLine } from '../../src/execute/make.js';
import { runScript } from '../../src/execute/modulework.js';
import type { ConfContext } from '../../src/modules/dkmsconf.js';
import { dkmsKernelSourceDir } from '../../src/modules/sourcedirs.js';
import { resolveSpec } from '../../src/modules/spec.js';
import { createLayout } from '../../src/system/layout.js';
import { runShell, type CommandLog } from '../../src/system/run.js';
import { FIXTURES } from '../support/host.js';
import { makeRoot, tempDir } from '../support/roots.js';
import { unconfinedRun } from '../support/run.js';

const KVER = '7.4.1+deb14-amd64';
const KSRC = `/usr/src/linux-headers-${KVER}`;
const TREE = `/var/lib/ootmod/tree/${KVER}`;

// Prints its name and each argument in brackets, as the DKMS harness's recorders did.
const RECORDER = '#!/bin/sh\nprintf "ARGV %s" "$(basename "$0")"; for a in "$@"; do printf " [%s]" "$a"; done; echo\n';

function context(name: string, extra: Partial<ConfContext> = {}): ConfContext {
  return {
    kernelver: KVER, arch: 'x86_64', kernel_source_dir: KSRC, kernel_config: `${KSRC}/.config`, dkms_tree: TREE,
    source_tree: '/usr/src', install_tree: '/usr/lib/modules', module: name, module_version: '1.0', parallel_jobs: '2', ...extra,
  };
}

/** The fixture as the dkms.conf of a source dir that has recorders where its scripts are. */
function source(name: string): string {
  const dir = path.join(makeRoot(), `usr/src/${name}-1.0`);
  mkdirSync(path.join(dir, 'scripts'), { recursive: true });
  copyFileSync(path.join(FIXTURES, 'real-dkms-conf', `${name}.conf`), path.join(dir, 'dkms.conf'));
  for (const s of ['configure', 'scripts/dkms.postbuild']) {
    writeFileSync(path.join(dir, s), RECORDER);
    chmodSync(path.join(dir, s), 0o755);
  }
  return dir;
}

async function spec(name: string, extra: Partial<ConfContext> = {}) {
  const dir = source(name);
  const { spec: s, errors } = resolveSpec(await unconfinedRun().dkmsConf.evaluate([path.join(dir, 'dkms.conf')], context(name, extra)), dir);
  expect(errors).toEqual([]);
  return { dir, spec: s! };
}

function recording(): { log: CommandLog; lines: () => string[] } {
  let text = '';
  return { log: { write: async (t) => void (text += t) }, lines: () => text.split('\n').filter((l) => l.startsWith('ARGV ')) };
}

/** The argv a PRE_BUILD-style value runs with, as ootmod runs it. */
async function scriptArgv(value: string, dir: string): Promise<string[]> {
  const r = recording();
  await runScript('PRE_BUILD', value, dir, {}, r.log, 10_000);
  return r.lines();
}

/** The argv of the programs the make command line starts, with `make` and `env` recorders first on PATH. */
async function makeArgv(make: string | undefined, dir: string): Promise<string[]> {
  const bin = tempDir('ootmod-recorders-');
  for (const p of ['make', 'env']) {
    writeFileSync(path.join(bin, p), RECORDER);
    chmodSync(path.join(bin, p), 0o755);
  }
  const r = recording();
  const line = makeCommandLine(make, { kernelver: KVER, kernelBuildDir: KSRC, buildDir: dir, llvm: false });
  await runShell(line, { cwd: dir, log: r.log, env: { PATH: `${bin}:${process.env.PATH}` } });
  return r.lines();
}

const brackets = (words: string[]) => words.map((w) => `[${w}]`).join(' ');

describe('real dkms.conf lines run as DKMS 3.2.2 runs them', () => {
  it("zfs: PRE_BUILD's configure gets --with-qat= and --host= empty, unquoted, as with DKMS", async () => {
    const { dir, spec: s } = await spec('zfs');
    // DKMS 3.2.2: PRE_BUILD=[configure --disable-dependency-tracking ... --with-qat= --host= --enable-linux-experimental ]
    expect(await scriptArgv(s.scripts.preBuild!, dir)).toEqual([
      `ARGV configure ${brackets(['--disable-dependency-tracking', '--prefix=/usr', '--with-config=kernel', `--with-linux=${KSRC}`, `--with-linux-obj=${KSRC}`, '--with-qat=', '--host=', '--enable-linux-experimental'])}`,
    ]);
    expect(await scriptArgv(s.scripts.postBuild!, dir)).toEqual([`ARGV dkms.postbuild ${brackets(['-n', 'zfs', '-v', '1.0', '-a', 'x86_64', '-k', KVER, '-t', TREE])}`]);
    // DKMS: make -j2 KERNELRELEASE=KVER.
    expect(await makeArgv(s.make, dir)).toEqual([`ARGV make [KERNELRELEASE=${KVER}]`]);
  });

  it('zfs for a cross kernel: CROSS_COMPILE read from the environment gives --host=<triplet>', async () => {
    const { dir, spec: s } = await spec('zfs', { CROSS_COMPILE: 'aarch64-linux-gnu-', ARCH: 'arm64' });
    const argv = await scriptArgv(s.scripts.preBuild!, dir);
    expect(argv[0]).toContain(' [--with-qat=] [--host=aarch64-linux-gnu] [--enable-linux-experimental]');
  });

  it('nvidia: the continued MAKE line is one command, env then make with its arguments', async () => {
    const { dir, spec: s } = await spec('nvidia-current');
    // DKMS: env [NV_VERBOSE=1] [make] [-j2] [modules] [KERNEL_UNAME=KVER]; ootmod drops the -j2 (jobserver).
    expect(s.make).toBe(`env NV_VERBOSE=1 make -j2 modules KERNEL_UNAME=${KVER}`);
    expect(await makeArgv(s.make, dir)).toEqual([`ARGV env ${brackets(['NV_VERBOSE=1', 'make', 'modules', `KERNEL_UNAME=${KVER}`])}`]);
  });

  it('broadcom-sta, mstflint, r8168: make with KERNELRELEASE first, then their words', async () => {
    // DKMS: make [-j2] [KERNELRELEASE=KVER] [KVER=KVER]
    const b = await spec('broadcom-sta');
    expect(await makeArgv(b.spec.make, b.dir)).toEqual([`ARGV make ${brackets([`KERNELRELEASE=${KVER}`, `KVER=${KVER}`])}`]);
    // DKMS: make [-j2] [KERNELRELEASE=KVER] [KPVER=KVER] [KSRC=KSRC] [all]
    const m = await spec('mstflint');
    expect(await makeArgv(m.spec.make, m.dir)).toEqual([`ARGV make ${brackets([`KERNELRELEASE=${KVER}`, `KPVER=${KVER}`, `KSRC=${KSRC}`, 'all'])}`]);
    // DKMS (no MAKE): make [-j2] [KERNELRELEASE=KVER] [-C] [KSRC] [M=<build dir>]
    const r = await spec('r8168');
    expect(await makeArgv(r.spec.make, r.dir)).toEqual([`ARGV make ${brackets([`KERNELRELEASE=${KVER}`, '-C', KSRC, `M=${r.dir}`])}`]);
  });

  it("mstflint: DEST_MODULE_LOCATION '/kernel/../misc/' is accepted, as DKMS accepts it", async () => {
    const { spec: s } = await spec('mstflint');
    expect(s.modules[0]!.destLocation).toBe('/kernel/../misc/');
  });

  it("kernel_source_dir is the kernel's build link, as DKMS's $install_tree/$kernelver/build (zfs looks for its sibling source)", () => {
    const root = makeRoot();
    const headers = path.join(root, 'usr/src/linux-headers-x');
    mkdirSync(headers);
    mkdirSync(path.join(root, 'usr/lib/modules/k1'));
    symlinkSync('/usr/src/linux-headers-x', path.join(root, 'usr/lib/modules/k1/build'));
    const layout = createLayout(root);
    expect(dkmsKernelSourceDir(layout, 'k1', headers)).toBe(path.join(root, 'usr/lib/modules/k1/build'));
    // A build dir the link does not lead to (a Rust tree, headers found under /usr/src only): that dir.
    expect(dkmsKernelSourceDir(layout, 'k1', '/var/lib/ootmod/rust/k1')).toBe('/var/lib/ootmod/rust/k1');
    expect(dkmsKernelSourceDir(layout, 'k2', headers)).toBe(headers);
  });
});
