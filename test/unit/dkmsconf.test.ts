import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfEvaluator, type ConfContext } from '../../src/modules/dkmsconf.js';
import { resolveSpec } from '../../src/modules/spec.js';
import { SANDBOX_USER, Sandbox, USERADD_ARGS } from '../../src/system/sandbox.js';
import { makeRoot } from '../support/roots.js';

// Reads as a user who is not root gets them: unconfined.
const unconfined = new ConfEvaluator(new Sandbox({ enabled: false, unconfined: [] }));

const ctx: ConfContext = {
  kernelver: '7.4.1+deb14-amd64',
  arch: 'x86_64',
  kernel_source_dir: '/usr/src/linux-headers-7.4.1+deb14-amd64',
  kernel_config: '/usr/src/linux-headers-7.4.1+deb14-amd64/.config',
  dkms_tree: '/var/lib/ootmod/tree/7.4.1+deb14-amd64',
  source_tree: '/usr/src',
  install_tree: '/usr/lib/modules',
  module: 'demo',
  module_version: '1.0',
  parallel_jobs: '2',
};

async function evalText(text: string, extra: Partial<ConfContext> = {}) {
  const dir = path.join(makeRoot(), 'usr/src/demo-1.0');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'dkms.conf'), text);
  return { dir, conf: await unconfined.evaluate([path.join(dir, 'dkms.conf')], { ...ctx, ...extra }) };
}

describe('ConfEvaluator.evaluate', () => {
  it('runs the bash that real dkms.conf files use and sees DKMS variables', async () => {
    const { conf, dir } = await evalText(`
PACKAGE_NAME="demo"
PACKAGE_VERSION="1.0"
i=0
BUILT_MODULE_NAME[$i]="demo_core"; DEST_MODULE_LOCATION[$i]="/updates"; i=$((i+1))
if [ -n "$kernelver" ]; then BUILT_MODULE_NAME[$i]="demo_extra"; DEST_MODULE_LOCATION[$i]="/extra"; fi
MAKE[0]="make -C $kernel_source_dir M=$dkms_tree/$module/$module_version/build"
case "$kernelver" in 7.*) AUTOINSTALL=yes ;; esac
echo "noise on stdout must not confuse the reader"
helper() { echo ignored; }
UNRELATED=1
`);
    const { spec, errors } = resolveSpec(conf, dir);
    expect(errors).toEqual([]);
    expect(spec!.modules.map((m) => m.builtName)).toEqual(['demo_core', 'demo_extra']);
    expect(spec!.make).toBe('make -C /usr/src/linux-headers-7.4.1+deb14-amd64 M=/var/lib/ootmod/tree/7.4.1+deb14-amd64/demo/1.0/build');
    expect(spec!.autoinstall).toBe(true);
    expect(conf.directives.has('UNRELATED')).toBe(false);
  });

  it('expands single-quoted values a second time, as DKMS does', async () => {
    const { conf } = await evalText(`PACKAGE_NAME=demo\nPACKAGE_VERSION=1.0\nMAKE[0]='make KVER=$kernelver'\n`);
    expect(conf.directives.get('MAKE')?.get(0)).toBe('make KVER=7.4.1+deb14-amd64');
  });

  it("joins a value's words and lines with single spaces and expands it again, as DKMS's safe_source does", async () => {
    // DKMS writes each value with an unquoted echo VAR[i]=\"value\" and sources that: split, joined by
    // one space (so a trailing newline leaves one space), and quotes inside the value paired again.
    const { conf } = await evalText(`PACKAGE_NAME=demo\nPACKAGE_VERSION=1.0\nMAKE[0]=$'make plain\\n\\n'\nMAKE[1]='make K=$kernelver\n'\nCLEAN=$'a\\n  b'
PRE_BUILD="fix.sh --a=\\"\\" --b=\\"x\\"\ty"
POST_BUILD='after.sh "one two"'
PRE_INSTALL="x.sh /e*"
`);
    expect(conf.directives.get('MAKE')?.get(0)).toBe('make plain ');
    expect(conf.directives.get('MAKE')?.get(1)).toBe('make K=7.4.1+deb14-amd64 ');
    expect(conf.directives.get('CLEAN')?.get(0)).toBe('a b');
    expect(conf.directives.get('PRE_BUILD')?.get(0)).toBe('fix.sh --a= --b=x y');
    // The quotes do not pair up again ("after.sh "one two""): DKMS loses such a value; ootmod keeps it as written.
    expect(conf.directives.get('POST_BUILD')?.get(0)).toBe('after.sh "one two"');
    // Not globbed while read (DKMS's echo would glob in the dir dkms was started from).
    expect(conf.directives.get('PRE_INSTALL')?.get(0)).toBe('x.sh /e*');
  });

  it('supports X=() and X+=() arrays and strips CR', async () => {
    const { conf, dir } = await evalText('PACKAGE_NAME="demo"\r\nPACKAGE_VERSION="1.0"\r\nBUILT_MODULE_NAME=()\r\nBUILT_MODULE_NAME+=("a")\r\nBUILT_MODULE_NAME+=("b")\r\n');
    const { spec } = resolveSpec(conf, dir);
    expect(spec!.name).toBe('demo');
    expect(spec!.version).toBe('1.0');
    expect(spec!.modules.map((m) => m.builtName)).toEqual(['a', 'b']);
  });

  it('matches MAKE_MATCH, PATCH_MATCH and BUILD_EXCLUSIVE_* as bash regexes', async () => {
    const { conf, dir } = await evalText(`PACKAGE_NAME=demo
PACKAGE_VERSION=1.0
MAKE[0]="make default"
MAKE[1]="make for-seven"; MAKE_MATCH[1]="^7\\.[0-9]+"
MAKE[2]="make for-six"; MAKE_MATCH[2]="^6\\."
PATCH[0]=always.patch
PATCH[1]=seven.patch; PATCH_MATCH[1]="^7"
PATCH[2]=five.patch; PATCH_MATCH[2]="^5"
BUILD_EXCLUSIVE_KERNEL="^7\\."
BUILD_EXCLUSIVE_ARCH="x86_64|aarch64"
`);
    const { spec } = resolveSpec(conf, dir);
    expect(spec!.make).toBe('make for-seven');
    expect(spec!.patches).toEqual(['always.patch', 'seven.patch']);
    expect(spec!.exclusive.kernelMatches).toBe(true);
    expect(spec!.exclusive.archMatches).toBe(true);
  });

  it('defaults a single module to PACKAGE_NAME and notes deprecated directives', async () => {
    const { conf, dir } = await evalText('PACKAGE_NAME=demo\nPACKAGE_VERSION=1.0\nREMAKE_INITRD=yes\nCLEAN="make clean"\n');
    const { spec, warnings } = resolveSpec(conf, dir);
    expect(spec!.modules[0]!.builtName).toBe('demo');
    expect(warnings.join('\n')).toMatch(/REMAKE_INITRD is deprecated/);
    expect(warnings.join('\n')).toMatch(/CLEAN is deprecated/);
  });

  it('reads the [#] forms of BUILD_EXCLUSIVE_* per module', async () => {
    const { conf, dir } = await evalText(`PACKAGE_NAME=demo
PACKAGE_VERSION=1.0
BUILT_MODULE_NAME[0]=a
BUILT_MODULE_NAME[1]=b
BUILD_EXCLUSIVE_CONFIG[1]="CONFIG_B"
`);
    const { spec } = resolveSpec(conf, dir);
    expect(spec!.exclusive.config).toEqual([]);
    expect(spec!.modules[1]!.exclusive?.config).toEqual([{ name: 'CONFIG_B', negate: false }]);
  });
});

// Confined reads asked for together run in one sandbox; each still sees only its own variables, from its
// own source dir, and one whose dir the build user cannot enter is read alone and gets the usual error.
const isRoot = process.getuid?.() === 0;
describe.skipIf(!isRoot)('confined reads asked for together (root: the build user exists or is created)', () => {
  // On a fresh machine nothing has created the build user yet (until it exists, reads run as nobody).
  beforeAll(async () => {
    const sandbox = new Sandbox({ enabled: true, unconfined: [] });
    if (!sandbox.lookupUser()) await sandbox.createBuildUser(async () => void execFileSync('useradd', USERADD_ARGS));
  });
  // As root: every read confined, through a run's own evaluator.
  let confined: ConfEvaluator;
  beforeEach(() => {
    confined = new ConfEvaluator(new Sandbox({ enabled: true, unconfined: [] }));
  });

  it('give each read its own variables, dir and result, as reads of their own do', async () => {
    const root = makeRoot();
    const dirs = ['alpha', 'beta', 'gamma', 'delta'].map((name) => {
      const dir = path.join(root, `usr/src/${name}-1.0`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, 'dkms.conf'), `PACKAGE_NAME="$module"\nPACKAGE_VERSION=1.0\nMAKE[0]="make K=$kernelver D=$(basename "$PWD") U=$(id -un) T=$TMPDIR"\n`);
      chmodSync(path.join(root, 'usr/src'), 0o755);
      return dir;
    });
    // One the build user cannot enter: read alone, it fails with the one-line error about that.
    chmodSync(dirs[3]!, 0o700);
    const reads = dirs.map((dir, i) =>
      confined.evaluate([path.join(dir, 'dkms.conf')], { ...ctx, module: path.basename(dir).replace(/-1\.0$/, ''), kernelver: `${i}.0.0-test` }).then(
        (c) => c.directives.get('MAKE')?.get(0),
        (err: Error) => `error: ${err.message}`,
      ),
    );
    const got = await Promise.all(reads);
    for (const [i, name] of ['alpha', 'beta', 'gamma'].entries()) {
      expect(got[i]).toMatch(new RegExp(`^make K=${i}\\.0\\.0-test D=${name}-1\\.0 U=${SANDBOX_USER} T=/\\S+$`));
    }
    // One sandbox: the three share its scratch dir.
    expect(new Set(got.slice(0, 3).map((m) => m?.replace(/^.* T=/, ''))).size).toBe(1);
    expect(got[3]).toMatch(/delta-1\.0\/dkms\.conf: the build user _ootmod cannot read it/);
  });

  it('cannot signal each other: a read that kills every process it can reach leaves the others whole', async () => {
    const root = makeRoot();
    const reads = ['one', 'two', 'three'].map((name, i) => {
      const dir = path.join(root, `usr/src/${name}-1.0`);
      mkdirSync(dir, { recursive: true });
      const hostile = i === 0 ? 'kill -KILL -1 2>/dev/null; sleep 0.3; kill -KILL -1 2>/dev/null\n' : 'sleep 0.5\n';
      writeFileSync(path.join(dir, 'dkms.conf'), `${hostile}PACKAGE_NAME=${name}\nPACKAGE_VERSION=1.0\nMAKE[0]="make T=$TMPDIR"\n`);
      return confined.evaluate([path.join(dir, 'dkms.conf')], { ...ctx, module: name });
    });
    const got = (await Promise.all(reads)).map((c) => c.directives.get('MAKE')?.get(0));
    // All three read in the one sandbox (none had to be read again alone).
    expect(got.every((m) => m === got[0] && /^make T=\/\S+$/.test(m ?? ''))).toBe(true);
  });

  const source = (root: string, name: string, body: string) => {
    const dir = path.join(root, `usr/src/${name}-1.0`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'dkms.conf'), `${body}PACKAGE_NAME=${name}\nPACKAGE_VERSION=1.0\nMAKE[0]="make T=$TMPDIR"\n`);
    return path.join(dir, 'dkms.conf');
  };

  it('a read that hangs times out on its own clock; the reads beside it keep their results', async () => {
    const root = makeRoot();
    const started = Date.now();
    const hung = confined.evaluate([source(root, 'hangs', 'sleep 30\n')], { ...ctx, module: 'hangs' }, 1500).then(
      () => 'read',
      (err: Error) => err.message,
    );
    const fine = ['a', 'b', 'c'].map((n) => confined.evaluate([source(root, n, '')], { ...ctx, module: n }).then((c) => c.directives.get('MAKE')?.get(0)));
    expect(await hung).toMatch(/hangs-1\.0\/dkms\.conf: evaluating dkms\.conf took longer than 1\.5s$/);
    for (const m of await Promise.all(fine)) expect(m).toMatch(/^make T=\/\S+$/);
    // Not 30 s (the sleep) nor twice the timeout (read again alone).
    expect(Date.now() - started).toBeLessThan(2900);
  });

  it('the reader a pipeline opens serves reads asked for apart until it is closed, then leaves nothing behind', async () => {
    const root = makeRoot();
    confined.open();
    const first = await confined.evaluate([source(root, 'early', '')], { ...ctx, module: 'early' });
    await new Promise((r) => setTimeout(r, 100));
    const later = await confined.evaluate([source(root, 'late', '')], { ...ctx, module: 'late' });
    const scratch = first.directives.get('MAKE')!.get(0)!.replace(/^make T=/, '');
    // One sandbox for both, 100 ms apart (a reader of its own closes 3 ms after its last read).
    expect(later.directives.get('MAKE')!.get(0)).toBe(`make T=${scratch}`);
    await confined.close();
    expect(existsSync(scratch)).toBe(false);
    expect(existsSync(`${scratch}.out`)).toBe(false);
    // Closed: the next read opens a reader of its own.
    const after = await confined.evaluate([source(root, 'after', '')], { ...ctx, module: 'after' });
    expect(after.directives.get('MAKE')!.get(0)).not.toBe(`make T=${scratch}`);
  });
});
