// Module signing: a MOK key pair that ootmod generates on first use, and kbuild's sign-file.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Layout } from '../system/layout.js';
import { run, type CommandLog } from '../system/run.js';

export interface SigningKey {
  key: string;
  cert: string;
}

let pending: Promise<SigningKey> | undefined;

/** The value of `name=` in DKMS's framework.conf (shell assignments), the last one set; quotes removed. */
export function frameworkValue(text: string, name: string): string | undefined {
  let value: string | undefined;
  for (const line of text.split('\n')) {
    const m = new RegExp(`^\\s*${name}=(?:"([^"]*)"|'([^']*)'|([^\\s#;]*))`).exec(line);
    if (m) value = m[1] ?? m[2] ?? m[3];
  }
  return value || undefined;
}

/**
 * DKMS's signing key, so that a machine moving from DKMS keeps signing with the key its firmware
 * already trusts: mok_signing_key and mok_certificate from /etc/dkms/framework.conf and
 * framework.conf.d/*.conf (read in that order, the last setting wins), else /var/lib/dkms/mok.key and
 * mok.pub. Values that use shell variables are not followed (DKMS expands them per kernel).
 */
export function dkmsSigningKey(layout: Layout): SigningKey | undefined {
  const confs = [path.join(layout.dkmsEtcDir, 'framework.conf')];
  const dropIns = path.join(layout.dkmsEtcDir, 'framework.conf.d');
  if (existsSync(dropIns)) confs.push(...readdirSync(dropIns).filter((f) => f.endsWith('.conf')).sort().map((f) => path.join(dropIns, f)));
  let key: string | undefined;
  let cert: string | undefined;
  for (const file of confs) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    key = frameworkValue(text, 'mok_signing_key') ?? key;
    cert = frameworkValue(text, 'mok_certificate') ?? cert;
  }
  const usable = (p: string | undefined) => p !== undefined && !p.includes('$') && (p.startsWith('pkcs11:') || existsSync(layout.at(p)));
  if (usable(key) && usable(cert)) {
    const at = (p: string) => (p.startsWith('pkcs11:') ? p : layout.at(p));
    return { key: at(key!), cert: at(cert!) };
  }
  const pair = { key: path.join(layout.dkmsRegistry, 'mok.key'), cert: path.join(layout.dkmsRegistry, 'mok.pub') };
  return existsSync(pair.key) && existsSync(pair.cert) ? pair : undefined;
}

/**
 * What identifies the key modules are signed with, for the build-inputs key, so that a module signed
 * with another key is rebuilt: DKMS's key (found at a take-over, or changed in framework.conf) by its
 * certificate's content; ootmod's own by its place (generated once, on the first signed build).
 */
export function signingKeyIdentity(layout: Layout): string {
  const dkms = dkmsSigningKey(layout);
  if (!dkms) return `ootmod ${layout.mokCert}`;
  if (dkms.cert.startsWith('pkcs11:')) return `dkms ${dkms.key} ${dkms.cert}`;
  try {
    return `dkms ${dkms.key} ${createHash('sha256').update(readFileSync(dkms.cert)).digest('hex')}`;
  } catch {
    return `dkms ${dkms.key} unreadable`;
  }
}

/**
 * The key modules are signed with: DKMS's (see dkmsSigningKey) when there is one, else ootmod's own MOK
 * pair, generated once (RSA-2048, codeSigning, DER certificate) when missing.
 */
export function ensureSigningKey(layout: Layout): Promise<SigningKey> {
  const dkms = dkmsSigningKey(layout);
  if (dkms) return Promise.resolve(dkms);
  pending ??= generateIfMissing(layout).finally(() => (pending = undefined));
  return pending;
}

async function generateIfMissing(layout: Layout): Promise<SigningKey> {
  const pair = { key: layout.mokKey, cert: layout.mokCert };
  if (existsSync(pair.key) && existsSync(pair.cert)) return pair;
  await mkdir(path.dirname(pair.key), { recursive: true });
  const tmpKey = `${pair.key}.new`;
  const tmpCert = `${pair.cert}.new`;
  try {
    await run('openssl', [
      'req', '-new', '-x509', '-nodes', '-utf8', '-sha256', '-days', '36500', '-batch',
      '-newkey', 'rsa:2048', '-outform', 'DER',
      '-subj', '/CN=ootmod module signing key',
      '-addext', 'extendedKeyUsage=codeSigning',
      '-keyout', tmpKey, '-out', tmpCert,
    ], { step: 'openssl (generating the module signing key)', env: { OPENSSL_CONF: '/dev/null' } });
    await chmod(tmpKey, 0o600);
    await rename(tmpKey, pair.key);
    await rename(tmpCert, pair.cert);
  } finally {
    await rm(tmpKey, { force: true });
    await rm(tmpCert, { force: true });
  }
  return pair;
}

export async function signModule(signFile: string, hash: string, key: SigningKey, ko: string, log: CommandLog): Promise<void> {
  await run(signFile, [hash, key.key, key.cert, ko], { log, step: 'sign-file' });
}
