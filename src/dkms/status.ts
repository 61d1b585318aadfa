// `dkms status` in DKMS's own line format, which scripts parse (dh_dkms's prerm, common.postinst, admins'
// regexes). Pure: ootmod's status rows in, lines out.
import type { StatusRow } from '../state/status.js';

export interface DkmsStatusOutput {
  /** stdout, one line each, as DKMS prints them. */
  lines: string[];
  /** stderr: what DKMS's format has no room for (a failed build and its first error). */
  warnings: string[];
}

/** A build DKMS itself made, found in its tree (registry.ts, dkmsTreeBuilds). */
export interface DkmsTreeRow {
  module: string;
  version: string;
  kernel: string;
  arch: string;
  installed: boolean;
}

/**
 * ootmod's rows with the builds DKMS itself left in /var/lib/dkms (a machine moved from DKMS before
 * ootmod rebuilt a module, or a module ootmod could not build whose DKMS copy stays in use): a kernel
 * ootmod built or installed the module for is ootmod's; for any other, DKMS's build is listed as DKMS
 * lists it. ootmod's failure there stays a warning, and DKMS's line says what is in use.
 */
export function withDkmsTree(rows: readonly StatusRow[], builds: readonly DkmsTreeRow[]): StatusRow[] {
  const same = (r: StatusRow, b: DkmsTreeRow) => r.module === b.module && r.version === b.version && r.kernel === b.kernel;
  // A failure of ootmod's that left nothing of its own installed (an older build of ootmod's stays in use otherwise).
  const nothingOfOurs = (r: StatusRow) => r.status === 'failed' && !r.files.length;
  const dkms = builds.filter((b) => !rows.some((r) => same(r, b) && !nothingOfOurs(r)));
  return [
    ...rows,
    ...dkms.map((b): StatusRow => ({
      module: b.module, version: b.version, kernel: b.kernel, arch: b.arch, status: b.installed ? 'installed' : 'built',
      detail: 'built by DKMS', signed: null, files: [], log: null, error: null, updatedAt: null,
    })),
  ];
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * DKMS's lines: `name/version, kver, arch: built|installed[ (extra)]` per kernel with a build, else
 * `name/version: added`. DKMS knows no "failed": a module whose build failed stays `added`, as under
 * DKMS, and the failure goes to stderr. ootmod's `broken` (installed files gone) is DKMS's `installed
 * (Built modules are missing in the kernel modules folder)`. A registration whose source or link is gone
 * (`broken`, from the registry) is DKMS's `name/version: broken`, with its error on stderr.
 */
export function dkmsStatusLines(rows: readonly StatusRow[], kernels: readonly string[] = [], broken: readonly string[] = []): DkmsStatusOutput {
  const byModule = new Map<string, StatusRow[]>();
  for (const r of rows) {
    const key = `${r.module}/${r.version}`;
    byModule.set(key, [...(byModule.get(key) ?? []), r]);
  }
  const lines: string[] = [];
  const warnings: string[] = [];
  for (const key of broken) byModule.set(key, []);
  for (const key of [...byModule.keys()].sort(cmp)) {
    if (broken.includes(key)) {
      // DKMS's words for a registration whose source or link is gone.
      lines.push(`${key}: broken`);
      warnings.push(`Error! ${key}: Missing the module source directory or the symbolic link pointing to it.`, 'Manual intervention is required!');
      continue;
    }
    const perKernel = byModule
      .get(key)!
      .filter((r) => r.kernel !== null && (!kernels.length || kernels.includes(r.kernel)))
      .sort((a, b) => cmp(a.kernel!, b.kernel!));
    let shown = 0;
    for (const r of perKernel) {
      const head = `${key}, ${r.kernel}, ${r.arch}`;
      if (r.status === 'installed' || r.status === 'built') {
        lines.push(`${head}: ${r.status}`);
        shown++;
      } else if (r.status === 'broken') {
        lines.push(`${head}: installed (Built modules are missing in the kernel modules folder)`);
        shown++;
      } else if (r.status === 'failed') {
        // An older build that stays installed is still DKMS's "installed".
        if (r.files.length) {
          lines.push(`${head}: installed`);
          shown++;
        }
        warnings.push(`Warning: ${key} failed to build for ${r.kernel}${r.error ? `: ${r.error}` : ''} (see ootmod status ${key})`);
      }
    }
    if (!shown) lines.push(`${key}: added`);
  }
  return { lines, warnings };
}
