// trigger: what ootmod's triggered postinst runs at the end of a dpkg run, and what the kernel hooks run
// outside dpkg. Works out from the system what changed, then brings every kernel up to date.
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { forgetKernel, takeBack } from '../../execute/cleanup.js';
import { updateInitramfs } from '../../execute/initramfs.js';
import { ExitCode, errorLine } from '../../errors.js';
import { listKernels } from '../../kernel/inventory.js';
import { cleanRustTrees } from '../../rust/tree.js';
import { StateStore } from '../../state/store.js';
import type { Session } from '../session.js';
import { runJobs } from './jobs.js';

/** Records a kernel for the trigger (from a hook inside dpkg). */
export async function enqueueKernel(s: Session, kver: string, why: string): Promise<void> {
  await mkdir(s.layout.queueDir, { recursive: true });
  await writeFile(path.join(s.layout.queueDir, kver.replaceAll('/', '_')), `${why} ${new Date().toISOString()}\n`);
}

async function takeQueue(s: Session): Promise<string[]> {
  const names = await readdir(s.layout.queueDir).catch(() => [] as string[]);
  for (const n of names) await rm(path.join(s.layout.queueDir, n), { force: true });
  return names;
}

export interface TriggerOptions {
  /** Running inside dpkg (a triggered postinst, or a hook that could not defer). */
  inDpkg: boolean;
  /** What started it, for the summary. */
  label: string;
}

export async function triggerRun(s: Session, opts: TriggerOptions): Promise<ExitCode> {
  const release = await s.lock();
  let exit: ExitCode = ExitCode.Ok;
  try {
    const queued = await takeQueue(s);
    const log = { write: async (t: string) => void (s.opts.verbose && process.stderr.write(t)) };
    const store = StateStore.load(s.layout.stateFile);
    const kernels = await listKernels(s.layout);
    const present = new Map(kernels.map((k) => [k.release, k]));
    const changed = new Set<string>();
    const notes: string[] = [];

    // Kernels that are gone: forget their modules; kernels whose headers are gone: drop their Rust tree.
    for (const kver of new Set(store.records().map((r) => r.kernel))) {
      if (!present.has(kver) || !existsSync(s.layout.kernelDir(kver))) {
        const n = await forgetKernel(s.layout, store, kver, log);
        await cleanRustTrees(s.layout, kver);
        notes.push(`forgot ${n} module build(s) of removed kernel ${kver}`);
      }
    }
    const rustRoot = path.join(s.layout.stateDir, 'rust');
    for (const entry of await readdir(rustRoot, { withFileTypes: true }).catch(() => [])) {
      // Kernel dirs only: the dir also holds ootmod's cache of toolchain probes.
      if (!entry.isDirectory()) continue;
      const kver = entry.name;
      if (!present.get(kver)?.headersDir && (await cleanRustTrees(s.layout, kver))) notes.push(`removed the Rust tree of ${kver} (its headers are gone)`);
    }
    // Sources that are gone (their package was removed): uninstall what was built from them.
    for (const r of store.records()) {
      if (existsSync(s.layout.moduleSource(r.module, r.version))) continue;
      try {
        if (await takeBack(s.layout, store, r, { forget: true, log })) changed.add(r.kernel);
        notes.push(`removed ${r.module}/${r.version} from ${r.kernel} (its source is gone)`);
      } catch (err) {
        exit = ExitCode.Failed;
        s.err(`removing ${r.module}/${r.version} from ${r.kernel} failed: ${errorLine(err)}`);
      }
    }
    for (const n of notes) s.err(`ootmod: ${n}`);

    const jobs = await runJobs(s, 'autoinstall', [], { locked: true, alsoDepmod: [...changed].filter((k) => present.has(k)), label: opts.label });
    if (jobs.exit !== ExitCode.Ok) exit = jobs.exit;
    const initramfs = await updateInitramfs(s.layout, jobs.touchedKernels, kernels.map((k) => k.release), opts.inDpkg);
    for (const i of initramfs) {
      if (i.error) s.err(`ootmod: update-initramfs -u -k ${i.kernel} failed: ${i.error}`);
    }
    const asked = initramfs.filter((i) => !i.error).map((i) => i.kernel);
    s.out(`${jobs.summary}${queued.length ? `; queued by hooks: ${queued.join(', ')}` : ''}${asked.length ? `; initramfs updated for ${asked.join(', ')}` : ''}`);
  } finally {
    await release();
  }
  // Inside dpkg a failed optional module must not fail the package, unless the admin asked for it.
  if (exit !== ExitCode.Ok && !s.config().strict) {
    s.err('ootmod: some modules failed; see ootmod status (set strict = yes under [trigger] in /etc/ootmod/ootmod.conf to fail the dpkg run instead)');
    return ExitCode.Ok;
  }
  return exit;
}

export function triggerCommand(s: Session): Promise<ExitCode> {
  return triggerRun(s, { inDpkg: Boolean(process.env.DPKG_MAINTSCRIPT_PACKAGE), label: 'ootmod trigger' });
}
