// Moving a machine between DKMS and ootmod-dkms, in both directions; ootmod's trigger runs these
// (its file trigger on /usr/sbin/dkms fires when either package installs or removes that program).
//
// - Take-over (ootmod-dkms replaced dkms): DKMS's registered sources are ootmod's now, so the trigger
//   builds them into updates/ootmod; then DKMS's copies in updates/dkms of what ootmod has installed
//   go, with DKMS's `kernel-<kver>-<arch>` "installed" links (files DKMS put there, which no plan of
//   ootmod's owns). DKMS's builds stay in /var/lib/dkms, so DKMS finds them again if it comes back.
// - Hand-back (dkms installed again): what ootmod built from DKMS-registered sources is removed (a
//   removal plan), and DKMS's own autoinstall installs them again for each kernel.
import { existsSync } from 'node:fs';
import { readdir, readlink, rm } from 'node:fs/promises';
import path from 'node:path';
import type { KernelTarget } from '../kernel/inventory.js';
import { registeredWithDkms } from '../modules/names.js';
import type { Layout } from '../system/layout.js';
import { run } from '../system/run.js';
import { StateStore } from '../state/store.js';

export interface TakeoverResult {
  /** Kernels whose module dir changed: they need a depmod. */
  touched: string[];
  notes: string[];
}

/** Removes DKMS's installed copies of the modules ootmod now has installed (take-over). */
export async function removeDkmsCopies(layout: Layout): Promise<TakeoverResult> {
  // Read now: the trigger's plan has just installed the modules.
  const fresh = StateStore.load(layout.stateFile);
  const touched = new Set<string>();
  const notes: string[] = [];
  const registry = layout.dkmsRegistry;
  for (const name of await readdir(registry).catch(() => [] as string[])) {
    const mdir = path.join(registry, name);
    for (const entry of await readdir(mdir).catch(() => [] as string[])) {
      if (!entry.startsWith('kernel-')) continue;
      const target = await readlink(path.join(mdir, entry)).catch(() => undefined);
      // kernel-<kver>-<arch> -> <version>/<kver>/<arch>
      const [version, kver] = target?.split('/') ?? [];
      if (!version || !kver) continue;
      const ours = fresh.find({ module: name, kernel: kver }).some((r) => r.installed.length > 0 && r.installed.every((f) => existsSync(f.path)));
      if (!ours) continue;
      const built = path.join(mdir, target!, 'module');
      const copies = (await readdir(built).catch(() => [] as string[])).map((f) => path.join(layout.kernelDir(kver), 'updates', 'dkms', f));
      for (const copy of copies) {
        if (!existsSync(copy)) continue;
        await rm(copy, { force: true });
        touched.add(kver);
      }
      await rm(path.join(mdir, entry), { force: true });
      notes.push(`took over ${name}/${version} for ${kver} from DKMS (removed its copy from updates/dkms)`);
    }
  }
  return { touched: [...touched], notes };
}

/** The modules ootmod built from sources that DKMS (back on the machine) has registered. */
export function dkmsRegisteredRecords(layout: Layout): { name: string; version: string }[] {
  const seen = new Map<string, { name: string; version: string }>();
  for (const r of StateStore.load(layout.stateFile).records()) {
    if (registeredWithDkms(layout, r.module, r.version)) seen.set(`${r.module}/${r.version}`, { name: r.module, version: r.version });
  }
  return [...seen.values()];
}

/** DKMS's own `dkms autoinstall -k KVER` for every kernel with headers (hand-back; only on the real root). */
export async function dkmsAutoinstall(layout: Layout, kernels: KernelTarget[]): Promise<string[]> {
  if (layout.root !== '/') return [];
  const lines: string[] = [];
  for (const k of kernels.filter((k) => k.headersDir)) {
    const r = await run(layout.dkmsProgram, ['autoinstall', '-k', k.release], { allowFailure: true, env: { DPKG_MAINTSCRIPT_PACKAGE: undefined } });
    lines.push(`dkms autoinstall -k ${k.release}: ${r.exitCode === 0 ? 'done' : `exited with ${r.exitCode}`}`);
  }
  return lines;
}
