import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { maintainerOf } from '../../src/cli/commands/mkdeb.js';
import { debName, debVersion, planDeb, writeDeb } from '../../src/package/mkdeb.js';
import { rustTargetsOf } from '../../src/rust/tree.js';

const input = {
  module: 'my_mod', version: '2.1', kernel: '8.1.4+deb15-arm64', arch: 'arm64', files: [] as string[],
  imagePackage: 'linux-image-8.1.4+deb15-arm64', maintainer: 'A Builder <builder@example.org>', signed: true,
};

describe('mkdeb', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ootmod-mkdeb-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('makes policy-valid names and versions, or says which part is wrong', () => {
    expect(debName('my_mod', '8.1.4+deb15-arm64')).toBe('my-mod-modules-8.1.4+deb15-arm64');
    expect(debVersion('2.1~rc1')).toBe('2.1~rc1');
    expect(() => debVersion('v2')).toThrow(/PACKAGE_VERSION 'v2' is not a valid Debian version/);
  });

  it('plans the kernel architecture, the image dependency and depmod in the maintainer scripts', () => {
    const plan = planDeb({ ...input, files: ['/x/my_mod.ko.xz'] }, '/out');
    expect(plan.fileName).toBe('/out/my-mod-modules-8.1.4+deb15-arm64_2.1_arm64.deb');
    expect(plan.contents).toEqual([{ from: '/x/my_mod.ko.xz', to: '/usr/lib/modules/8.1.4+deb15-arm64/updates/my-mod-modules-8.1.4+deb15-arm64/my_mod.ko.xz' }]);
    expect(plan.control).toMatch(/^Architecture: arm64$/m);
    expect(plan.control).toMatch(/^Depends: linux-image-8\.1\.4\+deb15-arm64$/m);
    expect(plan.postinst).toMatch(/depmod -a 8\.1\.4\+deb15-arm64/);
    expect(plan.postrm).toMatch(/"\$1" = remove \] \|\| \[ "\$1" = purge/);
  });

  it('writes the .deb with dpkg-deb, and only the finished file', async () => {
    const ko = path.join(dir, 'my_mod.ko.xz');
    writeFileSync(ko, 'not really a module');
    const out = path.join(dir, 'out');
    const plan = planDeb({ ...input, files: [ko] }, out);
    await writeDeb(plan, { ...input, files: [ko] });
    expect(readdirSync(out)).toEqual([path.basename(plan.fileName)]);
    const fields = execFileSync('dpkg-deb', ['-f', plan.fileName, 'Package', 'Version', 'Architecture', 'Maintainer'], { encoding: 'utf8' });
    expect(fields).toBe('Package: my-mod-modules-8.1.4+deb15-arm64\nVersion: 2.1\nArchitecture: arm64\nMaintainer: A Builder <builder@example.org>\n');
    const files = execFileSync('dpkg-deb', ['-c', plan.fileName], { encoding: 'utf8' });
    expect(files).toMatch(/-rw-r--r-- root\/root .* \.\/usr\/lib\/modules\/8\.1\.4\+deb15-arm64\/updates\/my-mod-modules-8\.1\.4\+deb15-arm64\/my_mod\.ko\.xz/);
    expect(files).toMatch(/\.\/usr\/share\/doc\/my-mod-modules-8\.1\.4\+deb15-arm64\/copyright/);
  });

  it('takes the maintainer from DEBEMAIL/DEBFULLNAME, else refuses a host name that is no mail domain', () => {
    expect(maintainerOf({ DEBEMAIL: 'b@example.org', DEBFULLNAME: 'B' }, 'vm')).toEqual({ maintainer: 'B <b@example.org>' });
    expect(maintainerOf({ DEBEMAIL: 'B <b@example.org>' }, 'vm')).toEqual({ maintainer: 'B <b@example.org>' });
    expect(maintainerOf({}, 'build1.example.org')).toEqual({ maintainer: 'ootmod <ootmod@build1.example.org>' });
    // A host name that is no mail domain: a clear default, never a stop, and a note with the fix.
    const vm = maintainerOf({}, 'vm');
    expect(vm.maintainer).toBe('ootmod mkdeb on vm <ootmod@vm.invalid>');
    expect(vm.note).toMatch(/^ootmod: mkdeb: .*set DEBEMAIL=you@your\.domain and DEBFULLNAME/);
    expect(vm.note).not.toContain('\n');
  });
});

describe.skipIf(!existsSync('/usr/bin/lintian'))('mkdeb without DEBEMAIL on a host whose name is no mail domain', () => {
  it('writes a package whose default Maintainer lintian accepts', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ootmod-mkdeb-lintian-'));
    try {
      const ko = path.join(dir, 'my_mod.ko.xz');
      writeFileSync(ko, 'not really a module');
      const { maintainer } = maintainerOf({}, 'vm');
      const plan = planDeb({ ...input, files: [ko], maintainer }, path.join(dir, 'out'));
      await writeDeb(plan, { ...input, files: [ko], maintainer });
      const r = spawnSync('lintian', ['--no-cfg', plan.fileName], { encoding: 'utf8' });
      const tags = `${r.stdout}${r.stderr}`.split('\n').filter((l) => /maintainer|mail|root-in-contact/i.test(l));
      expect(tags).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('rustTargetsOf', () => {
  it('reads the rustc targets an arch Makefile passes', () => {
    const mk = 'ifeq ($(CONFIG_X),y)\nKBUILD_RUSTFLAGS += --target=aarch64-unknown-none-softfloat\nelse\nKBUILD_RUSTFLAGS += --target=aarch64-unknown-none -Ctarget-feature="-neon"\nendif\n';
    expect(rustTargetsOf(mk)).toEqual(['aarch64-unknown-none-softfloat', 'aarch64-unknown-none']);
    expect(rustTargetsOf('KBUILD_RUSTFLAGS += --target=$(objtree)/scripts/target.json')).toEqual([]);
  });
});
