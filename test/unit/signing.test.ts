// Which key modules are signed with: DKMS's (framework.conf, /var/lib/dkms/mok.*) before ootmod's own.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { existsSync, statSync } from 'node:fs';
import { DKMS_FRONT_END_MARK } from '../../src/modules/names.js';
import { frameworkValue } from '../../src/dkms/framework.js';
import { dkmsSigningKey, signFileFor, signingKeyChoice, signingKeyIdentity } from '../../src/dkms/mok.js';
import { ensureSigningKey } from '../../src/execute/signing.js';
import { compressOptions, frameworkJobs, ignoredSettings, readFramework, settingFor } from '../../src/dkms/framework.js';
import { run } from '../../src/system/run.js';
import { createLayout } from '../../src/system/layout.js';
import { makeRoot } from '../support/roots.js';

function put(root: string, file: string, text = 'x\n'): void {
  mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
  writeFileSync(path.join(root, file), text);
}

describe('frameworkValue', () => {
  it('reads shell assignments as DKMS writes them; the last one wins; comments do not count', () => {
    const text = '# mok_signing_key=/commented\nmok_signing_key="/etc/a key.priv"\nmok_certificate=/etc/b.der # trailing\nmok_certificate=\'/etc/c.der\'\n';
    expect(frameworkValue(text, 'mok_signing_key')).toBe('/etc/a key.priv');
    expect(frameworkValue(text, 'mok_certificate')).toBe('/etc/c.der');
    expect(frameworkValue('# mok_signing_key=/x\n', 'mok_signing_key')).toBeUndefined();
  });
});

describe('dkmsSigningKey', () => {
  it("is none on a machine without DKMS's key (ootmod then uses its own)", () => {
    expect(dkmsSigningKey(createLayout(makeRoot()))).toBeUndefined();
  });

  it('takes /var/lib/dkms/mok.key and mok.pub when both exist', () => {
    const root = makeRoot();
    put(root, 'var/lib/dkms/mok.key');
    expect(dkmsSigningKey(createLayout(root))).toBeUndefined();
    put(root, 'var/lib/dkms/mok.pub');
    expect(dkmsSigningKey(createLayout(root))).toEqual({ key: path.join(root, 'var/lib/dkms/mok.key'), cert: path.join(root, 'var/lib/dkms/mok.pub'), source: 'dkms' });
  });

  it('prefers the pair framework.conf names, a framework.conf.d file over framework.conf', () => {
    const root = makeRoot();
    put(root, 'var/lib/dkms/mok.key');
    put(root, 'var/lib/dkms/mok.pub');
    put(root, 'etc/keys/a.key');
    put(root, 'etc/keys/a.der');
    put(root, 'etc/keys/b.key');
    put(root, 'etc/dkms/framework.conf', 'mok_signing_key=/etc/keys/a.key\nmok_certificate=/etc/keys/a.der\n');
    expect(dkmsSigningKey(createLayout(root))?.key).toBe(path.join(root, 'etc/keys/a.key'));
    put(root, 'etc/dkms/framework.conf.d/10-key.conf', 'mok_signing_key="/etc/keys/b.key"\n');
    expect(dkmsSigningKey(createLayout(root))).toEqual({ key: path.join(root, 'etc/keys/b.key'), cert: path.join(root, 'etc/keys/a.der'), source: 'framework.conf' });
    // A named file that does not exist: DKMS's default pair instead.
    put(root, 'etc/dkms/framework.conf.d/20-gone.conf', 'mok_certificate=/etc/keys/gone.der\n');
    expect(dkmsSigningKey(createLayout(root))?.key).toBe(path.join(root, 'var/lib/dkms/mok.key'));
  });
});

describe('signingKeyIdentity (part of the build-inputs key)', () => {
  it("changes when DKMS's key appears or its certificate changes; ootmod's own is the same before and after it is generated", () => {
    const root = makeRoot();
    const layout = createLayout(root);
    const own = signingKeyIdentity(layout);
    put(root, path.relative(root, layout.mokKey));
    put(root, path.relative(root, layout.mokCert), 'generated\n');
    expect(signingKeyIdentity(layout)).toBe(own);
    put(root, 'var/lib/dkms/mok.key');
    put(root, 'var/lib/dkms/mok.pub', 'one\n');
    const dkms = signingKeyIdentity(layout);
    expect(dkms).not.toBe(own);
    expect(signingKeyIdentity(layout)).toBe(dkms);
    put(root, 'var/lib/dkms/mok.pub', 'two\n');
    expect(signingKeyIdentity(layout)).not.toBe(dkms);
  });
});

/** A root where ootmod-dkms is installed: /usr/sbin/dkms is its front end. */
function ootmodDkmsRoot(): string {
  const root = makeRoot();
  put(root, 'usr/sbin/dkms', `#!/bin/sh\n# ${DKMS_FRONT_END_MARK}\nexec /usr/sbin/ootmod dkms "$@"\n`);
  return root;
}

describe('the key with ootmod-dkms installed (DKMS 3.2.2 prepare_mok)', () => {
  const kernel = { release: '6.1.0-9-amd64', signing: { enabled: true, forced: false, hash: 'sha256', signFile: '/usr/lib/linux-kbuild-6.1/scripts/sign-file' } };

  it("is DKMS's /var/lib/dkms pair, created on first need with DKMS's subject (DER, key 0600); plain ootmod keeps its own", async () => {
    const plain = createLayout(makeRoot());
    expect(signingKeyChoice(plain)).toMatchObject({ key: plain.mokKey, source: 'ootmod' });
    const root = ootmodDkmsRoot();
    const layout = createLayout(root);
    const choice = signingKeyChoice(layout);
    expect(choice).toEqual({ key: path.join(root, 'var/lib/dkms/mok.key'), cert: path.join(root, 'var/lib/dkms/mok.pub'), source: 'dkms' });
    const before = signingKeyIdentity(layout);
    await ensureSigningKey(layout, kernel.release, new Map());
    expect(statSync(choice.key).mode & 0o777).toBe(0o600);
    const text = (await run('openssl', ['x509', '-inform', 'DER', '-in', choice.cert, '-noout', '-subject', '-ext', 'extendedKeyUsage'])).stdout;
    expect(text).toMatch(/CN\s*=\s*DKMS module signing key/);
    expect(text).toMatch(/Code Signing/);
    expect(existsSync(layout.mokKey)).toBe(false);
    // Creating the pair does not change the build inputs (no rebuild of everything after it).
    expect(signingKeyIdentity(layout)).toBe(before);
  });

  it("takes Ubuntu's shim pair where it exists, framework.conf's settings first, and refuses to overwrite half a pair", async () => {
    const root = ootmodDkmsRoot();
    const layout = createLayout(root);
    put(root, 'var/lib/shim-signed/mok/MOK.priv');
    put(root, 'var/lib/shim-signed/mok/MOK.der');
    expect(signingKeyChoice(layout).source).toBe('dkms');
    put(root, 'etc/os-release', 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n');
    expect(signingKeyChoice(layout)).toMatchObject({ key: path.join(root, 'var/lib/shim-signed/mok/MOK.priv'), source: 'shim' });
    put(root, 'etc/dkms/framework.conf.d/key.conf', 'mok_signing_key="pkcs11:token=hsm;object=mok"\nmok_certificate=/etc/keys/$kernelver.der\nsign_file=/usr/local/bin/hsm-sign\n');
    expect(signingKeyChoice(layout, kernel.release)).toEqual({ key: 'pkcs11:token=hsm;object=mok', cert: path.join(root, `etc/keys/${kernel.release}.der`), source: 'framework.conf' });
    expect(signFileFor(layout, kernel)).toBe(path.join(root, 'usr/local/bin/hsm-sign'));
    expect(signFileFor(createLayout(makeRoot()), kernel)).toBe(kernel.signing.signFile);
    const half = ootmodDkmsRoot();
    put(half, 'var/lib/dkms/mok.pub');
    await expect(ensureSigningKey(createLayout(half), undefined, new Map())).rejects.toThrow(/half there: .*mok\.key is missing/);
  });
});

describe('framework.conf', () => {
  it('reads the settings DKMS reads (the last one wins), names what ootmod ignores, and takes compress options', () => {
    const root = makeRoot();
    put(root, 'etc/dkms/framework.conf', 'parallel_jobs=2\nsymlink_modules="yes"\ntmp_location=/tmp\nsource_tree=/usr/src/\nmodprobe_on_install="true"\n');
    put(root, 'etc/dkms/framework.conf.d/b.conf', 'post_transaction="/usr/local/bin/after"\nautoinstall_all_kernels=""\ncompress_xz_opts="-9e"\n');
    put(root, 'etc/dkms/framework.conf.d/a.conf', 'parallel_jobs=3\n');
    const fw = readFramework(createLayout(root));
    expect(fw.get('parallel_jobs')).toBe('3');
    expect(ignoredSettings(fw)).toEqual(['autoinstall_all_kernels', 'modprobe_on_install', 'symlink_modules']);
    expect(frameworkJobs(fw)).toBe(3);
    expect(frameworkJobs(new Map([['parallel_jobs', '0']]))).toBeUndefined();
    expect(compressOptions(fw, 'xz')).toEqual(['-9e']);
    expect(compressOptions(fw, 'zstd')).toEqual(['-q', '--rm', '-T0']);
    expect(settingFor(new Map([['sign_file', '/x/$HOME']]), 'sign_file', '6.1')).toBeUndefined();
  });
});
