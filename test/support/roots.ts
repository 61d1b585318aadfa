// Temporary roots for tests: a sandbox laid out like a Debian system.
import { mkdtempSync, mkdirSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function makeRoot(prefix = 'ootmod-test-'): string {
  const root = mkdtempSync(path.join(os.tmpdir(), prefix));
  for (const d of ['usr/lib/modules', 'usr/src', 'var/lib', 'etc', 'boot']) mkdirSync(path.join(root, d), { recursive: true });
  // Debian has merged /usr; depmod -b looks under lib/modules.
  symlinkSync('usr/lib', path.join(root, 'lib'));
  return root;
}
