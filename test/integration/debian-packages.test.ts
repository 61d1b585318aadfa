// Debian's own DKMS module packages, taken out of their .debs with dpkg-deb (no dkms involved),
// built and installed by ootmod against the host's real headers.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ootmod, statusJson, type CliResult } from '../support/cli.js';
import { extractDkmsSources, fetchDeb } from '../support/debs.js';
import { compressionSuffix, expectedVermagic, hostKernel, linkHostKernel, modinfo, placeSource } from '../support/host.js';
import { makeRoot, tempDir } from '../support/roots.js';

// dkms-test-dkms is packaged from trixie on; the other two are in every current suite.
const PACKAGES: { pkg: string; suites?: string[]; modules: string[] }[] = [
  { pkg: 'dkms-test-dkms', suites: ['trixie', 'sid'], modules: ['dkms_test'] },
  { pkg: 'acpi-call-dkms', modules: ['acpi_call'] },
  { pkg: 'v4l2loopback-dkms', modules: ['v4l2loopback'] },
];

function hostSuite(): string {
  return /^VERSION_CODENAME=(\S+)$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? 'stable';
}

describe("Debian's DKMS packages", () => {
  const kernel = hostKernel();
  const suffix = compressionSuffix(kernel.config);
  const root = makeRoot();
  let run: CliResult;

  beforeAll(async () => {
    linkHostKernel(root, kernel.release, kernel.headers);
    const staging = tempDir('ootmod-debs-');
    for (const { pkg, suites } of PACKAGES) {
      const deb = await fetchDeb(pkg, suites ?? [hostSuite()]);
      for (const dir of extractDkmsSources(deb.file, path.join(staging, pkg))) placeSource(root, dir);
    }
    run = await ootmod(root, 'autoinstall', '-k', kernel.release);
  });

  it('autoinstalls all of them without a failure', () => {
    expect(run.stderr).not.toMatch(/^(failed|invalid)/m);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toMatch(/^autoinstall: 3 installed, 0 built, 0 current, 0 skipped, 0 failed$/m);
  });

  it.each(PACKAGES.flatMap((p) => p.modules))('%s is installed, for this kernel, signed and in modules.dep', (name) => {
    const file = path.join(root, 'usr/lib/modules', kernel.release, 'updates/ootmod', `${name}.ko${suffix}`);
    expect(existsSync(file)).toBe(true);
    expect(modinfo('vermagic', file)).toBe(expectedVermagic(kernel.release, kernel.config));
    if (kernel.config.builtin('MODULE_SIG')) expect(modinfo('signer', file)).toBe('ootmod module signing key');
    const dep = readFileSync(path.join(root, 'usr/lib/modules', kernel.release, 'modules.dep'), 'utf8');
    expect(dep).toContain(`updates/ootmod/${name}.ko${suffix}:`);
  });

  it('shows them installed in status --json', async () => {
    const { modules } = await statusJson(root);
    expect(modules.filter((m) => m.status === 'installed').map((m) => m.module).sort()).toEqual(['acpi-call', 'dkms_test', 'v4l2loopback']);
  });
});
