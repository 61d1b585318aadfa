import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
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
