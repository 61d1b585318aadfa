// `npm run bench`, sandbox row: the unprivileged, offline build (as _ootmod, in new namespaces) against
// a root build of the same three Debian DKMS packages, in the same run: `autoinstall --force` on two
// roots that differ only by ootmod.conf's `unconfined`, alternated A B A B, medians compared.
//   confined / root   goal <= 1.05
// BENCH_SANDBOX_SAMPLES=N (default 3); `node --import tsx bench/sandbox.ts --quick` takes 1 sample.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { extractDkmsSources, fetchDeb } from '../test/support/debs';
import { hostKernel } from '../test/support/host';
import { addSource, makeSandbox, median, OOTMOD, ratio, removeAllTemps, run, secs, step, table, tempDir } from './lib';

const GOAL = 1.05;
const PACKAGES: { pkg: string; suites: string[] }[] = [
  { pkg: 'dkms-test-dkms', suites: ['trixie', 'sid'] },
  { pkg: 'acpi-call-dkms', suites: ['trixie', 'sid'] },
  { pkg: 'v4l2loopback-dkms', suites: ['trixie', 'sid'] },
];

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    step('sandbox row skipped: only root builds confined');
    return;
  }
  const samples = process.argv.includes('--quick') ? 1 : Number(process.env.BENCH_SANDBOX_SAMPLES ?? 3);
  const { release, headers } = hostKernel();
  const confined = makeSandbox(release, headers, 'ootmod-bench-confined-');
  const asRoot = makeSandbox(release, headers, 'ootmod-bench-root-');
  const staging = tempDir('ootmod-bench-sandbox-debs-');
  const names: string[] = [];
  for (const { pkg, suites } of PACKAGES) {
    const deb = await fetchDeb(pkg, suites, step);
    for (const dir of extractDkmsSources(deb.file, path.join(staging, pkg))) {
      const name = /^PACKAGE_NAME=["']?([^"'\s]+)/m.exec(readFileSync(path.join(dir, 'dkms.conf'), 'utf8'))?.[1] ?? path.basename(dir).replace(/-[^-]+$/, '');
      names.push(name);
      for (const root of [confined, asRoot]) addSource(root, dir);
    }
  }
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
  for (const line of table(
    ['measure', 'ootmod confined', 'root build in the same run', 'goal'],
    [[`autoinstall --force of ${names.join(', ')} (${samples} samples each, A B A B, medians)`, secs(median(a)), `${secs(median(b))} (${ratio(median(a), median(b))})`, `<= ${GOAL}x: ${r <= GOAL ? 'PASS' : 'MISS'}`]],
  )) process.stdout.write(`${line}\n`);
}

main().then(removeAllTemps, (err: unknown) => {
  removeAllTemps();
  process.stderr.write(`bench/sandbox: ${String(err)}\n`);
  process.exitCode = 1;
});
