// Naming facts of module sources that need no process and no dkms.conf evaluation, so that `status`
// (which must stay fast) can use them without loading the evaluator.
import { existsSync } from 'node:fs';
import type { Layout } from '../system/layout.js';

/** Splits "acpi-call-1.2.2" at the last '-' that is followed by a digit. */
export function splitNameVersion(dirName: string): { name: string; version: string } {
  const all = [...dirName.matchAll(/-(?=\d)/g)];
  const last = all[all.length - 1];
  if (last?.index === undefined || last.index === 0) return { name: dirName, version: '' };
  return { name: dirName.slice(0, last.index), version: dirName.slice(last.index + 1) };
}

/**
 * True when DKMS is installed and has registered this source (/var/lib/dkms/<name>/<version>/source):
 * then DKMS builds it, and ootmod leaves it alone so the two never install the same module twice.
 */
export function registeredWithDkms(layout: Layout, name: string, version: string): boolean {
  return existsSync(layout.dkmsProgram) && existsSync(layout.dkmsSource(name, version));
}
