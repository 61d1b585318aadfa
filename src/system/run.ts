// The one way ootmod starts a process: logs the command, captures its output into the job's log,
// applies a time limit and turns failure into a typed error.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { constants } from 'node:os';
import path from 'node:path';
import { ExitCode, OotmodError } from '../errors.js';
import { confinedCommand, confinedEnv, sandboxDenial, type Confinement } from './sandbox.js';

export interface CommandLog {
  /** Appends text to the log (make.log of a build, or ootmod's own debug stream). */
  write(text: string): Promise<void>;
}

/** What a child make needs to join ootmod's jobserver (src/execute/jobserver.ts). */
export interface JobserverClient {
  /** MAKEFLAGS for the child (`-jN --jobserver-auth=…`). */
  makeflags: string;
  /** Fds the child must have at 3, 4, … (pipe form only). */
  fds: number[];
}

export interface RunOptions {
  cwd?: string;
  /** Extra environment; merged over process.env unless `cleanEnv` is set. */
  env?: Record<string, string | undefined>;
  cleanEnv?: boolean;
  input?: string;
  timeoutMs?: number;
  log?: CommandLog;
  /** Return a result with a non-zero exit code instead of throwing. */
  allowFailure?: boolean;
  /** Human name of the step for error messages, e.g. "make" or "PRE_BUILD". */
  step?: string;
  /** Join ootmod's make jobserver: MAKEFLAGS, and the fds of the pipe form at 3, 4. */
  jobserver?: JobserverClient;
  /** Run it confined (src/system/sandbox.ts): as the build user, no network, only these dirs writable. */
  confine?: Confinement;
  /** Keeps stdin open and hands it over (a long-lived command fed requests); ignored with `input`. */
  feed?: (stdin: NodeJS.WritableStream) => void;
  /** Sees stdout as it comes (it is still collected). */
  onStdout?: (chunk: Buffer) => void;
  /** Ends the command like a timeout does (SIGTERM to its group, then SIGKILL). */
  signal?: AbortSignal;
}

export interface RunResult {
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout and stderr interleaved as the process wrote them. */
  all: string;
  durationMs: number;
  timedOut: boolean;
}

export class CommandError extends OotmodError {
  constructor(readonly result: RunResult, step: string, remedy?: string) {
    const why = result.timedOut ? 'timed out' : `exited with ${result.exitCode}`;
    const tail = firstError(result.all) || lastLine(result.stderr) || lastLine(result.stdout);
    super(`${step} ${why}${tail ? ` (${tail})` : ''}`, remedy, ExitCode.Failed);
  }
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return (lines[lines.length - 1] ?? '').trim().slice(0, 200);
}

const MAKE_LINE = /^make(\[\d+\])?: /;

/**
 * The first line that says what went wrong, rather than make's closing "Error 2": a compiler's
 * "file:line:col: error:" (gcc, clang; rustc's "error[E0425]:" with the " --> file:line:col" that
 * follows it), modpost's "ERROR: modpost: ...", else make's own "*** message.  Stop.". Paths are
 * shortened to the file name.
 */
export function firstError(text: string): string {
  const lines = text.split('\n');
  const short = (line: string) => line.trim().replace(/^\/\S*\/([^/\s]+:)/, '$1').slice(0, 200);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (MAKE_LINE.test(line) || /^error: aborting due to/.test(line)) continue;
    const rust = /^error(\[E\d+\])?: (.*)$/.exec(line);
    if (rust) {
      const where = /^\s*--> (\S+)$/.exec(lines[i + 1] ?? '')?.[1];
      return short(where ? `${where}: ${line}` : line);
    }
    if (/\berror:/.test(line) || /^ERROR: /.test(line)) return short(line);
  }
  // make's own message: "make[1]: *** No rule to make target ...  Stop.", "Makefile:2: *** msg.  Stop."
  const stop = lines.find((l) => /\*\*\* .*  Stop\.$/.test(l));
  return stop ? short(stop.replace(MAKE_LINE, '').replace('*** ', '').replace(/\.?  Stop\.$/, '')) : '';
}

export function quoteArg(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

export function fileLog(file: string): CommandLog {
  return { write: (text) => appendFile(file, text) };
}

const osSignals = constants.signals as Record<string, number>;

/** Output kept per stream; a build log beyond this keeps its head and tail (the log file gets all). */
const MAX_CAPTURE = 64 * 1024 * 1024;

function mergedEnv(opts: RunOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = opts.cleanEnv ? {} : { ...process.env };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  if (opts.jobserver) {
    env.MAKEFLAGS = opts.jobserver.makeflags;
    delete env.MFLAGS;
  }
  return env;
}

/** Process groups of running children: ended with ootmod when it is interrupted (they have their own group). */
const liveGroups = new Set<number>();
let handlersInstalled = false;

/** How long children get to end on SIGTERM before ootmod, interrupted, kills what is left. */
const INTERRUPT_GRACE_MS = 300;

function signalGroups(signal: NodeJS.Signals): number {
  let alive = 0;
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, signal);
      alive++;
    } catch {
      // Already gone.
    }
  }
  return alive;
}

/**
 * Interrupted (SIGINT, SIGTERM, SIGHUP): the children's groups get SIGTERM, then SIGKILL, and ootmod
 * exits. SIGTERM alone is not enough: a confined make is the init of its pid namespace, which survives
 * its own re-raised SIGTERM (the kernel ignores it), and unshare, its parent, ignores SIGTERM.
 */
function endChildrenOnSignal(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    process.once(signal, () => {
      if (signalGroups('SIGTERM')) {
        // A synchronous wait: nothing else of ootmod runs (no new job starts) while children end.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, INTERRUPT_GRACE_MS);
        signalGroups('SIGKILL');
      }
      process.exit(code);
    });
  }
}

/**
 * Starts the process in its own process group, so a timeout ends make and every compiler under it.
 * (Written on node:child_process rather than execa: execa costs ~10 ms wall and ~15 ms CPU more per
 * process and ~45 ms to load, measured by the benchmark, and a build starts half a dozen processes.)
 */
interface Outcome {
  code: number;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  all: string;
  spawnError?: NodeJS.ErrnoException;
}

/** Runs the program in its own process group: its output (up to MAX_CAPTURE), exit code, timeout and abort. */
function spawnCollecting(spawned: { file: string; args: readonly string[] }, opts: RunOptions): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const all: Buffer[] = [];
    let size = 0;
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    let killer: NodeJS.Timeout | undefined;
    const child = spawn(spawned.file, spawned.args, {
      cwd: opts.cwd,
      env: mergedEnv(opts),
      stdio: [opts.input === undefined && !opts.feed ? 'ignore' : 'pipe', 'pipe', 'pipe', ...(opts.jobserver?.fds ?? [])],
      detached: true,
    });
    endChildrenOnSignal();
    if (child.pid) liveGroups.add(child.pid);
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_CAPTURE) return;
      into.push(chunk);
      all.push(chunk);
    };
    child.stdout!.on('data', collect(out));
    if (opts.onStdout) child.stdout!.on('data', opts.onStdout);
    child.stderr!.on('data', collect(err));
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    else if (opts.feed) {
      // A command that ends early makes writes to its stdin fail (EPIPE): its exit says what happened.
      child.stdin!.on('error', () => undefined);
      opts.feed(child.stdin!);
    }
    const signalGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, signal);
      } catch {
        // Already gone.
      }
    };
    const end = () => {
      timedOut = true;
      signalGroup('SIGTERM');
      killer = setTimeout(() => signalGroup('SIGKILL'), 5000);
    };
    if (opts.timeoutMs) timer = setTimeout(end, opts.timeoutMs);
    if (opts.signal?.aborted) end();
    else opts.signal?.addEventListener('abort', end, { once: true });
    const finish = (code: number, spawnError?: NodeJS.ErrnoException) => {
      if (child.pid) liveGroups.delete(child.pid);
      opts.signal?.removeEventListener('abort', end);
      clearTimeout(timer);
      clearTimeout(killer);
      const text = (b: Buffer[]) => Buffer.concat(b).toString('utf8');
      resolve({ code, timedOut, stdout: text(out), stderr: text(err), all: text(all), spawnError });
    };
    child.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ENOENT' ? 127 : 126, e));
    child.on('close', (code, signal) => finish(code ?? (timedOut ? 124 : signal ? 128 + (osSignals[signal] ?? 0) : 128)));
  });
}

/** A failed command as the error that says whose failure it is: the machine's (a missing program, a full disk), the sandbox's, or the command's. */
function failure(result: RunResult, file: string, opts: RunOptions): Error {
  const step = opts.step ?? file;
  // Only a program ootmod itself starts (or make, for a MAKE line) is the machine's: a command a
  // module's own MAKE line or script lacks is that module's failure.
  const miss = missingProgram(result);
  const name = miss ? path.basename(miss.program) : '';
  // (A script whose dir is gone was removed with its build dir: the caller says that.)
  const gone = path.isAbsolute(file) && !existsSync(path.dirname(file));
  const missing = miss && !gone && (file === 'bash' ? name === 'make' : name === path.basename(file)) ? miss : undefined;
  if (missing) return new OotmodError(`${step}: ${missing.program} ${missing.why}`, missing.fix, ExitCode.Environment);
  const full = /No space left on device|Disk quota exceeded/.exec(result.all);
  if (full) return new OotmodError(`${step}: ${full[0].toLowerCase()}`, 'free space on the filesystem of ootmod\'s state and build dirs (df -h), then run the command again: it completes the work', ExitCode.Environment);
  const denied = opts.confine && !result.timedOut ? sandboxDenial(result.all) : undefined;
  if (denied) {
    return new OotmodError(
      `${step} failed under the build sandbox, which gives no root, no network and no writes outside the build dir (${denied})`,
      `if ${opts.confine!.name} truly needs them, allow it by name: unconfined = ${opts.confine!.name} in [build] of ootmod.conf`,
    );
  }
  return new CommandError(result, step);
}

export async function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const command = [file, ...args].map(quoteArg).join(' ');
  const confined = opts.confine ? ` (confined: ${opts.confine.writable.join(', ') || 'nothing'} writable)` : '';
  await opts.log?.write(`# command: ${command}${opts.cwd ? `  (in ${opts.cwd})` : ''}${confined}\n`);
  const spawned = opts.confine ? confinedCommand(file, args, opts.confine) : { file, args };
  if (opts.confine) opts = { ...opts, env: { ...opts.env, ...confinedEnv(opts.confine) } };
  const started = performance.now();
  const outcome = await spawnCollecting(spawned, opts);
  const result: RunResult = {
    command,
    exitCode: outcome.code,
    stdout: outcome.stdout,
    stderr: outcome.spawnError ? `${file}: ${outcome.spawnError.code === 'ENOENT' ? 'command not found' : outcome.spawnError.code === 'EACCES' ? 'Permission denied' : outcome.spawnError.message}` : outcome.stderr,
    all: outcome.all,
    durationMs: performance.now() - started,
    timedOut: outcome.timedOut,
  };
  if (opts.log) {
    const body = result.all.endsWith('\n') || result.all === '' ? result.all : `${result.all}\n`;
    await opts.log.write(
      `${body}${outcome.spawnError ? `${result.stderr}\n` : ''}# exit code: ${result.exitCode}${result.timedOut ? ' (timed out)' : ''}\n` +
        `# elapsed time: ${(result.durationMs / 1000).toFixed(2)}s\n\n`,
    );
  }
  if (result.exitCode !== 0 && !opts.allowFailure) throw failure(result, file, opts);
  return result;
}

/** A program that could not be started at all (not installed, not executable): an environment fault. */
function missingProgram(r: RunResult): { program: string; why: string; fix: string } | undefined {
  if (r.exitCode !== 127 && r.exitCode !== 126) return undefined;
  const m = /^(?:setpriv: failed to execute |bash: (?:line \d+: )?)?(\S+?):? (command not found|No such file or directory|Permission denied)$/m.exec(r.stderr.trim());
  if (!m) return undefined;
  const program = m[1]!;
  return m[2] === 'Permission denied'
    ? { program, why: 'cannot be executed (permission denied)', fix: `make ${program} executable and readable (chmod 755), or reinstall its package` }
    : { program, why: 'is not installed', fix: `install the package that provides ${program} (apt-file search ${program}), or fix PATH` };
}

/** Runs a shell command line with bash, as DKMS does for MAKE and the script directives. */
export function runShell(commandLine: string, opts: RunOptions = {}): Promise<RunResult> {
  return run('bash', ['-c', commandLine], opts);
}
