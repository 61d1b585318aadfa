// Which MOK key pair and which signer modules are signed with (reading only: src/execute/signing.ts
// creates a missing pair and signs).
//
// With ootmod-dkms installed, DKMS 3.2.2's rules (its prepare_mok): framework.conf's mok_signing_key and
// mok_certificate, else on Ubuntu shim's pair (/var/lib/shim-signed/mok/MOK.priv and MOK.der) when it
// exists, else DKMS's /var/lib/dkms/mok.key and mok.pub, created when missing; framework.conf's
// sign_file replaces kbuild's sign-file. Without it (plain ootmod): DKMS's pair when the machine has one
// (framework.conf's, else /var/lib/dkms's), else ootmod's own pair in /var/lib/ootmod, created when missing.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { KernelTarget } from '../kernel/inventory.js';
import { ootmodDkmsIsInstalled } from '../modules/names.js';
import type { Layout } from '../system/layout.js';
import { readFramework, settingFor } from './framework.js';

export interface SigningKey {
  key: string;
  cert: string;
}

/** A key pair and where it comes from. */
export interface KeyChoice extends SigningKey {
  source: 'framework.conf' | 'shim' | 'dkms' | 'ootmod';
}

/** How `ootmod kernels` and `status --verbose` name where a key pair comes from. */
export const KEY_SOURCE_TEXT: Record<KeyChoice['source'], string> = {
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
