// Where the rust/ sources of exactly this kernel build come from: a rust/ tree shipped beside the
// headers; else the linux-source-X.Y tarball of the same Debian version as the headers; else a source
// dir given by --kernel-source or the config file, verified by its Makefile version.
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ExitCode, OotmodError } from '../errors.js';
import type { KernelTarget } from '../kernel/inventory.js';
import { KERNEL_PACKAGES, installedPackages } from '../kernel/packages.js';
import type { Layout } from '../system/layout.js';

export interface KernelVersion {
  version: number;
  patchlevel: number;
  sublevel: number;
}

export type RustSource =
  | { kind: 'dir'; dir: string; identity: string }
  | { kind: 'tarball'; tarball: string; topDir: string; identity: string };

export function parseMakefileVersion(text: string): KernelVersion | undefined {
  const get = (k: string) => /^\s*(\d+)\s*$/.exec(new RegExp(`^${k}\\s*=(.*)$`, 'm').exec(text)?.[1] ?? '')?.[1];
  const [v, p, s] = [get('VERSION'), get('PATCHLEVEL'), get('SUBLEVEL')];
  if (v === undefined || p === undefined) return undefined;
  return { version: Number(v), patchlevel: Number(p), sublevel: Number(s ?? 0) };
}

/** The headers-common dir the flavour headers include (Debian: `include /usr/src/linux-headers-X-common/Makefile`). */
export async function commonHeadersDir(layout: Layout, headersDir: string): Promise<string> {
  const text = await readFile(path.join(headersDir, 'Makefile'), 'utf8');
  const included = /^include\s+(\S+)\/Makefile\s*$/m.exec(text)?.[1];
  if (!included) return headersDir;
  return path.isAbsolute(included) && existsSync(layout.at(included)) ? layout.at(included) : path.resolve(headersDir, included);
}

export async function kernelSourceVersion(layout: Layout, kernel: KernelTarget): Promise<KernelVersion> {
  const common = await commonHeadersDir(layout, kernel.headersDir!);
  const v = parseMakefileVersion(await readFile(path.join(common, 'Makefile'), 'utf8'));
  if (!v) throw new OotmodError(`cannot read the kernel version from ${common}/Makefile`, 'reinstall the headers package', ExitCode.Environment);
  return v;
}

export async function findRustSource(layout: Layout, kernel: KernelTarget, kernelSource?: string): Promise<RustSource> {
  const headers = kernel.headersDir!;
  const common = await commonHeadersDir(layout, headers);
  for (const dir of [headers, common]) {
    if (existsSync(path.join(dir, 'rust/Makefile')) && existsSync(path.join(dir, 'rust/kernel/lib.rs'))) {
      return { kind: 'dir', dir, identity: `dir:${dir}:${statSync(path.join(dir, 'rust/kernel/lib.rs')).mtimeMs}` };
    }
  }
  const v = await kernelSourceVersion(layout, kernel);
  const xy = `${v.version}.${v.patchlevel}`;
  const pkgName = `linux-source-${xy}`;
  const tarball = path.join(layout.srcDir, `${pkgName}.tar.xz`);
  const headersVersion = kernel.headersPackage?.version;
  if (existsSync(tarball)) {
    const pkg = (await installedPackages(layout, KERNEL_PACKAGES)).get(pkgName);
    if (pkg && headersVersion && pkg.version !== headersVersion) {
      if (!kernelSource) {
        throw new OotmodError(
          `${pkgName} ${pkg.version} is installed but linux-headers-${kernel.release} is ${headersVersion}`,
          `install ${pkgName}=${headersVersion}`,
          ExitCode.Environment,
        );
      }
    } else {
      const s = statSync(tarball);
      return { kind: 'tarball', tarball, topDir: pkgName, identity: `tarball:${pkg?.version ?? 'unpackaged'}:${s.size}:${s.mtimeMs}` };
    }
  }
  if (kernelSource) {
    const makefile = path.join(kernelSource, 'Makefile');
    const got = existsSync(makefile) ? parseMakefileVersion(await readFile(makefile, 'utf8')) : undefined;
    if (!got || got.version !== v.version || got.patchlevel !== v.patchlevel || got.sublevel !== v.sublevel) {
      const have = got ? `${got.version}.${got.patchlevel}.${got.sublevel}` : 'no kernel Makefile';
      throw new OotmodError(`${kernelSource} is ${have}, not the ${v.version}.${v.patchlevel}.${v.sublevel} source of ${kernel.release}`, 'point --kernel-source at the matching kernel source tree', ExitCode.Environment);
    }
    if (!existsSync(path.join(kernelSource, 'rust/Makefile'))) {
      throw new OotmodError(`${kernelSource} has no rust/ directory`, 'use a full kernel source tree', ExitCode.Environment);
    }
    return { kind: 'dir', dir: kernelSource, identity: `dir:${kernelSource}:${v.version}.${v.patchlevel}.${v.sublevel}` };
  }
  throw new OotmodError(
    `the Rust sources of ${kernel.release} are not installed`,
    `install ${pkgName}${headersVersion ? `=${headersVersion}` : ''} (or give --kernel-source DIR)`,
    ExitCode.Environment,
  );
}
