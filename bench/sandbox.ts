// `npm run bench`, sandbox row: the unprivileged, offline build (as _ootmod, in new namespaces) against
// a root build of the same three Debian DKMS packages, in the same run: `autoinstall --force` on two
// roots that differ only by ootmod.conf's `unconfined`, alternated A B A B, medians compared.
//   confined / root   goal <= 1.05
// BENCH_SANDBOX_SAMPLES=N (default 3; OOTMOD_BENCH_QUICK=1 takes 1).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { hostKernel } from '../test/support/host';
import type { RealModule } from './host';
import { addSource, makeSandbox, median, OOTMOD, QUICK, ratio, run, secs, step, type RowResult } from './lib';

const GOAL = 1.05;

export async function sandboxRow(real: RealModule[]): Promise<RowResult> {
  if (process.getuid?.() !== 0) throw new Error('only root builds confined: run the sandbox row as root');
  const samples = QUICK ? 1 : Number(process.env.BENCH_SANDBOX_SAMPLES ?? 3);
  const { release, headers } = hostKernel();
  const confined = makeSandbox(release, headers, 'ootmod-bench-confined-');
  const asRoot = makeSandbox(release, headers, 'ootmod-bench-root-');
  const names = real.map((m) => m.name);
  for (const m of real) for (const root of [confined, asRoot]) addSource(root, m.srcDir);
  // The same root, but every package allowed by name to build as root with network.
  mkdirSync(path.join(asRoot, 'etc/ootmod'), { recursive: true });
  writeFileSync(path.join(asRoot, 'etc/ootmod/ootmod.conf'), `[build]\nunconfined = ${names.join(' ')}\n`);
  const once = async (root: string): Promise<number> => {
    const r = await run(OOTMOD, ['--root', root, 'autoinstall', '--force', '-k', release]);
    if (r.code !== 0) throw new Error(`autoinstall in ${root} exited ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
    return r.seconds;
  };
  step(`warm-up: one autoinstall per root (MOK key, page cache): ${names.join(', ')}`);
  await once(confined);
  await once(asRoot);
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < samples; i++) {
    a.push(await once(confined));
    step(`sample ${i + 1}/${samples}: confined ${secs(a[i])}`);
    b.push(await once(asRoot));
    step(`sample ${i + 1}/${samples}: root ${secs(b[i])}`);
  }
  const r = median(a) / median(b);
  return {
    lines: [
      `(${names.join(', ')}; autoinstall --force -k ${release}; ${samples} sample${samples > 1 ? 's' : ''} each after one warm-up each, alternating)`,
      `confined samples: ${a.map((x) => secs(x)).join(', ')}; root samples: ${b.map((x) => secs(x)).join(', ')}`,
    ],
    goals: [{ what: 'unprivileged offline build vs root build, same sources', value: secs(median(a)), baseline: `${secs(median(b))} as root (${ratio(median(a), median(b))})`, ratio: r, limit: `<= ${GOAL}x`, pass: r <= GOAL }],
    data: { release, names, confined: a, root: b },
  };
}
