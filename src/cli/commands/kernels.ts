import { loaderName } from '../../plan/bootguard.js';
import { ExitCode, errorLine } from '../../errors.js';
import { signFileFor } from '../../dkms/mok.js';
import { keyLine } from '../../execute/signing.js';
import { listKernels, type KernelTarget } from '../../kernel/inventory.js';
import { bootsNext, heldBack, missingList } from '../../plan/readiness.js';
import { readReadiness, type ReadinessView } from '../../pipeline/readiness.js';
import type { Layout } from '../../system/layout.js';
import { SANDBOX_USER } from '../../system/sandbox.js';
import { json, table } from '../format.js';
import type { Session } from '../session.js';

export function kernelJson(k: KernelTarget, layout?: Layout) {
  return {
    release: k.release,
    headers: k.headersDir ?? null,
    headersPackageVersion: k.headersPackage?.version ?? null,
    kbuild: k.kbuildDir ?? null,
    image: k.image ?? null,
    config: k.configPath ?? null,
    arch: {
      dpkg: k.arch.dpkg ?? null, srcArch: k.arch.srcArch ?? null, machine: k.arch.machine, triplet: k.arch.triplet ?? null,
      crossCompile: k.arch.crossCompile ?? null, build: k.arch.build ?? null, foreign: k.arch.foreign,
    },
    compiler: {
      versionText: k.compiler.versionText ?? null,
      command: k.compiler.command ?? null,
      path: k.compiler.path ?? null,
      installed: Boolean(k.compiler.path),
      clang: k.compiler.clang,
    },
    compression: k.compression,
    signing: { enabled: k.signing.enabled, forced: k.signing.forced, hash: k.signing.hash ?? null, signFile: (layout ? signFileFor(layout, k) : k.signing.signFile) ?? null },
    rust: { enabled: k.rust.enabled, rustcVersionText: k.rust.rustcVersionText ?? null, bindgenVersionText: k.rust.bindgenVersionText ?? null },
    problems: k.problems,
  };
}

/** The readiness of every kernel, or why it cannot be told (an unreadable state file). */
async function readinessOrWhy(s: Session): Promise<ReadinessView | string> {
  try {
    return await readReadiness(s, { early: true });
  } catch (err) {
    return errorLine(err);
  }
}

function next(view: ReadinessView) {
  const n = bootsNext(view);
  return { kernel: n.kernel ?? null, ready: n.ready, heldBack: n.heldBack ?? null };
}

function readinessJson(view: ReadinessView | string) {
  if (typeof view === 'string') return { readiness: { error: view }, bootsNext: null };
  return {
    bootsNext: { ...next(view), bootloader: view.nextBoot.bootloader, how: view.nextBoot.how },
    readiness: { basis: view.report.basis, needed: view.report.needed, notes: view.notes },
  };
}

export async function kernelsCommand(s: Session): Promise<ExitCode> {
  const kernels = await listKernels(s.layout, s.opts.kernels.length ? s.opts.kernels : undefined);
  const view = await readinessOrWhy(s);
  const readinessOf = (release: string) => (typeof view === 'string' ? undefined : view.report.kernels.find((k) => k.release === release));
  if (s.opts.json) {
    const p = s.run.sandbox.policy;
    const key = kernels.some((k) => k.signing.enabled) ? await keyLine(s.layout) : undefined;
    const withReadiness = kernels.map((k) => {
      const r = readinessOf(k.release);
      return {
        ...kernelJson(k, s.layout), ready: r?.ready ?? null, missing: r?.missing ?? [], excluded: r?.excluded ?? [],
        bootsNext: typeof view !== 'string' && bootsNext(view).kernel === k.release,
      };
    });
    s.out(json({ kernels: withReadiness, ...readinessJson(view), signingKey: key ? { key: key.key, cert: key.cert, source: key.source, enrolled: key.enrolled } : null, builds: { confined: p.enabled, user: p.enabled ? SANDBOX_USER : null, unconfined: p.unconfined, summary: s.run.sandbox.describe() } }));
    return ExitCode.Ok;
  }
  if (!kernels.length) {
    s.out(`no kernels with headers or an image under ${s.layout.modulesDir}: install linux-headers-<flavour> (e.g. linux-headers-amd64)`);
    return ExitCode.Ok;
  }
  const rows = kernels.map((k) => [
    k.release,
    k.headersDir ? 'yes' : 'no',
    k.image ? 'yes' : 'no',
    [k.arch.dpkg, k.arch.machine].filter(Boolean).join('/'),
    k.arch.build ? `${k.arch.build}${k.arch.foreign ? ' (cross)' : ''}` : '-',
    k.compiler.command ? `${k.compiler.command}${k.compiler.path ? '' : ' (missing)'}` : '-',
    k.compression,
    k.signing.enabled ? k.signing.hash ?? 'yes' : 'no',
    k.rust.enabled ? k.rust.rustcVersionText?.split(' ').slice(0, 2).join(' ') ?? 'yes' : 'no',
    readinessOf(k.release) ? (readinessOf(k.release)!.ready ? 'yes' : 'no') : '?',
  ]);
  for (const line of table(['KERNEL', 'HEADERS', 'IMAGE', 'ARCH', 'BUILD ARCH', 'COMPILER', 'COMPRESS', 'SIGN', 'RUST', 'READY'], rows)) s.out(line);
  for (const k of kernels) for (const p of k.problems) s.out(`  ${k.release}: ${p}`);
  if (kernels.some((k) => k.signing.enabled)) s.out((await keyLine(s.layout)).line);
  for (const line of readinessLines(view, kernels.map((k) => k.release))) s.out(line);
  s.out(s.run.sandbox.describe());
  return ExitCode.Ok;
}

/** Below the table: what each kernel that is not ready misses, and which kernel boots next. */
function readinessLines(view: ReadinessView | string, shown: string[]): string[] {
  if (typeof view === 'string') return [`readiness unknown: ${view}`];
  const out: string[] = [];
  for (const k of view.report.kernels.filter((r) => shown.includes(r.release))) {
    if (!k.ready) out.push(`  ${k.release}: not ready: ${missingList(k.missing)}`);
    for (const e of k.excluded) out.push(`  ${k.release}: ${e.module} is not needed there (${e.why})`);
  }
  const needed = view.report.needed;
  out.push(`needed modules: ${needed.length ? needed.map((n) => `${n.module}${n.critical ? ' (critical)' : ''}`).join(', ') : 'none'} (${view.report.basis.how})`);
  const nb = view.nextBoot;
  const ready = view.next ? (view.next.ready ? 'ready' : 'NOT READY') : nb.kernel ? 'not an installed kernel' : '';
  const setting = `${nb.bootloader === 'none' ? '' : `${nb.bootloader}: `}${nb.how}`;
  if (heldBack(view)) {
    const loader = loaderName(view.guard!.bootloader);
    out.push(`boots next: ${view.guard!.kernel} (the boot guard holds ${loader}'s default there while ${nb.kernel}, ${loader}'s own choice (${nb.how}), is NOT READY; ootmod boot)`);
  }
  else out.push(`boots next: ${nb.kernel ? `${nb.kernel} (${ready}; ${setting})` : nb.how}`);
  for (const n of view.notes) out.push(`note: ${n}`);
  return out;
}
