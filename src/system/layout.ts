// Every path ootmod touches, derived from one root. No other module spells an absolute system path.
import { existsSync, readlinkSync } from 'node:fs';
import path from 'node:path';

export interface Layout {
  readonly root: string;
  /** Maps an absolute system path into the root. */
  at(systemPath: string): string;
  readonly srcDir: string;
  readonly modulesDir: string;
  readonly bootDir: string;
  readonly stateDir: string;
  readonly etcDir: string;
  readonly dkmsEtcDir: string;
  readonly dkmsTree: string;
  readonly stateFile: string;
  readonly lockFile: string;
  readonly mokKey: string;
  readonly mokCert: string;
  /** DKMS's own key pair (Debian's: /var/lib/dkms/mok.key, mok.pub). */
  readonly dkmsMokKey: string;
  readonly dkmsMokCert: string;
  /** shim's MOK pair on Ubuntu-style machines (/var/lib/shim-signed/mok/MOK.priv, MOK.der). */
  readonly shimMokKey: string;
  readonly shimMokCert: string;
  readonly configFile: string;
  readonly dpkgDir: string;
  /** Kernels the kernel hooks recorded during a dpkg run, for the trigger. */
  readonly queueDir: string;
  /** DKMS's registry of module sources, /var/lib/dkms. */
  readonly dkmsRegistry: string;
  /** DKMS's registration of a module source (/var/lib/dkms/<name>/<version>/source). */
  dkmsSource(name: string, version: string): string;
  readonly dkmsProgram: string;
  initramfs(kver: string): string;
  kernelDir(kver: string): string;
  /** The `build` link of a kernel, pointing at its headers. */
  kernelBuildLink(kver: string): string;
  headersDir(kver: string): string;
  installDir(kver: string): string;
  moduleSource(name: string, version: string): string;
  /** DKMS-compatible per-kernel tree: `$dkms_tree/$module/$module_version/build` is the build dir. */
  buildTree(kver: string): string;
  buildDir(kver: string, name: string, version: string): string;
  /** `$dkms_tree/$module/$module_version/$kernelver/$arch`: a build's result dir, as DKMS lays it out (POST_BUILD writes there). */
  perBuildDir(kver: string, name: string, version: string, arch: string): string;
  /** The same dir in DKMS's own tree, /var/lib/dkms/<name>/<version>/<kver>/<arch>. */
  dkmsBuildDir(name: string, version: string, kver: string, arch: string): string;
  /** Where built (not yet installed) .ko files and the make.log of a (module, kernel) are kept. */
  builtDir(kver: string, name: string, version: string): string;
  /** Per (kernel, build arch): trees/<key>/ built in place, and the `current` link to the one in use. */
  rustDir(kver: string, buildArch: string): string;
  /** All of a kernel's Rust trees (every build arch). */
  rustKernelDir(kver: string): string;
  /** Resolves a symlink inside the root: absolute targets are taken inside the root when they exist there. */
  resolveLink(linkPath: string): string | undefined;
}

/**
 * Where this machine's own programs live. Compilers run on the machine ootmod runs on, so they are
 * looked up here even with --root (which relocates only the files ootmod reads and manages).
 */
export const HOST_TOOLS = {
  binDir: '/usr/bin',
  libDir: '/usr/lib',
  rootRustup: '/root/.rustup',
  defaultPath: '/usr/sbin:/usr/bin:/sbin:/bin',
} as const;

/** The host's account database: the build user is a user of the machine ootmod runs on, even with --root. */
export const HOST_PASSWD = '/etc/passwd';

export function createLayout(root = '/'): Layout {
  const absRoot = path.resolve(root);
  const at = (p: string) => (absRoot === '/' ? p : path.join(absRoot, p));
  // Debian has merged /usr; a root without it still has /lib/modules.
  const modulesDir = existsSync(at('/usr/lib/modules')) || !existsSync(at('/lib/modules'))
    ? at('/usr/lib/modules')
    : at('/lib/modules');
  const stateDir = at('/var/lib/ootmod');
  const seg = (s: string) => s.replaceAll('/', '_');
  return {
    root: absRoot,
    at,
    srcDir: at('/usr/src'),
    modulesDir,
    bootDir: at('/boot'),
    stateDir,
    etcDir: at('/etc/ootmod'),
    dkmsEtcDir: at('/etc/dkms'),
    dkmsTree: path.join(stateDir, 'tree'),
    stateFile: path.join(stateDir, 'state.json'),
    lockFile: path.join(stateDir, 'lock'),
    mokKey: path.join(stateDir, 'mok.key'),
    mokCert: path.join(stateDir, 'mok.pub'),
    dkmsMokKey: at('/var/lib/dkms/mok.key'),
    dkmsMokCert: at('/var/lib/dkms/mok.pub'),
    shimMokKey: at('/var/lib/shim-signed/mok/MOK.priv'),
    shimMokCert: at('/var/lib/shim-signed/mok/MOK.der'),
    configFile: at('/etc/ootmod/ootmod.conf'),
    dpkgDir: at('/var/lib/dpkg'),
    queueDir: path.join(stateDir, 'queue'),
    dkmsRegistry: at('/var/lib/dkms'),
    dkmsSource: (name, version) => at(`/var/lib/dkms/${name}/${version}/source`),
    dkmsProgram: at('/usr/sbin/dkms'),
    initramfs: (kver) => at(`/boot/initrd.img-${kver}`),
    kernelDir: (kver) => path.join(modulesDir, kver),
    kernelBuildLink: (kver) => path.join(modulesDir, kver, 'build'),
    headersDir: (kver) => at(`/usr/src/linux-headers-${kver}`),
    installDir: (kver) => path.join(modulesDir, kver, 'updates', 'ootmod'),
    moduleSource: (name, version) => at(`/usr/src/${name}-${version}`),
    buildTree: (kver) => path.join(stateDir, 'tree', seg(kver)),
    buildDir: (kver, name, version) => path.join(stateDir, 'tree', seg(kver), name, version, 'build'),
    perBuildDir: (kver, name, version, arch) => path.join(stateDir, 'tree', seg(kver), name, version, kver, arch),
    dkmsBuildDir: (name, version, kver, arch) => at(`/var/lib/dkms/${name}/${version}/${kver}/${arch}`),
    builtDir: (kver, name, version) => path.join(stateDir, 'built', seg(kver), name, version),
    rustDir: (kver, buildArch) => path.join(stateDir, 'rust', seg(kver), buildArch),
    rustKernelDir: (kver) => path.join(stateDir, 'rust', seg(kver)),
    resolveLink(linkPath) {
      let target: string;
      try {
        target = readlinkSync(linkPath);
      } catch {
        return undefined;
      }
      if (!path.isAbsolute(target)) return path.resolve(path.dirname(linkPath), target);
      // In a chroot-like root the target lives inside it; a sandbox root may point at the host's files.
      const inside = at(target);
      return existsSync(inside) ? inside : target;
    },
  };
}
