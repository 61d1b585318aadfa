// Module signing: a MOK key pair that ootmod generates on first use, and kbuild's sign-file.
import { existsSync } from 'node:fs';
import { chmod, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Layout } from '../system/layout.js';
import { run, type CommandLog } from '../system/run.js';

export interface SigningKey {
  key: string;
  cert: string;
}

let pending: Promise<SigningKey> | undefined;

/** Returns the MOK pair, generating it once (RSA-2048, codeSigning, DER certificate) when missing. */
export function ensureSigningKey(layout: Layout): Promise<SigningKey> {
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
