// ZFS, as Debian ships it for DKMS (zfs-dkms, sid contrib), built by ootmod against the host's real
// headers: its PRE_BUILD runs configure with the words DKMS gives it, its POST_BUILD copies into DKMS's
// dir of the built modules, and zfs.ko and spl.ko come out for this kernel. Opt-in (OOTMOD_TEST_ZFS=1):
// ZFS took 18 minutes to build on 2 busy cores (10 to 20). The .deb is the current one of the host's mirror,
// cached under /var/cache/ootmod-test/debs/sid (OOTMOD_REFRESH_DEBS=1 looks for a newer one).
import { existsSync, readdirSync, realpathSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ootmod, type CliResult } from '../support/cli.js';
import { extractDkmsSources, fetchDeb } from '../support/debs.js';
import { compressionSuffix, expectedVermagic, hostKernel, linkHostKernel, modinfo, placeSource } from '../support/host.js';
import { makeRoot, tempDir } from '../support/roots.js';

const skipped =
  process.env.OOTMOD_TEST_ZFS !== '1' ? 'set OOTMOD_TEST_ZFS=1 to run it: it builds ZFS, 10 to 20 minutes on 2 cores'
  : process.getuid?.() !== 0 ? 'it needs root (builds run as the build user in a sandbox)'
  : undefined;

describe.skipIf(skipped)(`zfs-dkms from sid contrib${skipped ? ` (skipped: ${skipped})` : ''}`, () => {
  let kernel: ReturnType<typeof hostKernel>;
  let root: string;
  let version: string;
  let run: CliResult;

  beforeAll(async () => {
    kernel = hostKernel();
    root = makeRoot('ootmod-zfs-');
    linkHostKernel(root, kernel.release, kernel.headers);
    // Debian's headers packages also link the kernel's full source (linux-headers-<kver>-common) as
    // `source`, which zfs's PRE_BUILD gives configure as --with-linux.
    const source = path.join('/usr/lib/modules', kernel.release, 'source');
    if (existsSync(source)) symlinkSync(realpathSync(source), path.join(root, 'usr/lib/modules', kernel.release, 'source'));
    const deb = await fetchDeb('zfs-dkms', ['sid'], (m) => process.stderr.write(`zfs test: ${m}\n`), ['contrib']);
    const [src] = extractDkmsSources(deb.file, tempDir('ootmod-zfs-deb-'));
    if (!src) throw new Error(`${deb.file} has no /usr/src/zfs-<version> with a dkms.conf`);
    version = path.basename(src).replace(/^zfs-/, '');
    placeSource(root, src);
    const started = Date.now();
    run = await ootmod(root, 'build', `zfs/${version}`, '-k', kernel.release, '-j', '2');
    process.stderr.write(`zfs test: ootmod build zfs/${version} (${deb.version}${deb.fromCache ? ', cached .deb' : ''}) took ${Math.round((Date.now() - started) / 1000)} s\n`);
  }, 60 * 60_000);

  it('builds without a failure', () => {
    expect(run.stderr).not.toMatch(/^(failed|invalid)/m);
    expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(0);
  });

  it.each(['zfs', 'spl'])('%s.ko is built for this kernel (vermagic)', (name) => {
    const dir = path.join(root, 'var/lib/ootmod/built', kernel.release, 'zfs', version);
    const file = path.join(dir, `${name}.ko${compressionSuffix(kernel.config)}`);
    expect(existsSync(file), `${file} (have: ${existsSync(dir) ? readdirSync(dir).join(' ') : 'nothing'})`).toBe(true);
    expect(modinfo('vermagic', file)).toBe(expectedVermagic(kernel.release, kernel.config));
  });

  it("its POST_BUILD put zfs_config.h and Module.symvers into DKMS's dir of the built modules", () => {
    const base = path.join(root, 'var/lib/ootmod/tree', kernel.release, 'zfs', version, kernel.release);
    const [arch] = readdirSync(base);
    expect(readdirSync(path.join(base, arch!)).sort()).toEqual(['Module.symvers', 'module', 'zfs_config.h']);
  });
});
