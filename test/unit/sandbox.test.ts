// The build user: found in the account database, created when missing, but never by a dry run.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createSession } from '../../src/cli/session.js';
import { findBuildUser, sandboxPolicy, type UserDb } from '../../src/system/sandbox.js';

const BASE = 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n';

/** An account database without _ootmod whose useradd appends it (and counts the calls). */
function fakeDb(): UserDb & { created: number } {
  const passwd = path.join(mkdtempSync(path.join(os.tmpdir(), 'ootmod-passwd-')), 'passwd');
  writeFileSync(passwd, BASE);
  const db = {
    passwd,
    created: 0,
    create() {
      db.created++;
      writeFileSync(passwd, `${BASE}_ootmod:x:996:991::/nonexistent:/usr/sbin/nologin\n`);
    },
  };
  return db;
}

describe('the build user', () => {
  it('is created once on a real run when missing, and said so', () => {
    const db = fakeDb();
    const lines: string[] = [];
    expect(findBuildUser(db, true, (l) => lines.push(l))).toEqual({ name: '_ootmod', uid: 996, gid: 991 });
    expect(db.created).toBe(1);
    expect(lines).toEqual(['ootmod: created the system user _ootmod for unprivileged module builds']);
    expect(findBuildUser(db, true, () => {})).toEqual({ name: '_ootmod', uid: 996, gid: 991 });
    expect(db.created).toBe(1);
  });

  it('is not created by a dry run, which reads dkms.conf as nobody and says the first build creates it', () => {
    const db = fakeDb();
    const lines: string[] = [];
    expect(findBuildUser(db, false, (l) => lines.push(l))).toEqual({ name: 'nobody', uid: 65534, gid: 65534 });
    expect(db.created).toBe(0);
    expect(readFileSync(db.passwd, 'utf8')).toBe(BASE);
    expect(lines).toEqual([expect.stringMatching(/the first real build creates the system user _ootmod/)]);
  });

  it('a failing useradd is one line with the fix, exit 5', () => {
    const db = { ...fakeDb(), create: () => { throw Object.assign(new Error('x'), { stderr: Buffer.from('useradd: cannot lock /etc/passwd; try again later.\n') }); } };
    const err = (() => { try { findBuildUser(db, true, () => {}); } catch (e) { return e as { line(): string; exitCode: number }; } throw new Error('no error'); })();
    expect(err.line()).toBe('cannot create the build user _ootmod (useradd: cannot lock /etc/passwd; try again later.): create it: useradd --system --user-group --no-create-home _ootmod');
    expect(err.exitCode).toBe(5);
  });

  it('a --dry-run session tells the sandbox not to create it; a real one lets it', () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'ootmod-session-'));
    const opts = { root, jobs: 1, verbose: false, json: false, kernels: [], force: false, debug: false };
    createSession({ ...opts, dryRun: true });
    expect(sandboxPolicy().dryRun).toBe(true);
    createSession({ ...opts, dryRun: false });
    expect(sandboxPolicy().dryRun).toBe(false);
  });
});
