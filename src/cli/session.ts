// What every command gets: parsed options, the layout, output streams.
import os from 'node:os';
import { createLayout, type Layout } from '../system/layout.js';
import { loadConfig, type OotmodConfig } from '../system/config.js';
import { createRunContext, type RunContext } from '../pipeline/context.js';

export interface Options {
  root: string;
  dryRun: boolean;
  /** 0 until resolved: --jobs, else the config file's jobs, else the number of cores. */
  jobs: number;
  verbose: boolean;
  json: boolean;
  kernels: string[];
  force: boolean;
  debug: boolean;
  kernelSource?: string;
  /** -o/--output DIR (mkdeb). */
  output?: string;
}

export interface Session {
  opts: Options;
  layout: Layout;
  /** Where out, err and progress go: the process's, unless the command silences them (ootmod-dkms -q). */
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  out(line: string): void;
  err(line: string): void;
  isRoot: boolean;
  /** Takes the global lock for a command that changes the system; announces a wait. */
  lock(): Promise<() => Promise<void>>;
  /** The command holds the global lock (withLock): plans with jobs that need it run only then. */
  holdsLock?: boolean;
  /** /etc/ootmod/ootmod.conf, read on first use. */
  config(): OotmodConfig;
  /** The sandbox, dkms.conf reader and caches of this run (src/pipeline/context.ts). */
  run: RunContext;
}

export function defaultJobs(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

export function createSession(opts: Options): Session {
  const layout = createLayout(opts.root);
  let config: OotmodConfig | undefined;
  const readConfig = () => (config ??= loadConfig(layout.configFile));
  const isRoot = process.getuid?.() === 0;
  if (!opts.jobs) opts.jobs = readConfig().jobs || defaultJobs();
  const session: Session = {
    opts,
    layout,
    stdout: process.stdout,
    stderr: process.stderr,
    out: (line) => session.stdout.write(`${line}\n`),
    err: (line) => session.stderr.write(`${line}\n`),
    isRoot,
    // proper-lockfile (and graceful-fs under it) load only for commands that change the system.
    lock: async () =>
      (await import('../system/lock.js')).acquireLock(layout.lockFile, {
        onWait: (holder) => session.err(`ootmod: waiting for another ootmod run to finish (${holder})`),
        onLost: (line) => session.err(line),
      }),
    config: readConfig,
    // As root, a module source's code runs confined (src/system/sandbox.ts); only root can drop privileges.
    run: createRunContext({ enabled: isRoot, unconfined: readConfig().unconfined }),
  };
  return session;
}
