// uninstall (keep the build) and remove (uninstall and forget the builds) a module.
import path from 'node:path';
import { depmod } from '../../execute/depmod.js';
import { takeBack } from '../../execute/cleanup.js';
import { ExitCode, OotmodError, errorLine } from '../../errors.js';
import { readKernel } from '../../kernel/inventory.js';
import { loadSpec, splitNameVersion } from '../../modules/sources.js';
import type { ModuleSpec } from '../../modules/spec.js';
import { StateStore, type BuildRecord } from '../../state/store.js';
import { parseModuleRef } from '../modargs.js';
import type { Session } from '../session.js';

async function specFor(s: Session, r: BuildRecord): Promise<ModuleSpec | undefined> {
  const dir = s.layout.moduleSource(r.module, r.version);
  const { name, version } = splitNameVersion(path.basename(dir));
  const kernel = await readKernel(s.layout, r.kernel);
  return loadSpec({ dir, guessedName: name, guessedVersion: version }, { layout: s.layout, kernel, jobs: s.opts.jobs, checkOwnership: s.isRoot }).catch(() => undefined);
}

export async function removeCommand(s: Session, command: 'uninstall' | 'remove', args: string[]): Promise<ExitCode> {
  if (args.length !== 1) throw new OotmodError(`${command} needs one module`, `ootmod ${command} NAME[/VERSION] [-k KVER]`, ExitCode.Usage);
  const ref = parseModuleRef(args[0]!);
  const release = s.opts.dryRun ? async () => {} : await s.lock();
  try {
    const store = StateStore.load(s.layout.stateFile);
    const records = store
      .find({ module: ref.name, version: ref.version })
      .filter((r) => !s.opts.kernels.length || s.opts.kernels.includes(r.kernel));
    if (!records.length) {
      throw new OotmodError(`${args[0]} is not built for ${s.opts.kernels.join(', ') || 'any kernel'}`, 'see ootmod status', ExitCode.NotFound);
    }
    const touched = new Set<string>();
    let failed = 0;
    for (const r of records) {
      const what = `${r.module}/${r.version} for ${r.kernel}`;
      if (s.opts.dryRun) {
        s.out(`would ${command} ${what}${r.installed.length ? `: ${r.installed.map((f) => f.path).join(', ')}` : ''}`);
        continue;
      }
      try {
        const log = { write: async (t: string) => void (s.opts.verbose && process.stderr.write(t)) };
        if (await takeBack(s.layout, store, r, { spec: await specFor(s, r), forget: command === 'remove', log })) touched.add(r.kernel);
        s.out(`${command === 'remove' ? 'removed' : 'uninstalled'} ${what}`);
      } catch (err) {
        failed++;
        s.err(`${command} ${what} failed: ${errorLine(err)}`);
      }
    }
    for (const k of touched) {
      try {
        await depmod(s.layout, k);
      } catch (err) {
        failed++;
        s.err(`depmod failed for ${k}: ${errorLine(err)}`);
      }
    }
    return failed ? ExitCode.Failed : ExitCode.Ok;
  } finally {
    await release();
  }
}
