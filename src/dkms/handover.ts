// What moving a machine between DKMS and ootmod-dkms reads, in both directions (the jobs that do it are
// in src/execute/handover.ts); ootmod's trigger plans them (its file trigger on /usr/sbin/dkms fires
// when either package installs or removes that program).
//
// - Take-over (ootmod-dkms replaced dkms): DKMS's registered sources are ootmod's now, so the trigger's
//   plan builds them into updates/ootmod; its dkms-takeover jobs then remove DKMS's copies in
//   updates/dkms of what ootmod has installed, with DKMS's `kernel-<kver>-<arch>` "installed" links,
//   before the kernel's one depmod. DKMS's builds stay in /var/lib/dkms, so DKMS finds them again if it
//   comes back.
// - Hand-back (dkms installed again): what ootmod built from DKMS-registered sources is removed (a
//   removal plan), and DKMS's own autoinstall (a dkms-autoinstall job) installs them again for each kernel.
import { existsSync } from 'node:fs';
import { readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { registeredWithDkms } from '../modules/names.js';
import type { Layout } from '../system/layout.js';
import { StateStore } from '../state/store.js';

/** A module DKMS installed for a kernel: what a take-over removes once ootmod has it installed. */
export interface DkmsInstall {
  module: string;
  version: string;
  kernel: string;
  /** DKMS's "installed" link, /var/lib/dkms/<name>/kernel-<kver>-<arch> -> <version>/<kver>/<arch>. */
  link: string;
  /** DKMS's copies in the kernel's updates/dkms (the files of its build that are there). */
  copies: string[];
}

/** What DKMS has installed, from its "installed" links (read only: the take-over is a plan's jobs). */
export async function readDkmsInstalls(layout: Layout): Promise<DkmsInstall[]> {
  const out: DkmsInstall[] = [];
  const registry = layout.dkmsRegistry;
  for (const name of (await readdir(registry).catch(() => [] as string[])).sort()) {
    const mdir = path.join(registry, name);
    for (const entry of (await readdir(mdir).catch(() => [] as string[])).sort()) {
      if (!entry.startsWith('kernel-')) continue;
      const link = path.join(mdir, entry);
      const target = await readlink(link).catch(() => undefined);
      // kernel-<kver>-<arch> -> <version>/<kver>/<arch>
      const [version, kernel] = target?.split('/') ?? [];
      if (!version || !kernel) continue;
      const built = await readdir(path.join(mdir, target!, 'module')).catch(() => [] as string[]);
      const copies = built.map((f) => path.join(layout.kernelDir(kernel), 'updates', 'dkms', f)).filter((f) => existsSync(f));
      out.push({ module: name, version, kernel, link, copies });
    }
  }
  return out;
}

/** The modules ootmod built from sources that DKMS (back on the machine) has registered. */
export function dkmsRegisteredRecords(layout: Layout): { name: string; version: string }[] {
  const seen = new Map<string, { name: string; version: string }>();
  for (const r of StateStore.load(layout.stateFile).records()) {
    if (registeredWithDkms(layout, r.module, r.version)) seen.set(`${r.module}/${r.version}`, { name: r.module, version: r.version });
  }
  return [...seen.values()];
}
