// The real DKMS 3.2.2 and ootmod run zfs-dkms's PRE_BUILD, MAKE and POST_BUILD lines
// (test/fixtures/real-dkms-conf/zfs.conf) with the same arguments and the same compiler variables.
// Recorders stand in for zfs's configure and scripts/dkms.postbuild and print their argv and
// environment; a Makefile prints what make was given and leaves empty zfs.ko and spl.ko.
//
// Needs the dkms script of Debian's dkms 3.2.2 (not in bookworm): `bash scripts/fetch-real-dkms.sh`
// (.ci/run does it) unpacks sid's dkms .deb from the host's Debian mirror into /tmp/dkms-3.2;
// OOTMOD_DKMS_SCRIPT names another path to
// usr/sbin/dkms. Skipped, saying so, when it is not there. DKMS runs with its trees in a temp dir and
// a copy of the host kernel's .kernelvariables and auto.conf (without the signing lines, so it makes no
// key) as its --kernelsourcedir; ootmod runs with the host's headers. Paths differ, so each tool's
// kernel source dir and dkms_tree are replaced by <ksrc> and <tree> before comparing.
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ootmod } from '../support/cli.js';
import { FIXTURES, hostKernel, linkHostKernel, placeSource } from '../support/host.js';
import { makeRoot, tempDir } from '../support/roots.js';

const DKMS = process.env.OOTMOD_DKMS_SCRIPT ?? '/tmp/dkms-3.2/usr/sbin/dkms';
const skipped = !existsSync(DKMS) ? `no DKMS 3.2.2 script at ${DKMS} (see the test's head for how to get it)`
  : process.getuid?.() !== 0 ? 'it needs root' : undefined;

const RECORDER = `#!/bin/sh
printf "ARGV %s" "$(basename "$0")"; for a in "$@"; do printf " [%s]" "$a"; done; echo
echo "ENV $(basename "$0") CC=[\${CC-unset}] KERNEL_CC=[\${KERNEL_CC-unset}] LD=[\${LD-unset}] KERNEL_LD=[\${KERNEL_LD-unset}]"
`;
const MAKEFILE = `all:
\t@echo "ARGV make-vars KERNELRELEASE=[$(KERNELRELEASE)] goals=[$(MAKECMDGOALS)]"
\t@echo "ENV make CC=[$$\{CC-unset}] KERNEL_CC=[$$\{KERNEL_CC-unset}] LD=[$$\{LD-unset}] KERNEL_LD=[$$\{KERNEL_LD-unset}]"
\tmkdir -p module && : > module/zfs.ko && : > module/spl.ko
`;

/** A zfs source of the fixture's lines (with STRIP=no: the .ko files are empty) and the recorders. */
function zfsSource(dir: string): void {
  mkdirSync(path.join(dir, 'scripts'), { recursive: true });
  writeFileSync(path.join(dir, 'dkms.conf'), `${readFileSync(path.join(FIXTURES, 'real-dkms-conf/zfs.conf'), 'utf8')}STRIP[0]=no\nSTRIP[1]=no\n`);
  writeFileSync(path.join(dir, 'Makefile'), MAKEFILE);
  for (const s of ['configure', 'scripts/dkms.postbuild']) {
    writeFileSync(path.join(dir, s), RECORDER);
    chmodSync(path.join(dir, s), 0o755);
  }
}

/** The recorded lines of a log, in order, with the tool's own paths named alike. */
function recorded(log: string, paths: Record<string, string>): string[] {
  let lines = log.split('\n').filter((l) => /^(ARGV|ENV) /.test(l));
  for (const [name, p] of Object.entries(paths)) lines = lines.map((l) => l.replaceAll(p, name));
  return lines;
}

function findFile(dir: string, name: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? findFile(p, name) : e.isFile() && e.name === name ? [p] : [];
  });
}

describe.skipIf(skipped)(`DKMS 3.2.2 and ootmod run zfs-dkms's build lines alike${skipped ? ` (skipped: ${skipped})` : ''}`, () => {
  const kernel = hostKernel();
  let dkmsLines: string[];
  let ootmodLines: string[];

  beforeAll(async () => {
    // DKMS.
    const work = tempDir('ootmod-dkms-parity-');
    const ksrc = path.join(work, 'linux-headers');
    mkdirSync(path.join(ksrc, 'include/config'), { recursive: true });
    cpSync(path.join(kernel.headers, '.kernelvariables'), path.join(ksrc, '.kernelvariables'));
    const autoConf = readFileSync(path.join(kernel.headers, 'include/config/auto.conf'), 'utf8');
    writeFileSync(path.join(ksrc, 'include/config/auto.conf'), autoConf.split('\n').filter((l) => !l.startsWith('CONFIG_MODULE_SIG')).join('\n'));
    const tree = path.join(work, 'dkms');
    zfsSource(path.join(work, 'src/zfs-1.0'));
    mkdirSync(tree);
    const args = ['build', '-m', 'zfs', '-v', '1.0', '-k', kernel.release, '--kernelsourcedir', ksrc, '--dkmstree', tree, '--sourcetree', path.join(work, 'src'), '--installtree', path.join(work, 'modules')];
    try {
      execFileSync('bash', [DKMS, ...args], { cwd: work, stdio: 'pipe', env: { PATH: process.env.PATH, LANG: 'C.UTF-8' } });
    } catch (e) {
      throw new Error(`dkms ${args.join(' ')} failed: ${String((e as { stdout?: Buffer }).stdout)}${String((e as { stderr?: Buffer }).stderr)}`);
    }
    const [dkmsLog] = findFile(tree, 'make.log');
    dkmsLines = recorded(readFileSync(dkmsLog!, 'utf8'), { '<ksrc>': ksrc, '<tree>': tree });

    // ootmod (the build goes on to sign the empty modules and fails there: only its log matters).
    const root = makeRoot('ootmod-dkms-parity-');
    linkHostKernel(root, kernel.release, kernel.headers);
    const staged = path.join(tempDir('ootmod-dkms-parity-src-'), 'zfs-1.0');
    zfsSource(staged);
    placeSource(root, staged);
    await ootmod(root, 'build', 'zfs/1.0', '-k', kernel.release);
    const [log] = findFile(path.join(root, 'var/lib/ootmod/built'), 'make.log');
    ootmodLines = recorded(readFileSync(log!, 'utf8'), { '<ksrc>': path.join(root, 'usr/lib/modules', kernel.release, 'build'), '<tree>': path.join(root, 'var/lib/ootmod/tree', kernel.release) });
  }, 300_000);

  it("configure gets DKMS's argv and compiler variables", () => {
    const pick = (lines: string[]) => lines.filter((l) => / configure( |$)/.test(l));
    expect(pick(dkmsLines)).toHaveLength(2);
    expect(pick(ootmodLines)).toEqual(pick(dkmsLines));
  });

  it("make gets DKMS's KERNELRELEASE and goals, and the same compiler variables", () => {
    const pick = (lines: string[]) => lines.filter((l) => / make(-vars)? /.test(l));
    expect(pick(dkmsLines)).toHaveLength(2);
    expect(pick(ootmodLines)).toEqual(pick(dkmsLines));
  });

  it("POST_BUILD gets DKMS's argv and compiler variables", () => {
    const pick = (lines: string[]) => lines.filter((l) => / dkms\.postbuild /.test(l));
    expect(pick(dkmsLines)).toHaveLength(2);
    expect(pick(ootmodLines)).toEqual(pick(dkmsLines));
  });
});
