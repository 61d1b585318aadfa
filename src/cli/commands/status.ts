// status: reads the state file and a directory listing; never builds, never starts a process.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { ExitCode } from '../../errors.js';
import { registeredWithDkms, sourceDirName } from '../../modules/names.js';
import { StateStore } from '../../state/store.js';
import { json, table } from '../format.js';
import type { Session } from '../session.js';

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

export function statusRows(s: Session, filter: { module?: string; version?: string }): StatusRow[] {
  const store = StateStore.loadForStatus(s.layout.stateFile);
  const kernels = s.opts.kernels;
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
    } else if (!existsSync(path.join(s.layout.srcDir, `${r.module}-${r.version}`))) {
      detail = 'source removed';
    }
    rows.push({
      module: r.module, version: r.version, kernel: r.kernel, arch: r.arch, status, detail,
      signed: r.status === 'failed' ? null : r.signed ?? false,
      files: r.installed.map((f) => f.path), log: r.log ?? null, error: r.error ?? null, updatedAt: r.updatedAt,
    });
  }
  // Sources that were never built for any kernel: DKMS's "added".
  for (const entry of existsSync(s.layout.srcDir) ? readdirSync(s.layout.srcDir, { withFileTypes: true }) : []) {
    if (!entry.isDirectory() || seen.has(entry.name) || !existsSync(path.join(s.layout.srcDir, entry.name, 'dkms.conf'))) continue;
    const { name, version } = sourceDirName(s.layout, path.join(s.layout.srcDir, entry.name));
    if (filter.module && name !== filter.module) continue;
    if (filter.version && version !== filter.version) continue;
    const dkms = registeredWithDkms(s.layout, name, version);
    rows.push({
      module: name, version, kernel: null, arch: null, status: dkms ? 'dkms' : 'added', detail: dkms ? 'registered with DKMS, which builds it' : null,
      signed: null, files: [], log: null, error: null, updatedAt: null,
    });
  }
  return rows;
}

export async function statusCommand(s: Session, args: string[]): Promise<ExitCode> {
  const [name, version] = (args[0] ?? '').split('/');
  const rows = statusRows(s, { module: name || undefined, version });
  if (s.opts.json) {
    s.out(json({ modules: rows }));
    return ExitCode.Ok;
  }
  if (!rows.length) {
    s.out('no modules: put a source with dkms.conf under /usr/src/<name>-<version> (ootmod add <dir>)');
    return ExitCode.Ok;
  }
  const lines = table(
    ['MODULE', 'VERSION', 'KERNEL', 'ARCH', 'STATUS', 'DETAIL'],
    rows.map((r) => [r.module, r.version, r.kernel ?? '-', r.arch ?? '-', r.status + (r.signed ? ' (signed)' : ''), r.error ?? r.detail ?? '']),
  );
  for (const line of lines) s.out(line);
  // --verbose: the key modules are signed with, and whether the firmware trusts it (runs mokutil).
  if (s.opts.verbose) s.out((await import('../../execute/signing.js').then((m) => m.keyLine(s.layout))).line);
  return ExitCode.Ok;
}
