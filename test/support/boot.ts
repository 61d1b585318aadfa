// Fake systems for the boot guard's tests: ootmod's state with a module failed on the new kernel and
// installed on the old one, and a snapshot of the files the guard may touch.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { GuardMode } from '../../src/system/config.js';
import type { Layout } from '../../src/system/layout.js';

/** zfs/1.0 failed on `failedOn`, installed on `installedOn` (its .ko in place), and `guard =` in ootmod.conf. */
export function writeZfsState(root: string, installedOn: string, failedOn: string, guard: GuardMode): void {
  const records: Record<string, unknown> = {};
  for (const k of [failedOn, installedOn]) {
    const ko = path.join(root, 'usr/lib/modules', k, 'updates/ootmod/zfs.ko');
    mkdirSync(path.dirname(ko), { recursive: true });
    const installed = k === installedOn;
    if (installed) writeFileSync(ko, '');
    records[`zfs/1.0/${k}`] = {
      module: 'zfs', version: '1.0', kernel: k, arch: 'x86_64', status: installed ? 'installed' : 'failed', inputsKey: 'k', built: [],
      installed: installed ? [{ module: 'zfs', path: ko }] : [], error: installed ? undefined : 'make exited with 2 (zfs.c:1: error: x)', updatedAt: 'x',
    };
  }
  mkdirSync(path.join(root, 'var/lib/ootmod'), { recursive: true });
  writeFileSync(path.join(root, 'var/lib/ootmod/state.json'), JSON.stringify({ format: 1, records }));
  mkdirSync(path.join(root, 'etc/ootmod'), { recursive: true });
  writeFileSync(path.join(root, 'etc/ootmod/ootmod.conf'), `[boot]\nguard = ${guard}\n`);
}

/** Every file's content under these dirs of the root (system paths), keyed by its path in the root. */
export function treeContents(layout: Layout, dirs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const e of existsSync(dir) ? readdirSync(dir) : []) {
      const p = path.join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else out[path.relative(layout.root, p)] = readFileSync(p, 'utf8');
    }
  };
  for (const d of dirs) walk(layout.at(d));
  return out;
}
