// `npm run bench`, ootmod-dkms part: one `apt-get install` of Debian's real dkms-test-dkms,
// acpi-call-dkms and v4l2loopback-dkms on a sid chroot with ootmod-dkms (A) against the same transaction
// on a sid chroot with Debian's dkms (B), alternating A B A B; then one transaction that also holds a
// module package made with dh_dkms that does not build.
//   wall time A / B                       goal <= 0.5
//   depmod runs per kernel                goal 1 (A)
//   packages left unconfigured (failing)  goal 0 (A); DKMS: 1 or more
//   CPU time (user + sys) of each transaction, and the least wall A's CPU allows on this machine's cores
// `--set contrib` (npm run bench:dkms-apt -- --set contrib): the module packages of contrib/non-free
// instead (issue 17): zfs-dkms, an NVIDIA flavour the archive can install (nvidia-kernel-dkms, else
// nvidia-open-kernel-dkms) and v4l2loopback-dkms, on sid chroots with contrib and non-free; the module
// that fails there, if one does (an NVIDIA branch older than the kernel), is the failing case, so there
// is no made-up one; each sample also reports apt's exit, the packages left unconfigured and the .ko set.
// `--samples N` (or OOTMOD_BENCH_DKMS_SAMPLES; default 3) sets the samples per side; 1 is the quick check
// (a contrib sample builds ZFS, ~10-18 min on 2 cores). The chroots are fresh copies of the e2e suite's
// dkms base, or contrib base (debootstrapped on first use). Between samples the packages are purged
// (with what apt pulled in for them), not timed.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ALL_COMPONENTS, currentKernel, freshChroot, kernelGccPackage, type Chroot } from '../test/e2e/lib/chroot';
import { buildOotmodIndepDebs } from '../test/e2e/lib/debs';
import { childrenCpuSeconds } from './lib';
import { REAL_DKMS_PACKAGES, buildFailingDkmsPackage, contribDkmsPackages, countDepmodRuns, depmodRuns } from '../test/e2e/lib/dkms';

const REPO = path.resolve(__dirname, '..');
/** The command line: which packages (--set main|contrib) and how many samples per side. */
function options(): { set: 'main' | 'contrib'; sampleCount: number } {
  const { values } = parseArgs({ options: { set: { type: 'string', default: 'main' }, samples: { type: 'string' } } });
  const set = values.set;
  if (set !== 'main' && set !== 'contrib') throw new Error(`--set ${set}: unknown set; use --set main or --set contrib`);
  const given = values.samples ?? process.env.OOTMOD_BENCH_DKMS_SAMPLES ?? '3';
  const sampleCount = Number(given);
  if (!Number.isInteger(sampleCount) || sampleCount < 1) throw new Error(`--samples ${given}: not a whole number >= 1; give e.g. --samples 1`);
  return { set, sampleCount };
}
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
  /** CPU seconds (user + system) of the transaction's processes (apt, dpkg, the scripts, the builds). */
  cpuSeconds: number;
  depmodRuns: number;
  exit: number;
  /** Packages not in state ii/rc after the transaction. */
  unconfigured: string[];
  /** The module files (names) installed for the kernel, ootmod's or DKMS's dir. */
  modules: string[];
}

/** Packages whose dpkg state is neither ii nor rc. */
async function unconfiguredPackages(chroot: Chroot): Promise<string[]> {
  const q = await sh(chroot, "dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n'");
  return q.out.split('\n').filter((l) => /^[a-z][A-Z]/.test(l.trim()) && !/^(ii|rc) /.test(l.trim())).map((l) => l.trim());
}

async function transaction(chroot: Chroot, kver: string, packages: string, modulesDir: string): Promise<Sample> {
  await must(chroot, 'rm -f /var/log/depmod.calls');
  const t0 = performance.now();
  const cpu0 = childrenCpuSeconds();
  const r = await sh(chroot, apt(`install ${packages}`));
  const seconds = (performance.now() - t0) / 1000;
  const cpuSeconds = childrenCpuSeconds() - cpu0;
  if (r.code !== 0) log(`apt-get install ${packages}: exit ${r.code}\n${r.out.slice(-2000)}`);
  const ls = await sh(chroot, `ls /usr/lib/modules/${kver}/${modulesDir} 2>/dev/null`);
  const modules = ls.out.split('\n').filter((f) => /\.ko(\.\w+)?$/.test(f)).map((f) => f.replace(/\.ko(\.\w+)?$/, '')).sort();
  const sample = { seconds, cpuSeconds, depmodRuns: await depmodRuns(chroot, kver), exit: r.code, unconfigured: await unconfiguredPackages(chroot), modules };
  // Back to the start (not timed): the packages, what they left and what apt pulled in for them.
  await must(chroot, `${apt(`purge ${packages}`)} || dpkg --purge --force-remove-reinstreq ${packages} 2>&1`);
  await must(chroot, apt('autoremove --purge'));
  return sample;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function main(): Promise<void> {
  const { set, sampleCount } = options();
  const debs = await buildOotmodIndepDebs(log);
  try {
    const chrootOpts = set === 'contrib' ? { base: 'contrib-e2e-base', components: ALL_COMPONENTS } : { base: 'dkms-e2e-base' };
    const prefix = set === 'contrib' ? 'bench-dkms-contrib' : 'bench-dkms';
    const sides: Record<'ootmod-dkms' | 'dkms', Chroot> = {
      'ootmod-dkms': await freshChroot('sid', `${prefix}-ootmod`, chrootOpts),
      dkms: await freshChroot('sid', `${prefix}-real`, chrootOpts),
    };
    const modulesDir = { 'ootmod-dkms': 'updates/ootmod', dkms: 'updates/dkms' };
    // The base's lists may predate its components (contrib, non-free) or the archive's current files.
    for (const chroot of Object.values(sides)) await chroot.aptUpdate();
    const kernel = await currentKernel(sides.dkms);
    let failingDeb = '';
    let packages = Object.keys(REAL_DKMS_PACKAGES).join(' ');
    for (const [name, chroot] of Object.entries(sides)) {
      await must(chroot, apt(`install ${kernel.headersPackage}=${kernel.version} openssl`));
      await must(chroot, apt(`install ${await kernelGccPackage(chroot, kernel.kver)}`));
      await must(chroot, 'mkdir -p /root/debs');
      if (name === 'ootmod-dkms') {
        for (const d of [debs.ootmod, debs.ootmodDkms]) writeFileSync(chroot.path(`/root/debs/${path.basename(d)}`), readFileSync(d));
        await must(chroot, apt(`install /root/debs/${path.basename(debs.ootmod)} /root/debs/${path.basename(debs.ootmodDkms)}`));
        if (set === 'contrib') {
          packages = (await contribDkmsPackages(chroot, log)).join(' ');
        } else {
          await must(chroot, apt('install dh-dkms debhelper'));
          failingDeb = await buildFailingDkmsPackage(chroot);
        }
      } else {
        await must(chroot, apt('install dkms'));
        if (set === 'main') writeFileSync(chroot.path('/root/debs/failing.deb'), readFileSync(sides['ootmod-dkms'].path(failingDeb)));
      }
      await countDepmodRuns(chroot);
      // Download once, so every sample installs from the local archive cache.
      await must(chroot, apt(`install --download-only ${packages}`));
    }
    log(`${set} set: ${packages}; kernel ${kernel.kver}; ${sampleCount} sample(s) per side, alternating`);

    const samples: Record<string, Sample[]> = { 'ootmod-dkms': [], dkms: [] };
    for (let i = 0; i < sampleCount; i++) {
      for (const name of ['ootmod-dkms', 'dkms'] as const) {
        const s = await transaction(sides[name], kernel.kver, packages, modulesDir[name]);
        log(
          `${name} sample ${i + 1}: ${s.seconds.toFixed(1)} s (CPU ${s.cpuSeconds.toFixed(1)} s), depmod ${s.depmodRuns}x, apt exit ${s.exit}, ` +
            `unconfigured: ${s.unconfigured.join(', ') || 'none'}, ${modulesDir[name]}: ${s.modules.join(' ')}`,
        );
        samples[name]!.push(s);
      }
    }

    // One module that does not build in the same transaction as two that do (the main set; in the contrib
    // set a module that fails on this kernel does so in the samples above).
    const failing: Record<string, { exit: number; unconfigured: string[] }> = {};
    for (const [name, chroot] of set === 'main' ? Object.entries(sides) : []) {
      const deb = name === 'ootmod-dkms' ? failingDeb : '/root/debs/failing.deb';
      const r = await sh(chroot, apt(`install ${deb} dkms-test-dkms acpi-call-dkms`));
      const unconfigured = await unconfiguredPackages(chroot);
      failing[name] = { exit: r.code, unconfigured };
      log(`${name} with a failing module: apt exit ${r.code}, unconfigured: ${unconfigured.join(', ') || 'none'}`);
    }

    const a = median(samples['ootmod-dkms']!.map((s) => s.seconds));
    const b = median(samples.dkms!.map((s) => s.seconds));
    // The CPU both transactions use: ootmod-dkms's wall cannot be below its CPU time spread over every core.
    const cpuA = median(samples['ootmod-dkms']!.map((s) => s.cpuSeconds));
    const cpuB = median(samples.dkms!.map((s) => s.cpuSeconds));
    const cores = availableParallelism();
    const result = {
      set,
      packages,
      kernel: kernel.kver,
      samples: sampleCount,
      wallSeconds: { 'ootmod-dkms': a, dkms: b, ratio: a / b, goal: 0.5 },
      cpuSeconds: { 'ootmod-dkms': cpuA, dkms: cpuB, cores, floorRatio: cpuA / cores / b },
      depmodRunsPerKernel: { 'ootmod-dkms': median(samples['ootmod-dkms']!.map((s) => s.depmodRuns)), dkms: median(samples.dkms!.map((s) => s.depmodRuns)), goal: 1 },
      aptExit: { 'ootmod-dkms': samples['ootmod-dkms']!.map((s) => s.exit), dkms: samples.dkms!.map((s) => s.exit) },
      failingTransaction: failing,
      raw: samples,
    };
    mkdirSync(path.join(REPO, 'bench/results'), { recursive: true });
    writeFileSync(path.join(REPO, `bench/results/${set === 'main' ? 'dkms-apt' : 'dkms-apt-contrib'}.json`), `${JSON.stringify(result, null, 2)}\n`);
    const last = (name: 'ootmod-dkms' | 'dkms') => samples[name]![samples[name]!.length - 1]!;
    const lines = [
      `ootmod-dkms vs dkms, one apt-get install of ${packages} (${sampleCount} sample(s) each, medians, kernel ${kernel.kver})`,
      `  wall time         ootmod-dkms ${a.toFixed(1)} s   dkms ${b.toFixed(1)} s   ratio ${(a / b).toFixed(2)} (goal <= 0.5)`,
      `  CPU (user + sys)  ootmod-dkms ${cpuA.toFixed(1)} s   dkms ${cpuB.toFixed(1)} s; on ${cores} cores ootmod-dkms's wall cannot be below ${(cpuA / cores).toFixed(1)} s (${(cpuA / cores / b).toFixed(2)}x dkms's wall)`,
      `  depmod runs       ootmod-dkms ${result.depmodRunsPerKernel['ootmod-dkms']}   dkms ${result.depmodRunsPerKernel.dkms} (goal 1)`,
    ];
    if (set === 'main') {
      lines.push(
        `  with a failing module: unconfigured packages ootmod-dkms ${failing['ootmod-dkms']!.unconfigured.length} (apt exit ${failing['ootmod-dkms']!.exit}), ` +
          `dkms ${failing.dkms!.unconfigured.length} (apt exit ${failing.dkms!.exit}) (goal 0)`,
      );
    } else {
      lines.push(
        `  apt exit          ootmod-dkms ${result.aptExit['ootmod-dkms'].join('/')}   dkms ${result.aptExit.dkms.join('/')} (goal 0)`,
        `  unconfigured      ootmod-dkms ${last('ootmod-dkms').unconfigured.length}   dkms ${last('dkms').unconfigured.length} (goal 0; last sample)`,
        `  modules           ootmod-dkms ${last('ootmod-dkms').modules.join(' ')}   dkms ${last('dkms').modules.join(' ')} (last sample)`,
      );
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    if (!debs.prebuilt) rmSync(debs.dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/dkms-apt: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
