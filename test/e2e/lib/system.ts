// A shell on a chroot's Debian system for the ootmod-dkms tests: apt, ootmod's status, dpkg's state,
// depmod counts, module signatures and vermagics, and putting ootmod's .debs and a kernel's headers in.
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { kernelGccPackage, type Chroot, type KernelInfo } from './chroot.js';
import type { OotmodIndepDebs } from './debs.js';
import { countDepmodRuns, depmodRuns } from './dkms.js';

/** Where ootmod's .debs are copied to in a chroot. */
export const DEBS = '/root/debs';

/** A string as a literal part of a regular expression. */
export const re = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** One row of `ootmod status --json`. */
export interface StatusRow {
  module: string;
  version: string;
  kernel: string | null;
  status: string;
  files: string[];
  error: string | null;
  updatedAt: string | null;
}

/** A shell in a chroot, with the helpers every scenario uses. */
export function tools(chroot: () => Chroot) {
  const sh = async (script: string, timeoutMs = 1_500_000) => {
    const r = await chroot().run(['bash', '-c', script], { reject: false, timeoutMs, env: { LC_ALL: 'C.UTF-8' } });
    return { code: r.exitCode, out: r.stdout, err: r.stderr, all: `${r.stdout}\n${r.stderr}` };
  };
  return {
    sh,
    apt: (args: string, timeoutMs?: number) => sh(`apt-get -y -o Dpkg::Use-Pty=0 --no-install-recommends ${args} 2>&1`, timeoutMs),
    status: async (): Promise<StatusRow[]> => {
      const r = await sh('ootmod status --json');
      expect(r.code, r.err).toBe(0);
      return (JSON.parse(r.out) as { modules: StatusRow[] }).modules;
    },
    expectDpkgClean: async () => {
      expect((await sh('dpkg --audit')).out.trim(), 'dpkg --audit').toBe('');
      const q = await sh("dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n'");
      expect(q.out.split('\n').filter((l) => l.trim() && !l.startsWith('ii ') && !l.startsWith('rc ')), 'packages not in state ii').toEqual([]);
    },
    /** Counts depmod runs: /usr/sbin/depmod diverted to a wrapper that logs its arguments. */
    countDepmod: () => countDepmodRuns(chroot()),
    depmodCalls: (kver: string) => depmodRuns(chroot(), kver),
    modulesDep: async (kver: string) => (await sh(`cat /usr/lib/modules/${kver}/modules.dep`)).out,
    signer: async (file: string) => (await sh(`modinfo -F signer ${file}`)).out.trim(),
    /** The vermagic of a module Debian built for this kernel (linux-image must be installed): the reference. */
    kernelVermagic: async (kver: string) => {
      const own = (await sh(`find /usr/lib/modules/${kver}/kernel -name '*.ko*' | head -1`)).out.trim();
      expect(own, `no module of linux-image in /usr/lib/modules/${kver}/kernel`).not.toBe('');
      const want = (await sh(`modinfo -F vermagic ${own}`)).out.trim();
      expect(want).toMatch(new RegExp(`^${re(kver)} `));
      return want;
    },
  };
}

export type Tools = ReturnType<typeof tools>;

/** Copies ootmod's .debs into the chroot's DEBS dir. */
export async function copyDebs(chroot: Chroot, debs: OotmodIndepDebs): Promise<void> {
  await chroot.run(['mkdir', '-p', DEBS]);
  for (const deb of [debs.ootmod, debs.ootmodDkms]) writeFileSync(chroot.path(`${DEBS}/${path.basename(deb)}`), readFileSync(deb));
}

/** The apt-get arguments that install ootmod and ootmod-dkms from DEBS. */
export function ootmodDebArgs(debs: OotmodIndepDebs): string {
  return `${DEBS}/${path.basename(debs.ootmod)} ${DEBS}/${path.basename(debs.ootmodDkms)}`;
}

/** The kernel's headers and compiler, so module packages have something to build for. */
export async function installHeaders(t: Tools, chroot: Chroot, kernel: KernelInfo, extra = ''): Promise<void> {
  const r = await t.apt(`install ${kernel.headersPackage}=${kernel.version} openssl ${extra}`);
  expect(r.code, r.out.slice(-4000)).toBe(0);
  const gcc = await kernelGccPackage(chroot, kernel.kver);
  const g = await t.apt(`install ${gcc}`);
  expect(g.code, g.out.slice(-4000)).toBe(0);
}

/** The kernel image file of an installed linux-image (host path), or undefined. */
export function vmlinuzOf(chroot: Chroot, kver: string): string | undefined {
  return [chroot.path(`/boot/vmlinuz-${kver}`), chroot.path(`/usr/lib/modules/${kver}/vmlinuz`)].find((p) => {
    try {
      return statSync(p).isFile();
    } catch {
      return false;
    }
  });
}
