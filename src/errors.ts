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
    return this.remedy ? `${this.message}: ${this.remedy}` : this.message;
  }
}

export function usageError(message: string): OotmodError {
  return new OotmodError(message, 'see ootmod --help', ExitCode.Usage);
}

export function errorLine(err: unknown): string {
  if (err instanceof OotmodError) return err.line();
  if (err instanceof Error) return err.message.split('\n')[0] ?? String(err);
  return String(err);
}
