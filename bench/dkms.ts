// The DKMS baseline: the same modules through the host's real DKMS (dkms add + dkms autoinstall -k KVER -j N),
// which only works on the real system (/usr/src, /var/lib/dkms, /usr/lib/modules/KVER). Everything it
// creates is removed afterwards: dkms remove --all, the /usr/src copies, and any path that was not there
// before under /var/lib/dkms and /usr/lib/modules/KVER (depmod output, the MOK key DKMS generates).
import { execFileSync } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, lstatSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { foreignLoad, goMinusW, must, onInterrupt, run, step } from './lib';

export interface DkmsModule {
  name: string;
  version: string;
  /** The extracted source tree (staging), copied to /usr/src/<name>-<version>. */
  srcDir: string;
}

/** One timed `dkms autoinstall`, from a fresh registration to a restored host. */
export interface DkmsSample {
  seconds: number;
  /** CPU seconds of dkms autoinstall and everything it ran. */
  cpu?: number;
  /** Cores other processes kept busy during it. */
  otherLoad?: number;
  exit: number;
  /** `dkms status` lines after autoinstall. */
  statusLines: string[];
  installedCount: number;
  addSeconds: number;
  /** `dkms status` timings, when asked for. */
  statusSamples: number[];
  depmodNote?: string;
}

export interface DkmsSession {
  version: string;
  /** Why DKMS cannot be measured here (nothing was touched then). */
  skipped?: string;
  /**
   * dkms add + (timed) dkms autoinstall -k KVER -j JOBS, then everything removed again (dkms remove --all, the
   * /usr/src copies, every new path under /var/lib/dkms and the module dir: the MOK key DKMS generates, depmod's
   * output), so each sample starts from the same host state, as each ootmod sample starts from a fresh sandbox.
   */
  sample(opts: { jobs: number; statusRuns?: number; during?: () => Promise<void> }): Promise<DkmsSample>;
  /** Whether the host is as it was before the first sample (after the last one). */
  restored: boolean;
  leftovers: string[];
  missing: string[];
}

function walk(dir: string, into: Set<string>): void {
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    return;
  }
  into.add(dir);
  if (!st.isDirectory()) return;
  for (const e of readdirSync(dir)) walk(path.join(dir, e), into);
}

/** Every path under the trees DKMS writes, plus the entries of /usr/src. */
function snapshot(trees: string[]): Set<string> {
  const s = new Set<string>();
  for (const t of trees) walk(t, s);
  for (const e of existsSync('/usr/src') ? readdirSync('/usr/src') : []) s.add(path.join('/usr/src', e));
  return s;
}

/** The host's DKMS on these modules, for `kver`; appends what it prints to `logFile`. */
export async function dkmsSession(kver: string, modules: DkmsModule[], logFile: string): Promise<DkmsSession> {
  const v = await run('dkms', ['--version']);
  const version = (v.stdout + v.stderr).trim().replace(/^dkms-?\s*/, '');
  const session: DkmsSession = { version, restored: true, leftovers: [], missing: [], sample: () => Promise.reject(new Error(session.skipped)) };
  if (process.getuid?.() !== 0) {
    session.skipped = 'not root: real DKMS needs /usr/src, /var/lib/dkms and /usr/lib/modules';
    return session;
  }
  const before = await run('dkms', ['status']);
  if (before.stdout.trim()) {
    // autoinstall would also (re)build the host's own DKMS modules, which would skew the time and change the host.
    session.skipped = `dkms already manages modules on this host (${before.stdout.trim().split('\n').length}): autoinstall would touch them`;
    return session;
  }
  const present = modules.filter((m) => existsSync(`/usr/src/${m.name}-${m.version}`));
  if (present.length) {
    session.skipped = `${present.map((m) => `/usr/src/${m.name}-${m.version}`).join(', ')} already exist: not touching them`;
    return session;
  }
  const moduleDir = realpathSync(`/usr/lib/modules/${kver}`);
  const trees = ['/var/lib/dkms', moduleDir];
  const initial = snapshot(trees);
  const depBefore = existsSync(path.join(moduleDir, 'modules.dep'));
  writeFileSync(logFile, '');
  const log = (...text: string[]) => appendFileSync(logFile, `${text.join('\n')}\n`);
  const added: DkmsModule[] = [];

  const cleanup = () => {
    for (const m of added) {
      try {
        log(execFileSync('dkms', ['remove', '-m', m.name, '-v', m.version, '--all'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
      } catch (e) {
        log(`dkms remove ${m.name}/${m.version} --all failed: ${String((e as { stderr?: string }).stderr ?? e)}`);
      }
      rmSync(`/usr/src/${m.name}-${m.version}`, { recursive: true, force: true });
    }
    added.length = 0;
    // Whatever dkms remove left (depmod's modules.*, the MOK key, empty dirs): deepest first.
    const fresh = [...snapshot(trees)].filter((p) => !initial.has(p)).sort((a, b) => b.length - a.length);
    for (const p of fresh) rmSync(p, { recursive: true, force: true });
    const after = snapshot(trees);
    session.leftovers = [...after].filter((p) => !initial.has(p));
    session.missing = [...initial].filter((p) => !after.has(p));
    session.restored = session.leftovers.length === 0 && session.missing.length === 0;
  };

  session.sample = async ({ jobs, statusRuns = 0, during }) => {
    const unhook = onInterrupt(() => {
      step('removing what DKMS added before exiting');
      cleanup();
      step(session.restored ? 'host restored' : `host NOT fully restored: leftovers ${session.leftovers.join(', ')}`);
    });
    try {
      for (const m of modules) {
        const dest = `/usr/src/${m.name}-${m.version}`;
        added.push(m);
        cpSync(m.srcDir, dest, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
        goMinusW(dest);
      }
      let addSeconds = 0;
      for (const m of modules) {
        const r = await must('dkms', ['add', '-m', m.name, '-v', m.version]);
        addSeconds += r.seconds;
        log(r.stdout, r.stderr);
      }
      step(`dkms autoinstall -k ${kver} -j ${jobs} (real system)`);
      const load = foreignLoad();
      const ai = await run('dkms', ['autoinstall', '-k', kver, '-j', String(jobs)], { measure: true });
      const otherLoad = load();
      log(`# dkms autoinstall -k ${kver} -j ${jobs}: exit ${ai.code}, ${ai.seconds.toFixed(2)} s`, ai.stdout, ai.stderr);
      const depAfter = existsSync(path.join(moduleDir, 'modules.dep'));
      const depmodNote = depBefore
        ? undefined
        : depAfter
          ? `${moduleDir} had no modules.dep; DKMS ${version} ran depmod anyway (created it; removed again afterwards)`
          : `${moduleDir} has no modules.dep: DKMS ${version} skipped depmod there (its time has no depmod; ootmod's has one)`;
      const st = await run('dkms', ['status']);
      const statusLines = st.stdout.trim().split('\n').filter(Boolean);
      const installedCount = statusLines.filter((l) => /:\s*installed/.test(l) && modules.some((m) => l.startsWith(`${m.name}/`))).length;
      const statusSamples: number[] = [];
      for (let i = 0; i < statusRuns; i++) statusSamples.push((await must('dkms', ['status'])).seconds);
      // What a caller measures while DKMS has the modules installed (e.g. dkms status beside ootmod's).
      if (during) await during();
      return { seconds: ai.seconds, cpu: ai.cpuSeconds, otherLoad, exit: ai.code, statusLines, installedCount, addSeconds, statusSamples, depmodNote };
    } finally {
      cleanup();
      unhook();
      if (!session.restored) step(`WARNING: host NOT fully restored after dkms: leftovers ${session.leftovers.join(', ') || '-'}; missing ${session.missing.join(', ') || '-'}`);
    }
  };
  return session;
}
