// status: reads the state file and a directory listing; never builds, never starts a process.
import { loaderName } from '../../plan/bootguard.js';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { ExitCode } from '../../errors.js';
import { registeredWithDkms, sourceDirName } from '../../modules/names.js';
import { heldBack, missingList } from '../../plan/readiness.js';
import { readReadiness, type ReadinessView } from '../../pipeline/readiness.js';
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

/** The one line status starts with when the kernel that boots next lacks a needed module. */
export function notReadyLine(view: ReadinessView): string | undefined {
  if (!view.next || view.next.ready) return undefined;
  if (heldBack(view)) {
    const loader = loaderName(view.guard!.bootloader);
    return `ootmod: ${view.next.release}, which ${loader}'s setting boots, is not ready: ${missingList(view.next.missing)}: the boot guard keeps ${loader}'s default on ${view.guard!.kernel} (ootmod boot); run ootmod kernels`;
  }
  return `ootmod: the next boot's kernel ${view.next.release} is not ready: ${missingList(view.next.missing)}: run ootmod kernels`;
}

export async function statusCommand(s: Session, args: string[]): Promise<ExitCode> {
  const [name, version] = (args[0] ?? '').split('/');
  const rows = statusRows(s, { module: name || undefined, version });
  // Files only (no initramfs listing, no findmnt; the cached listings of unchanged initramfs files):
  // dkms.conf is read only for a module the next kernel lacks with no record.
  const view = await readReadiness(s, { early: 'cached', nextOnly: true });
  if (s.opts.json) {
    const next = view.next ? { kernel: view.next.release, ready: view.next.ready, missing: view.next.missing } : { kernel: view.nextBoot.kernel ?? null, ready: null, missing: [] };
    s.out(json({ nextBoot: { ...next, bootloader: view.nextBoot.bootloader, how: view.nextBoot.how }, modules: rows }));
    return ExitCode.Ok;
  }
  const warning = notReadyLine(view);
  if (warning) s.err(warning);
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
