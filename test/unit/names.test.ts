// One rule for NAME-VERSION source dirs (src/modules/names.ts), as DKMS names them: a version may hold
// '-<digit>' (foo-1.2-3), the registry and dkms.conf's PACKAGE_NAME decide where they can.
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { literalPackageName, sourceDirName, splitNameVersion } from '../../src/modules/names.js';
import { createLayout } from '../../src/system/layout.js';
import { makeRoot } from '../support/roots.js';

describe('splitNameVersion', () => {
  it("splits before the first '-<digit>', so a version may hold '-<digit>'", () => {
    expect(splitNameVersion('foo-1.2-3')).toEqual({ name: 'foo', version: '1.2-3' });
    expect(splitNameVersion('r8168-8.055.00-1')).toEqual({ name: 'r8168', version: '8.055.00-1' });
    expect(splitNameVersion('acpi-call-1.2.2')).toEqual({ name: 'acpi-call', version: '1.2.2' });
    expect(splitNameVersion('noversion')).toEqual({ name: 'noversion', version: '' });
  });

  it('splits after a known name (a name that holds -<digit>)', () => {
    expect(splitNameVersion('nvidia-tesla-470-470.256.02', 'nvidia-tesla-470')).toEqual({ name: 'nvidia-tesla-470', version: '470.256.02' });
    expect(splitNameVersion('foo-1.2-3', 'bar')).toEqual({ name: 'foo', version: '1.2-3' });
  });
});

describe('literalPackageName', () => {
  it('reads a plain PACKAGE_NAME, quoted or not; a computed one is unknown', () => {
    expect(literalPackageName('PACKAGE_NAME="nvidia-tesla-470"\nPACKAGE_VERSION=1\n')).toBe('nvidia-tesla-470');
    expect(literalPackageName("  PACKAGE_NAME='zfs' # the name\n")).toBe('zfs');
    expect(literalPackageName('PACKAGE_NAME="$(basename $PWD)"\n')).toBeUndefined();
    expect(literalPackageName('# PACKAGE_NAME=x\n')).toBeUndefined();
  });
});

describe('sourceDirName', () => {
  it("takes DKMS's registration first, then dkms.conf's PACKAGE_NAME, then the dir name", () => {
    const root = makeRoot();
    const layout = createLayout(root);
    const src = (dir: string, conf: string) => {
      mkdirSync(path.join(layout.srcDir, dir), { recursive: true });
      writeFileSync(path.join(layout.srcDir, dir, 'dkms.conf'), conf);
      return path.join(layout.srcDir, dir);
    };
    expect(sourceDirName(layout, src('nvidia-tesla-470-470.1', 'PACKAGE_NAME="nvidia-tesla-470"\n'))).toEqual({ name: 'nvidia-tesla-470', version: '470.1' });
    const odd = src('odd-2-3.0', 'PACKAGE_NAME="$NAME"\n');
    expect(sourceDirName(layout, odd)).toEqual({ name: 'odd', version: '2-3.0' });
    mkdirSync(path.join(layout.dkmsRegistry, 'odd-2', '3.0'), { recursive: true });
    symlinkSync('/usr/src/odd-2-3.0', path.join(layout.dkmsRegistry, 'odd-2', '3.0', 'source'));
    expect(sourceDirName(layout, odd)).toEqual({ name: 'odd-2', version: '3.0' });
  });
});
