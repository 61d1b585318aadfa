// Module packages for the ootmod-dkms tests and benchmark: made in a chroot with Debian's own dh_dkms
// (so their maintainer scripts are dh_dkms's), and a depmod that counts its runs.
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FIXTURES } from '../../support/host.js';
import type { Chroot } from './chroot.js';

/** Debian's real module packages from the archive, and the module file each installs. */
export const REAL_DKMS_PACKAGES = { 'dkms-test-dkms': 'dkms_test', 'acpi-call-dkms': 'acpi_call', 'v4l2loopback-dkms': 'v4l2loopback' } as const;

/** The NVIDIA module packages, in order of preference: the first the archive can install is the one used. */
export const NVIDIA_FLAVOURS = ['nvidia-kernel-dkms', 'nvidia-open-kernel-dkms'] as const;

/**
 * The module packages of contrib/non-free most machines hold, as one apt transaction (issue 17): zfs-dkms,
 * the first NVIDIA flavour whose install apt can resolve here (with whichever dkms is installed; chosen
 * at run time, the archive decides), and v4l2loopback-dkms from main. The chroot needs contrib and non-free.
 */
export async function contribDkmsPackages(chroot: Chroot, log: (msg: string) => void): Promise<string[]> {
  for (const nvidia of NVIDIA_FLAVOURS) {
    const packages = ['zfs-dkms', nvidia, 'v4l2loopback-dkms'];
    const sim = await sh(chroot, `apt-get -s -o Dpkg::Use-Pty=0 --no-install-recommends install ${packages.join(' ')} 2>&1`);
    if (sim.code === 0) return packages;
    log(`${nvidia}: not installable here: ${sim.out.slice(-600)}`);
  }
  throw new Error(`none of ${NVIDIA_FLAVOURS.join(', ')} can be installed from the archive (are contrib and non-free enabled?)`);
}

async function sh(chroot: Chroot, script: string): Promise<{ code: number; out: string }> {
  const r = await chroot.run(['bash', '-c', script], { reject: false, timeoutMs: 1_200_000, env: { LC_ALL: 'C.UTF-8' } });
  return { code: r.exitCode, out: `${r.stdout}\n${r.stderr}` };
}

/** A module package to make with dh_dkms: its source files go to /usr/src/<name>-<version>/. */
export interface DkmsPackageSpec {
  /** The source package and DKMS PACKAGE_NAME; the binary package is <name>-dkms. */
  name: string;
  /** The upstream version (debian/changelog has <version>-1); dh_dkms puts it in for #MODULE_VERSION#. */
  version: string;
  /** BUILT_MODULE_NAME[0]. */
  module: string;
  /** One line for the package description. */
  summary: string;
  /** The module's source files: name -> content. */
  files: Record<string, string>;
  /** AUTOINSTALL="yes" in its dkms.conf (default); false: no AUTOINSTALL line. */
  autoinstall?: boolean;
  /** Shell lines its postinst runs on configure after dh_dkms's part (common.postinst). */
  postinst?: string[];
}

/**
 * Builds, in the chroot (which needs dh-dkms and debhelper), a package made with Debian's own dh_dkms
 * (dpkg-buildpackage -b): its dkms.conf says PACKAGE_VERSION="#MODULE_VERSION#" as dh_dkms packages
 * do, and its maintainer scripts are dh_dkms's. Returns the .deb's path in the chroot.
 */
export async function buildDkmsPackage(chroot: Chroot, spec: DkmsPackageSpec): Promise<string> {
  const { name, version, module } = spec;
  const top = `/root/dkms-packages/${name}`;
  const dir = `${top}/${name}-${version}`;
  const pkg = `${name}-dkms`;
  const files: Record<string, string> = {
    'debian/control': [
      `Source: ${name}`, 'Section: kernel', 'Priority: optional', 'Maintainer: ootmod e2e tests <ootmod@example.org>',
      'Build-Depends: debhelper-compat (= 13), dh-sequence-dkms', 'Standards-Version: 4.6.2', '',
      `Package: ${pkg}`, 'Architecture: all', 'Depends: ${misc:Depends}', `Description: ${spec.summary} (ootmod e2e)`,
      ` A DKMS module package made with dh_dkms for ootmod's end-to-end tests.`, '',
    ].join('\n'),
    'debian/changelog': `${name} (${version}-1) unstable; urgency=medium\n\n  * Test package.\n\n -- ootmod e2e tests <ootmod@example.org>  Tue, 01 Dec 2026 00:00:00 +0000\n`,
    'debian/rules': '#!/usr/bin/make -f\n%:\n\tdh $@\n',
    // dh_dkms puts the package's upstream version in for the placeholder.
    [`debian/${pkg}.dkms`]: `PACKAGE_NAME="${name}"\nPACKAGE_VERSION="#MODULE_VERSION#"\nBUILT_MODULE_NAME[0]="${module}"\nDEST_MODULE_LOCATION[0]="/updates/dkms"\n${spec.autoinstall === false ? '' : 'AUTOINSTALL="yes"\n'}`,
    [`debian/${pkg}.install`]: `src/* usr/src/${name}-${version}/\n`,
    ...(spec.postinst ? { [`debian/${pkg}.postinst`]: ['#!/bin/sh', 'set -e', '#DEBHELPER#', 'if [ "$1" = configure ]; then', ...spec.postinst.map((l) => `  ${l}`), 'fi', ''].join('\n') } : {}),
    ...Object.fromEntries(Object.entries(spec.files).map(([f, text]) => [`src/${f}`, text])),
  };
  rmSync(chroot.path(top), { recursive: true, force: true });
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(path.dirname(chroot.path(`${dir}/${file}`)), { recursive: true });
    writeFileSync(chroot.path(`${dir}/${file}`), text, { mode: file === 'debian/rules' ? 0o755 : 0o644 });
  }
  const b = await sh(chroot, `cd ${dir} && dpkg-buildpackage -us -uc -b -d 2>&1`);
  if (b.code !== 0 || !/dh_dkms/.test(b.out)) throw new Error(`dpkg-buildpackage of ${pkg} failed:\n${b.out.slice(-3000)}`);
  return `${top}/${pkg}_${version}-1_all.deb`;
}

/**
 * A dh_dkms package whose module does not compile (it uses an undeclared symbol,
 * ootmod_no_such_symbol). Without AUTOINSTALL, its postinst runs `dkms install` itself after
 * common.postinst (which only registers such a module), as such packages do. Returns the .deb's path in the chroot.
 */
export function buildFailingDkmsPackage(chroot: Chroot, opts: { name?: string; autoinstall?: boolean } = {}): Promise<string> {
  const name = opts.name ?? 'ootmod-failing';
  const module = name.replaceAll('-', '_');
  return buildDkmsPackage(chroot, {
    name,
    version: '1.0',
    module,
    summary: 'module that does not compile',
    autoinstall: opts.autoinstall,
    ...(opts.autoinstall === false ? { postinst: [`dkms install -m ${name} -v 1.0 || true`] } : {}),
    files: {
      Kbuild: `obj-m := ${module}.o\n`,
      [`${module}.c`]: '#include <linux/module.h>\nstatic int __init f_init(void) { return ootmod_no_such_symbol; }\nmodule_init(f_init);\nMODULE_LICENSE("GPL");\n',
    },
  });
}

/**
 * A plain package (dpkg-deb) whose postinst asks ootmod-dkms for modules again, as vendor packages do:
 * `dkms build` then `dkms install` of each NAME/VERSION (failures ignored). Returns the .deb's path in the chroot.
 */
export async function buildRequestingPackage(chroot: Chroot, name: string, modules: string[]): Promise<string> {
  const dir = `/root/dkms-packages/${name}`;
  rmSync(chroot.path(dir), { recursive: true, force: true });
  mkdirSync(chroot.path(`${dir}/DEBIAN`), { recursive: true });
  const deps = modules.map((m) => `${m.split('/')[0]}-dkms`).join(', ');
  writeFileSync(chroot.path(`${dir}/DEBIAN/control`), `Package: ${name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: ootmod e2e tests <ootmod@example.org>\nDepends: ${deps}\nDescription: asks dkms for modules in its postinst (ootmod e2e)\n`);
  const asks = modules.flatMap((m) => [`  dkms build ${m} || true`, `  dkms install ${m} || true`]);
  writeFileSync(chroot.path(`${dir}/DEBIAN/postinst`), ['#!/bin/sh', 'set -e', 'if [ "$1" = configure ]; then', ...asks, 'fi', ''].join('\n'), { mode: 0o755 });
  const b = await sh(chroot, `dpkg-deb --root-owner-group -b ${dir} ${dir}.deb 2>&1`);
  if (b.code !== 0) throw new Error(`dpkg-deb of ${name} failed:\n${b.out}`);
  return `${dir}.deb`;
}

/**
 * A dh_dkms package of a test fixture's module source (test/fixtures/<name>-<version>): its files but
 * its own dkms.conf, the one dh_dkms makes from debian/<name>-dkms.dkms.
 */
export function buildFixtureDkmsPackage(chroot: Chroot, fixture: string, module: string): Promise<string> {
  const m = /^(.+)-([^-]+)$/.exec(fixture);
  if (!m) throw new Error(`fixture directory ${fixture} is not <name>-<version>`);
  const from = path.join(FIXTURES, fixture);
  const files = Object.fromEntries(readdirSync(from).filter((f) => f !== 'dkms.conf').map((f) => [f, readFileSync(path.join(from, f), 'utf8')]));
  return buildDkmsPackage(chroot, { name: m[1]!, version: m[2]!, module, summary: `test module ${m[1]}`, files });
}

/** Diverts /usr/sbin/depmod to a wrapper that appends its arguments to /var/log/depmod.calls. */
export async function countDepmodRuns(chroot: Chroot): Promise<void> {
  const r = await sh(
    chroot,
    'dpkg-divert --local --rename --divert /usr/sbin/depmod.real --add /usr/sbin/depmod >/dev/null && ' +
      `printf '%s\\n' '#!/bin/bash' 'echo "$*" >> /var/log/depmod.calls' 'exec -a depmod /usr/sbin/depmod.real "$@"' > /usr/sbin/depmod && chmod 755 /usr/sbin/depmod`,
  );
  if (r.code !== 0) throw new Error(`diverting depmod: ${r.out}`);
}

/** depmod runs for a kernel since the log was last cleared (rm -f /var/log/depmod.calls). */
export async function depmodRuns(chroot: Chroot, kver: string): Promise<number> {
  return (await sh(chroot, 'cat /var/log/depmod.calls 2>/dev/null')).out.split('\n').filter((l) => l.split(' ').includes(kver)).length;
}
