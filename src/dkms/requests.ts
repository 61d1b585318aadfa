// Requests `dkms build|install|autoinstall` (and common.postinst) made inside a dpkg run: recorded in
// ootmod's queue (a defer job of a plan) for its trigger, which builds the whole transaction once, in
// parallel, at the end of the dpkg run. The queue entry's name says what was asked.

/**
 * A queued module request is explicit: a maintainer script asked for this module (its package was
 * installed, upgraded, reinstalled or reconfigured, or it ran dkms build|install). The trigger builds it
 * even if it failed before from the same inputs; a queued autoinstall or kernel retries no failure.
 */
export interface QueuedRequest {
  action: 'build' | 'install';
  module: string;
  version: string;
  /**
   * A package's postinst (common.postinst: the package installed, reinstalled or reconfigured): a current
   * build is built again, as DKMS's common.postinst removes and rebuilds it (once per package run).
   */
  rebuild?: boolean;
}

// '@' is in no module name or version (PACKAGE_WORD), so the entry splits back unambiguously.
const SEP = '@';
const PREFIX = `dkms${SEP}`;
// The entry of common.postinst's request: an install that rebuilds a current build.
const POSTINST = 'postinst';

/** The queue entry of a request (for planDefer). */
export function queueEntry(r: QueuedRequest | { action: 'autoinstall' }): string {
  return 'module' in r ? [PREFIX + (r.rebuild ? POSTINST : r.action), r.module, r.version].join(SEP) : `${PREFIX}autoinstall`;
}

/** A module request from a queue entry; undefined for kernels queued by hooks and for autoinstall. */
export function parseQueued(entry: string): QueuedRequest | undefined {
  const parts = entry.split(SEP);
  if (parts[0] !== 'dkms' || parts.length !== 4) return undefined;
  const [, action, module, version] = parts as [string, string, string, string];
  if (action === POSTINST) return { action: 'install', module, version, rebuild: true };
  return action === 'build' || action === 'install' ? { action, module, version } : undefined;
}

/** How a queue entry reads in the trigger's summary. */
export function describeQueued(entry: string): string {
  const r = parseQueued(entry);
  if (r) return r.rebuild ? `common.postinst ${r.module}/${r.version}` : `dkms ${r.action} ${r.module}/${r.version}`;
  return entry === `${PREFIX}autoinstall` ? 'dkms autoinstall' : entry;
}
