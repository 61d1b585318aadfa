// Taking back what ootmod built and installed: for a module (uninstall/remove), a removed source,
// or a removed kernel.
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { ModuleSpec } from '../modules/spec.js';
import type { Layout } from '../system/layout.js';
import type { CommandLog } from '../system/run.js';
import type { BuildRecord, StateStore } from '../state/store.js';
import { uninstallRecord } from './job.js';

/**
 * Removes a record's installed files (running POST_REMOVE when its spec is known) and, with `forget`,
 * its builds and its state. Returns true when files under the kernel's module dir changed.
 */
export async function takeBack(layout: Layout, store: StateStore, record: BuildRecord, opts: { spec?: ModuleSpec; forget: boolean; log: CommandLog }): Promise<boolean> {
  const touched = await uninstallRecord(record, opts.spec, layout, opts.log);
  if (opts.forget) {
    await rm(layout.builtDir(record.kernel, record.module, record.version), { recursive: true, force: true });
    await rm(path.dirname(layout.buildDir(record.kernel, record.module, record.version)), { recursive: true, force: true });
    await store.delete(record.module, record.version, record.kernel);
  } else if (record.installed.length) {
    await store.put({ ...record, status: record.status === 'failed' ? 'failed' : 'built', installed: [], updatedAt: new Date().toISOString() });
  }
  return touched;
}

/** Everything ootmod keeps for a kernel that is being removed: records, builds, installed files. */
export async function forgetKernel(layout: Layout, store: StateStore, kver: string, log: CommandLog): Promise<number> {
  const records = store.find({ kernel: kver });
  for (const r of records) await takeBack(layout, store, r, { forget: true, log });
  for (const dir of [layout.buildTree(kver), path.dirname(path.dirname(layout.builtDir(kver, 'x', 'y')))]) {
    await rm(dir, { recursive: true, force: true });
  }
  const install = layout.installDir(kver);
  if (existsSync(install) && (await readdir(install)).length === 0) await rm(install, { recursive: true });
  return records.length;
}
