// A build's per-build dir, `$dkms_tree/$module/$module_version/$kernelver/$arch` (under ootmod's
// per-kernel tree), and its copy in DKMS's own tree, /var/lib/dkms/<module>/<version>/<kver>/<arch>.
//
// DKMS makes that dir when a build succeeds: module/ holds the built (signed, compressed) modules and
// the build's Module.symvers, log/make.log its log; then POST_BUILD runs, and scripts such as ZFS's
// dkms.postbuild copy files there (zfs_config.h, Module.symvers) for the modules built on top of it
// (BUILD_DEPENDS), which read them back at `$dkms_tree/zfs/VER/KVER/ARCH/`. ootmod gives each build a
// fresh such dir, writable by the confined build (and nothing else of the tree), keeps what the build
// left there (root-owned afterwards, so later builds read it and cannot change it), and adds module/
// and log/. For a source registered in DKMS's registry (ootmod-dkms), the dir is copied into DKMS's
// tree, where DKMS's readers look for it; the plan's forget job removes it.
import { constants } from 'node:fs';
import { copyFile, link, lstat, mkdir, readdir, readlink, rename, rm, rmdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { chownTree } from '../system/sandbox.js';

const aside = (dir: string) => `${dir}.old`;
const errno = (err: unknown) => (err as NodeJS.ErrnoException).code;

/** Before a build: the previous per-build dir goes aside (back in place if the build fails); a new, empty one is made. */
export async function freshPerBuildDir(dir: string): Promise<void> {
  await rm(aside(dir), { recursive: true, force: true });
  await rename(dir, aside(dir)).catch((err: unknown) => {
    if (errno(err) !== 'ENOENT') throw err;
  });
  await mkdir(dir, { recursive: true });
}

/** After a failed build: the previous build's dir (if there was one) is what stays. */
export async function restorePerBuildDir(dir: string): Promise<void> {
  try {
    await lstat(aside(dir));
  } catch {
    return;
  }
  await rm(dir, { recursive: true, force: true });
  await rename(aside(dir), dir);
}

/** A hard link (same bytes, no space), else a copy (another filesystem). */
async function linkOrCopy(from: string, to: string): Promise<void> {
  await rm(to, { force: true });
  await link(from, to).catch(async (err: unknown) => {
    if (!['EXDEV', 'EPERM', 'EMLINK'].includes(errno(err) ?? '')) throw err;
    await copyFile(from, to, constants.COPYFILE_EXCL);
  });
}

/** A real dir at `dir`: whatever else the build left under that name (a link to /etc) goes first. */
async function ownDir(dir: string): Promise<void> {
  const st = await lstat(dir).catch(() => undefined);
  if (st && !st.isDirectory()) await rm(dir, { force: true });
  await mkdir(dir, { recursive: true });
}

/**
 * After a successful build (and again at install): what the build wrote is taken back by root, the
 * previous build's dir goes, and DKMS's module/ (the built files, the build's Module.symvers) and
 * log/make.log are put in place.
 */
export async function keepPerBuildDir(dir: string, result: { built: string[]; log?: string; symvers?: string }): Promise<void> {
  await mkdir(dir, { recursive: true });
  await chownTree(dir, process.getuid?.() ?? 0, process.getgid?.() ?? 0);
  await rm(aside(dir), { recursive: true, force: true });
  await ownDir(path.join(dir, 'module'));
  for (const f of result.built) await linkOrCopy(f, path.join(dir, 'module', path.basename(f)));
  // A copy: the build dir's file is the build user's.
  if (result.symvers) {
    await rm(path.join(dir, 'module', 'Module.symvers'), { force: true });
    await copyFile(result.symvers, path.join(dir, 'module', 'Module.symvers'), constants.COPYFILE_EXCL);
  }
  if (result.log) {
    await ownDir(path.join(dir, 'log'));
    await linkOrCopy(result.log, path.join(dir, 'log', 'make.log'));
  }
}

/** Copies a tree: files as hard links (or copies), links as they are; nothing else (fifos, devices). */
async function copyTree(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const e of await readdir(from, { withFileTypes: true })) {
    const [src, dst] = [path.join(from, e.name), path.join(to, e.name)];
    if (e.isDirectory()) await copyTree(src, dst);
    else if (e.isFile()) await linkOrCopy(src, dst);
    else if (e.isSymbolicLink()) await symlink(await readlink(src), dst);
  }
}

/** DKMS's tree: the per-build dir copied to /var/lib/dkms/<m>/<v>/<kver>/<arch>, replacing what was there. */
export async function writeDkmsTree(perBuildDir: string, target: string): Promise<void> {
  const tmp = `${path.dirname(target)}/.${path.basename(target)}.ootmod-new`;
  await rm(tmp, { recursive: true, force: true });
  await copyTree(perBuildDir, tmp);
  await rm(target, { recursive: true, force: true });
  await rename(tmp, target);
}

/** Removes a build from DKMS's tree, and the kernel, version and module dirs it leaves empty. */
export async function removeDkmsTree(target: string): Promise<void> {
  await rm(target, { recursive: true, force: true });
  let dir = path.dirname(target);
  for (let i = 0; i < 3; i++, dir = path.dirname(dir)) {
    try {
      await rmdir(dir);
    } catch {
      return;
    }
  }
}
