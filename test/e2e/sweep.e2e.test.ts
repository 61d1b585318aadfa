// Every module package of the archive, not only those other tests name: each `*-dkms` package of sid's
// main, contrib and non-free (the list is read from the archive at run time) has its source registered
// as its postinst registers it (dh_dkms's: `dkms add -m $DKMS_NAME -v $DKMS_VERSION`, the two read from
// the package's postinst; `dkms add /usr/src/<dir>` for a package whose postinst is not dh_dkms's) by
// Debian's dkms on one fresh sid system and by ootmod-dkms on another.
// What users see must be the same: the exit status of each add (a source DKMS refuses is refused, in one
// line; one it takes is taken), and the `dkms status` lines after all of them. Then, for the current
// kernel, `ootmod build --dry-run` plans a build of every source DKMS took (or says why it skips it,
// as BUILD_EXCLUSIVE_* make DKMS skip it), and refuses none as invalid.
//
// With OOTMOD_E2E_SWEEP_BUILD=1 (`npm run test:e2e:sweep-build`: hours, the NVIDIA families alone take
// most of them), every source is also built for the current kernel: all at once by one `ootmod install`,
// and one by one by Debian's `dkms build`; the same sources must build on both. OOTMOD_E2E_SWEEP_SKIP
// (a regular expression on the source dir) leaves some out, e.g. 'nvidia|zfs|virtualbox' for a shorter run.
import { cpSync, mkdirSync, readdirSync, rmSync, existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALL_COMPONENTS, currentKernel, freshChroot, type Chroot, type KernelInfo } from './lib/chroot.js';
import { buildOotmodIndepDebs, type OotmodIndepDebs } from './lib/debs.js';
import { copyDebs, installHeaders, ootmodDebArgs, tools } from './lib/system.js';

const log = (msg: string) => process.stderr.write(`[e2e] ${msg}\n`);
/** The same pristine base as contrib.e2e: sid with every archive area. */
const CHROOT_OPTS = { base: 'contrib-e2e-base', components: ALL_COMPONENTS };
/** Where the packages are unpacked (inside the DKMS side's chroot). */
const STAGE = '/root/sweep';
const BUILD = process.env.OOTMOD_E2E_SWEEP_BUILD === '1';
const SKIP = process.env.OOTMOD_E2E_SWEEP_SKIP ? new RegExp(process.env.OOTMOD_E2E_SWEEP_SKIP) : undefined;
/** The builds of every source, on one side: hours for the NVIDIA families. */
const BUILD_TIMEOUT_MS = 6 * 3_600_000;

interface Source {
  pkg: string;
  /** Its dir under /usr/src. */
  dir: string;
  /** The arguments of its postinst's `dkms add`. */
  add: string;
}

interface AddOutcome {
  code: number;
  /** What it printed on stderr, trimmed. */
  err: string;
}

let debs: OotmodIndepDebs;

beforeAll(async () => {
  debs = await buildOotmodIndepDebs(log);
});

afterAll(() => {
  if (debs && !debs.prebuilt) rmSync(debs.dir, { recursive: true, force: true });
});

describe("every *-dkms package of sid: ootmod-dkms registers each source as Debian's dkms does", () => {
  let dk: Chroot;
  let oo: Chroot;
  let kernel: KernelInfo;
  const d = tools(() => dk);
  const o = tools(() => oo);
  const sources: Source[] = [];
  const theirs = new Map<string, AddOutcome>();
  const ours = new Map<string, AddOutcome>();

  beforeAll(async () => {
    dk = await freshChroot('sid', 'sweep-e2e-dkms', CHROOT_OPTS);
    oo = await freshChroot('sid', 'sweep-e2e-ootmod', CHROOT_OPTS);
    // Both read the archive's lists of every area (the copies of the base have main's only).
    await dk.aptUpdate();
    kernel = await currentKernel(oo);
    await copyDebs(oo, debs);
    await installHeaders(o, oo, kernel);
    const r = await o.apt(`install ${ootmodDebArgs(debs)}`);
    expect(r.code, r.out.slice(-4000)).toBe(0);
    const dkms = await d.apt('install dkms');
    expect(dkms.code, dkms.out.slice(-4000)).toBe(0);
    // The headers before any source is registered: DKMS's kernel hook then has nothing to autoinstall.
    await installHeaders(d, dk, kernel);
  }, 1_800_000);

  it('unpacks every *-dkms package the archive has: each gives its source dir under /usr/src', async () => {
    // Real packages only (apt-cache pkgnames lists virtual ones too; `apt-cache show` has a record only for real ones).
    const names = (await d.sh("apt-cache pkgnames | grep -- '-dkms$' | sort | xargs -r apt-cache show --no-all-versions 2>/dev/null | sed -n 's/^Package: //p' | sort -u")).out.trim().split('\n').filter(Boolean);
    log(`sweep: ${names.length} *-dkms packages in the archive: ${names.join(' ')}`);
    // The archive has dozens (zfs-dkms, the NVIDIA families, broadcom-sta-dkms, ...): fewer means a broken list.
    expect(names.length).toBeGreaterThan(20);
    // Downloaded into apt's archive dir (the test cache keeps it between runs).
    const dl = await d.sh(`cd /var/cache/apt/archives && for p in ${names.join(' ')}; do ls "$p"_*.deb >/dev/null 2>&1 || apt-get download -q "$p" >/dev/null 2>&1 || echo "download failed: $p"; done`, 3_600_000);
    expect(dl.out.trim(), dl.err).toBe('');
    // Each line: package, source dir, and DKMS_NAME/DKMS_VERSION of dh_dkms's postinst (empty when it has none).
    const unpack = await d.sh(
      `rm -rf ${STAGE} && mkdir -p ${STAGE} && cd /var/cache/apt/archives && for p in ${names.join(' ')}; do f=$(ls -v "$p"_*.deb | tail -n 1); ` +
        `mkdir -p ${STAGE}/$p/DEBIAN && dpkg-deb -x "$f" ${STAGE}/$p && dpkg-deb -e "$f" ${STAGE}/$p/DEBIAN && ` +
        `n=$(sed -n 's/^DKMS_NAME=//p' ${STAGE}/$p/DEBIAN/postinst 2>/dev/null | head -n 1) && v=$(sed -n 's/^DKMS_VERSION=//p' ${STAGE}/$p/DEBIAN/postinst 2>/dev/null | head -n 1) && ` +
        `for c in ${STAGE}/$p/usr/src/*/dkms.conf; do [ -f "$c" ] && echo "$p $(basename "$(dirname "$c")") $n $v"; done; done`,
      1_800_000,
    );
    expect(unpack.code, unpack.err).toBe(0);
    const seen = new Set<string>();
    for (const line of unpack.out.trim().split('\n').filter(Boolean)) {
      const [pkg, dir, name, version] = line.split(' ') as [string, string, string | undefined, string | undefined];
      // Two packages shipping one source dir (none today) would be one registration.
      if (seen.has(dir)) continue;
      seen.add(dir);
      // dh_dkms's postinst names the source dir it ships; another postinst: the dir itself.
      const byName = name && version && dir === `${name}-${version}`;
      sources.push({ pkg, dir, add: byName ? `-m ${name} -v ${version}` : `/usr/src/${dir}` });
    }
    const without = names.filter((n) => !sources.some((s) => s.pkg === n));
    log(`sweep: ${sources.length} sources; packages with no /usr/src/*/dkms.conf (transitional or metapackages): ${without.join(' ') || 'none'}`);
    expect(sources.length).toBeGreaterThan(20);
    // The same source trees on both systems.
    for (const s of sources) {
      const from = dk.path(`${STAGE}/${s.pkg}/usr/src/${s.dir}`);
      for (const c of [dk, oo]) {
        const to = c.path(`/usr/src/${s.dir}`);
        if (existsSync(to)) rmSync(to, { recursive: true, force: true });
        mkdirSync(path.dirname(to), { recursive: true });
        cpSync(from, to, { recursive: true, verbatimSymlinks: true });
      }
    }
    expect(readdirSync(oo.path('/usr/src')).filter((f) => sources.some((s) => s.dir === f))).toHaveLength(sources.length);
  }, 3_600_000);

  it('dkms add of each source, as its postinst does it: the same exit status (0 or not) on both, a refusal in one line on ootmod-dkms, the same dkms status', async (ctx) => {
    if (!sources.length) ctx.skip('no sources were unpacked');
    for (const s of sources) {
      for (const [t, out] of [[d, theirs], [o, ours]] as const) {
        const r = await t.sh(`dkms add ${s.add} </dev/null`);
        out.set(s.dir, { code: r.code, err: r.err.trim() });
      }
    }
    const table = sources.map((s) => `${s.pkg.padEnd(36)} dkms add ${s.add.padEnd(50)} dkms ${theirs.get(s.dir)!.code} ootmod-dkms ${ours.get(s.dir)!.code}`);
    log(`sweep: dkms add, package, source, exit of each:\n${table.join('\n')}`);
    const differ = sources.filter((s) => (theirs.get(s.dir)!.code === 0) !== (ours.get(s.dir)!.code === 0));
    expect(
      differ.map((s) => `${s.dir}: dkms exit ${theirs.get(s.dir)!.code} (${theirs.get(s.dir)!.err.split('\n').pop()}), ootmod-dkms exit ${ours.get(s.dir)!.code} (${ours.get(s.dir)!.err})`),
    ).toEqual([]);
    for (const s of sources) {
      const ourErr = ours.get(s.dir)!;
      if (ourErr.code !== 0) expect(ourErr.err.split('\n'), s.dir).toHaveLength(1);
    }
    const status = async (t: typeof d) => (await t.sh('dkms status')).out.trim().split('\n').filter(Boolean).sort();
    expect(await status(o)).toEqual(await status(d));
  }, 1_800_000);

  it(`ootmod build --dry-run for the current kernel plans every source DKMS took, or says why it skips it; none is invalid`, async (ctx) => {
    const taken = sources.filter((s) => theirs.get(s.dir)?.code === 0);
    if (!taken.length) ctx.skip('DKMS took no source');
    const problems: string[] = [];
    for (const s of taken) {
      const r = await o.sh(`ootmod build /usr/src/${s.dir} -k ${kernel.kver} --dry-run`);
      const line = `${s.dir}: exit ${r.code}: ${(r.out + r.err).trim().split('\n').slice(0, 3).join(' | ')}`;
      log(`sweep: ${line}`);
      if (r.code !== 0 || /invalid/i.test(r.out + r.err) || !/would build|skip/i.test(r.out + r.err)) problems.push(line);
    }
    expect(problems).toEqual([]);
  }, 1_800_000);

  it.runIf(BUILD)('builds the same sources as Debian\'s dkms for the current kernel (OOTMOD_E2E_SWEEP_BUILD=1)', async () => {
    const chosen = sources.filter((s) => theirs.get(s.dir)?.code === 0 && ours.get(s.dir)?.code === 0 && !SKIP?.test(s.dir));
    expect(chosen.length).toBeGreaterThan(0);
    log(`sweep build: ${chosen.length} sources${SKIP ? ` (left out: ${sources.filter((s) => SKIP.test(s.dir)).map((s) => s.dir).join(' ')})` : ''}`);
    const t0 = Date.now();
    const r = await o.sh(`ootmod install ${chosen.map((s) => `/usr/src/${s.dir}`).join(' ')} -k ${kernel.kver} 2>&1`, BUILD_TIMEOUT_MS);
    log(`sweep build: ootmod install exit ${r.code} in ${((Date.now() - t0) / 1000).toFixed(0)} s\n${r.out.slice(-4000)}`);
    const rows = await o.status();
    const oursBuilt = new Map(chosen.map((s) => {
      const row = rows.find((x) => x.kernel === kernel.kver && `${x.module}-${x.version}` === s.dir);
      return [s.dir, row?.status === 'installed' ? 'installed' : `${row?.status ?? 'no row'}: ${(row?.error ?? '').split('\n')[0]}`] as const;
    }));
    const theirsBuilt = new Map<string, string>();
    const t1 = Date.now();
    for (const s of chosen) {
      const [name, version] = s.add.startsWith('-m ') ? s.add.split(' ').filter((_, i) => i === 1 || i === 3) : [undefined, undefined];
      const ref = name ? `-m ${name} -v ${version}` : `/usr/src/${s.dir}`;
      const b = await d.sh(`dkms build ${ref} -k ${kernel.kver} </dev/null 2>&1`, BUILD_TIMEOUT_MS);
      theirsBuilt.set(s.dir, b.code === 0 ? 'built' : `exit ${b.code}: ${b.out.trim().split('\n').filter((l) => /error|Error/.test(l))[0] ?? b.out.trim().split('\n').pop()}`);
    }
    log(`sweep build: dkms build of each: ${((Date.now() - t1) / 1000).toFixed(0)} s`);
    const table = chosen.map((s) => `${s.dir.padEnd(44)} dkms: ${theirsBuilt.get(s.dir)!.slice(0, 120).padEnd(40)} ootmod: ${oursBuilt.get(s.dir)!.slice(0, 160)}`);
    log(`sweep build, for ${kernel.kver}:\n${table.join('\n')}`);
    // Two sources that install the same module file (dahdi and osmocom-dahdi: dahdi.ko; dkms_test and
    // dkms_replace_test: dkms_test.ko): ootmod installs one and refuses the other, saying why (README); DKMS
    // builds both and the later install overwrites the other's file.
    const clash = new Set([...r.out.matchAll(/^failed +(\S+)\/(\S+) for \S+: .* would be installed by both /gm)].map((m) => `${m[1]}-${m[2]}`));
    log(`sweep build: refused as a clash by ootmod: ${[...clash].join(' ') || 'none'}`);
    const differ = chosen.filter((s) => !clash.has(s.dir) && (theirsBuilt.get(s.dir) === 'built') !== (oursBuilt.get(s.dir) === 'installed'));
    expect(differ.map((s) => `${s.dir}: dkms ${theirsBuilt.get(s.dir)}; ootmod ${oursBuilt.get(s.dir)}`)).toEqual([]);
  }, 2 * BUILD_TIMEOUT_MS + 1_800_000);
});
