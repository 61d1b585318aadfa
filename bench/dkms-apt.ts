// `npm run bench`, ootmod-dkms part: one `apt-get install` of Debian's real dkms-test-dkms,
// acpi-call-dkms and v4l2loopback-dkms on a sid chroot with ootmod-dkms (A) against the same transaction
// on a sid chroot with Debian's dkms (B), alternating A B A B; then one transaction that also holds a
// module package made with dh_dkms that does not build.
//   wall time A / B                       goal <= 0.5
//   depmod runs per kernel                goal 1 (A)
//   packages left unconfigured (failing)  goal 0 (A); DKMS: 1 or more
// OOTMOD_BENCH_DKMS_SAMPLES (default 3) sets the samples per side; 1 is the quick check. The chroots
// are fresh copies of the e2e suite's dkms base (debootstrapped on first use).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { currentKernel, freshChroot, kernelGccPackage, type Chroot } from '../test/e2e/lib/chroot';
import { buildOotmodIndepDebs } from '../test/e2e/lib/debs';
import { REAL_DKMS_PACKAGES, buildFailingDkmsPackage, countDepmodRuns, depmodRuns } from '../test/e2e/lib/dkms';

const REPO = path.resolve(__dirname, '..');
const SAMPLES = Number(process.env.OOTMOD_BENCH_DKMS_SAMPLES ?? 3);
const PACKAGES = Object.keys(REAL_DKMS_PACKAGES).join(' ');
const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

async function sh(chroot: Chroot, script: string): Promise<{ code: number; out: string }> {
  const r = await chroot.run(['bash', '-c', script], { reject: false, timeoutMs: 3_600_000, env: { LC_ALL: 'C.UTF-8' } });
  return { code: r.exitCode, out: `${r.stdout}\n${r.stderr}` };
}

async function must(chroot: Chroot, script: string): Promise<string> {
  const r = await sh(chroot, script);
  if (r.code !== 0) throw new Error(`${script}: exit ${r.code}\n${r.out.slice(-3000)}`);
  return r.out;
}

const apt = (args: string) => `apt-get -y -o Dpkg::Use-Pty=0 --no-install-recommends ${args} 2>&1`;

interface Sample {
  seconds: number;
  depmodRuns: number;
  exit: number;
}

async function transaction(chroot: Chroot, kver: string): Promise<Sample> {
  await must(chroot, 'rm -f /var/log/depmod.calls');
  const t0 = performance.now();
  const r = await sh(chroot, apt(`install ${PACKAGES}`));
  const seconds = (performance.now() - t0) / 1000;
  const sample = { seconds, depmodRuns: await depmodRuns(chroot, kver), exit: r.code };
  // Back to the start (not timed): the packages and what they left.
  await must(chroot, apt(`purge ${PACKAGES}`));
  return sample;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function main(): Promise<void> {
  const debs = await buildOotmodIndepDebs(log);
  try {
    const sides: Record<'ootmod-dkms' | 'dkms', Chroot> = {
      'ootmod-dkms': await freshChroot('sid', 'bench-dkms-ootmod', { base: 'dkms-e2e-base' }),
      dkms: await freshChroot('sid', 'bench-dkms-real', { base: 'dkms-e2e-base' }),
    };
    const kernel = await currentKernel(sides.dkms);
    let failingDeb = '';
    for (const [name, chroot] of Object.entries(sides)) {
      await must(chroot, apt(`install ${kernel.headersPackage}=${kernel.version} openssl`));
      await must(chroot, apt(`install ${await kernelGccPackage(chroot, kernel.kver)}`));
      await must(chroot, 'mkdir -p /root/debs');
      if (name === 'ootmod-dkms') {
        for (const d of [debs.ootmod, debs.ootmodDkms]) writeFileSync(chroot.path(`/root/debs/${path.basename(d)}`), readFileSync(d));
        await must(chroot, apt(`install /root/debs/${path.basename(debs.ootmod)} /root/debs/${path.basename(debs.ootmodDkms)}`));
        await must(chroot, apt('install dh-dkms debhelper'));
        failingDeb = await buildFailingDkmsPackage(chroot);
      } else {
        await must(chroot, apt('install dkms'));
        writeFileSync(chroot.path('/root/debs/failing.deb'), readFileSync(sides['ootmod-dkms'].path(failingDeb)));
      }
      await countDepmodRuns(chroot);
      // Download once, so every sample installs from the local archive cache.
      await must(chroot, apt(`install --download-only ${PACKAGES}`));
    }

    const samples: Record<string, Sample[]> = { 'ootmod-dkms': [], dkms: [] };
    for (let i = 0; i < SAMPLES; i++) {
      for (const name of ['ootmod-dkms', 'dkms'] as const) {
        const s = await transaction(sides[name], kernel.kver);
        log(`${name} sample ${i + 1}: ${s.seconds.toFixed(1)} s, depmod ${s.depmodRuns}x, apt exit ${s.exit}`);
        samples[name]!.push(s);
      }
    }

    // One module that does not build in the same transaction as two that do.
    const failing: Record<string, { exit: number; unconfigured: string[] }> = {};
    for (const [name, chroot] of Object.entries(sides)) {
      const deb = name === 'ootmod-dkms' ? failingDeb : '/root/debs/failing.deb';
      const r = await sh(chroot, apt(`install ${deb} dkms-test-dkms acpi-call-dkms`));
      const q = await sh(chroot, "dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n'");
      const unconfigured = q.out.split('\n').filter((l) => /^[a-z][A-Z]/.test(l.trim()) && !/^(ii|rc) /.test(l.trim())).map((l) => l.trim());
      failing[name] = { exit: r.code, unconfigured };
      log(`${name} with a failing module: apt exit ${r.code}, unconfigured: ${unconfigured.join(', ') || 'none'}`);
    }

    const a = median(samples['ootmod-dkms']!.map((s) => s.seconds));
    const b = median(samples.dkms!.map((s) => s.seconds));
    const result = {
      kernel: kernel.kver,
      samples: SAMPLES,
      wallSeconds: { 'ootmod-dkms': a, dkms: b, ratio: a / b, goal: 0.5 },
      depmodRunsPerKernel: { 'ootmod-dkms': median(samples['ootmod-dkms']!.map((s) => s.depmodRuns)), dkms: median(samples.dkms!.map((s) => s.depmodRuns)), goal: 1 },
      aptExit: { 'ootmod-dkms': samples['ootmod-dkms']!.map((s) => s.exit), dkms: samples.dkms!.map((s) => s.exit) },
      failingTransaction: failing,
      raw: samples,
    };
    mkdirSync(path.join(REPO, 'bench/results'), { recursive: true });
    writeFileSync(path.join(REPO, 'bench/results/dkms-apt.json'), `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(
      [
        `ootmod-dkms vs dkms, one apt-get install of ${PACKAGES} (${SAMPLES} sample(s) each, medians, kernel ${kernel.kver})`,
        `  wall time         ootmod-dkms ${a.toFixed(1)} s   dkms ${b.toFixed(1)} s   ratio ${(a / b).toFixed(2)} (goal <= 0.5)`,
        `  depmod runs       ootmod-dkms ${result.depmodRunsPerKernel['ootmod-dkms']}   dkms ${result.depmodRunsPerKernel.dkms} (goal 1)`,
        `  with a failing module: unconfigured packages ootmod-dkms ${failing['ootmod-dkms']!.unconfigured.length} (apt exit ${failing['ootmod-dkms']!.exit}), ` +
          `dkms ${failing.dkms!.unconfigured.length} (apt exit ${failing.dkms!.exit}) (goal 0)`,
        '',
      ].join('\n'),
    );
  } finally {
    if (!debs.prebuilt) rmSync(debs.dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/dkms-apt: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
