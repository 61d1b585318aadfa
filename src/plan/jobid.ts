// Job ids: what a job acts on (kind, module, version, kernel), with one format and one parse. The ids
// are part of the plan's JSON (`id`, `needs`, `after`), so their text stays as it was:
//   build:zfs/2.4.4@6.12.0-1-amd64   (build, install, uninstall, forget, dkms-tree, dkms-takeover, record-failure)
//   forget:@6.12.0-1-amd64           (a kernel's build dirs)
//   rust-tree:6.12.0-1-amd64         (rust-tree, rust-clean, rust-stray, depmod, initramfs)
//   add:zfs/2.4.4                    (add, dkms-register, dkms-unregister)
//   defer:<queue entry>
//   build-user                       (build-user, boot-guard, boot-notice, dkms-autoinstall, signing-key, dequeue, removed-marks,
//                                     post-transaction)
import type { JobKind } from './jobs.js';

type ModuleKind = 'build' | 'install' | 'uninstall' | 'forget' | 'dkms-tree' | 'dkms-takeover' | 'record-failure';
type KernelKind = 'forget' | 'rust-tree' | 'rust-clean' | 'rust-stray' | 'depmod' | 'initramfs';
type SourceKind = 'add' | 'dkms-register' | 'dkms-unregister';
type SingleKind = 'build-user' | 'boot-guard' | 'boot-notice' | 'dkms-autoinstall' | 'signing-key' | 'dequeue' | 'removed-marks' | 'post-transaction';

/** A module built for a kernel: the unit the planner, the state and the summary count. */
export interface ModuleTarget {
  module: string;
  version: string;
  kernel: string;
}

/** What a job id says. */
export type JobRef =
  | ({ kind: ModuleKind } & ModuleTarget)
  | { kind: KernelKind; kernel: string }
  | { kind: SourceKind; module: string; version: string }
  | { kind: 'defer'; entry: string }
  | { kind: SingleKind };

/** A job id's text: `kind` or `kind:target`. */
export type JobId = JobKind | `${JobKind}:${string}`;

/** `module/version@kernel`: a module target as ids, the summary and the planner write it. */
export function moduleTarget(t: ModuleTarget): string {
  return `${t.module}/${t.version}@${t.kernel}`;
}

function parseModuleTarget(text: string): ModuleTarget | undefined {
  const m = /^([^/@]+)\/([^@]+)@(.+)$/.exec(text);
  return m ? { module: m[1]!, version: m[2]!, kernel: m[3]! } : undefined;
}

/** The part of an id after its kind: what the job acts on, as the plan's lines name a dependency. */
export function idTarget(ref: JobRef): string | undefined {
  if ('entry' in ref) return ref.entry;
  if ('module' in ref) return 'kernel' in ref ? moduleTarget(ref) : `${ref.module}/${ref.version}`;
  if ('kernel' in ref) return ref.kind === 'forget' ? `@${ref.kernel}` : ref.kernel;
  return undefined;
}

export function jobId(ref: JobRef): JobId {
  const target = idTarget(ref);
  return target === undefined ? ref.kind : `${ref.kind}:${target}`;
}

const KINDS: Record<JobKind, 'module' | 'kernel' | 'module-or-kernel' | 'source' | 'entry' | 'single'> = {
  build: 'module', install: 'module', uninstall: 'module', 'dkms-tree': 'module', 'dkms-takeover': 'module', 'record-failure': 'module',
  forget: 'module-or-kernel',
  'rust-tree': 'kernel', 'rust-clean': 'kernel', 'rust-stray': 'kernel', depmod: 'kernel', initramfs: 'kernel',
  add: 'source', 'dkms-register': 'source', 'dkms-unregister': 'source', defer: 'entry',
  'build-user': 'single', 'boot-guard': 'single', 'boot-notice': 'single', 'dkms-autoinstall': 'single', 'signing-key': 'single', dequeue: 'single', 'removed-marks': 'single', 'post-transaction': 'single',
};

const isKind = (k: string): k is JobKind => Object.hasOwn(KINDS, k);

/** The inverse of jobId; undefined for text no jobId makes. */
export function parseJobId(id: string): JobRef | undefined {
  const colon = id.indexOf(':');
  const kind = colon < 0 ? id : id.slice(0, colon);
  const rest = colon < 0 ? undefined : id.slice(colon + 1);
  if (!isKind(kind)) return undefined;
  const shape = KINDS[kind];
  if (shape === 'single') return rest === undefined ? ({ kind } as JobRef) : undefined;
  if (!rest) return undefined;
  switch (shape) {
    case 'entry':
      return { kind: 'defer', entry: rest };
    case 'source': {
      const m = /^([^/]+)\/(.+)$/.exec(rest);
      return m ? { kind: kind as SourceKind, module: m[1]!, version: m[2]! } : undefined;
    }
    case 'kernel':
      return { kind: kind as KernelKind, kernel: rest };
    case 'module-or-kernel':
    case 'module': {
      if (kind === 'forget' && rest.startsWith('@')) return rest.length > 1 ? { kind: 'forget', kernel: rest.slice(1) } : undefined;
      const t = parseModuleTarget(rest);
      return t ? { kind: kind as ModuleKind, ...t } : undefined;
    }
  }
}
