// A run's state is in its run context (src/pipeline/context.ts), passed down from the pipeline: the
// sandbox policy and build user, the dkms.conf reader, the signing key pairs being created, the answer
// of make about its jobserver form. No module of src/ keeps such state itself, so tests make a context
// instead of setting and resetting globals.
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createRunContext } from '../../src/pipeline/context.js';

const SRC = path.resolve(__dirname, '../../src');

// Module-level state that stays, each for a reason that is the process's, not a run's.
const ALLOWED: Record<string, string> = {
  // The process groups of the children this process started, ended when it gets a signal.
  'system/run.ts: const liveGroups': 'the process ends its own children on a signal',
  'system/run.ts: let handlersInstalled': 'signal handlers are installed once per process',
  // Names of temporary files no other writer of this process uses.
  'system/files.ts: let counter': 'unique temporary names within the process',
  // Reads of files that do not change while ootmod runs, keyed by what they read.
  'kernel/dpkgarch.ts: const cache': "dpkg's cputable, ostable and tupletable, by dir",
  'kernel/packages.ts: const memo': "one dpkg-query per root and question (kernel inventory and Rust sources ask the same)",
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Top-level `let`s, and top-level consts holding a Map or Set (but a constant table, named in capitals). */
export function moduleState(file: string, text: string): string[] {
  const rel = path.relative(SRC, file);
  const found: string[] = [];
  for (const m of text.matchAll(/^(?:export\s+)?(let|var)\s+(\w+)/gm)) found.push(`${rel}: ${m[1]} ${m[2]}`);
  for (const m of text.matchAll(/^(?:export\s+)?const\s+(\w+)\s*(?::[^=]+)?=\s*new\s+(?:Map|Set|WeakMap|WeakSet)\b/gm)) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(m[1]!)) found.push(`${rel}: const ${m[1]}`);
  }
  return found;
}

describe('the run context', () => {
  it('is the only state of a run: no module keeps its own (but the allowed, each for its reason)', () => {
    const found = sourceFiles(SRC).flatMap((f) => moduleState(f, readFileSync(f, 'utf8')));
    expect(found.filter((s) => !(s in ALLOWED))).toEqual([]);
    // The list stays true: an entry whose state is gone is taken out.
    expect(Object.keys(ALLOWED).filter((a) => !found.includes(a))).toEqual([]);
  });

  it('finds a module-level let and a module-level Map', () => {
    const at = path.join(SRC, 'system/x.ts');
    expect(moduleState(at, "let policy: P = { enabled: false };\nconst pending = new Map<string, number>();\nconst LIMIT = 3;\nconst KNOWN = new Set(['a']);\nfunction f() {\n  let local = 1;\n}\n")).toEqual([
      'system/x.ts: let policy',
      'system/x.ts: const pending',
    ]);
  });

  it("keeps each run's sandbox, build user and caches apart", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ootmod-ctx-'));
    const base = 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n';
    const [withUser, without] = [path.join(dir, 'a'), path.join(dir, 'b')];
    writeFileSync(withUser, `${base}_ootmod:x:996:991::/nonexistent:/usr/sbin/nologin\n`);
    writeFileSync(without, base);
    const a = createRunContext({ enabled: true, unconfined: ['allowed'], passwd: withUser });
    const b = createRunContext({ enabled: false, unconfined: [], passwd: without });
    expect(a.sandbox.isConfined('m')).toBe(true);
    expect(a.sandbox.isConfined('allowed')).toBe(false);
    expect(b.sandbox.isConfined('m')).toBe(false);
    // The build user a run found is that run's: another run looks it up in its own account database.
    expect(a.sandbox.sandboxUser()).toEqual({ name: '_ootmod', uid: 996, gid: 991 });
    expect(b.sandbox.sandboxUser()).toMatchObject({ name: 'nobody', standIn: true });
    expect(a.dkmsConf).not.toBe(b.dkmsConf);
    expect(a.signingKeys).not.toBe(b.signingKeys);
    // make is asked once per run.
    expect(a.makeFifo()).toBe(a.makeFifo());
    expect(a.makeFifo()).not.toBe(b.makeFifo());
  });
});
