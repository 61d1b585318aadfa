// Power loss during a Rust tree build: ootmod and every process it started get SIGKILL at random
// moments of `rust prepare --force`, in the cached sid chroot (a kernel built with CONFIG_RUST, its
// headers, linux-source and rustc). After each: the tree in use is the previous complete one, its
// manifest parses, a Rust module builds against it, and the next plain prepare leaves one whole tree
// and no half-built dir. Full tier only (a tree build takes minutes).
import { chmodSync, cpSync, existsSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildArch } from '../../src/rust/tree.js';
import { currentKernel, ensureChroot, installRustKernel, type Chroot } from '../e2e/lib/chroot.js';
import { FIXTURES, OOTMOD, placeSource } from '../support/host.js';
import { seededRandom } from './lib/random.js';
import { QUICK, recordRow } from './lib/table.js';
import { guardedTimer, killAll, startOotmodIn } from './lib/system.js';

const IS_ROOT = process.getuid?.() === 0;
const TRIALS = QUICK ? 0 : 4;
const FAULT = 'SIGKILL in `rust prepare --force`';

interface TreeRow {
  state: string;
  dir: string | null;
  buildSeconds: number | null;
  abi: { ok: boolean } | null;
}

/** Our build of ootmod in the chroot, beside the one other tests put at /usr/sbin/ootmod. */
const BINARY = '/usr/local/sbin/ootmod-faults';

describe.skipIf(!IS_ROOT)('SIGKILL during rust prepare --force', () => {
  it.skipIf(!TRIALS)(`leaves the previous tree in use and whole, and the next prepare completes (${TRIALS} trials; full tier only)`, async (ctx) => {
    let chroot: Chroot;
    try {
      chroot = await ensureChroot('sid');
    } catch (err) {
      return skip(`the sid chroot cannot be made: ${String(err).split('\n')[0]}`);
    }
    function skip(reason: string): never {
      recordRow({ fault: FAULT, tried: 0, held: 0, detail: `skipped: ${reason}` });
      ctx.skip(reason);
      throw new Error('unreachable');
    }
    // One mount cycle, so the chroot's lock is ours for the whole test: other test files wait.
    await chroot.withMounts(async () => {
      let kver: string;
      let why: string | undefined;
      try {
        const kernel = await currentKernel(chroot);
        kver = kernel.kver;
        why = await installRustKernel(chroot, kernel);
      } catch (err) {
        return skip(`no CONFIG_RUST kernel can be installed in the sid chroot: ${String(err).split('\n')[0]}`);
      }
      if (why) skip(why);
      cpSync(OOTMOD, chroot.path(BINARY));
      chmodSync(chroot.path(BINARY), 0o755);
      placeSource(chroot.root, path.join(FIXTURES, 'ootmod-rust-hello-1.0'));
      try {
        await trials(chroot, kver);
      } finally {
        rmSync(chroot.path(BINARY), { force: true });
      }
    });
  });
});

async function trials(chroot: Chroot, kver: string): Promise<void> {
  const base = chroot.path(`/var/lib/ootmod/rust/${kver}/${buildArch()}`);
  const inChroot = (p: string) => `/${path.relative(chroot.root, p)}`;
  const start = (args: string[]) => startOotmodIn(chroot.root, BINARY, args);
  const ootmod = async (args: string[]) => start(args).done;
  const status = async (): Promise<TreeRow | undefined> => {
    const r = await ootmod(['rust', 'status', '--json', '-k', kver]);
    return r.code === 0 ? (JSON.parse(r.stdout) as { trees: TreeRow[] }).trees[0] : undefined;
  };
  /** What is wrong with the tree `current` names: it must resolve, parse, pass the ABI check and be what status reports. */
  const treeProblems = async (): Promise<{ dir?: string; problems: string[] }> => {
    let dir: string;
    try {
      dir = realpathSync(path.join(base, 'current'));
    } catch (err) {
      return { problems: [`current does not resolve: ${String(err)}`] };
    }
    const problems: string[] = [];
    try {
      JSON.parse(readFileSync(path.join(dir, 'ootmod-rust.json'), 'utf8'));
    } catch (err) {
      problems.push(`the manifest of ${inChroot(dir)} does not parse: ${String(err)}`);
    }
    const st = await status();
    if (st?.state !== 'current' || !st.abi?.ok || st.dir !== inChroot(dir)) problems.push(`rust status: ${JSON.stringify(st)}`);
    return { dir, problems };
  };

  // A complete tree first (a cache hit when the chroot has one).
  const first = await ootmod(['rust', 'prepare', '-k', kver]);
  expect(first.code, first.stderr).toBe(0);
  // The kill window: the tree's recorded build time at first (it may have been built under another load),
  // then the duration of any forced build that finished before its kill, so later kills land mid-build.
  let fullMs = ((await status())?.buildSeconds ?? 180) * 1000;
  let widest = 0;
  const rnd = seededRandom();
  const failures: string[] = [];
  let midBuild = 0;
  for (let i = 0; i < TRIALS; i++) {
    const previous = realpathSync(path.join(base, 'current'));
    const at = Math.round(500 + rnd.next() * fullMs * 0.9);
    widest = Math.max(widest, at);
    const t0 = Date.now();
    const { child, done } = start(['rust', 'prepare', '--force', '-k', kver]);
    const timer = guardedTimer(() => killAll(child.pid!), at, false);
    const killed = await done;
    const timerErrors = timer.stop();
    if (killed.signal === null) fullMs = Math.min(fullMs, Date.now() - t0);
    const problems: string[] = timerErrors.map((e) => `the kill failed: ${e}`);
    // Killed, or it had finished (a new complete tree is then the one in use).
    const finished = killed.signal === null;
    if (finished && killed.code !== 0) problems.push(`exited ${killed.code} before the kill: ${killed.stderr.trim().split('\n').pop()}`);
    if (!finished) midBuild++;
    const now = await treeProblems();
    problems.push(...now.problems);
    if (!finished && now.dir !== previous) problems.push(`current moved from ${inChroot(previous)} to ${now.dir ? inChroot(now.dir) : 'nothing'}`);
    // A Rust module builds against the tree in use.
    const build = await ootmod(['build', 'ootmod-rust-hello', '-k', kver, '--force']);
    if (build.code !== 0) problems.push(`module build exited ${build.code}: ${build.stderr.trim().split('\n').pop()}`);
    else {
      const log = readFileSync(chroot.path(`/var/lib/ootmod/built/${kver}/ootmod-rust-hello/1.0/make.log`), 'utf8');
      if (now.dir && !log.includes(inChroot(now.dir))) problems.push(`the module was not built against ${inChroot(now.dir)}`);
      if (/undefined!/.test(log)) problems.push('the module has undefined symbols');
    }
    // The next plain run: a whole tree in use, nothing half built beside it.
    const next = await ootmod(['rust', 'prepare', '-k', kver]);
    if (next.code !== 0) problems.push(`next prepare exited ${next.code}: ${next.stderr.trim().split('\n').pop()}`);
    const after = await treeProblems();
    problems.push(...after.problems.map((p) => `after the next prepare: ${p}`));
    const trees = existsSync(path.join(base, 'trees')) ? readdirSync(path.join(base, 'trees')) : [];
    const stray = [...trees.filter((t) => after.dir && t !== path.basename(after.dir)).map((t) => `trees/${t}`), ...readdirSync(base).filter((f) => f.startsWith('.current-'))];
    if (stray.length) problems.push(`left after the next prepare: ${stray.join(', ')}`);
    if (problems.length) failures.push(`trial ${i} (kill at ${at} ms, seed ${rnd.seed}): ${problems.join('; ')}`);
  }
  recordRow({
    fault: FAULT, tried: TRIALS, held: TRIALS - failures.length,
    detail: `sid chroot, ${kver}; kills in 0.5-${(widest / 1000).toFixed(0)} s, ${midBuild} mid-build; seed ${rnd.seed}`,
  });
  expect(failures).toEqual([]);
}
