// Naming facts of module sources that need no process and no dkms.conf evaluation, so that `status`
// (which must stay fast) can use them without loading the evaluator.
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import type { Layout } from '../system/layout.js';

/** Splits "acpi-call-1.2.2" at the last '-' that is followed by a digit. */
export function splitNameVersion(dirName: string): { name: string; version: string } {
  const all = [...dirName.matchAll(/-(?=\d)/g)];
  const last = all[all.length - 1];
  if (last?.index === undefined || last.index === 0) return { name: dirName, version: '' };
  return { name: dirName.slice(0, last.index), version: dirName.slice(last.index + 1) };
}

/** The line ootmod-dkms's /usr/sbin/dkms carries, by which ootmod tells it from DKMS's own program. */
export const DKMS_FRONT_END_MARK = 'ootmod-dkms: DKMS command line front end of ootmod';

/**
 * True when /usr/sbin/dkms is DKMS's own program. With ootmod-dkms installed it is ootmod's front end
 * instead (it carries DKMS_FRONT_END_MARK): then there is no DKMS, and every source is ootmod's.
 */
export function dkmsIsInstalled(layout: Layout): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(layout.dkmsProgram, 'r');
    const head = Buffer.alloc(4096);
    const n = readSync(fd, head, 0, head.length, 0);
    return !head.subarray(0, n).toString('utf8').includes(DKMS_FRONT_END_MARK);
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
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
