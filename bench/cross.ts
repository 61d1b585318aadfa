// `npm run bench`, cross part: in the cached cross-sid chroot of the e2e suite (test/e2e/cross.e2e.test.ts
// creates it), the cold Rust tree of the arm64 kernel built on amd64 against the cold native amd64 tree,
// alternating in the same run, >= 3 samples each (OOTMOD_BENCH_QUICK=1 or --quick: 1 each), medians.
//   cross cold / native cold                              goal <= 1.10
//   cross cold / the bare kbuild recipe of the native tree    goal <= 0.35 (issue 20: the full rust/ build,
//                                                             bench/rust.ts's recipe, as the third side of each round)
import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { currentKernel, ensureChroot, type Chroot } from '../test/e2e/lib/chroot';
import { BARE_RECIPE } from './rust';

const REPO = path.resolve(__dirname, '..');
const GOAL = 1.1;
const BARE_GOAL = 0.35;
const QUICK = process.argv.includes('--quick') || process.env.OOTMOD_BENCH_QUICK === '1';
const SAMPLES = QUICK ? 1 : 3;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** One cold prepare: the kernel's trees removed first; the seconds ootmod's manifest records, and the wall. */
async function cold(c: Chroot, kver: string, walls: number[]): Promise<number> {
  const t0 = performance.now();
  const r = await c.run(['bash', '-c', `rm -rf /var/lib/ootmod/rust/${kver} && ootmod rust prepare -k ${kver} >/dev/null && ootmod rust status --json -k ${kver}`], { reject: false, timeoutMs: 3_600_000 });
  if (r.exitCode !== 0) throw new Error(`rust prepare -k ${kver} failed: ${r.stderr.slice(-2000)}`);
  const tree = JSON.parse(r.stdout).trees[0];
  if (!tree?.abi?.ok) throw new Error(`the tree of ${kver} failed its ABI check`);
  walls.push(Math.round((performance.now() - t0) / 100) / 10);
  return tree.buildSeconds as number;
}

async function main(): Promise<void> {
  const root = '/var/cache/ootmod-test/chroots/cross-sid';
  if (!existsSync(`${root}/usr/bin/rustc`) || !existsSync(`${root}/var/lib/dpkg/arch`)) {
    console.log('cross bench: skipped: the cross-sid chroot is missing (run the e2e test test/e2e/cross.e2e.test.ts first)');
    return;
  }
  const c = await ensureChroot('sid', { name: 'cross-sid' });
  const native = await currentKernel(c);
  const foreign = await currentKernel(c, { flavour: 'arm64', arch: 'arm64' });
  copyFileSync(path.join(REPO, 'dist/ootmod'), c.path('/usr/sbin/ootmod'));
  const samples = { native: [] as number[], cross: [] as number[], bare: [] as number[], crossWall: [] as number[], nativeWall: [] as number[] };
  writeFileSync(c.path('/usr/local/sbin/bench-bare-recipe'), BARE_RECIPE, { mode: 0o755 });
  await c.withMounts(async () => {
    // Read once, so every build (ootmod's and the recipe's) starts with the tarball cached.
    await c.run(['bash', '-c', 'cat /usr/src/linux-source-*.tar.xz > /dev/null']);
    for (let i = 0; i < SAMPLES; i++) {
      // Alternating, so drift in the machine's load hits both alike.
      process.stderr.write(`cross bench: sample ${i + 1}/${SAMPLES}: native ${native.kver}\n`);
      samples.native.push(await cold(c, native.kver, samples.nativeWall));
      process.stderr.write(`cross bench: sample ${i + 1}/${SAMPLES}: cross ${foreign.kver}\n`);
      samples.cross.push(await cold(c, foreign.kver, samples.crossWall));
      process.stderr.write(`cross bench: sample ${i + 1}/${SAMPLES}: the bare kbuild recipe (full rust/ build) of ${native.kver}\n`);
      const t0 = performance.now();
      const r = await c.run(['bash', '-c', `rm -rf /var/tmp/bench-obj && bench-bare-recipe ${native.kver} /var/tmp/bench-obj ${availableParallelism()}; rc=$?; rm -rf /var/tmp/bench-obj; exit $rc`], { reject: false, timeoutMs: 3_600_000 });
      if (r.exitCode !== 0) throw new Error(`the bare recipe for ${native.kver} failed: ${r.stderr.slice(-2000)}`);
      samples.bare.push(Math.round((performance.now() - t0) / 100) / 10);
    }
  });
  const ratio = median(samples.cross) / median(samples.native);
  console.log(`\nRust tree cold, arm64 kernel on amd64 vs the amd64 kernel (cross-sid chroot, ${SAMPLES} sample(s) each, alternating)`);
  console.log(`native ${native.kver}: median ${median(samples.native)} s  [${samples.native.join(', ')}]`);
  console.log(`cross  ${foreign.kver}: median ${median(samples.cross)} s  [${samples.cross.join(', ')}]`);
  console.log(`bare recipe, native full tree: median ${median(samples.bare)} s  [${samples.bare.join(', ')}]`);
  const note = QUICK ? ' (quick: 1 sample, indicative only)' : '';
  console.log(`cross / native: ${ratio.toFixed(2)}x, goal <= ${GOAL}x: ${ratio <= GOAL ? 'PASS' : 'MISS'}${note}`);
  // Wall against wall: the whole `ootmod rust prepare` (start, checks, ABI check) against the recipe's make.
  const bareRatio = median(samples.crossWall) / median(samples.bare);
  console.log(`cross, whole command: median ${median(samples.crossWall)} s  [${samples.crossWall.join(', ')}]`);
  console.log(`cross (whole command) / the bare native recipe: ${bareRatio.toFixed(2)}x, goal <= ${BARE_GOAL}x: ${bareRatio <= BARE_GOAL ? 'PASS' : 'MISS'}${note}`);
}

main().catch((e) => {
  console.error(`cross bench: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
