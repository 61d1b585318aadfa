// Naming facts of module sources that need no process and no dkms.conf evaluation, so that `status`
// (which must stay fast) can use them without loading the evaluator.
import { closeSync, existsSync, lstatSync, openSync, readFileSync, readSync } from 'node:fs';
import path from 'node:path';
import type { Layout } from '../system/layout.js';

/**
 * Splits a source dir's name `<NAME>-<VERSION>` without evaluating dkms.conf. DKMS itself never splits
 * one: `dkms add` names the dir after PACKAGE_NAME and PACKAGE_VERSION, and finds it again from
 * `-m NAME -v VERSION` (or NAME/VERSION, split at the first '/'). So the split is after `knownName` (the
 * registered or dkms.conf name) when the dir starts with it, else before the first '-' that a digit
 * follows: `foo-1.2-3` is foo/1.2-3, `r8168-8.055.00-1` is r8168/8.055.00-1.
 */
export function splitNameVersion(dirName: string, knownName?: string): { name: string; version: string } {
  if (knownName && dirName.length > knownName.length + 1 && dirName.startsWith(`${knownName}-`)) {
    return { name: knownName, version: dirName.slice(knownName.length + 1) };
  }
  const at = dirName.slice(1).search(/-\d/) + 1;
  if (at <= 0) return { name: dirName, version: '' };
  return { name: dirName.slice(0, at), version: dirName.slice(at + 1) };
}

/** PACKAGE_NAME when dkms.conf sets it to a plain word (the last such line); undefined when computed. */
export function literalPackageName(confText: string): string | undefined {
  let name: string | undefined;
  for (const m of confText.matchAll(/^[ \t]*PACKAGE_NAME=(["']?)([A-Za-z0-9_.+~:-]+)\1[ \t]*(?:#.*)?$/gm)) name = m[2];
  return name;
}

/**
 * NAME and VERSION of the source dir `dir` (/usr/src/<NAME>-<VERSION>) as DKMS knows them, reading no
 * more than files: its registration in DKMS's registry (`<registry>/<NAME>/<VERSION>/source`), else
 * the plain PACKAGE_NAME of its dkms.conf, else splitNameVersion's rule.
 */
export function sourceDirName(layout: Layout, dir: string, registry = layout.dkmsRegistry): { name: string; version: string } {
  const base = path.basename(dir);
  for (let i = base.indexOf('-', 1); i > 0 && i < base.length - 1; i = base.indexOf('-', i + 1)) {
    const name = base.slice(0, i);
    const version = base.slice(i + 1);
    try {
      if (lstatSync(path.join(registry, name, version, 'source')).isSymbolicLink()) return { name, version };
    } catch {
      // Not registered under this split.
    }
  }
  let conf = '';
  try {
    conf = readFileSync(path.join(dir, 'dkms.conf'), 'utf8');
  } catch {
    // No dkms.conf to read: the dir name alone.
  }
  return splitNameVersion(base, literalPackageName(conf));
}

/** The line ootmod-dkms's /usr/sbin/dkms carries, by which ootmod tells it from DKMS's own program. */
export const DKMS_FRONT_END_MARK = 'ootmod-dkms: DKMS command line front end of ootmod';

/** Which program /usr/sbin/dkms is: DKMS's own, ootmod-dkms's front end (it carries DKMS_FRONT_END_MARK), or none. */
function dkmsProgram(layout: Layout): 'dkms' | 'ootmod-dkms' | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(layout.dkmsProgram, 'r');
    const head = Buffer.alloc(4096);
    const n = readSync(fd, head, 0, head.length, 0);
    return head.subarray(0, n).toString('utf8').includes(DKMS_FRONT_END_MARK) ? 'ootmod-dkms' : 'dkms';
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * True when /usr/sbin/dkms is DKMS's own program. With ootmod-dkms installed it is ootmod's front end
 * instead: then there is no DKMS, and every source is ootmod's.
 */
export function dkmsIsInstalled(layout: Layout): boolean {
  return dkmsProgram(layout) === 'dkms';
}

/** True when ootmod-dkms is installed (/usr/sbin/dkms is its front end): DKMS's settings and key are ootmod's. */
export function ootmodDkmsIsInstalled(layout: Layout): boolean {
  return dkmsProgram(layout) === 'ootmod-dkms';
}

/**
 * True when DKMS is installed and has registered this source (/var/lib/dkms/<name>/<version>/source):
 * then DKMS builds it, and ootmod leaves it alone so the two never install the same module twice.
 */
export function registeredWithDkms(layout: Layout, name: string, version: string): boolean {
  return existsSync(layout.dkmsSource(name, version)) && dkmsIsInstalled(layout);
}

/** Sources `dkms remove` took away while their files stayed in /usr/src: left unbuilt until `dkms add`. */
export function removedMarker(layout: Layout, dirName: string): string {
  return path.join(layout.stateDir, 'dkms-removed', dirName);
}
