// Job ids: one format (jobId) and one parse (parseJobId), each the other's inverse; the text is the
// plan JSON's, so it is spelled out here once.
import { describe, expect, it } from 'vitest';
import { jobId, parseJobId, type JobRef } from '../../src/plan/jobid.js';

const K = '6.12.0-1-amd64';
const CASES: [JobRef, string][] = [
  [{ kind: 'build', module: 'zfs', version: '2.4.4', kernel: K }, `build:zfs/2.4.4@${K}`],
  [{ kind: 'install', module: 'nvidia-current', version: '535.1-1~deb12', kernel: '6.1.0+rt' }, 'install:nvidia-current/535.1-1~deb12@6.1.0+rt'],
  [{ kind: 'uninstall', module: 'a', version: '1', kernel: K }, `uninstall:a/1@${K}`],
  [{ kind: 'forget', module: 'a', version: '1', kernel: K }, `forget:a/1@${K}`],
  [{ kind: 'forget', kernel: K }, `forget:@${K}`],
  [{ kind: 'dkms-tree', module: 'a', version: '1', kernel: K }, `dkms-tree:a/1@${K}`],
  [{ kind: 'dkms-takeover', module: 'a', version: '1', kernel: K }, `dkms-takeover:a/1@${K}`],
  [{ kind: 'rust-tree', kernel: K }, `rust-tree:${K}`],
  [{ kind: 'rust-clean', kernel: K }, `rust-clean:${K}`],
  [{ kind: 'depmod', kernel: K }, `depmod:${K}`],
  [{ kind: 'initramfs', kernel: K }, `initramfs:${K}`],
  [{ kind: 'add', module: 'hello', version: '1.0' }, 'add:hello/1.0'],
  [{ kind: 'defer', entry: 'install zfs/2.4.4' }, 'defer:install zfs/2.4.4'],
  [{ kind: 'build-user' }, 'build-user'],
  [{ kind: 'boot-guard' }, 'boot-guard'],
  [{ kind: 'boot-notice' }, 'boot-notice'],
];

describe('job ids', () => {
  it.each(CASES)('%o is written %s and read back', (ref, text) => {
    expect(jobId(ref)).toBe(text);
    expect(parseJobId(text)).toEqual(ref);
  });

  it('reads no kind it does not know, and no id without its target', () => {
    for (const bad of ['bogus:a/1@k', 'build', 'build:', 'build:a@k', 'build:a/1', 'forget:@', 'add:a', 'depmod:', 'boot-guard:x']) {
      expect(parseJobId(bad), bad).toBeUndefined();
    }
  });
});
