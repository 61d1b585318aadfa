// What every command gets: parsed options, the layout, output streams.
import os from 'node:os';
import { acquireLock } from '../system/lock.js';
import { createLayout, type Layout } from '../system/layout.js';
import type { KernelTarget } from '../kernel/inventory.js';

export interface Options {
  root: string;
  dryRun: boolean;
  jobs: number;
  verbose: boolean;
  json: boolean;
  kernels: string[];
  force: boolean;
  debug: boolean;
}

export interface Session {
  opts: Options;
  layout: Layout;
  out(line: string): void;
  err(line: string): void;
  isRoot: boolean;
  /** Takes the global lock for a command that changes the system; announces a wait. */
  lock(): Promise<() => Promise<void>>;
  /** The kernel build dir module builds use. */
  kernelBuildDir(kernel: KernelTarget): string;
}

export function defaultJobs(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

export function createSession(opts: Options): Session {
  const layout = createLayout(opts.root);
  const session: Session = {
    opts,
    layout,
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    isRoot: process.getuid?.() === 0,
    lock: () =>
      acquireLock(layout.lockFile, {
        onWait: (holder) => session.err(`ootmod: waiting for another ootmod run to finish (${holder})`),
      }),
    kernelBuildDir: (kernel) => kernel.headersDir ?? layout.kernelBuildLink(kernel.release),
  };
  return session;
}
