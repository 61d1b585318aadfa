// status: reads the state file and a directory listing; never builds, never starts a process.
import { loaderName } from '../../plan/bootguard.js';
import { ExitCode } from '../../errors.js';
import { heldBack, missingList } from '../../plan/readiness.js';
import { readReadiness, type ReadinessView } from '../../pipeline/readiness.js';
import { statusRows } from '../../state/status.js';
import { json, table } from '../format.js';
import type { Session } from '../session.js';

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
  const rows = statusRows(s.layout, s.opts.kernels, { module: name || undefined, version });
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
