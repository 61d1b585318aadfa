// The bad-input corpus: every broken dkms.conf or source tree in test/fixtures/bad is refused with one
// specific "problem: fix" line, by loadSpec and by the real CLI. cases.json holds each case's expected line.
import { spawnSync, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidSourceError, loadSpec, splitNameVersion, type SourceContext } from '../../src/modules/sourcedirs.js';
import { createLayout, type Layout } from '../../src/system/layout.js';
import { unconfinedRun } from '../support/run.js';

const REPO = path.resolve(__dirname, '../..');
const OOTMOD = path.join(REPO, 'dist/ootmod');
const BAD = path.join(REPO, 'test/fixtures/bad');
/** A kernel with an image but no headers: sources are read for it, nothing can be built. */
const KVER = '6.1.0-ootmodtest-amd64';

interface Case {
  /** The dir under /usr/src: <name>-<version>. */
  source: string;
  /** The expected problem: a substring, or /a regex/. */
  expect: string;
  kind: 'spec' | 'file' | 'ownership' | 'cli' | 'good';
  /** For kind cli: what loadSpec says about the same tree. */
  loadSpecExpect?: string;
  timeoutMs?: number;
  /** Octal mode given to dkms.conf at test time (git keeps no group/other write bits). */
  confMode?: string;
  /** Owner given to the whole tree at test time. */
  treeUid?: number;
}

const CASES: Record<string, Case> = JSON.parse(readFileSync(path.join(BAD, 'cases.json'), 'utf8'));
const BAD_CASES = Object.entries(CASES).filter(([, c]) => c.kind !== 'good');
const GOOD_CASES = Object.entries(CASES).filter(([, c]) => c.kind === 'good');
const IS_ROOT = process.getuid?.() === 0;

function matches(text: string, expectation: string): boolean {
  const re = /^\/(.*)\/$/.exec(expectation);
  return re ? new RegExp(re[1]!).test(text) : text.includes(expectation);
}

const roots: string[] = [];
function tmpDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  // Builds and dkms.conf run as the unprivileged build user, which must reach the root's files.
  chmodSync(dir, 0o755);
  roots.push(dir);
  return dir;
}

function newRoot(withKernel: boolean): Layout {
  const root = tmpDir('ootmod-bad-');
  mkdirSync(path.join(root, 'usr/src'), { recursive: true });
  mkdirSync(path.join(root, 'usr/lib/modules'), { recursive: true });
  if (withKernel) {
    mkdirSync(path.join(root, 'usr/lib/modules', KVER), { recursive: true });
    writeFileSync(path.join(root, 'usr/lib/modules', KVER, 'vmlinuz'), '');
  }
  return createLayout(root);
}

function secure(p: string): void {
  const s = statSync(p);
  chmodSync(p, s.mode & 0o7755);
  if (s.isDirectory()) for (const e of readdirSync(p)) secure(path.join(p, e));
}

function chownTree(p: string, uid: number): void {
  chownSync(p, uid, uid);
  if (statSync(p).isDirectory()) for (const e of readdirSync(p)) chownTree(path.join(p, e), uid);
}

/** Copies a case's tree to <into>/<source>, root-owned and not group/other-writable, then applies the case's setup. */
function place(name: string, into: string): string {
  const c = CASES[name]!;
  const dir = path.join(into, c.source);
  cpSync(path.join(BAD, name, c.source), dir, { recursive: true });
  secure(dir);
  if (c.confMode) chmodSync(path.join(dir, 'dkms.conf'), parseInt(c.confMode, 8));
  if (c.treeUid !== undefined) chownTree(dir, c.treeUid);
  return dir;
}

function context(layout: Layout, c: Case): SourceContext {
  return { layout, conf: unconfinedRun().dkmsConf, jobs: 1, checkOwnership: c.kind === 'ownership', evalTimeoutMs: c.timeoutMs };
}

async function load(name: string, layout = newRoot(false)) {
  const c = CASES[name]!;
  const dir = place(name, layout.srcDir);
  const { name: guessedName, version: guessedVersion } = splitNameVersion(c.source);
  const src = { dir, guessedName, guessedVersion };
  const result = await loadSpec(src, context(layout, c)).then(
    (spec) => ({ spec, error: undefined }),
    (error: unknown) => ({ spec: undefined, error }),
  );
  return { dir, ...result };
}

function cli(layout: Layout, ...args: string[]) {
  const r = spawnSync(OOTMOD, ['--root', layout.root, ...args], { encoding: 'utf8', env: { ...process.env, LANG: 'C.UTF-8' } });
  const lines = (text: string) => text.split('\n').filter((l) => l.trim() !== '');
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, errLines: lines(r.stderr), outLines: lines(r.stdout) };
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

describe('the bad-input corpus', () => {
  it('has at least 24 bad cases, and every case dir holds exactly its source dir', () => {
    expect(BAD_CASES.length).toBeGreaterThanOrEqual(24);
    const dirs = readdirSync(BAD, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    expect(dirs.sort()).toEqual(Object.keys(CASES).sort());
    for (const [name, c] of Object.entries(CASES)) {
      expect(readdirSync(path.join(BAD, name)), name).toEqual([c.source]);
      expect(existsSync(path.join(BAD, name, c.source, 'dkms.conf')), name).toBe(name !== 'no-conf');
    }
  });

  it('expects specific problems: a directive, file or tool named, and more than a word', () => {
    for (const [name, c] of BAD_CASES) {
      for (const e of [c.expect, c.loadSpecExpect].filter((x): x is string => x !== undefined)) {
        const plain = e.replace(/\\/g, '');
        expect(plain.length, name).toBeGreaterThanOrEqual(25);
        expect(plain, name).toMatch(/[A-Z_]{5,}|dkms\.conf|source (dir|tree)|bash/);
      }
    }
  });
});

describe('loadSpec refuses each bad source with one specific line', () => {
  // Only root can chown, and only root checks ownership: those cases are skipped, visibly, otherwise.
  it.each(BAD_CASES.filter(([, c]) => c.kind !== 'ownership'))('%s', (name, c) => checkLoadSpec(name, c));
  it.skipIf(!IS_ROOT).each(BAD_CASES.filter(([, c]) => c.kind === 'ownership'))('%s (as root)', (name, c) => checkLoadSpec(name, c));

  async function checkLoadSpec(name: string, c: (typeof BAD_CASES)[number][1]): Promise<void> {
    const { dir, spec, error } = await load(name);
    expect(spec).toBeUndefined();
    expect(error).toBeInstanceOf(InvalidSourceError);
    const err = error as InvalidSourceError;
    expect(err.message).not.toContain('\n');
    expect(err.message.startsWith(`${dir}/dkms.conf: `), err.message).toBe(true);
    const problem = err.message.slice(`${dir}/dkms.conf: `.length);
    expect(err.problems[0]).toBe(problem);
    for (const p of err.problems) expect(p).not.toMatch(/[\n\r]/);
    const expectation = c.kind === 'cli' ? c.loadSpecExpect! : c.expect;
    expect(matches(problem, expectation), `${problem}\n  does not match\n${expectation}`).toBe(true);
    // "problem: fix", or a rule that says what is allowed.
    expect(problem).toMatch(/: \S|must /);
    expect(err.exitCode).toBe(3);
  }

  it.skipIf(!IS_ROOT)('gives the ownership problems only when checkOwnership is set (as root)', async () => {
    for (const name of ['conf-writable-by-others', 'tree-owned-by-user']) {
      const layout = newRoot(false);
      const dir = place(name, layout.srcDir);
      const { name: guessedName, version: guessedVersion } = splitNameVersion(path.basename(dir));
      const spec = await loadSpec({ dir, guessedName, guessedVersion }, { layout, conf: unconfinedRun().dkmsConf, jobs: 1, checkOwnership: false });
      expect(spec.name).toBe(guessedName);
    }
  });

  it('stops an endless dkms.conf at the time limit, not after the default 30 s', async () => {
    const started = Date.now();
    const { error } = await load('endless-loop');
    expect(error).toBeInstanceOf(InvalidSourceError);
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});

describe('good sources among the corpus', () => {
  it.each(GOOD_CASES)('%s parses', async (name, c) => {
    const layout = newRoot(false);
    const dir = place(name, layout.srcDir);
    const { name: guessedName, version: guessedVersion } = splitNameVersion(c.source);
    const spec = await loadSpec({ dir, guessedName, guessedVersion }, { layout, conf: unconfinedRun().dkmsConf, jobs: 1, checkOwnership: IS_ROOT });
    expect(`${spec.name}/${spec.version}`).toBe(c.expect);
  });

  it('reads a CRLF dkms.conf without the CRs, as DKMS does', async () => {
    const raw = readFileSync(path.join(BAD, 'good-crlf', 'good-crlf-1.0', 'dkms.conf'), 'utf8');
    expect(raw.split('\n').slice(0, -1).every((l) => l.endsWith('\r'))).toBe(true);
    const { spec, error } = await load('good-crlf');
    expect(error).toBeUndefined();
    expect(spec!.name).toBe('good-crlf');
    expect(spec!.version).toBe('1.0');
    expect(spec!.modules.map((m) => [m.builtName, m.destLocation])).toEqual([['good_crlf', '/updates/dkms']]);
    expect(spec!.autoinstall).toBe(true);
  });
});

describe('the ootmod CLI on bad sources', () => {
  beforeAll(() => {
    if (!existsSync(OOTMOD) || statSync(OOTMOD).mtimeMs < newestMtime(path.join(REPO, 'src'))) {
      execFileSync('npm', ['run', 'build'], { cwd: REPO, stdio: 'inherit' });
    }
  });

  const CLI_CASES = ['dest-location-outside', 'built-name-ko', 'patch-missing', 'bash-syntax-error', 'newline-in-value', 'pre-build-missing', 'conf-writable-by-others'];

  // The CLI checks ownership only as root: that case is skipped, visibly, otherwise.
  const cliCase = (name: string): void => {
    const c = CASES[name]!;
    const layout = newRoot(true);
    const dir = place(name, layout.srcDir);
    const r = cli(layout, 'build', splitNameVersion(c.source).name);
    expect(r.code, r.stderr).toBe(3);
    expect(r.errLines).toHaveLength(1);
    const line = r.errLines[0]!;
    expect(line.startsWith(`ootmod: ${dir}/dkms.conf: `), line).toBe(true);
    expect(matches(line.slice(`ootmod: ${dir}/dkms.conf: `.length), c.expect), line).toBe(true);
  };
  it.each(CLI_CASES.filter((n) => CASES[n]!.kind !== 'ownership'))('build %s exits 3 with one line naming the problem', cliCase);
  it.skipIf(!IS_ROOT).each(CLI_CASES.filter((n) => CASES[n]!.kind === 'ownership'))('build %s exits 3 with one line naming the problem (as root)', cliCase);

  it('add of a tree without dkms.conf exits 3 with one line', () => {
    const layout = newRoot(false);
    const dir = place('no-conf', tmpDir('ootmod-bad-tree-'));
    const r = cli(layout, 'add', dir);
    expect(r.code, r.stderr).toBe(3);
    expect(r.errLines).toHaveLength(1);
    expect(r.errLines[0]!.startsWith(`ootmod: ${dir} has no dkms.conf: `)).toBe(true);
    expect(matches(r.errLines[0]!, CASES['no-conf']!.expect)).toBe(true);
    expect(existsSync(path.join(layout.srcDir, 'bad-noconf-1.0'))).toBe(false);
  });

  it('add of a tree with a bad dkms.conf exits 3 with one line and copies nothing', () => {
    const layout = newRoot(false);
    const dir = place('built-name-ko', tmpDir('ootmod-bad-tree-'));
    const r = cli(layout, 'add', dir);
    expect(r.code, r.stderr).toBe(3);
    expect(r.errLines).toEqual([`ootmod: ${dir}/dkms.conf: ${CASES['built-name-ko']!.expect}`]);
    expect(readdirSync(layout.srcDir)).toEqual([]);
  });

  it('autoinstall reports a bad source among good ones as invalid and exits 1', () => {
    const layout = newRoot(true);
    const bad = place('dest-location-outside', layout.srcDir);
    place('good-exclusive', layout.srcDir);
    place('good-crlf', layout.srcDir);
    const r = cli(layout, 'autoinstall');
    expect(r.code, r.stderr).toBe(1);
    const invalid = r.errLines.filter((l) => l.startsWith('invalid'));
    expect(invalid).toEqual([`invalid  ${bad}: ${bad}/dkms.conf: ${CASES['dest-location-outside']!.expect}`]);
    // The good ones are skipped (this kernel has no headers), not built.
    expect(r.errLines.filter((l) => l.startsWith('skip')).map((l) => l.split(/\s+/)[1]).sort()).toEqual(['good-crlf/1.0', 'good-exclusive/1.0']);
    expect(r.outLines).toContain('autoinstall: 0 installed, 0 built, 0 current, 2 skipped, 0 failed, 1 invalid');
  });

  it('autoinstall with no kernel at all still reads every source once and reports the invalid one', () => {
    const layout = newRoot(false);
    place('dest-location-outside', layout.srcDir);
    place('good-exclusive', layout.srcDir);
    const r = cli(layout, 'autoinstall');
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/no kernel headers found under /);
    expect(r.stderr).toMatch(/^invalid +.*dkms\.conf: DEST_MODULE_LOCATION\[0\] '\/usr\/lib' must start with \/kernel, \/updates or \/extra/m);
    expect(r.outLines).toContain('autoinstall: 0 installed, 0 built, 0 current, 0 skipped, 0 failed, 1 invalid');
  });

  it('build of a named module with no kernel says so and exits 4', () => {
    const layout = newRoot(false);
    place('good-exclusive', layout.srcDir);
    const r = cli(layout, 'build', 'good-exclusive');
    expect(r.code, r.stderr).toBe(4);
    expect(r.stderr.trim()).toMatch(/^ootmod: no kernel headers found under .*: install linux-headers-/);
  });
});
