// mkdeb: a .deb of a module's built modules for one kernel (see src/package/mkdeb.ts).
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ExitCode, OotmodError } from '../../errors.js';
import { listKernels } from '../../kernel/inventory.js';
import { compareModuleVersions } from '../../kernel/version.js';
import { planDeb, writeDeb } from '../../package/mkdeb.js';
import { StateStore } from '../../state/store.js';
import { parseModuleRef } from '../modargs.js';
import type { Session } from '../session.js';

/**
 * The package's Maintainer, as Debian's tools take it: DEBFULLNAME and DEBEMAIL ("Name <a@b>" in
 * DEBEMAIL works too), else ootmod at this machine's fully qualified name, else (a host name that is
 * not a mail domain) ootmod at `<host>.invalid` (RFC 2606: never a real address; lintian accepts it),
 * with a note that says how to name oneself.
 */
export function maintainerOf(env: NodeJS.ProcessEnv, hostname = os.hostname()): { maintainer: string; note?: string } {
  const email = env.DEBEMAIL?.trim();
  if (email && /<[^>]+@[^>]+>/.test(email)) return { maintainer: email };
  if (email && /^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/.test(email)) return { maintainer: `${env.DEBFULLNAME?.trim() || 'ootmod'} <${email}>` };
  if (/\./.test(hostname) && !/localhost|localdomain/.test(hostname)) return { maintainer: `ootmod <ootmod@${hostname}>` };
  const host = hostname.replace(/[^A-Za-z0-9-]/g, '-').replace(/^-+|-+$/g, '') || 'localhost';
  const maintainer = `ootmod mkdeb on ${host} <ootmod@${host}.invalid>`;
  return { maintainer, note: `ootmod: mkdeb: Maintainer is '${maintainer}' (this machine's name is not a mail domain): set DEBEMAIL=you@your.domain and DEBFULLNAME to name yourself` };
}

export async function mkdebCommand(s: Session, args: string[]): Promise<ExitCode> {
  if (args.length !== 1) throw new OotmodError('mkdeb wants one module', 'ootmod mkdeb NAME[/VERSION] -k KVER -o DIR', ExitCode.Usage);
  if (s.opts.kernels.length !== 1) throw new OotmodError('mkdeb wants exactly one kernel', 'ootmod mkdeb NAME[/VERSION] -k KVER -o DIR', ExitCode.Usage);
  if (!s.opts.output) throw new OotmodError('mkdeb wants an output directory', 'ootmod mkdeb NAME[/VERSION] -k KVER -o DIR', ExitCode.Usage);
  const ref = parseModuleRef(args[0]!);
  const { maintainer, note } = maintainerOf(process.env);
  if (note) s.err(note);
  const kver = s.opts.kernels[0]!;
  const records = StateStore.load(s.layout.stateFile)
    .find({ module: ref.name, version: ref.version, kernel: kver })
    .sort((a, b) => compareModuleVersions(b.version, a.version));
  const what = `${ref.name}${ref.version ? `/${ref.version}` : ''}`;
  const record = records[0];
  if (!record || record.status === 'failed' || !record.built.length) {
    throw new OotmodError(
      `${what} is not built for ${kver}${record?.status === 'failed' ? ' (its last build failed)' : ''}`,
      `ootmod build ${what} -k ${kver} first`,
      ExitCode.NotFound,
    );
  }
  const gone = record.built.filter((f) => !existsSync(f));
  if (gone.length) throw new OotmodError(`the build of ${record.module}/${record.version} for ${kver} lost ${gone[0]}`, `ootmod build ${record.module}/${record.version} -k ${kver} --force`, ExitCode.Failed);
  const [kernel] = await listKernels(s.layout, [kver]);
  const arch = kernel?.arch.dpkg;
  if (!arch) throw new OotmodError(`the Debian architecture of ${kver} is unknown`, `install linux-headers-${kver} from its Debian package`, ExitCode.NotFound);
  const input = {
    module: record.module,
    version: record.version,
    kernel: kver,
    arch,
    files: record.built,
    imagePackage: `linux-image-${kver} | linux-image-${kver}-unsigned`,
    maintainer,
    signed: record.signed ?? false,
  };
  const plan = planDeb(input, path.resolve(s.opts.output));
  if (s.opts.dryRun) {
    s.out(`would write ${plan.fileName} (${plan.package} ${plan.version} ${plan.arch}, Depends: ${input.imagePackage})`);
    for (const c of plan.contents) s.out(`  ${c.to}`);
    return ExitCode.Ok;
  }
  await writeDeb(plan, input);
  s.out(plan.fileName);
  return ExitCode.Ok;
}
