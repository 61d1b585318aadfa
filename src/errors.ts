// Errors an admin can act on: a one-line message plus the fix, shown without a stack trace.

/** Exit codes of the ootmod command; README.md documents them. */
export const ExitCode = {
  Ok: 0,
  /** At least one build, install or removal failed (the summary says which). */
  Failed: 1,
  /** Bad command line. */
  Usage: 2,
  /** A module source is invalid (dkms.conf or tree). */
  InvalidSource: 3,
  /** A named module, version or kernel does not exist. */
  NotFound: 4,
  /** The system cannot do the job: a missing program, no permission, a busy lock. */
  Environment: 5,
  /** A bug in ootmod: please report it with the output of --debug. */
  Internal: 70,
  /** Every requested build was skipped (BUILD_EXCLUSIVE or no headers), as DKMS's 77. */
  Skipped: 77,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class OotmodError extends Error {
  constructor(
    message: string,
    /** What the admin should do about it. */
    readonly remedy?: string,
    readonly exitCode: ExitCode = ExitCode.Failed,
  ) {
    super(message);
    this.name = 'OotmodError';
  }

  /** The one line shown to the user. */
  line(): string {
    // Values from a dkms.conf may hold newlines: shown escaped, the error stays one line.
    return oneLine(this.remedy ? `${this.message}: ${this.remedy}` : this.message);
  }
}

/** A report stays one line: newlines (from dkms.conf values, say) are shown escaped (`\r\n` and `\n` as `\n`). */
export function oneLine(text: string): string {
  return text.replace(/\r?\n/g, '\\n');
}

/**
 * Stricter than oneLine, for a source's problems, which quote dkms.conf values whole: every control
 * character shown escaped, `\n`, `\r`, `\t`, and the others as `\xNN`.
 */
export function escapeControls(text: string): string {
  return text.replace(/\p{Cc}/gu, (c) => ({ '\n': '\\n', '\r': '\\r', '\t': '\\t' })[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

export function usageError(message: string): OotmodError {
  return new OotmodError(message, 'see ootmod --help', ExitCode.Usage);
}

export function errorLine(err: unknown): string {
  if (err instanceof OotmodError) return err.line();
  if (err instanceof Error) return err.message.split('\n')[0] ?? String(err);
  return String(err);
}

/**
 * A failure of the machine rather than of ootmod or a module: disk full, read-only filesystem, no
 * permission, I/O error. One line with the fix and exit 5, never an internal error.
 */
export function environmentFault(err: unknown): OotmodError | undefined {
  if (err instanceof OotmodError) return err.exitCode === ExitCode.Environment ? err : undefined;
  const e = err as NodeJS.ErrnoException | undefined;
  if (!e || typeof e.code !== 'string') return undefined;
  const where = e.path ? ` (${e.path})` : '';
  switch (e.code) {
    case 'ENOSPC':
      return new OotmodError(`no space left on device${where}`, 'free space on that filesystem (df -h shows it) and run the command again: it completes the work', ExitCode.Environment);
    case 'EDQUOT':
      return new OotmodError(`disk quota exceeded${where}`, 'raise the quota or free space, then run the command again', ExitCode.Environment);
    case 'EROFS':
      return new OotmodError(`read-only filesystem${where}`, 'remount it read-write (mount -o remount,rw), or use --root DIR on a writable one, then run the command again', ExitCode.Environment);
    case 'EACCES':
    case 'EPERM':
      return new OotmodError(`permission denied${where}`, 'run as root, or use --root DIR for a tree you can write', ExitCode.Environment);
    case 'EIO':
      return new OotmodError(`input/output error${where}`, 'check the disk (dmesg), then run the command again', ExitCode.Environment);
    case 'EMFILE':
    case 'ENFILE':
      return new OotmodError(`too many open files${where}`, 'raise the limit (ulimit -n) and run the command again', ExitCode.Environment);
    default:
      return undefined;
  }
}
