// Module packages for the ootmod-dkms tests and benchmark: made in a chroot with Debian's own dh_dkms
// (so their maintainer scripts are dh_dkms's), and a depmod that counts its runs.
import path from 'node:path';
import type { Chroot } from './chroot.js';

/** Debian's real module packages from the archive, and the module file each installs. */
export const REAL_DKMS_PACKAGES = { 'dkms-test-dkms': 'dkms_test', 'acpi-call-dkms': 'acpi_call', 'v4l2loopback-dkms': 'v4l2loopback' } as const;

async function sh(chroot: Chroot, script: string): Promise<{ code: number; out: string }> {
  const r = await chroot.run(['bash', '-c', script], { reject: false, timeoutMs: 1_200_000, env: { LC_ALL: 'C.UTF-8' } });
  return { code: r.exitCode, out: `${r.stdout}\n${r.stderr}` };
}

/**
 * Builds, in the chroot (which needs dh-dkms and debhelper), a package made with dh_dkms whose module
 * does not compile (it uses an undeclared symbol, ootmod_no_such_symbol). Returns the .deb's path in
 * the chroot.
 */
export async function buildFailingDkmsPackage(chroot: Chroot): Promise<string> {
  const dir = '/root/failing/ootmod-failing-1.0';
  const files: Record<string, string> = {
    'debian/control': [
      'Source: ootmod-failing', 'Section: kernel', 'Priority: optional', 'Maintainer: ootmod e2e tests <ootmod@example.org>',
      'Build-Depends: debhelper-compat (= 13), dh-sequence-dkms', 'Standards-Version: 4.6.2', '',
      'Package: ootmod-failing-dkms', 'Architecture: all', 'Depends: ${misc:Depends}', 'Description: module that does not compile (ootmod e2e)',
      ' A DKMS module package whose source has a compile error.', '',
    ].join('\n'),
    'debian/changelog': 'ootmod-failing (1.0-1) unstable; urgency=medium\n\n  * Test package.\n\n -- ootmod e2e tests <ootmod@example.org>  Tue, 01 Dec 2026 00:00:00 +0000\n',
    'debian/rules': '#!/usr/bin/make -f\n%:\n\tdh $@\n',
    // dh_dkms puts the package's upstream version in for the placeholder.
    'debian/ootmod-failing-dkms.dkms': 'PACKAGE_NAME="ootmod-failing"\nPACKAGE_VERSION="#MODULE_VERSION#"\nBUILT_MODULE_NAME[0]="ootmod_failing"\nDEST_MODULE_LOCATION[0]="/updates/dkms"\nAUTOINSTALL="yes"\n',
    'debian/ootmod-failing-dkms.install': 'src/* usr/src/ootmod-failing-1.0/\n',
    'src/Kbuild': 'obj-m := ootmod_failing.o\n',
    'src/ootmod_failing.c': '#include <linux/module.h>\nstatic int __init f_init(void) { return ootmod_no_such_symbol; }\nmodule_init(f_init);\nMODULE_LICENSE("GPL");\n',
  };
  for (const [file, text] of Object.entries(files)) {
    const r = await sh(chroot, `mkdir -p ${path.dirname(`${dir}/${file}`)} && cat > ${dir}/${file} <<'OOTMOD_EOF'\n${text}OOTMOD_EOF`);
    if (r.code !== 0) throw new Error(`writing ${file}: ${r.out}`);
  }
  const b = await sh(chroot, `chmod 755 ${dir}/debian/rules && cd ${dir} && dpkg-buildpackage -us -uc -b -d 2>&1`);
  if (b.code !== 0 || !/dh_dkms/.test(b.out)) throw new Error(`dpkg-buildpackage of the failing module package failed:\n${b.out.slice(-3000)}`);
  return '/root/failing/ootmod-failing-dkms_1.0-1_all.deb';
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
