// Which key modules are signed with: DKMS's (framework.conf, /var/lib/dkms/mok.*) before ootmod's own.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { dkmsSigningKey, frameworkValue, signingKeyIdentity } from '../../src/execute/signing.js';
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
    expect(dkmsSigningKey(createLayout(root))).toEqual({ key: path.join(root, 'var/lib/dkms/mok.key'), cert: path.join(root, 'var/lib/dkms/mok.pub') });
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
    expect(dkmsSigningKey(createLayout(root))).toEqual({ key: path.join(root, 'etc/keys/b.key'), cert: path.join(root, 'etc/keys/a.der') });
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
