// ootmod's status rows: what `ootmod status` shows and `dkms status` prints in DKMS's format.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { registeredWithDkms, sourceDirName } from '../modules/names.js';
import type { Layout } from '../system/layout.js';
import { StateStore } from './store.js';

export interface StatusRow {
  module: string;
  version: string;
  kernel: string | null;
  arch: string | null;
  /** `dkms`: DKMS has registered the source and builds it; ootmod leaves it alone. */
  status: 'added' | 'built' | 'installed' | 'failed' | 'broken' | 'dkms';
  detail: string | null;
  signed: boolean | null;
  files: string[];
  log: string | null;
  error: string | null;
  updatedAt: string | null;
}

/**
 * One row per module and kernel from the state file (`installed` whose files are gone is `broken`), and
 * one per source under /usr/src never built (`added`, or `dkms` when DKMS builds it). Only `kernels`
 * when given. Reads files only.
 */
export function statusRows(layout: Layout, kernels: readonly string[], filter: { module?: string; version?: string }): StatusRow[] {
  const store = StateStore.loadForStatus(layout.stateFile);
  const rows: StatusRow[] = [];
  const seen = new Set<string>();
  for (const r of store.records()) {
    if (filter.module && r.module !== filter.module) continue;
    if (filter.version && r.version !== filter.version) continue;
    if (kernels.length && !kernels.includes(r.kernel)) continue;
    seen.add(`${r.module}-${r.version}`);
    const missing = r.installed.filter((f) => !existsSync(f.path));
    let status: StatusRow['status'] = r.status;
    let detail: string | null = null;
    if (r.status === 'installed' && missing.length) {
      status = 'broken';
      detail = `installed files missing: ${missing.map((f) => f.path).join(', ')}`;
    } else if (r.status === 'failed') {
      detail = r.installed.length ? 'an older build stays installed' : null;
    } else if (!existsSync(path.join(layout.srcDir, `${r.module}-${r.version}`))) {
      detail = 'source removed';
    }
    rows.push({
      module: r.module, version: r.version, kernel: r.kernel, arch: r.arch, status, detail,
      signed: r.status === 'failed' ? null : r.signed ?? false,
      files: r.installed.map((f) => f.path), log: r.log ?? null, error: r.error ?? null, updatedAt: r.updatedAt,
    });
  }
  // Sources that were never built for any kernel: DKMS's "added".
  for (const entry of existsSync(layout.srcDir) ? readdirSync(layout.srcDir, { withFileTypes: true }) : []) {
    if (!entry.isDirectory() || seen.has(entry.name) || !existsSync(path.join(layout.srcDir, entry.name, 'dkms.conf'))) continue;
    const { name, version } = sourceDirName(layout, path.join(layout.srcDir, entry.name));
    if (filter.module && name !== filter.module) continue;
    if (filter.version && version !== filter.version) continue;
    const dkms = registeredWithDkms(layout, name, version);
    rows.push({
      module: name, version, kernel: null, arch: null, status: dkms ? 'dkms' : 'added', detail: dkms ? 'registered with DKMS, which builds it' : null,
      signed: null, files: [], log: null, error: null, updatedAt: null,
    });
  }
  return rows;
}
