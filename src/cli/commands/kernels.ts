import { ExitCode } from '../../errors.js';
import { keyLine, signFileFor } from '../../execute/signing.js';
import { listKernels, type KernelTarget } from '../../kernel/inventory.js';
import type { Layout } from '../../system/layout.js';
import { SANDBOX_USER, describeConfinement, sandboxPolicy } from '../../system/sandbox.js';
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

export async function kernelsCommand(s: Session): Promise<ExitCode> {
  const kernels = await listKernels(s.layout, s.opts.kernels.length ? s.opts.kernels : undefined);
  if (s.opts.json) {
    const p = sandboxPolicy();
    const key = kernels.some((k) => k.signing.enabled) ? await keyLine(s.layout) : undefined;
    s.out(json({ kernels: kernels.map((k) => kernelJson(k, s.layout)), signingKey: key ? { key: key.key, cert: key.cert, source: key.source, enrolled: key.enrolled } : null, builds: { confined: p.enabled, user: p.enabled ? SANDBOX_USER : null, unconfined: p.unconfined, summary: describeConfinement() } }));
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
  ]);
  for (const line of table(['KERNEL', 'HEADERS', 'IMAGE', 'ARCH', 'BUILD ARCH', 'COMPILER', 'COMPRESS', 'SIGN', 'RUST'], rows)) s.out(line);
  for (const k of kernels) for (const p of k.problems) s.out(`  ${k.release}: ${p}`);
  if (kernels.some((k) => k.signing.enabled)) s.out((await keyLine(s.layout)).line);
  s.out(describeConfinement());
  return ExitCode.Ok;
}
