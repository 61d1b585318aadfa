// Module signing: which MOK key pair and which signer, the key generated on first need, kbuild's sign-file.
//
// With ootmod-dkms installed, DKMS 3.2.2's rules (its prepare_mok): framework.conf's mok_signing_key and
// mok_certificate, else on Ubuntu shim's pair (/var/lib/shim-signed/mok/MOK.priv and MOK.der) when it
// exists, else DKMS's /var/lib/dkms/mok.key and mok.pub, created when missing; framework.conf's
// sign_file replaces kbuild's sign-file. Without it (plain ootmod): DKMS's pair when the machine has one
// (framework.conf's, else /var/lib/dkms's), else ootmod's own pair in /var/lib/ootmod, created when missing.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { readFramework, settingFor } from '../dkms/framework.js';
import { ExitCode, OotmodError } from '../errors.js';
import type { KernelTarget } from '../kernel/inventory.js';
import { findOnPath } from '../kernel/toolchain.js';
import { ootmodDkmsIsInstalled } from '../modules/names.js';
import type { Layout } from '../system/layout.js';
import { run, type CommandLog } from '../system/run.js';

export { frameworkValue } from '../dkms/framework.js';

export interface SigningKey {
  key: string;
  cert: string;
}

/** A key pair and where it comes from. */
export interface KeyChoice extends SigningKey {
  source: 'framework.conf' | 'shim' | 'dkms' | 'ootmod';
}

const SOURCE_TEXT: Record<KeyChoice['source'], string> = {
  'framework.conf': "named in DKMS's framework.conf",
  shim: "shim's key (update-secureboot-policy)",
  dkms: "DKMS's key",
  ootmod: "ootmod's own key",
};

/** Ubuntu, as DKMS's distro_version tells it (os-release ID=ubuntu). */
function isUbuntu(layout: Layout): boolean {
  for (const f of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      return /^ID="?ubuntu"?\s*$/m.test(readFileSync(layout.at(f), 'utf8'));
    } catch {
      // Try the next file.
    }
  }
  return false;
}

const inRoot = (layout: Layout, p: string) => (p.startsWith('pkcs11:') ? p : layout.at(p));

/** DKMS 3.2.2's choice (prepare_mok), for ootmod-dkms and `dkms generate_mok`. */
export function dkmsKeyChoice(layout: Layout, kver?: string, fw = readFramework(layout)): KeyChoice {
  const key = settingFor(fw, 'mok_signing_key', kver);
  const cert = settingFor(fw, 'mok_certificate', kver);
  if (!key && isUbuntu(layout) && existsSync(layout.shimMokKey) && existsSync(layout.shimMokCert)) {
    return { key: layout.shimMokKey, cert: layout.shimMokCert, source: 'shim' };
  }
  return { key: key ? inRoot(layout, key) : layout.dkmsMokKey, cert: cert ? layout.at(cert) : layout.dkmsMokCert, source: key || cert ? 'framework.conf' : 'dkms' };
}

/**
 * Plain ootmod: DKMS's signing key when the machine has one, so that a machine moving from DKMS keeps
 * the key its firmware already trusts: mok_signing_key and mok_certificate from framework.conf when
 * both exist, else /var/lib/dkms/mok.key and mok.pub when both exist.
 */
export function dkmsSigningKey(layout: Layout): KeyChoice | undefined {
  const fw = readFramework(layout);
  const key = settingFor(fw, 'mok_signing_key');
  const cert = settingFor(fw, 'mok_certificate');
  const usable = (p: string | undefined) => p !== undefined && (p.startsWith('pkcs11:') || existsSync(layout.at(p)));
  if (usable(key) && usable(cert)) return { key: inRoot(layout, key!), cert: inRoot(layout, cert!), source: 'framework.conf' };
  const pair = { key: layout.dkmsMokKey, cert: layout.dkmsMokCert };
  return existsSync(pair.key) && existsSync(pair.cert) ? { ...pair, source: 'dkms' } : undefined;
}

/** The key pair modules for kernel `kver` are signed with (see the top of this file). */
export function signingKeyChoice(layout: Layout, kver?: string): KeyChoice {
  if (ootmodDkmsIsInstalled(layout)) return dkmsKeyChoice(layout, kver);
  return dkmsSigningKey(layout) ?? { key: layout.mokKey, cert: layout.mokCert, source: 'ootmod' };
}

/** The signer: framework.conf's sign_file with ootmod-dkms installed (an HSM or TPM tool), else kbuild's. */
export function signFileFor(layout: Layout, kernel: Pick<KernelTarget, 'release' | 'signing'>): string | undefined {
  const own = ootmodDkmsIsInstalled(layout) ? settingFor(readFramework(layout), 'sign_file', kernel.release) : undefined;
  return own ? layout.at(own) : kernel.signing.signFile;
}

/**
 * What identifies the key and signer, for the build-inputs key, so that a module signed otherwise is
 * rebuilt: the choice and its paths (as written, before $kernelver), sign_file, and an existing
 * certificate's content, except for a pair ootmod creates itself (ootmod's own, and DKMS's default pair
 * under ootmod-dkms), which is known by its place so that creating it does not rebuild everything.
 */
export function signingKeyIdentity(layout: Layout): string {
  if (!ootmodDkmsIsInstalled(layout)) {
    const dkms = dkmsSigningKey(layout);
    if (!dkms) return `ootmod ${layout.mokCert}`;
    return `dkms ${dkms.key} ${certHash(dkms.cert)}`;
  }
  const fw = readFramework(layout);
  const choice = dkmsKeyChoice(layout, undefined, fw);
  const raw = ['mok_signing_key', 'mok_certificate', 'sign_file'].map((n) => `${n}=${fw.get(n) ?? ''}`).join(' ');
  return `ootmod-dkms ${choice.source} ${choice.key} ${choice.cert} ${raw}${choice.source === 'dkms' ? '' : ` ${certHash(choice.cert)}`}`;
}

function certHash(cert: string): string {
  if (cert.startsWith('pkcs11:')) return cert;
  try {
    return createHash('sha256').update(readFileSync(cert)).digest('hex');
  } catch {
    return 'unreadable';
  }
}

const pending = new Map<string, Promise<KeyChoice>>();

/** The key modules for kernel `kver` are signed with; a missing pair that ootmod may create is created. */
export function ensureSigningKey(layout: Layout, kver?: string): Promise<KeyChoice> {
  const choice = signingKeyChoice(layout, kver);
  if (choice.source === 'framework.conf' && !ootmodDkmsIsInstalled(layout)) return Promise.resolve(choice);
  return ensurePair(choice);
}

/** Creates a missing pair once per process (DKMS's parameters and subject for DKMS's paths). */
export function ensurePair(choice: KeyChoice): Promise<KeyChoice> {
  let p = pending.get(choice.key);
  if (!p) {
    p = generateIfMissing(choice).finally(() => pending.delete(choice.key));
    pending.set(choice.key, p);
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
  return { key: c.key, cert: c.cert, source: c.source, enrolled, line: `signing key: ${where(c.key)}, certificate ${where(c.cert)} (${SOURCE_TEXT[c.source]}); enrolled: ${enrolled}` };
}
