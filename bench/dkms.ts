// The DKMS baseline: the same modules through the host's real DKMS (dkms add + dkms autoinstall -k KVER),
// which only works on the real system (/usr/src, /var/lib/dkms, /usr/lib/modules/KVER). Everything it
// creates is removed afterwards: dkms remove --all, the /usr/src copies, and any path that was not there
// before under /var/lib/dkms and /usr/lib/modules/KVER (depmod output, the MOK key DKMS generates).
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { foreignLoad, goMinusW, median, must, onInterrupt, run, step, waitQuiet } from './lib';

export interface DkmsModule {
  name: string;
  version: string;
  /** The extracted source tree (staging), copied to /usr/src/<name>-<version>. */
  srcDir: string;
}

export interface DkmsResult {
  version?: string;
  skipped?: string;
  addSeconds?: number;
  autoinstallSeconds?: number;
  /** CPU seconds of dkms autoinstall and everything it ran. */
  autoinstallCpu?: number;
  /** Cores other processes kept busy during dkms autoinstall. */
  autoinstallOtherLoad?: number;
  autoinstallExit?: number;
  /** `dkms status` lines after autoinstall. */
  statusLines: string[];
  installedCount: number;
  statusSamples: number[];
  statusMedian?: number;
  modulesDepBefore?: boolean;
  modulesDepAfterAutoinstall?: boolean;
  depmodNote?: string;
  restored?: boolean;
  leftovers: string[];
  missing: string[];
  error?: string;
  logFile?: string;
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

export async function runDkms(kver: string, modules: DkmsModule[], opts: { statusRuns: number; logFile: string }): Promise<DkmsResult> {
  const result: DkmsResult = { statusLines: [], installedCount: 0, statusSamples: [], leftovers: [], missing: [], logFile: opts.logFile };
  const v = await run('dkms', ['--version']);
  result.version = (v.stdout + v.stderr).trim().replace(/^dkms-?\s*/, '');
  if (process.getuid?.() !== 0) {
    result.skipped = 'not root: real DKMS needs /usr/src, /var/lib/dkms and /usr/lib/modules';
    return result;
  }
  const before = await run('dkms', ['status']);
  const clash = modules.filter((m) => before.stdout.split('\n').some((l) => l.startsWith(`${m.name}/`) || l.startsWith(`${m.name},`)));
  if (clash.length) {
    result.skipped = `dkms already manages ${clash.map((m) => m.name).join(', ')} on this host: not touching it`;
    return result;
  }
  if (before.stdout.trim()) {
    // autoinstall would also (re)build the host's own DKMS modules, which would skew the time and change the host.
    result.skipped = `dkms already manages other modules on this host (${before.stdout.trim().split('\n').length}): autoinstall would touch them`;
    return result;
  }
  const present = modules.filter((m) => existsSync(`/usr/src/${m.name}-${m.version}`));
  if (present.length) {
    result.skipped = `${present.map((m) => `/usr/src/${m.name}-${m.version}`).join(', ')} already exist: not touching them`;
    return result;
  }

  const moduleDir = realpathSync(`/usr/lib/modules/${kver}`);
  const trees = ['/var/lib/dkms', moduleDir];
  const initial = snapshot(trees);
  result.modulesDepBefore = existsSync(path.join(moduleDir, 'modules.dep'));
  const added: DkmsModule[] = [];
  const log: string[] = [];

  const cleanup = () => {
    for (const m of added) {
      try {
        log.push(execFileSync('dkms', ['remove', '-m', m.name, '-v', m.version, '--all'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
      } catch (e) {
        log.push(`dkms remove ${m.name}/${m.version} --all failed: ${String((e as { stderr?: string }).stderr ?? e)}`);
      }
      rmSync(`/usr/src/${m.name}-${m.version}`, { recursive: true, force: true });
    }
    added.length = 0;
    // Whatever dkms remove left (depmod's modules.*, the MOK key, empty dirs): deepest first.
    const now = snapshot(trees);
    const fresh = [...now].filter((p) => !initial.has(p)).sort((a, b) => b.length - a.length);
    for (const p of fresh) rmSync(p, { recursive: true, force: true });
    const after = snapshot(trees);
    result.leftovers = [...after].filter((p) => !initial.has(p));
    result.missing = [...initial].filter((p) => !after.has(p));
    result.restored = result.leftovers.length === 0 && result.missing.length === 0;
  };
  const unhook = onInterrupt(() => {
    step('removing what DKMS added before exiting');
    cleanup();
    step(result.restored ? 'host restored' : `host NOT fully restored: leftovers ${result.leftovers.join(', ')}`);
  });

  try {
    for (const m of modules) {
      const dest = `/usr/src/${m.name}-${m.version}`;
      added.push(m);
      cpSync(m.srcDir, dest, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
      goMinusW(dest);
    }
    step(`dkms add ${modules.map((m) => `${m.name}/${m.version}`).join(' ')}`);
    let addSeconds = 0;
    for (const m of modules) {
      const r = await must('dkms', ['add', '-m', m.name, '-v', m.version]);
      addSeconds += r.seconds;
      log.push(r.stdout, r.stderr);
    }
    result.addSeconds = addSeconds;

    await waitQuiet();
    step(`dkms autoinstall -k ${kver} (real system; this is the slow part)`);
    const load = foreignLoad();
    const ai = await run('dkms', ['autoinstall', '-k', kver], { measure: true });
    result.autoinstallOtherLoad = load();
    log.push(`# dkms autoinstall -k ${kver}: exit ${ai.code}, ${ai.seconds.toFixed(2)} s`, ai.stdout, ai.stderr);
    result.autoinstallSeconds = ai.seconds;
    result.autoinstallCpu = ai.cpuSeconds;
    result.autoinstallExit = ai.code;
    result.modulesDepAfterAutoinstall = existsSync(path.join(moduleDir, 'modules.dep'));
    if (!result.modulesDepBefore) {
      result.depmodNote = result.modulesDepAfterAutoinstall
        ? `${moduleDir} had no modules.dep; DKMS ${result.version} ran depmod anyway (created it; removed again afterwards)`
        : `${moduleDir} has no modules.dep: DKMS ${result.version} skipped depmod there (its time has no depmod; ootmod's has one)`;
    }

    const st = await run('dkms', ['status']);
    result.statusLines = st.stdout.trim().split('\n').filter(Boolean);
    result.installedCount = result.statusLines.filter((l) => /:\s*installed/.test(l) && modules.some((m) => l.startsWith(`${m.name}/`))).length;

    await waitQuiet();
    step(`dkms status x${opts.statusRuns}`);
    for (let i = 0; i < opts.statusRuns; i++) result.statusSamples.push((await must('dkms', ['status'])).seconds);
    result.statusMedian = median(result.statusSamples);
  } catch (e) {
    result.error = e instanceof Error ? e.message : String(e);
  } finally {
    step('removing everything DKMS added (dkms remove --all, /usr/src copies, new files)');
    cleanup();
    unhook();
    writeFileSync(opts.logFile, log.join('\n'));
  }
  return result;
}
