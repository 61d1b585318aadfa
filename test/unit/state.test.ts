import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode, environmentFault } from '../../src/errors.js';
import { StateStore, type BuildRecord } from '../../src/state/store.js';
import { acquireLock } from '../../src/system/lock.js';
import { createLayout } from '../../src/system/layout.js';
import { makeRoot } from '../support/roots.js';

const rec = (module: string, kernel = 'k1'): BuildRecord => ({
  module, version: '1', kernel, arch: 'x86_64', status: 'installed', inputsKey: 'k', built: [], installed: [], updatedAt: 'now',
});

describe('StateStore', () => {
  it('starts empty, keeps records across loads, and writes whole files', async () => {
    const file = path.join(makeRoot(), 'var/lib/ootmod/state.json');
    const s = StateStore.load(file);
    expect(s.records()).toEqual([]);
    await Promise.all(['b', 'a', 'c'].map((m) => s.put(rec(m))));
    await s.delete('c', '1', 'k1');
    const again = StateStore.load(file);
    expect(again.records().map((r) => r.module)).toEqual(['a', 'b']);
    expect(JSON.parse(readFileSync(file, 'utf8')).format).toBe(1);
    expect(again.find({ module: 'a' })).toHaveLength(1);
  });

  it('refuses a damaged state file with a one-line remedy', () => {
    const file = path.join(makeRoot(), 'state.json');
    writeFileSync(file, '{"format": 1, "rec');
    expect(() => StateStore.load(file)).toThrow(/not a state file ootmod can read/);
  });

  it('keeps a corrupt state file aside at the first save (never overwritten) and starts again', async () => {
    const dir = makeRoot();
    const file = path.join(dir, 'state.json');
    writeFileSync(file, '{"format": 1, "rec');
    const s = StateStore.load(file, { recover: true });
    expect(s.recoveredTo).toMatch(/state\.json\.corrupt-/);
    // Nothing moves before a write: a dry run changes nothing.
    expect(readdirSync(dir).filter((f) => f.includes('corrupt'))).toEqual([]);
    s.adopt([rec('a')]);
    await s.put(rec('b'));
    expect(readFileSync(s.recoveredTo!, 'utf8')).toBe('{"format": 1, "rec');
    expect(StateStore.load(file).records().map((r) => r.module)).toEqual(['a', 'b']);
    // A second store of the same run, loaded while it was corrupt, never moves the rebuilt file.
    writeFileSync(file, 'garbage');
    const first = StateStore.load(file, { recover: true });
    const second = StateStore.load(file, { recover: true });
    await first.put(rec('c'));
    await second.put(rec('d'));
    expect(readdirSync(dir).filter((f) => f.includes('corrupt'))).toHaveLength(2);
    // Neither write is lost: each store writes its change on top of the file as it is.
    expect(StateStore.load(file).records().map((r) => r.module)).toEqual(['c', 'd']);
  });

  it('keeps the writes of two stores loaded at the same time, deletions included', async () => {
    const file = path.join(makeRoot(), 'state.json');
    const seed = StateStore.load(file);
    await seed.put(rec('a'));
    await seed.put(rec('b'));
    const one = StateStore.load(file);
    const two = StateStore.load(file);
    await Promise.all([one.put(rec('c')), two.put(rec('d')), two.delete('a', '1', 'k1')]);
    await one.put(rec('e'));
    expect(StateStore.load(file).records().map((r) => r.module)).toEqual(['b', 'c', 'd', 'e']);
    // Each store also sees what the other wrote once it saves.
    expect(one.records().map((r) => r.module)).toEqual(['b', 'c', 'd', 'e']);
  });
});

describe('environmentFault', () => {
  it('turns a full disk, a read-only fs and no permission into one line with a fix and exit 5', () => {
    const err = (code: string) => Object.assign(new Error(`${code}: boom, write`), { code, path: '/x/state.json' });
    for (const [code, text] of [['ENOSPC', /^no space left on device \(\/x\/state\.json\): free space/], ['EDQUOT', /quota/], ['EROFS', /^read-only filesystem .*remount it read-write/], ['EACCES', /run as root/]] as const) {
      const f = environmentFault(err(code));
      expect(f?.exitCode).toBe(ExitCode.Environment);
      expect(f?.line()).toMatch(text);
      expect(f?.line()).not.toContain('\n');
    }
    expect(environmentFault(err('ENOENT'))).toBeUndefined();
    expect(environmentFault(new Error('plain'))).toBeUndefined();
  });
});

describe('acquireLock', () => {
  it('makes the second taker wait and say so', async () => {
    const layout = createLayout(makeRoot());
    const release1 = await acquireLock(layout.lockFile);
    const waited: string[] = [];
    const second = acquireLock(layout.lockFile, { onWait: (h) => waited.push(h) });
    await new Promise((r) => setTimeout(r, 400));
    expect(waited).toHaveLength(1);
    expect(waited[0]).toMatch(new RegExp(`pid ${process.pid}`));
    await release1();
    const release2 = await second;
    await release2();
  });

  it('gives up after a timeout with a one-line error', async () => {
    const layout = createLayout(makeRoot());
    const release = await acquireLock(layout.lockFile);
    await expect(acquireLock(layout.lockFile, { timeoutMs: 300 })).rejects.toThrow(/another ootmod run holds/);
    await release();
  });
});

describe('layout', () => {
  it('derives every path from the root', () => {
    const l = createLayout('/tmp/x');
    expect(l.srcDir).toBe('/tmp/x/usr/src');
    expect(l.installDir('6.1.0-28-amd64')).toBe('/tmp/x/usr/lib/modules/6.1.0-28-amd64/updates/ootmod');
    expect(l.buildDir('6.1', 'm', '1')).toBe('/tmp/x/var/lib/ootmod/tree/6.1/m/1/build');
    expect(createLayout('/').srcDir).toBe('/usr/src');
  });
});
