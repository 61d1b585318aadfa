// `npm run bench`, Rust part: in the cached sid chroot of the e2e suite (run `npm run test:e2e` once to
// create it), ootmod's cold `rust prepare` against the bare kbuild recipe run in the same benchmark run,
// the warm (cache hit) prepare, and the tree's size on disk.
//   cold prepare / bare recipe   goal <= 1.10
//   warm prepare                 goal <= 0.5 s
//   tree size                    goal <= 160 MB per kernel
// The bare recipe is the shell one of the reference (merged srctree: rust/ and a few scripts from the
// linux-source tarball, the rest linked from headers-common; the same `make run-command FORCE` with the
// same targets), without ootmod's checks, ABI check, pruning and manifest.
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { currentKernel, ensureChroot, type Chroot } from '../test/e2e/lib/chroot';

const REPO = path.resolve(__dirname, '..');
const GOALS = { coldRatio: 1.1, warmSeconds: 0.5, treeMb: 160 };

const BARE_RECIPE = String.raw`
set -eu
KVER=$1; OBJ=$2
H=/usr/src/linux-headers-$KVER
COMMON=$(sed -n 's#^include \(.*\)/Makefile$#\1#p' $H/Makefile)
KB=$(readlink -f $H/scripts)
UPVER=$(sed -n 's/^VERSION = //p' $COMMON/Makefile).$(sed -n 's/^PATCHLEVEL = //p' $COMMON/Makefile)
SRC=$OBJ/.src
rm -rf "$OBJ"; mkdir -p "$OBJ/scripts" "$SRC/scripts"
tar -C "$SRC" --strip-components=1 --wildcards -xJf /usr/src/linux-source-$UPVER.tar.xz \
  "linux-source-$UPVER/rust" "linux-source-$UPVER/scripts/Makefile*" "linux-source-$UPVER/scripts/*rust*" "linux-source-$UPVER/drivers/base/base.h"
for f in Makefile arch; do ln -s $COMMON/$f "$SRC/$f"; done
mkdir -p "$SRC/include/uapi"
for f in $COMMON/include/*; do [ "$(basename $f)" = uapi ] || ln -s $f "$SRC/include/"; done
for f in $COMMON/include/uapi/*; do ln -s $f "$SRC/include/uapi/"; done
[ -e $COMMON/tools ] && ln -s $(readlink -f $COMMON/tools) "$SRC/tools"
for f in "$KB"/*; do [ -e "$SRC/scripts/$(basename $f)" ] || ln -s "$f" "$SRC/scripts/"; done
cp -a $H/.config $H/.kernelvariables $H/Module.symvers $H/include $H/arch "$OBJ"/
[ -e $H/vmlinux ] && ln -s $H/vmlinux "$OBJ/vmlinux"
ln -s $(readlink -f $H/tools) "$OBJ/tools"
for f in "$KB"/*; do ln -s "$f" "$OBJ/scripts/"; done
: > "$OBJ/include/config/auto.conf.cmd"
printf 'KBUILD_OUTPUT=%s\ninclude %s/Makefile\n' "$OBJ" "$SRC" > "$OBJ/Makefile"
cd "$OBJ"
make -j"$(nproc)" run-command FORCE KBUILD_RUN_COMMAND='+$(MAKE) $(build)=scripts scripts/target.json && $(MAKE) $(build)=rust' >/dev/null
`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function timed(c: Chroot, script: string): Promise<number> {
  const r = await c.run(['bash', '-c', `s=$(date +%s%N); ${script}; rc=$?; e=$(date +%s%N); echo "__ms $(( (e - s) / 1000000 )) $rc"`], { reject: false, timeoutMs: 1_800_000 });
  const m = /__ms (\d+) (\d+)/.exec(r.stdout);
  if (!m || m[2] !== '0') throw new Error(`failed in the chroot: ${script}\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
  return Number(m[1]) / 1000;
}

async function main(): Promise<void> {
  if (!existsSync('/var/cache/ootmod-test/chroots/sid/usr/bin/rustc')) {
    console.log('rust bench: skipped: the sid chroot with a Rust toolchain is missing (run npm run test:e2e first)');
    return;
  }
  const c = await ensureChroot('sid');
  const kernel = await currentKernel(c);
  copyFileSync(path.join(REPO, 'dist/ootmod'), c.path('/usr/sbin/ootmod'));
  mkdirSync(c.path('/tmp/bench'), { recursive: true });
  writeFileSync(c.path('/tmp/bench/bare-recipe.sh'), BARE_RECIPE, { mode: 0o755 });
  const rows: string[][] = [];
  await c.withMounts(async () => {
    process.stderr.write('rust bench: reading the linux-source tarball once, so both builds start with it cached\n');
    await timed(c, `cat /usr/src/linux-source-*.tar.xz > /dev/null`);
    process.stderr.write('rust bench: bare kbuild recipe (cold)\n');
    const bare = await timed(c, `/tmp/bench/bare-recipe.sh ${kernel.kver} /tmp/bench/obj`);
    await timed(c, 'rm -rf /tmp/bench/obj');
    process.stderr.write('rust bench: ootmod rust prepare (cold)\n');
    const cold = await timed(c, `rm -rf /var/lib/ootmod/rust && ootmod rust prepare -k ${kernel.kver} >/dev/null`);
    process.stderr.write('rust bench: ootmod rust prepare (warm) x5\n');
    const warm: number[] = [];
    for (let i = 0; i < 5; i++) warm.push(await timed(c, `ootmod rust prepare -k ${kernel.kver} >/dev/null`));
    const node = median(await Promise.all([0, 1, 2].map(() => timed(c, 'node -e 0'))));
    const status = JSON.parse((await c.run(['ootmod', 'rust', 'status', '--json'])).stdout).trees[0];
    const du = Number((await c.run(['du', '-sb', status.dir])).stdout.split(/\s+/)[0]) / 1e6;
    const ratio = cold / bare;
    // Cross-check that noise cannot fake: ootmod's own time outside the make and tar it runs (from its log).
    const log = (await c.run(['bash', '-c', `cat /var/lib/ootmod/rust/${kernel.kver}/*/build.log`])).stdout;
    const children = [...log.matchAll(/# command: (tar|make) [^\n]*\n(?:[^#][^\n]*\n|#(?! elapsed)[^\n]*\n)*# elapsed time: ([\d.]+)s/g)].reduce((t, m) => t + Number(m[2]), 0);
    rows.push(
      ['cold prepare', `${cold.toFixed(1)} s`, `bare recipe ${bare.toFixed(1)} s`, `${ratio.toFixed(2)}x`, `<= ${GOALS.coldRatio}x`, ratio <= GOALS.coldRatio ? 'PASS' : 'MISS'],
      ['  ootmod outside make and tar', `${(cold - children).toFixed(1)} s`, `make + tar ${children.toFixed(1)} s`, `${(cold / children).toFixed(2)}x`, '', ''],
      ['warm prepare (median of 5)', `${median(warm).toFixed(2)} s`, `node -e 0 ${node.toFixed(2)} s`, `${(median(warm) / node).toFixed(1)}x`, `<= ${GOALS.warmSeconds} s`, median(warm) <= GOALS.warmSeconds ? 'PASS' : 'MISS'],
      ['tree size on disk', `${du.toFixed(0)} MB`, `manifest files ${(status.sizeBytes / 1e6).toFixed(0)} MB`, '', `<= ${GOALS.treeMb} MB`, du <= GOALS.treeMb ? 'PASS' : 'MISS'],
    );
  });
  const widths = [0, 1, 2, 3, 4, 5].map((i) => Math.max(...[['measure', 'ootmod', 'baseline (same run)', 'ratio', 'goal', ''], ...rows].map((r) => r[i]!.length)));
  console.log(`\nRust tree of ${kernel.kver} (sid chroot, ${kernel.kver})`);
  for (const r of [['measure', 'ootmod', 'baseline (same run)', 'ratio', 'goal', ''], ...rows]) console.log(r.map((x, i) => x.padEnd(widths[i]!)).join('  '));
}

main().catch((e) => {
  console.error(`rust bench: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
