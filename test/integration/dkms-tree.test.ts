// The per-build dir $dkms_tree/$module/$module_version/$kernelver/$arch, which POST_BUILD scripts (ZFS's
// dkms.postbuild) write into and modules built on top (BUILD_DEPENDS) read; and, with ootmod-dkms, DKMS's
// tree /var/lib/dkms/<m>/<v>/<kver>/<arch> kept true. Real builds against the host's Debian headers, with
// two fixtures that imitate zfs-dkms and a module built on ZFS (test/fixtures/post-build).
import { existsSync, lstatSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ootmod } from '../support/cli.js';
import { FIXTURES, compressionSuffix, hostKernel, linkHostKernel, modinfo, placeSource } from '../support/host.js';
import { makeRoot } from '../support/roots.js';

const POST_BUILD = path.join(FIXTURES, 'post-build');

describe('the per-build dir and DKMS\'s tree', () => {
  const kernel = hostKernel();
  const suffix = compressionSuffix(kernel.config);
  const arch = 'x86_64';
  const root = makeRoot('ootmod-tree-');
  const perBuild = (m: string) => path.join(root, 'var/lib/ootmod/tree', kernel.release, m, '1.0', kernel.release, arch);
  const dkmsDir = (m: string) => path.join(root, 'var/lib/dkms', m, '1.0', kernel.release, arch);
  const installed = (name: string) => path.join(root, 'usr/lib/modules', kernel.release, 'updates/ootmod', `${name}.ko${suffix}`);
  const log = (m: string) => readFileSync(path.join(root, 'var/lib/ootmod/built', kernel.release, m, '1.0/make.log'), 'utf8');

  beforeAll(() => {
    linkHostKernel(root, kernel.release, kernel.headers);
    for (const f of ['ootmod-base-1.0', 'ootmod-ontop-1.0']) placeSource(root, path.join(POST_BUILD, f));
  });

  it("gives POST_BUILD its dir, writable and nothing more of the tree, and keeps what it wrote for the modules built on top", async () => {
    const r = await ootmod(root, 'autoinstall');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^autoinstall: 2 installed, 0 built, 0 current, 0 skipped, 0 failed$/m);
    // What the POST_BUILD script copied, root's now; and DKMS's module/ and log/ beside it.
    for (const f of ['base_config.h', 'Module.symvers', `module/ootmod_base.ko${suffix}`, 'module/Module.symvers', 'log/make.log']) {
      const st = statSync(path.join(perBuild('ootmod-base'), f));
      expect(st.uid, f).toBe(0);
    }
    expect(readFileSync(path.join(perBuild('ootmod-base'), 'base_config.h'), 'utf8')).toContain(`"${kernel.release}"`);
    expect(readFileSync(path.join(perBuild('ootmod-base'), `module/ootmod_base.ko${suffix}`))).toEqual(readFileSync(installed('ootmod_base')));
    // The confined POST_BUILD could write its build dir and the per-build dir, nothing else.
    const confined = log('ootmod-base').split('\n').find((l) => l.includes('dkms.postbuild -n') && l.includes('confined'));
    const writable = /confined: (.*) writable/.exec(confined ?? '')?.[1]?.split(', ');
    expect(writable?.map((w) => path.relative(path.join(root, 'var/lib/ootmod/tree', kernel.release), w)), log('ootmod-base')).toEqual(['ootmod-base/1.0/build', `ootmod-base/1.0/${kernel.release}/${arch}`]);
    // The module built on top found them where DKMS puts them, and links against ootmod_base.
    expect(modinfo('depends', installed('ootmod_ontop'))).toBe('ootmod_base');
    // No DKMS registration: nothing written to DKMS's tree.
    expect(existsSync(path.join(root, 'var/lib/dkms'))).toBe(false);
  });

  it('a failed rebuild leaves the previous build\'s dir where the modules on top read it', async () => {
    writeFileSync(path.join(root, 'usr/src/ootmod-base-1.0/dkms.postbuild'), '#!/bin/sh\necho no >&2\nexit 1\n', { mode: 0o755 });
    const r = await ootmod(root, 'build', 'ootmod-base');
    expect(r.exitCode).toBe(1);
    expect(readFileSync(path.join(perBuild('ootmod-base'), 'base_config.h'), 'utf8')).toContain(`"${kernel.release}"`);
    expect(readdirSync(path.dirname(perBuild('ootmod-base')))).toEqual([arch]);
    placeSource(root, path.join(POST_BUILD, 'ootmod-base-1.0'));
    expect((await ootmod(root, 'install', 'ootmod-base')).exitCode).toBe(0);
  });

  it('with ootmod-dkms, a registered module\'s build is in DKMS\'s tree: written by its jobs, kept on uninstall, gone with the build', async () => {
    const added = await ootmod(root, 'dkms', 'add', 'ootmod-base/1.0');
    expect(added.exitCode, added.stderr).toBe(0);
    // Built before it was registered: the plan has a job that writes it, and --dry-run writes nothing.
    const dry = await ootmod(root, '--dry-run', 'install', 'ootmod-base');
    expect(dry.stdout).toContain(`would write ${dkmsDir('ootmod-base')} (registered with DKMS and current, but missing from its tree)`);
    expect(existsSync(path.join(root, 'var/lib/dkms/ootmod-base/1.0', kernel.release))).toBe(false);
    const r = await ootmod(root, 'dkms', 'install', 'ootmod-base/1.0');
    expect(r.exitCode, r.stderr).toBe(0);
    const d = dkmsDir('ootmod-base');
    expect(readFileSync(path.join(d, `module/ootmod_base.ko${suffix}`))).toEqual(readFileSync(installed('ootmod_base')));
    expect(readFileSync(path.join(d, 'module/Module.symvers'), 'utf8')).toMatch(/\tootmod_base_answer\t/);
    expect(readFileSync(path.join(d, 'log/make.log'), 'utf8')).toMatch(/^# ootmod build of ootmod-base\/1.0/);
    expect(readFileSync(path.join(d, 'base_config.h'), 'utf8')).toContain(`"${kernel.release}"`);

    // A rebuild (the plan says so in JSON) writes it again.
    const json = JSON.parse((await ootmod(root, '--dry-run', '--json', 'install', 'ootmod-base', '--force')).stdout) as { plan: { jobs: { kind: string; dkmsTree?: string }[] } };
    expect(json.plan.jobs.filter((j) => j.dkmsTree).map((j) => j.kind)).toEqual(['build', 'install']);
    const forced = await ootmod(root, 'install', 'ootmod-base', '--force');
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(readFileSync(path.join(d, `module/ootmod_base.ko${suffix}`))).toEqual(readFileSync(installed('ootmod_base')));

    // As DKMS's uninstall, uninstall keeps the build; unbuild (remove of the build) takes it away, the registration stays.
    expect((await ootmod(root, 'dkms', 'uninstall', 'ootmod-base/1.0')).exitCode).toBe(0);
    expect(existsSync(path.join(d, 'module'))).toBe(true);
    expect((await ootmod(root, 'dkms', 'unbuild', 'ootmod-base/1.0')).exitCode).toBe(0);
    expect(readdirSync(path.join(root, 'var/lib/dkms/ootmod-base/1.0'))).toEqual(['source']);
    expect(lstatSync(path.join(root, 'var/lib/dkms/ootmod-base/1.0/source')).isSymbolicLink()).toBe(true);
  });
});
