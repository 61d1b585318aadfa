// One CPU budget for the whole run: a GNU make jobserver holding --jobs tokens. ootmod takes one token
// for every CPU job it starts (a module build, a Rust tree build) and gives it back when the job ends;
// that token is the implicit job slot of the job's make, whose extra parallel recipes take further
// tokens from the same pool. So at no moment do more than --jobs compile jobs run, whatever mix of
// builds is running, and a build whose Makefile ignores the jobserver still counts as one.
//
// Make 4.4 and newer get the named-fifo form (--jobserver-auth=fifo:PATH); older makes (Debian 12 has
// 4.3) get the pipe form (--jobserver-auth=R,W), with the fifo opened again as fds 3 and 4 of the child.
import { closeSync, constants as fsc, openSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { dir as tmpDir, setGracefulCleanup, type DirectoryResult } from 'tmp-promise';
import { run, type JobserverClient } from '../system/run.js';

// The fifo's dir goes at exit too, also when ootmod exits on a signal (see run.ts) before close().
setGracefulCleanup();

/** A held token: give it back exactly once. */
export interface Token {
  release(): void;
}

const POLL_MIN_MS = 5;
const POLL_MAX_MS = 50;

export function makeSupportsFifo(versionOutput: string): boolean {
  const m = /GNU Make (\d+)\.(\d+)/.exec(versionOutput);
  if (!m) return false;
  const major = Number(m[1]);
  return major > 4 || (major === 4 && Number(m[2]) >= 4);
}

/**
 * Whether this machine's make takes the fifo form. The run context asks once per run, early, while the
 * pipeline plans (src/pipeline/context.ts).
 */
export function probeMakeFifo(): Promise<boolean> {
  return run('make', ['--version'], { allowFailure: true }).then((r) => makeSupportsFifo(r.stdout), () => false);
}

export class Jobserver {
  private readonly waiters: ((t: Token) => void)[] = [];
  private polling = false;
  private closed = false;
  /** Tokens ootmod itself holds right now (for tests and the benchmark). */
  held = 0;

  private constructor(
    readonly tokens: number,
    private readonly fifo: string,
    /** Non-blocking fd ootmod reads and writes tokens through. */
    private readonly fd: number,
    /** A blocking fd of the same fifo, handed to children of pipe-form makes. */
    private readonly childFd: number,
    private readonly fifoForm: boolean,
    private readonly tmp: DirectoryResult,
  ) {}

  /** Creates the fifo (in a private temporary dir) with `tokens` tokens in it; asks make its form unless told. */
  static async create(tokens: number, opts: { fifoForm?: boolean | Promise<boolean> } = {}): Promise<Jobserver> {
    const n = Math.max(1, Math.floor(tokens));
    const tmp = await tmpDir({ prefix: 'ootmod-jobserver-', unsafeCleanup: true, mode: 0o711 });
    const fifo = path.join(tmp.path, 'fifo');
    const [fifoForm] = await Promise.all([opts.fifoForm ?? probeMakeFifo(), run('mkfifo', ['-m', '0666', fifo])]);
    // O_RDWR: opening a fifo for read and write never blocks, and the fifo never sees EOF.
    const fd = openSync(fifo, fsc.O_RDWR | fsc.O_NONBLOCK);
    const childFd = openSync(fifo, fsc.O_RDWR);
    writeSync(fd, Buffer.alloc(n, '+'));
    return new Jobserver(n, fifo, fd, childFd, fifoForm, tmp);
  }

  client(): JobserverClient {
    return this.fifoForm
      ? { makeflags: `-j${this.tokens} --jobserver-auth=fifo:${this.fifo}`, fds: [] }
      : { makeflags: `-j${this.tokens} --jobserver-auth=3,4`, fds: [this.childFd, this.childFd] };
  }

  private tryRead(): boolean {
    try {
      return readSync(this.fd, Buffer.alloc(1), 0, 1, null) === 1;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return false;
      throw err;
    }
  }

  private token(): Token {
    this.held++;
    let given = false;
    return {
      release: () => {
        if (given) return;
        given = true;
        this.held--;
        // A local waiter gets the token directly; otherwise it goes back to the pool for any make.
        const next = this.waiters.shift();
        if (next) next(this.token());
        else if (!this.closed) writeSync(this.fd, '+');
      },
    };
  }

  /** Waits for a token, in the order asked. */
  acquire(): Promise<Token> {
    if (!this.waiters.length && this.tryRead()) return Promise.resolve(this.token());
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      void this.poll();
    });
  }

  /** Tokens come back from child makes through the fifo, which node cannot watch: poll it. */
  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    let wait = POLL_MIN_MS;
    while (this.waiters.length && !this.closed) {
      if (this.tryRead()) {
        this.waiters.shift()!(this.token());
        wait = POLL_MIN_MS;
        continue;
      }
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(POLL_MAX_MS, wait * 2);
    }
    this.polling = false;
  }

  /** Tokens in the pool now (drains and refills it; for tests). */
  available(): number {
    let n = 0;
    while (this.tryRead()) n++;
    if (n) writeSync(this.fd, Buffer.alloc(n, '+'));
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    closeSync(this.fd);
    closeSync(this.childFd);
    await this.tmp.cleanup();
  }
}
