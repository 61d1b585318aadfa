// `npm run bench`, cross part: in the cached cross-sid chroot of the e2e suite (test/e2e/cross.e2e.test.ts
// creates it), the cold Rust tree of the arm64 kernel built on amd64 against the cold native amd64 tree,
// alternating in the same run, >= 3 samples each (OOTMOD_BENCH_QUICK=1 or --quick: 1 each), medians.
//   cross cold / native cold   goal <= 1.10
import { copyFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { currentKernel, ensureChroot, type Chroot } from '../test/e2e/lib/chroot';

const REPO = path.resolve(__dirname, '..');
const GOAL = 1.1;
const QUICK = process.argv.includes('--quick') || process.env.OOTMOD_BENCH_QUICK === '1';
const SAMPLES = QUICK ? 1 : 3;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** One cold prepare: the kernel's trees removed first; the seconds ootmod's manifest records. */
async function cold(c: Chroot, kver: string): Promise<number> {
  const r = await c.run(['bash', '-c', `rm -rf /var/lib/ootmod/rust/${kver} && ootmod rust prepare -k ${kver} >/dev/null && ootmod rust status --json -k ${kver}`], { reject: false, timeoutMs: 3_600_000 });
  if (r.exitCode !== 0) throw new Error(`rust prepare -k ${kver} failed: ${r.stderr.slice(-2000)}`);
  const tree = JSON.parse(r.stdout).trees[0];
  if (!tree?.abi?.ok) throw new Error(`the tree of ${kver} failed its ABI check`);
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
  const samples = { native: [] as number[], cross: [] as number[] };
  await c.withMounts(async () => {
    for (let i = 0; i < SAMPLES; i++) {
      // Alternating, so drift in the machine's load hits both alike.
      process.stderr.write(`cross bench: sample ${i + 1}/${SAMPLES}: native ${native.kver}\n`);
      samples.native.push(await cold(c, native.kver));
      process.stderr.write(`cross bench: sample ${i + 1}/${SAMPLES}: cross ${foreign.kver}\n`);
      samples.cross.push(await cold(c, foreign.kver));
    }
  });
  const ratio = median(samples.cross) / median(samples.native);
  console.log(`\nRust tree cold, arm64 kernel on amd64 vs the amd64 kernel (cross-sid chroot, ${SAMPLES} sample(s) each, alternating)`);
  console.log(`native ${native.kver}: median ${median(samples.native)} s  [${samples.native.join(', ')}]`);
  console.log(`cross  ${foreign.kver}: median ${median(samples.cross)} s  [${samples.cross.join(', ')}]`);
  console.log(`ratio ${ratio.toFixed(2)}x, goal <= ${GOAL}x: ${ratio <= GOAL ? 'PASS' : 'MISS'}${QUICK ? ' (quick: 1 sample, indicative only)' : ''}`);
}

main().catch((e) => {
  console.error(`cross bench: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
