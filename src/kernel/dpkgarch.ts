// Debian architecture names and GNU triplets, derived from dpkg's own tables (/usr/share/dpkg:
// cputable, ostable, tupletable), the way dpkg-architecture derives them. No per-architecture list here.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

interface CpuRow {
  debian: string;
  gnu: string;
  regex: RegExp;
}
interface OsRow {
  debian: string;
  gnu: string;
  regex: RegExp;
}

export interface DpkgTables {
  cpus: CpuRow[];
  oses: OsRow[];
  /** [debian tuple (abi-libc-os-cpu, may contain <cpu>), debian arch (may contain <cpu>)] */
  tuples: [string, string][];
}

function rows(text: string): string[][] {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean)
    .map((l) => l.split(/\s+/));
}

export function parseDpkgTables(cputable: string, ostable: string, tupletable: string): DpkgTables {
  return {
    cpus: rows(cputable).filter((r) => r.length >= 3).map(([debian, gnu, re]) => ({ debian: debian!, gnu: gnu!, regex: new RegExp(`^${re}$`) })),
    oses: rows(ostable).filter((r) => r.length >= 3).map(([debian, gnu, re]) => ({ debian: debian!, gnu: gnu!, regex: new RegExp(`^${re}$`) })),
    tuples: rows(tupletable).filter((r) => r.length >= 2).map(([t, a]) => [t!, a!] as [string, string]),
  };
}

const cache = new Map<string, DpkgTables | undefined>();

/** dpkg's tables, from DIR (default: this machine's /usr/share/dpkg); undefined when dpkg is not there. */
export function dpkgTables(dir = '/usr/share/dpkg'): DpkgTables | undefined {
  if (!cache.has(dir)) {
    try {
      const read = (f: string) => readFileSync(path.join(dir, f), 'utf8');
      cache.set(dir, parseDpkgTables(read('cputable'), read('ostable'), read('tupletable')));
    } catch {
      cache.set(dir, undefined);
    }
  }
  return cache.get(dir);
}

/** Every (tuple, arch) pair with <cpu> expanded. */
function expandedTuples(t: DpkgTables): [string, string][] {
  const out: [string, string][] = [];
  for (const [tuple, arch] of t.tuples) {
    if (tuple.includes('<cpu>')) for (const c of t.cpus) out.push([tuple.replace('<cpu>', c.debian), arch.replace('<cpu>', c.debian)]);
    else out.push([tuple, arch]);
  }
  return out;
}

export interface ArchInfo {
  /** Debian architecture (arm64, amd64, armhf, ...). */
  debian: string;
  /** GNU triplet (aarch64-linux-gnu, x86_64-linux-gnu, arm-linux-gnueabihf, ...). */
  triplet: string;
  /** GNU CPU name (aarch64, x86_64, arm, ...): DKMS's `arch`. */
  gnuCpu: string;
}

/** The GNU triplet and CPU of a Debian architecture, as `dpkg-architecture -a ARCH` gives them. */
export function archFromDebian(t: DpkgTables, debian: string): ArchInfo | undefined {
  const hit = expandedTuples(t).find(([, a]) => a === debian);
  if (!hit) return undefined;
  const tuple = hit[0];
  for (const o of t.oses) {
    if (!tuple.startsWith(`${o.debian}-`)) continue;
    const cpu = t.cpus.find((c) => c.debian === tuple.slice(o.debian.length + 1));
    if (cpu) return { debian, triplet: `${cpu.gnu}-${o.gnu}`, gnuCpu: cpu.gnu };
  }
  return undefined;
}

/** The Debian architecture of a GNU triplet, as `dpkg-architecture -t TRIPLET` gives it. */
export function archFromTriplet(t: DpkgTables, triplet: string): ArchInfo | undefined {
  const dash = triplet.indexOf('-');
  if (dash < 0) return undefined;
  const cpuPart = triplet.slice(0, dash);
  const osPart = triplet.slice(dash + 1);
  const cpu = t.cpus.find((c) => c.regex.test(cpuPart));
  const osRow = t.oses.find((o) => o.regex.test(osPart));
  if (!cpu || !osRow) return undefined;
  const tuple = `${osRow.debian}-${cpu.debian}`;
  const hit = expandedTuples(t).find(([tp]) => tp === tuple);
  return hit ? { debian: hit[1], triplet: `${cpu.gnu}-${osRow.gnu}`, gnuCpu: cpu.gnu } : undefined;
}

/** The Debian architecture of a `uname -m` name (the build machine's). */
export function archFromMachine(t: DpkgTables, machine: string): ArchInfo | undefined {
  const cpu = t.cpus.find((c) => c.regex.test(machine));
  return cpu ? archFromDebian(t, cpu.debian) : undefined;
}

/** This machine (the build architecture): `uname -m` mapped through dpkg's tables. */
export function buildMachineArch(t = dpkgTables()): ArchInfo | undefined {
  const machine = typeof os.machine === 'function' ? os.machine() : process.arch === 'x64' ? 'x86_64' : process.arch;
  return t ? archFromMachine(t, machine) : undefined;
}
