// The deliberate breaks of `npm run test:mutants` still apply: each text to break is in its file once,
// and each guarding test exists (a refactor that moves the text shows here, not only in the slow run).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MUTANTS } from '../mutants/list.js';

const REPO = path.resolve(__dirname, '../..');

describe('test/mutants/list.ts', () => {
  it('has unique ids', () => {
    expect(new Set(MUTANTS.map((m) => m.id)).size).toBe(MUTANTS.length);
  });
  for (const m of MUTANTS) {
    it(`${m.id}: its text is in ${m.file} once, and ${m.test} exists`, () => {
      const text = readFileSync(path.join(REPO, m.file), 'utf8');
      expect(text.split(m.find).length - 1).toBe(1);
      expect(m.replace).not.toBe(m.find);
      expect(existsSync(path.join(REPO, m.test))).toBe(true);
    });
  }
});
