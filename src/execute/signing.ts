// Module signing: the key pair generated on first need, kbuild's sign-file, and whether the firmware
// trusts the key. Which pair and which signer: src/dkms/mok.ts.
import { existsSync } from 'node:fs';
import { chmod, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { KEY_SOURCE_TEXT, signingKeyChoice, type KeyChoice, type SigningKey } from '../dkms/mok.js';
import { ExitCode, OotmodError } from '../errors.js';
import { ootmodDkmsIsInstalled } from '../modules/names.js';
import type { Layout } from '../system/layout.js';
import { findOnPath } from '../system/programs.js';
import { run, type CommandLog } from '../system/run.js';

/**
 * The key pairs being created now, by key path, so that builds asking at the same time create a pair
 * once. One per run: its run context holds it (src/pipeline/context.ts).
 */
export type KeyCreations = Map<string, Promise<KeyChoice>>;

/** The key modules for kernel `kver` are signed with; a missing pair that ootmod may create is created. */
export function ensureSigningKey(layout: Layout, kver: string | undefined, creating: KeyCreations): Promise<KeyChoice> {
  const choice = signingKeyChoice(layout, kver);
  if (choice.source === 'framework.conf' && !ootmodDkmsIsInstalled(layout)) return Promise.resolve(choice);
  return ensurePair(choice, creating);
}

/** Creates a missing pair once, however many ask (DKMS's parameters and subject for DKMS's paths). */
export function ensurePair(choice: KeyChoice, creating: KeyCreations): Promise<KeyChoice> {
  let p = creating.get(choice.key);
  if (!p) {
    p = generateIfMissing(choice).finally(() => creating.delete(choice.key));
    creating.set(choice.key, p);
  }
  return p;
}

async function generateIfMissing(choice: KeyChoice): Promise<KeyChoice> {
  if (choice.key.startsWith('pkcs11:')) return choice;
  const has = [existsSync(choice.key), existsSync(choice.cert)];
  if (has[0] && has[1]) return choice;
  if (has[0] || has[1]) {
    // DKMS would write a new pair over the one file left: an enrolled key is never overwritten here.
    const [there, gone] = has[0] ? [choice.key, choice.cert] : [choice.cert, choice.key];
    throw new OotmodError(`the signing key pair is half there: ${gone} is missing while ${there} exists`, `restore ${gone}, or remove ${there} too so that a new pair is created (then enroll it: mokutil --import ${choice.cert})`, ExitCode.Environment);
  }
  await mkdir(path.dirname(choice.key), { recursive: true });
  await mkdir(path.dirname(choice.cert), { recursive: true });
  const tmpKey = `${choice.key}.new`;
  const tmpCert = `${choice.cert}.new`;
  const subject = choice.source === 'ootmod' ? '/CN=ootmod module signing key' : '/CN=DKMS module signing key';
  try {
    await run('openssl', [
      'req', '-new', '-x509', '-nodes', '-utf8', '-sha256', '-days', '36500', '-batch',
      '-newkey', 'rsa:2048', '-outform', 'DER',
      '-subj', subject,
      '-addext', 'extendedKeyUsage=codeSigning',
      '-keyout', tmpKey, '-out', tmpCert,
    ], { step: 'openssl (generating the module signing key)', env: { OPENSSL_CONF: '/dev/null' } });
    await chmod(tmpKey, 0o600);
    await rename(tmpKey, choice.key);
    await rename(tmpCert, choice.cert);
  } finally {
    await rm(tmpKey, { force: true });
    await rm(tmpCert, { force: true });
  }
  return choice;
}

export async function signModule(signFile: string, hash: string, key: SigningKey, ko: string, log: CommandLog): Promise<void> {
  await run(signFile, [hash, key.key, key.cert, ko], { log, step: 'sign-file' });
}

/** Whether the certificate is enrolled in the firmware's MOK list, as `mokutil --test-key` says. */
export async function enrollment(cert: string): Promise<string> {
  if (cert.startsWith('pkcs11:')) return 'unknown (a PKCS#11 certificate)';
  if (!existsSync(cert)) return 'no (not created yet: it is made by the first signed build)';
  const mokutil = findOnPath('mokutil');
  if (!mokutil) return 'unknown (no mokutil)';
  const r = await run(mokutil, ['--test-key', cert], { allowFailure: true, timeoutMs: 10_000 }).catch(() => undefined);
  const text = `${r?.stdout ?? ''}${r?.stderr ?? ''}`;
  if (/already enrolled/i.test(text)) return 'yes';
  if (/enrollment request/i.test(text)) return 'requested (enrolled at the next boot, in MokManager)';
  if (/not enrolled/i.test(text)) return `no (enroll it: mokutil --import ${cert})`;
  return `unknown (mokutil: ${text.trim().split('\n')[0] || `exit ${r?.exitCode ?? '?'}`})`;
}

/** One line naming the key in use and whether it is enrolled (ootmod kernels, ootmod status --verbose). */
export async function keyLine(layout: Layout): Promise<{ key: string; cert: string; source: string; enrolled: string; line: string }> {
  const c = signingKeyChoice(layout);
  const enrolled = await enrollment(c.cert);
  const where = (p: string) => (layout.root === '/' || p.startsWith('pkcs11:') ? p : `/${path.relative(layout.root, p)}`);
  return { key: c.key, cert: c.cert, source: c.source, enrolled, line: `signing key: ${where(c.key)}, certificate ${where(c.cert)} (${KEY_SOURCE_TEXT[c.source]}); enrolled: ${enrolled}` };
}
