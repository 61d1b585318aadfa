// Sandbox escapes: module sources whose dkms.conf, PRE_BUILD or MAKE try to write outside their build
// dir, reach the network, or read the signing key and the state. Each fails visibly (a one-line failed
// or invalid report naming the sandbox) and nothing changes outside ootmod's own dirs.
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeRoot } from '../support/roots.js';
import { recordRow } from './lib/table.js';
import { addFakeKernel, changed, FAKE_KERNEL, ootmodRun, snapshot } from './lib/system.js';

const IS_ROOT = process.getuid?.() === 0;
const TOKEN = `ootmod-escape-${process.pid}`;
const OOTMOD_OWN = /^(var\/lib\/ootmod\/|usr\/lib\/modules\/[^/]+\/(updates\/ootmod\/[^/]+\.ko(\.\w+)?|modules\.[\w.]+)$)/;

/** name -> [dkms.conf lines beyond the basics, PRE_BUILD script or undefined, what the report must say]. */
function escapes(root: string): Record<string, { conf: string; preBuild?: string; expect: RegExp }> {
  const build = 'make -C ${kernel_source_dir} M=${dkms_tree}/${module}/${module_version}/build';
  return {
    'conf-touch-etc': { conf: `touch /etc/${TOKEN}-conf`, expect: /^invalid .*Read-only file system/m },
    'conf-touch-root': { conf: `touch ${root}/${TOKEN}-conf`, expect: /^invalid .*Read-only file system/m },
    'conf-network': { conf: `exec 3<>/dev/tcp/192.0.2.1/80`, expect: /^invalid .*(Network is unreachable|Could not resolve|shell reading dkms.conf exited)/m },
    'make-touch-etc': { conf: `MAKE[0]="touch /etc/${TOKEN}-make && ${build}"`, expect: /^failed .*make failed under the build sandbox.*Read-only file system/m },
    'make-write-tree': { conf: `MAKE[0]="touch \${dkms_tree}/${TOKEN}-tree && ${build}"`, expect: /^failed .*build sandbox.*(Read-only file system|Permission denied)/m },
    'make-network': { conf: `MAKE[0]="bash -c 'echo x > /dev/tcp/192.0.2.1/80' && ${build}"`, expect: /^failed .*build sandbox.*Network is unreachable/m },
    'make-read-key': { conf: `MAKE[0]="cat ${root}/var/lib/ootmod/mok.key > key && ${build}"`, expect: /^failed .*build sandbox.*Permission denied/m },
    'make-read-state': { conf: `MAKE[0]="cat ${root}/var/lib/ootmod/state.json > state && ${build}"`, expect: /^failed .*build sandbox.*Permission denied/m },
    'prebuild-tmp': { conf: 'PRE_BUILD="escape.sh"', preBuild: `#!/bin/sh\ntouch /tmp/${TOKEN}-pre\n`, expect: /^failed .*PRE_BUILD failed under the build sandbox.*Read-only file system/m },
    'prebuild-parent': { conf: 'PRE_BUILD="escape.sh"', preBuild: `#!/bin/sh\ntouch ../../${TOKEN}-parent\n`, expect: /^failed .*PRE_BUILD failed under the build sandbox/m },
    'prebuild-devshm': { conf: 'PRE_BUILD="escape.sh"', preBuild: `#!/bin/sh\ntouch /dev/shm/${TOKEN}-shm\n`, expect: /^failed .*PRE_BUILD failed under the build sandbox.*Read-only file system/m },
  };
}

function leaked(root: string): string[] {
  const out: string[] = [];
  for (const dir of ['/etc', '/tmp', '/var/tmp', '/dev/shm', root, path.join(root, 'var/lib/ootmod/tree', FAKE_KERNEL)]) {
    for (const f of existsSync(dir) ? readdirSync(dir) : []) if (f.startsWith(TOKEN)) out.push(path.join(dir, f));
  }
  return out;
}

describe.skipIf(!IS_ROOT)('the build sandbox', () => {
  it('stops writes outside the build dir, the network, and reads of the key and state, visibly', async () => {
    const root = makeRoot('ootmod-faults-escape-');
    addFakeKernel(root);
    // A signing key and a state file to try to read (the real ones are made by ootmod, mode 0600).
    mkdirSync(path.join(root, 'var/lib/ootmod'), { recursive: true });
    writeFileSync(path.join(root, 'var/lib/ootmod/mok.key'), 'secret\n', { mode: 0o600 });
    const cases = escapes(root);
    for (const [name, c] of Object.entries(cases)) {
      const dir = path.join(root, 'usr/src', `esc-${name}-1.0`);
      mkdirSync(dir, { recursive: true });
      const mod = `esc_${name.replaceAll('-', '_')}`;
      writeFileSync(path.join(dir, 'dkms.conf'), `PACKAGE_NAME="esc-${name}"\nPACKAGE_VERSION="1.0"\nBUILT_MODULE_NAME[0]="${mod}"\nDEST_MODULE_LOCATION[0]="/updates"\nAUTOINSTALL="yes"\n${c.conf}\n`);
      writeFileSync(path.join(dir, `${mod}.c`), '// built by the fake kernel\n');
      if (c.preBuild) writeFileSync(path.join(dir, 'escape.sh'), c.preBuild, { mode: 0o755 });
    }
    // The control: a source the admin allowed by name builds as root, and its write lands (so the
    // checks below can see one), then is removed.
    mkdirSync(path.join(root, 'etc/ootmod'), { recursive: true });
    writeFileSync(path.join(root, 'etc/ootmod/ootmod.conf'), '[build]\nunconfined = esc-control\n');
    const control = path.join(root, 'usr/src/esc-control-1.0');
    mkdirSync(control, { recursive: true });
    writeFileSync(path.join(control, 'dkms.conf'), `PACKAGE_NAME="esc-control"\nPACKAGE_VERSION="1.0"\nBUILT_MODULE_NAME[0]="control"\nDEST_MODULE_LOCATION[0]="/updates"\nMAKE[0]="touch /tmp/${TOKEN}-control && make -C \${kernel_source_dir} M=\${dkms_tree}/\${module}/\${module_version}/build"\n`);
    writeFileSync(path.join(control, 'control.c'), '// control\n');
    const ctl = await ootmodRun(root, ['install', 'esc-control', '-k', FAKE_KERNEL]);
    expect(ctl.code, ctl.stderr).toBe(0);
    expect(existsSync(`/tmp/${TOKEN}-control`)).toBe(true);
    rmSync(`/tmp/${TOKEN}-control`);
    // A state file exists from the first run on: run once with a harmless source first.
    const okDir = path.join(root, 'usr/src/esc-ok-1.0');
    mkdirSync(okDir, { recursive: true });
    writeFileSync(path.join(okDir, 'dkms.conf'), 'PACKAGE_NAME="esc-ok"\nPACKAGE_VERSION="1.0"\nBUILT_MODULE_NAME[0]="ok"\nDEST_MODULE_LOCATION[0]="/updates"\nAUTOINSTALL="yes"\n');
    writeFileSync(path.join(okDir, 'ok.c'), '// ok\n');
    await ootmodRun(root, ['install', 'esc-ok', '-k', FAKE_KERNEL]);
    const before = snapshot(root, OOTMOD_OWN);
    const r = await ootmodRun(root, ['autoinstall', '-k', FAKE_KERNEL]);
    const held: string[] = [];
    const failures: string[] = [];
    for (const [name, c] of Object.entries(cases)) {
      const line = r.stderr.split('\n').find((l) => l.includes(`esc-${name}`) && /^(failed|invalid)/.test(l)) ?? '';
      if (c.expect.test(line)) held.push(name);
      else failures.push(`${name}: ${line || 'no failed/invalid line'}`);
    }
    const outside = changed(before, snapshot(root, OOTMOD_OWN));
    const marks = leaked(root);
    if (outside.length) failures.push(`changed outside ootmod's dirs: ${outside.join(', ')}`);
    if (marks.length) failures.push(`escaped: ${marks.join(', ')}`);
    if (![0, 1].includes(r.code ?? -1)) failures.push(`exit ${r.code}`);
    const total = Object.keys(cases).length;
    recordRow({ fault: 'sandbox escapes', tried: total, held: outside.length || marks.length ? 0 : held.length, detail: `${Object.keys(cases).join(', ')}; control allowed by name wrote as expected` });
    expect(failures, r.stderr).toEqual([]);
  });
});
