// Reports stay one line: oneLine for ootmod's own lines, escapeControls for a source's problems.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { escapeControls, oneLine } from '../../src/errors.js';
import { installedFilesPresent } from '../../src/state/store.js';

describe('one line', () => {
  it('oneLine shows line breaks as \\n and leaves the rest', () => {
    expect(oneLine('a\nb\r\nc\td\re')).toBe('a\\nb\\nc\td\re');
  });

  it('escapeControls shows every control character', () => {
    expect(escapeControls('a\nb\r\nc\td\x1b[0m')).toBe('a\\nb\\r\\nc\\td\\x1b[0m');
  });
});

describe('installedFilesPresent', () => {
  it('is true only when there are installed files and every one is there', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ootmod-present-'));
    const [a, b] = [path.join(dir, 'a.ko'), path.join(dir, 'b.ko')];
    writeFileSync(a, '');
    expect(installedFilesPresent({ installed: [] })).toBe(false);
    expect(installedFilesPresent({ installed: [{ module: 'a', path: a }] })).toBe(true);
    expect(installedFilesPresent({ installed: [{ module: 'a', path: a }, { module: 'b', path: b }] })).toBe(false);
  });
});
