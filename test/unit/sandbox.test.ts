// The build user: found in the account database; when missing, a plan's build-user job creates it before
// the builds that run as it, and until then nobody stands in for reading dkms.conf.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Sandbox } from '../../src/system/sandbox.js';

const BASE = 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n';

/**
 * An account database without _ootmod whose useradd appends it (and counts the calls), and a sandbox
 * that looks the build user up in it instead of the host's.
 */
function fakeDb(): { passwd: string; created: number; create(): Promise<void>; sandbox: Sandbox } {
  const passwd = path.join(mkdtempSync(path.join(os.tmpdir(), 'ootmod-passwd-')), 'passwd');
  writeFileSync(passwd, BASE);
  const db = {
    passwd,
    created: 0,
    async create() {
      db.created++;
      writeFileSync(passwd, `${BASE}_ootmod:x:996:991::/nonexistent:/usr/sbin/nologin\n`);
    },
    sandbox: new Sandbox({ enabled: false, unconfined: [], passwd }),
  };
  return db;
}

describe('the build user', () => {
  it('is created by the build-user job, and found from then on', async () => {
    const db = fakeDb();
    expect(await db.sandbox.createBuildUser(db.create)).toEqual({ name: '_ootmod', uid: 996, gid: 991 });
    expect(db.created).toBe(1);
    expect(readFileSync(db.passwd, 'utf8')).toMatch(/^_ootmod:x:996:991:/m);
  });

  it('until then, nobody stands in (for reading dkms.conf), and the account database is untouched', () => {
    const db = fakeDb();
    expect(db.sandbox.sandboxUser()).toEqual({ name: 'nobody', uid: 65534, gid: 65534, standIn: true });
    expect(readFileSync(db.passwd, 'utf8')).toBe(BASE);
  });

  it('a failing useradd is one line with the fix, exit 5', async () => {
    const db = { ...fakeDb(), create: async () => { throw Object.assign(new Error('x'), { result: { stderr: 'useradd: cannot lock /etc/passwd; try again later.\n' } }); } };
    const err = await db.sandbox.createBuildUser(db.create).then(() => { throw new Error('no error'); }, (e: { line(): string; exitCode: number }) => e);
    expect(err.line()).toBe('cannot create the build user _ootmod (useradd: cannot lock /etc/passwd; try again later.): create it: useradd --system --user-group --no-create-home _ootmod');
    expect(err.exitCode).toBe(5);
  });

  it('is missing for a plan only when builds are confined and it does not exist', () => {
    const db = fakeDb();
    expect(db.sandbox.missingBuildUser()).toBeUndefined();
    const confining = new Sandbox({ enabled: true, unconfined: ['allowed'], passwd: db.passwd });
    const missing = confining.missingBuildUser();
    expect(missing?.name).toBe('_ootmod');
    expect(missing?.confines('some-module')).toBe(true);
    expect(missing?.confines('allowed')).toBe(false);
    writeFileSync(db.passwd, `${BASE}_ootmod:x:996:991::/nonexistent:/usr/sbin/nologin\n`);
    expect(confining.missingBuildUser()).toBeUndefined();
  });

  it('a build confined before the plan created the user is refused in one line with the fix, exit 5', async () => {
    const db = fakeDb();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ootmod-build-'));
    const sandbox = new Sandbox({ enabled: true, unconfined: [], passwd: db.passwd, scratchBase: dir });
    const err = await sandbox.confineTo([path.join(dir, 'build')], undefined, 'm').then(() => { throw new Error('no error'); }, (e: { line(): string; exitCode: number }) => e);
    expect(err.line()).toBe('the build user _ootmod does not exist: create it: useradd --system --user-group --no-create-home _ootmod (a plan that builds creates it first)');
    expect(err.exitCode).toBe(5);
  });
});
