// A binary .deb of the built (signed, compressed) modules of one module version for one kernel, for
// machines with no compiler, no headers and no ootmod: build once, install everywhere with apt.
import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { ExitCode, OotmodError } from '../errors.js';
import { run } from '../system/run.js';

export interface DebInput {
  module: string;
  version: string;
  kernel: string;
  /** The kernel's Debian architecture. */
  arch: string;
  /** Built module files (.ko[.xz|.zst|.gz]), already stripped, signed and compressed. */
  files: string[];
  /** The package that ships the kernel: the .deb depends on it. */
  imagePackage: string;
  maintainer: string;
  signed: boolean;
}

export interface DebPlan {
  package: string;
  version: string;
  arch: string;
  fileName: string;
  /** Where each module goes, as an absolute path on the target system. */
  contents: { from: string; to: string }[];
  control: string;
  postinst: string;
  postrm: string;
}

/** A Debian package name (policy 5.6.1): lowercase letters, digits, + - . ; at least two, alphanumeric first. */
export function debName(module: string, kernel: string): string {
  const name = `${module}-modules-${kernel}`.toLowerCase().replace(/_/g, '-').replace(/[^a-z0-9+.-]/g, '');
  if (!/^[a-z0-9][a-z0-9+.-]+$/.test(name)) {
    throw new OotmodError(`cannot make a Debian package name from module '${module}' and kernel '${kernel}'`, 'rename the module (PACKAGE_NAME) to letters, digits, - and _', ExitCode.InvalidSource);
  }
  return name;
}

/** A Debian version (policy 5.6.12) from PACKAGE_VERSION: it must start with a digit. */
export function debVersion(version: string): string {
  if (!/^[0-9][A-Za-z0-9.+~]*$/.test(version)) {
    throw new OotmodError(`PACKAGE_VERSION '${version}' is not a valid Debian version`, 'use digits, letters, . + ~, starting with a digit', ExitCode.InvalidSource);
  }
  return version;
}

function maintainerScript(kernel: string, when: string): string {
  // depmod for this kernel only, and only while its module dir exists (the kernel may be gone on remove).
  return [
    '#!/bin/sh',
    'set -e',
    `if [ ${when} ] && [ -d /usr/lib/modules/${kernel} ]; then`,
    `\tdepmod -a ${kernel}`,
    'fi',
    '',
  ].join('\n');
}

export function planDeb(input: DebInput, outDir: string): DebPlan {
  const pkg = debName(input.module, input.kernel);
  const version = debVersion(input.version);
  const dest = `/usr/lib/modules/${input.kernel}/updates/${pkg}`;
  const contents = input.files.map((f) => ({ from: f, to: `${dest}/${path.basename(f)}` }));
  const control = [
    `Package: ${pkg}`,
    `Version: ${version}`,
    `Architecture: ${input.arch}`,
    `Maintainer: ${input.maintainer}`,
    `Depends: ${input.imagePackage}`,
    'Section: kernel',
    'Priority: optional',
    `Description: ${input.module} kernel modules for Linux ${input.kernel}`,
    ` Out-of-tree kernel modules of ${input.module} ${input.version}, built by ootmod`,
    ` for Linux ${input.kernel} (${input.arch})${input.signed ? ' and signed with the' : '.'}`,
    ...(input.signed ? [' module signing key of the machine that built them.'] : []),
    ' .',
    ' Installing the package runs depmod for that kernel. It needs no compiler,',
    ' no kernel headers and no ootmod.',
    '',
  ].join('\n');
  return {
    package: pkg,
    version,
    arch: input.arch,
    fileName: path.join(outDir, `${pkg}_${version}_${input.arch}.deb`),
    contents,
    control,
    postinst: maintainerScript(input.kernel, '"$1" = configure'),
    postrm: maintainerScript(input.kernel, '"$1" = remove ] || [ "$1" = purge'),
  };
}

/** Writes the .deb with dpkg-deb: staged in a temporary dir, renamed into place when complete. */
export async function writeDeb(plan: DebPlan, input: DebInput): Promise<void> {
  const outDir = path.dirname(plan.fileName);
  await mkdir(outDir, { recursive: true });
  const stage = await mkdtemp(path.join(os.tmpdir(), 'ootmod-mkdeb-'));
  const tmpDeb = path.join(outDir, `.${path.basename(plan.fileName)}.${process.pid}.tmp`);
  try {
    await mkdir(path.join(stage, 'DEBIAN'), { recursive: true });
    const md5: string[] = [];
    let bytes = 0;
    for (const c of plan.contents) {
      const target = path.join(stage, c.to);
      await mkdir(path.dirname(target), { recursive: true });
      await copyFile(c.from, target);
      await chmod(target, 0o644);
      const data = await readFile(target);
      bytes += data.length;
      md5.push(`${createHash('md5').update(data).digest('hex')}  ${c.to.slice(1)}`);
    }
    // Policy: every package has a copyright file and a changelog under /usr/share/doc/<package>.
    const doc = path.join(stage, 'usr/share/doc', plan.package);
    await mkdir(doc, { recursive: true });
    const copyright = [
      'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
      `Upstream-Name: ${input.module}`,
      '',
      'Files: *',
      `Copyright: the authors of ${input.module} (see its source, /usr/src/${input.module}-${input.version} on the build machine)`,
      'License: GPL-2',
      ' Linux kernel modules are derived works of the kernel, GPL version 2.',
      ' On Debian systems, the full text of the GNU General Public License version 2',
      ' can be found in the file /usr/share/common-licenses/GPL-2.',
      '',
    ].join('\n');
    await writeFile(path.join(doc, 'copyright'), copyright);
    const date = new Date().toUTCString().replace(/GMT$/, '+0000');
    const changelog = `${plan.package} (${plan.version}) unstable; urgency=medium\n\n  * Built by ootmod mkdeb for Linux ${input.kernel}.\n\n -- ${input.maintainer}  ${date}\n`;
    await writeFile(path.join(doc, 'changelog.gz'), await promisify(gzip)(changelog, { level: 9 }));
    for (const f of ['copyright', 'changelog.gz']) {
      const data = await readFile(path.join(doc, f));
      bytes += data.length;
      md5.push(`${createHash('md5').update(data).digest('hex')}  usr/share/doc/${plan.package}/${f}`);
    }
    const control = plan.control.replace(/^(Description:)/m, `Installed-Size: ${Math.ceil(bytes / 1024)}\n$1`);
    await writeFile(path.join(stage, 'DEBIAN/control'), control);
    await writeFile(path.join(stage, 'DEBIAN/md5sums'), `${md5.join('\n')}\n`);
    for (const [name, text] of [['postinst', plan.postinst], ['postrm', plan.postrm]] as const) {
      await writeFile(path.join(stage, 'DEBIAN', name), text, { mode: 0o755 });
      await chmod(path.join(stage, 'DEBIAN', name), 0o755);
    }
    await run('chmod', ['-R', 'u=rwX,go=rX', stage], { step: 'chmod' });
    await run('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, tmpDeb], { step: 'dpkg-deb --build' });
    await rename(tmpDeb, plan.fileName);
  } finally {
    await rm(stage, { recursive: true, force: true });
    await rm(tmpDeb, { force: true });
  }
}
