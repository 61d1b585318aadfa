// The Rust rows, in the benchmark's own sid chroot (bench/sid.ts: set up on first use):
//   rust-cold   cold `ootmod rust prepare` (the default metadata tree) vs the bare kbuild recipe (below: the
//               full rust/ build), alternating (ootmod, bare, ootmod, bare...), the same -j, the same state
//               before each sample (no tree, no objtree, the tarball read once beforehand)
//                                                                                        goal <= 0.35x the bare recipe
//               then the warm (cache hit) prepare vs `node -e 0`                         goal <= 0.5 s
//               and the tree's size on disk                                              goal <= 160 MB
//   new-kernel  a new CONFIG_RUST kernel, cold (no Rust tree): autoinstall of three C sources (the Debian
//               ones) and one Rust module, vs (`rust prepare` alone + `install` of the Rust module alone),
//               alternating, the same -j, each sample from no tree and nothing installed
//               the C modules are installed before the Rust tree is finished
//               autoinstall wall                                                         goal <= 1.10x (tree + Rust module)
//               concurrent compilers (cc1, rustc) during the autoinstall                 goal <= --jobs
// The bare recipe is the shell one of the reference (merged srctree: rust/ and a few scripts from the
// linux-source tarball, the rest linked from headers-common; the same `make run-command FORCE` with the
// same targets), without ootmod's checks, ABI check, pruning and manifest.
import { chmodSync, copyFileSync, existsSync, lstatSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Chroot } from '../test/e2e/lib/chroot';
import type { RealModule } from './host';
import { installTimes } from './jobs';
import { CORES, FIXTURES, OOTMOD, QUICK, addSource, alternate, median, run, secs, step, table, type Goal, type RowResult } from './lib';
import { sampleTree, type Tick } from './sampler';
import { rustChroot } from './sid';

const GOALS = { coldRatio: 0.35, warmSeconds: 0.5, treeMb: 160, newKernelRatio: 1.1, newKernelBeforeRatio: 0.5 };
/**
 * OOTMOD_BENCH_BEFORE_BIN=FILE: an older bundle (e.g. the code when issue 20 was filed, which built the full
 * tree) whose autoinstall the new-kernel row also times, as a third side of each round (A B C A B C); the
 * goal is the measured bundle's autoinstall <= 0.5x the older one's.
 */
const BEFORE_BIN = process.env.OOTMOD_BENCH_BEFORE_BIN ? path.resolve(process.env.OOTMOD_BENCH_BEFORE_BIN) : undefined;
const RUST_MODULE = 'ootmod-rust-hello-1.0';
const intEnv = (name: string, def: number, min: number) => Math.max(min, Number(process.env[name] ?? def) || def);
/** Samples per side: 1 in quick mode, else BENCH_RUST_REPS (default 3, min 3): each is a cold Rust tree build. */
const REPS = QUICK ? 1 : intEnv('BENCH_RUST_REPS', 3, 3);

export const BARE_RECIPE = String.raw`
set -eu
KVER=$1; OBJ=$2; JOBS=$3
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
make -j"$JOBS" run-command FORCE KBUILD_RUN_COMMAND='+$(MAKE) $(build)=scripts scripts/target.json && $(MAKE) $(build)=rust' >/dev/null
`;

const CHROOT_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG=C.UTF-8', 'HOME=/root'];

interface Timed {
  seconds: number;
  stdout: string;
  ticks?: Tick[];
  /** Date.now() at the start. */
  started: number;
}

/** Runs a bash script in the chroot (mounts must be up), timed from the host; throws on failure. */
async function sh(c: Chroot, script: string, opts: { sampleMs?: number; limit?: number } = {}): Promise<Timed> {
  let sampler: ReturnType<typeof sampleTree> | undefined;
  const started = Date.now();
  const r = await run('chroot', [c.root, '/usr/bin/env', '-i', ...CHROOT_ENV, 'bash', '-c', script], {
    onSpawn: (pid) => {
      if (opts.sampleMs) sampler = sampleTree(pid, opts.sampleMs, opts.limit);
    },
  });
  const ticks = sampler?.stop();
  if (r.code !== 0) throw new Error(`failed in the chroot (exit ${r.code}): ${script}\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
  return { seconds: r.seconds, stdout: r.stdout, ticks, started };
}

/** The tree dir `current` names and when that link was made (the end of the tree's build), if any. */
function currentTree(c: Chroot, kver: string): { mtimeMs: number } | undefined {
  const base = c.path(`/var/lib/ootmod/rust/${kver}`);
  for (const arch of existsSync(base) ? readdirSync(base) : []) {
    const link = path.join(base, arch, 'current');
    if (existsSync(link)) return { mtimeMs: lstatSync(link).mtimeMs };
  }
  return undefined;
}

const ratioText = (a: number, b: number) => `${(a / b).toFixed(2)}x`;

/**
 * Runs a command in the chroot and also returns the CPU time (user + sys) of everything it ran: bash's
 * `time` of the command, whose descendants are all waited for. Unlike wall time, the CPU a build takes
 * hardly changes with what else the machine runs, so it is the cross-check a noisy run still has.
 */
async function timedCpu(c: Chroot, command: string): Promise<{ seconds: number; cpu: number }> {
  const t = await sh(c, `TIMEFORMAT='%U %S'; { time ${command} >/dev/null 2>/var/tmp/bench-cmd.err ; } 2>/var/tmp/bench-cpu.txt; rc=$?; [ $rc = 0 ] || cat /var/tmp/bench-cmd.err >&2; exit $rc`);
  const [user, sys] = (await sh(c, 'tail -1 /var/tmp/bench-cpu.txt')).stdout.trim().split(/\s+/).map(Number);
  const cpu = (user ?? NaN) + (sys ?? NaN);
  step(`   ${t.seconds.toFixed(1)} s wall, ${cpu.toFixed(1)} s CPU`);
  return { seconds: t.seconds, cpu };
}

export async function rustColdRow(): Promise<RowResult> {
  const { chroot: c, kernel } = await rustChroot(OOTMOD);
  const jobs = CORES;
  const kver = kernel.kver;
  return c.withMounts(async () => {
    writeFileSync(c.path('/usr/local/sbin/bench-bare-recipe'), BARE_RECIPE, { mode: 0o755 });
    const kept = c.path('/var/tmp/bench-kept-rust');
    const clean = () => {
      rmSync(c.path('/var/tmp/bench-obj'), { recursive: true, force: true });
      rmSync(c.path('/var/lib/ootmod/rust'), { recursive: true, force: true });
    };
    step('rust-cold: reading the linux-source tarball once, so every build starts with it cached');
    await sh(c, 'cat /usr/src/linux-source-*.tar.xz > /dev/null');
    let lastLog = '';
    const { a: coldT, b: bareT } = await alternate(
      REPS,
      async (i) => {
        rmSync(kept, { recursive: true, force: true });
        clean();
        step(`rust-cold: sample ${i + 1}/${REPS}: ootmod rust prepare -k ${kver} -j ${jobs} (cold)`);
        const t = await timedCpu(c, `ootmod rust prepare -k ${kver} -j ${jobs}`);
        lastLog = (await sh(c, `cat /var/lib/ootmod/rust/${kver}/*/build.log 2>/dev/null || true`)).stdout;
        return t;
      },
      async (i) => {
        // The same state as ootmod's sample (no tree): its tree is set aside, and put back for the warm figure.
        rmSync(kept, { recursive: true, force: true });
        renameSync(c.path('/var/lib/ootmod/rust'), kept);
        clean();
        step(`rust-cold: sample ${i + 1}/${REPS}: the bare kbuild recipe, make -j${jobs} (cold)`);
        const t = await timedCpu(c, `bench-bare-recipe ${kver} /var/tmp/bench-obj ${jobs}`);
        clean();
        renameSync(kept, c.path('/var/lib/ootmod/rust'));
        return t;
      },
    );
    const cold = coldT.map((t) => t.seconds);
    const bare = bareT.map((t) => t.seconds);
    const coldCpu = coldT.map((t) => t.cpu);
    const bareCpu = bareT.map((t) => t.cpu);
    const warmRuns = QUICK ? 3 : 5;
    step(`rust-cold: ootmod rust prepare (warm) x${warmRuns}, interleaved with node -e 0`);
    const warm: number[] = [];
    const node: number[] = [];
    for (let i = 0; i < warmRuns; i++) {
      warm.push((await sh(c, `ootmod rust prepare -k ${kver} >/dev/null`)).seconds);
      node.push((await sh(c, 'node -e 0')).seconds);
    }
    const status = JSON.parse((await sh(c, 'ootmod rust status --json')).stdout) as { trees: { dir: string; sizeBytes: number; kind?: string; abi?: { ok: boolean; matched: number; exported: number } }[] };
    const tree = status.trees[0]!;
    // The kind of tree measured (an older bundle's trees say none: they were full ones).
    const kind = tree.kind ?? 'full';
    const du = Number((await sh(c, `du -sb ${tree.dir}`)).stdout.split(/\s+/)[0]) / 1e6;
    // Cross-check that noise cannot fake: ootmod's own time outside the make and tar it runs (from its log).
    const children = [...lastLog.matchAll(/# command: (tar|make) [^\n]*\n(?:[^#][^\n]*\n|#(?! elapsed)[^\n]*\n)*# elapsed time: ([\d.]+)s/g)].reduce((t, m) => t + Number(m[2]), 0);
    const coldMed = median(cold);
    const bareMed = median(bare);
    const warmMed = median(warm);
    const nodeMed = median(node);
    const lastCold = cold[cold.length - 1]!;
    const lines = [`(sid chroot, ${kver}; ${REPS} sample${REPS > 1 ? 's' : ''} each, alternating ootmod, bare; -j ${jobs} for both; the tarball read once before; ootmod's tree: ${kind}, ABI ${tree.abi?.ok ? 'ok' : 'FAILED'} ${tree.abi?.matched ?? '?'}/${tree.abi?.exported ?? '?'})`];
    lines.push(...table(
      ['measure', 'ootmod', 'baseline (same run)', 'ratio', 'samples (ootmod | baseline)'],
      [
        ['cold prepare', secs(coldMed, 1), `bare recipe ${secs(bareMed, 1)}`, ratioText(coldMed, bareMed), `${cold.map((x) => x.toFixed(1)).join('/')} | ${bare.map((x) => x.toFixed(1)).join('/')}`],
        ['cold prepare, CPU (user + sys)', secs(median(coldCpu), 1), `bare recipe ${secs(median(bareCpu), 1)}`, ratioText(median(coldCpu), median(bareCpu)), `${coldCpu.map((x) => x.toFixed(1)).join('/')} | ${bareCpu.map((x) => x.toFixed(1)).join('/')}`],
        ['  last cold: outside make and tar', secs(lastCold - children, 1), `make + tar ${secs(children, 1)}`, children ? ratioText(lastCold, children) : '-', ''],
        [`warm prepare (median of ${warmRuns})`, secs(warmMed), `node -e 0 ${secs(nodeMed)}`, ratioText(warmMed, nodeMed), `${warm.map((x) => x.toFixed(2)).join('/')} | ${node.map((x) => x.toFixed(2)).join('/')}`],
        ['tree size on disk', `${du.toFixed(0)} MB`, `manifest files ${(tree.sizeBytes / 1e6).toFixed(0)} MB`, '', ''],
      ],
    ).map((l) => `   ${l}`));
    const goals: Goal[] = [
      { what: 'cold rust prepare vs the bare kbuild recipe', value: secs(coldMed, 1), baseline: `bare recipe ${secs(bareMed, 1)}`, ratio: coldMed / bareMed, limit: `<= ${GOALS.coldRatio.toFixed(2)}x`, pass: coldMed / bareMed <= GOALS.coldRatio },
      { what: 'warm rust prepare', value: secs(warmMed), baseline: `node -e 0 ${secs(nodeMed)}`, ratio: warmMed / nodeMed, limit: `<= ${GOALS.warmSeconds} s`, pass: warmMed <= GOALS.warmSeconds },
      { what: 'Rust tree on disk', value: `${du.toFixed(0)} MB`, baseline: '', limit: `<= ${GOALS.treeMb} MB`, pass: du <= GOALS.treeMb },
    ];
    return { lines, goals, data: { kver, jobs, kind, cold, bare, coldCpu, bareCpu, warm, node, treeMb: du, manifestMb: tree.sizeBytes / 1e6, outsideMakeAndTar: lastCold - children } };
  });
}

interface NewKernelSample {
  seconds: number;
  summary: string;
  /** Per source: seconds after the start when its modules were installed (undefined: never). */
  installed: Record<string, number | undefined>;
  /** Seconds after the start when the Rust tree's `current` link was made. */
  treeDone?: number;
  maxCompilers: number;
  samples: number;
  /** Command lines of the compilers at the first sample with more than --jobs of them. */
  overExample?: string[];
}

export async function newKernelRow(real: RealModule[]): Promise<RowResult> {
  const { chroot: c, kernel } = await rustChroot(OOTMOD);
  if (BEFORE_BIN) {
    copyFileSync(BEFORE_BIN, c.path('/usr/sbin/ootmod-before'));
    chmodSync(c.path('/usr/sbin/ootmod-before'), 0o755);
  }
  const jobs = CORES;
  const kver = kernel.kver;
  const rustSrc = path.join(FIXTURES, RUST_MODULE);
  const cSources = real.map((m) => m.srcDir);
  for (const src of [...cSources, rustSrc]) {
    rmSync(c.path(`/usr/src/${path.basename(src)}`), { recursive: true, force: true });
    addSource(c.root, src);
  }
  const reset = () => {
    rmSync(c.path('/var/lib/ootmod'), { recursive: true, force: true });
    rmSync(c.path(`/usr/lib/modules/${kver}/updates/ootmod`), { recursive: true, force: true });
  };
  return c.withMounts(async () => {
    const { a: auto, b: base } = await alternate(
      REPS,
      async (i): Promise<NewKernelSample> => {
        reset();
        step(`new-kernel: sample ${i + 1}/${REPS}: ootmod autoinstall -k ${kver} -j ${jobs} (no Rust tree; 3 C + 1 Rust module), compilers counted every 100 ms`);
        const t = await sh(c, `ootmod autoinstall -k ${kver} -j ${jobs}`, { sampleMs: 100, limit: jobs });
        const times = installTimes(c.path(`/usr/lib/modules/${kver}/updates/ootmod`), [...cSources, rustSrc]);
        const tree = currentTree(c, kver);
        const ticks = t.ticks ?? [];
        return {
          seconds: t.seconds, summary: t.stdout.trim().split('\n').pop() ?? '',
          installed: Object.fromEntries([...times].map(([k, v]) => [k, v === undefined ? undefined : (v - t.started) / 1000])),
          treeDone: tree ? (tree.mtimeMs - t.started) / 1000 : undefined,
          maxCompilers: Math.max(0, ...ticks.map((x) => x.compilers)), samples: ticks.length,
          overExample: ticks.find((x) => x.over)?.over,
        };
      },
      async (i) => {
        reset();
        step(`new-kernel: sample ${i + 1}/${REPS}: baseline: ootmod rust prepare alone, then ootmod install of the Rust module alone`);
        const tree = await sh(c, `ootmod rust prepare -k ${kver} -j ${jobs} >/dev/null`);
        const mod = await sh(c, `ootmod install ootmod-rust-hello -k ${kver} -j ${jobs}`);
        let before: number | undefined;
        if (BEFORE_BIN) {
          // The third side of the round: the older bundle's autoinstall, from the same state.
          reset();
          step(`new-kernel: sample ${i + 1}/${REPS}: the older bundle (${path.basename(path.dirname(path.dirname(BEFORE_BIN)))}): ootmod autoinstall -k ${kver} -j ${jobs}`);
          before = (await sh(c, `ootmod-before autoinstall -k ${kver} -j ${jobs}`)).seconds;
        }
        return { tree: tree.seconds, module: mod.seconds, sum: tree.seconds + mod.seconds, before };
      },
    );
    reset();
    const autoMed = median(auto.map((x) => x.seconds));
    const baseMed = median(base.map((x) => x.sum));
    const cNames = cSources.map((s) => path.basename(s));
    const cFirst = auto.map((x) => cNames.every((n) => x.installed[n] !== undefined && x.treeDone !== undefined && x.installed[n]! < x.treeDone));
    const lines = [`(sid chroot, ${kver}, CONFIG_RUST; ${REPS} sample${REPS > 1 ? 's' : ''} each, alternating; -j ${jobs}; each sample from no Rust tree and nothing installed)`];
    lines.push(...table(
      ['sample', 'autoinstall', 'Rust tree done at', 'C modules installed at', 'Rust module at', 'most compilers', 'summary'],
      auto.map((x, i) => [
        `${i + 1}`, secs(x.seconds, 1), secs(x.treeDone, 1), cNames.map((n) => `${n.replace(/-[^-]+$/, '')} ${x.installed[n]?.toFixed(1) ?? 'never'}`).join(', '),
        secs(x.installed[RUST_MODULE], 1), `${x.maxCompilers} (${x.samples} samples)`, x.summary.replace(/^autoinstall: /, ''),
      ]),
    ).map((l) => `   ${l}`));
    lines.push(`   baseline samples (tree + Rust module): ${base.map((b) => `${b.tree.toFixed(1)} + ${b.module.toFixed(1)} = ${b.sum.toFixed(1)} s`).join('; ')}`);
    const before = base.flatMap((b) => (b.before === undefined ? [] : [b.before]));
    if (before.length) lines.push(`   the older bundle's autoinstall (${BEFORE_BIN}): ${before.map((x) => x.toFixed(1)).join('/')} s`);
    lines.push('   times "at": seconds after the autoinstall started, from the mtimes of the installed .ko files and of the tree\'s `current` link');
    for (const x of auto) if (x.overExample) lines.push(`   compilers at a sample over --jobs: ${x.overExample.join(' | ')}`);
    const most = Math.max(...auto.map((x) => x.maxCompilers));
    const goals: Goal[] = [
      { what: 'new kernel: C modules installed before the Rust tree is done', value: `${cFirst.filter(Boolean).length}/${cFirst.length} samples`, baseline: '', limit: 'every sample', pass: cFirst.every(Boolean) },
      { what: 'new kernel: autoinstall vs tree alone + Rust module alone', value: secs(autoMed, 1), baseline: `${secs(baseMed, 1)} (tree ${secs(median(base.map((b) => b.tree)), 1)})`, ratio: autoMed / baseMed, limit: `<= ${GOALS.newKernelRatio.toFixed(2)}x`, pass: autoMed / baseMed <= GOALS.newKernelRatio },
      { what: `new kernel: concurrent compilers (cc1, rustc) with --jobs ${jobs}`, value: `${most}`, baseline: `--jobs ${jobs}`, ratio: most / jobs, limit: `<= ${jobs}`, pass: most <= jobs },
    ];
    if (before.length) {
      const beforeMed = median(before);
      goals.push({ what: 'new kernel: autoinstall vs the older bundle\'s autoinstall', value: secs(autoMed, 1), baseline: `older bundle ${secs(beforeMed, 1)}`, ratio: autoMed / beforeMed, limit: `<= ${GOALS.newKernelBeforeRatio.toFixed(2)}x`, pass: autoMed / beforeMed <= GOALS.newKernelBeforeRatio });
    }
    return { lines, goals, data: { kver, jobs, autoinstall: auto, baseline: base, before: BEFORE_BIN ? { bundle: BEFORE_BIN, seconds: before } : undefined } };
  });
}
