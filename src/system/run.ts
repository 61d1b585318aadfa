// The one way ootmod starts a process: logs the command, captures its output into the job's log,
// applies a time limit and turns failure into a typed error.
import { appendFile } from 'node:fs/promises';
import { ExitCode, OotmodError } from '../errors.js';

export interface CommandLog {
  /** Appends text to the log (make.log of a build, or ootmod's own debug stream). */
  write(text: string): Promise<void>;
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

/** The first compiler-style "error:" line, which says more than make's closing "Error 2". */
function firstError(text: string): string {
  const line = text.split('\n').find((l) => /\berror:/.test(l) && !/^make(\[\d+\])?: \*\*\*/.test(l));
  return (line ?? '').trim().replace(/^\/\S*\/([^/\s]+:)/, '$1').slice(0, 200);
}

export function quoteArg(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

export function fileLog(file: string): CommandLog {
  return { write: (text) => appendFile(file, text) };
}

export async function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  // execa is the costliest import; commands that start no process (status) never load it.
  const { execa } = await import('execa');
  const command = [file, ...args].map(quoteArg).join(' ');
  await opts.log?.write(`# command: ${command}${opts.cwd ? `  (in ${opts.cwd})` : ''}\n`);
  const started = performance.now();
  const child = await execa(file, args, {
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: !opts.cleanEnv,
    input: opts.input,
    stdin: opts.input === undefined ? 'ignore' : undefined,
    timeout: opts.timeoutMs,
    killSignal: 'SIGTERM',
    forceKillAfterDelay: 5000,
    reject: false,
    all: true,
    stripFinalNewline: false,
    maxBuffer: 64 * 1024 * 1024,
  });
  const result: RunResult = {
    command,
    exitCode: child.exitCode ?? (child.timedOut ? 124 : 128),
    stdout: String(child.stdout ?? ''),
    stderr: String(child.stderr ?? ''),
    all: String(child.all ?? ''),
    durationMs: performance.now() - started,
    timedOut: Boolean(child.timedOut),
  };
  if (child.failed && child.exitCode === undefined && !child.timedOut && child.code === 'ENOENT') {
    result.stderr = `${file}: command not found`;
    result.exitCode = 127;
  }
  if (opts.log) {
    const body = result.all.endsWith('\n') || result.all === '' ? result.all : `${result.all}\n`;
    await opts.log.write(
      `${body}# exit code: ${result.exitCode}${result.timedOut ? ' (timed out)' : ''}\n` +
        `# elapsed time: ${(result.durationMs / 1000).toFixed(2)}s\n\n`,
    );
  }
  if (result.exitCode !== 0 && !opts.allowFailure) throw new CommandError(result, opts.step ?? file);
  return result;
}

/** Runs a shell command line with bash, as DKMS does for MAKE and the script directives. */
export function runShell(commandLine: string, opts: RunOptions = {}): Promise<RunResult> {
  return run('bash', ['-c', commandLine], opts);
}
