// dkms.conf is a bash fragment: evaluate it as DKMS does, by bash in a child process with DKMS's
// variables set, and read back only the known directives. Functions and other variables are discarded.
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { ExitCode, OotmodError } from '../errors.js';
import { run, type RunResult } from '../system/run.js';
import { HOST_TOOLS } from '../system/layout.js';
import { findOnPath } from '../system/programs.js';
import { SANDBOX_USER, confinedEnv, sandboxDenial, type Sandbox } from '../system/sandbox.js';

export const ARRAY_DIRECTIVES = [
  'BUILT_MODULE_NAME',
  'BUILT_MODULE_LOCATION',
  'DEST_MODULE_NAME',
  'DEST_MODULE_LOCATION',
  'STRIP',
  'MAKE',
  'MAKE_MATCH',
  'PATCH',
  'PATCH_MATCH',
  'BUILD_DEPENDS',
  'BUILD_EXCLUSIVE_KERNEL',
  'BUILD_EXCLUSIVE_KERNEL_MIN',
  'BUILD_EXCLUSIVE_KERNEL_MAX',
  'BUILD_EXCLUSIVE_ARCH',
  'BUILD_EXCLUSIVE_CONFIG',
] as const;

export const SCALAR_DIRECTIVES = [
  'PACKAGE_NAME',
  'PACKAGE_VERSION',
  'AUTOINSTALL',
  'POST_ADD',
  'PRE_BUILD',
  'POST_BUILD',
  'PRE_INSTALL',
  'POST_INSTALL',
  'POST_REMOVE',
  'BUILD_DEPENDS_REBUILD',
  'NO_WEAK_MODULES',
  'OBSOLETE_BY',
  // Deprecated: read only to warn, as DKMS does.
  'CLEAN',
  'REMAKE_INITRD',
  'MODULES_CONF',
  'MODULES_CONF_OBSOLETES',
  'MODULES_CONF_ALIAS_TYPE',
  'MODULES_CONF_OBSOLETE_ONLY',
] as const;

/** Directives whose entries are bash regular expressions matched against kernelver or arch. */
const MATCHED: Record<string, 'kernelver' | 'arch'> = {
  MAKE_MATCH: 'kernelver',
  PATCH_MATCH: 'kernelver',
  BUILD_EXCLUSIVE_KERNEL: 'kernelver',
  BUILD_EXCLUSIVE_ARCH: 'arch',
};

export type DirectiveArray = ReadonlyMap<number, string>;

export interface EvaluatedConf {
  /** Each directive that was set, by index (scalars are index 0). */
  directives: ReadonlyMap<string, DirectiveArray>;
  /** For the regex directives: which entries matched (bash `=~`). */
  matches: ReadonlyMap<string, ReadonlyMap<number, boolean>>;
  /** The files that were read, in order. */
  files: string[];
  /** What bash printed on stderr while reading the files. */
  stderr: string;
}

/** The variables DKMS has set when it sources dkms.conf. */
export interface ConfContext {
  kernelver: string;
  arch: string;
  kernel_source_dir: string;
  kernel_config: string;
  dkms_tree: string;
  source_tree: string;
  install_tree: string;
  module: string;
  module_version: string;
  parallel_jobs: string;
  /** For a kernel of another architecture: its kbuild ARCH and CROSS_COMPILE, as its build gets them. */
  ARCH?: string;
  CROSS_COMPILE?: string;
}

/** The files read, in DKMS's order: the source's dkms.conf, then the /etc/dkms overrides. */
export function confFiles(confPath: string, dkmsEtcDir: string, ctx: ConfContext): string[] {
  const { module: m, module_version: v, kernelver: k, arch: a } = ctx;
  const overrides = [`${m}.conf`, `${m}-${v}.conf`, `${m}-${v}-${k}.conf`, `${m}-${v}-${k}-${a}.conf`, `${m}--${k}.conf`, `${m}--${k}-${a}.conf`];
  return [confPath, ...overrides.map((f) => path.join(dkmsEtcDir, f)).filter((f) => existsSync(f))];
}

// Written with "@{" for "${" and "@BQ@" for a backtick, so it can live in a template literal.
const EVALUATOR = String.raw`
exec 3>&1 1>/dev/null
for __ootmod_f in "$@"; do
  # Marks which file bash's messages (syntax errors) that follow are about.
  printf '__ootmod_reading %s\n' "$__ootmod_f" >&2
  # A dkms.conf saved with CRLF line ends is read without the CRs, as DKMS's tests expect.
  # Sourced (not eval'ed) so bash's line numbers stay those of the file.
  __ootmod_c=$(<"$__ootmod_f")
  if [[ $__ootmod_c == *$'\r'* ]]; then . <(printf '%s\n' "@{__ootmod_c//$'\r'/}"); else . "$__ootmod_f"; fi
done
# Options dkms.conf may have set must not stop the read-back below.
set +e +u +o pipefail
__ootmod_emit() { printf '%s\0%s\0%s\0%s\0' "$1" "$2" "$3" "$4" >&3; }
__ootmod_second() {
  # DKMS's safe_source writes each value out with an unquoted  echo VAR[i]=\"value\"  (so the value is
  # split into words and joined again by single spaces) and sources what it wrote: a second expansion,
  # in double quotes. The same line is built here (without globbing: DKMS's echo would glob in whatever
  # dir dkms was started from) and evaluated. A line that assigns nothing (its quotes do not pair up
  # again; DKMS then loses the value) keeps the value as it was.
  local __w __line
  set -f
  __w=(__ootmod_out[0]=\"$1\")
  set +f
  printf -v __line '%s ' "@{__w[@]}"
  unset __ootmod_out
  eval "@{__line% }" 2>/dev/null
  if [[ -v __ootmod_out[0] ]]; then __ootmod_res=@{__ootmod_out[0]}; else __ootmod_res=$1; fi
}
for __ootmod_v in $__OOTMOD_NAMES; do
  eval "__ootmod_idx=(\"\@{!$__ootmod_v[@]}\")"
  for __ootmod_i in "@{__ootmod_idx[@]}"; do
    eval "__ootmod_val=\@{$__ootmod_v[$__ootmod_i]}"
    __ootmod_val=@{__ootmod_val%$'\r'}
    # A value with something left to run ($, a backtick) is expanded in a subshell; the others here.
    case $__ootmod_val in
      *'$'*|*'@BQ@'*) __ootmod_val=$(__ootmod_second "$__ootmod_val"; printf '%s.' "$__ootmod_res"); __ootmod_val=@{__ootmod_val%.} ;;
      *) __ootmod_second "$__ootmod_val"; __ootmod_val=$__ootmod_res ;;
    esac
    __ootmod_emit V "$__ootmod_v" "$__ootmod_i" "$__ootmod_val"
    case $__ootmod_v in
      MAKE_MATCH|PATCH_MATCH|BUILD_EXCLUSIVE_KERNEL) __ootmod_subject=$kernelver ;;
      BUILD_EXCLUSIVE_ARCH) __ootmod_subject=$arch ;;
      *) continue ;;
    esac
    if [[ -n $__ootmod_val && $__ootmod_subject =~ $__ootmod_val ]]; then __ootmod_m=1; else __ootmod_m=0; fi
    __ootmod_emit M "$__ootmod_v" "$__ootmod_i" "$__ootmod_m"
  done
done
# The end mark: without it, dkms.conf left the shell (exit, exec, set -e) before all was read.
__ootmod_emit E end 0 0
`.replaceAll('@{', '${').replaceAll('@BQ@', '`');

/** What one evaluation printed and how it ended. */
interface ConfRun {
  res: Pick<RunResult, 'stdout' | 'stderr' | 'exitCode' | 'timedOut'>;
  confined: boolean;
}

interface ConfRequest {
  files: string[];
  env: Record<string, string>;
  timeoutMs: number;
  module: string;
}

// The reader: setting up a sandbox (namespaces, a mount per writable filesystem, dropping privileges)
// costs several processes, more than reading a dkms.conf, and planning reads one dkms.conf per source
// and kernel. So confined reads share one sandbox (src/system/sandbox.ts, Sandbox.confineDriver): a driver,
// root inside its namespaces and read-only mounts, is fed the reads on its stdin and starts one bash
// per read (as many at a time as there are CPUs), each in a pid namespace of its own as the build user,
// with an empty environment but its own variables, from its source dir. Their outputs go to files only
// root can reach, and the driver names each read on its stdout as it starts ("s ID") and ends ("e ID").
//
// The pipeline opens the reader when planning starts (ConfEvaluator.open), so the sandbox is set up while
// ootmod reads the kernels and lists the sources, and closes it when the plan is made. A read asked for
// with no reader open opens one, which closes a few milliseconds after the last read was asked for.
// A read whose result is not there (the driver failed or was ended) is done again in a sandbox of its
// own, with the usual timeout; a read that outlives its own timeout ends the driver and is reported as
// timed out.
const IDLE_CLOSE_MS = 3;

// $1 the output dir, $2 reads at a time, $3 bash's path, $4 the evaluator, then the words that start a
// command in its own pid namespace as the build user. Each read comes on stdin as NUL-terminated fields:
// its id, its dir, the count and NAME=value words of its variables, the count and paths of its files.
const READER_DRIVER = String.raw`
out=$1; par=$2; bash=$3; evaluator=$4; shift 4; drop=("$@")
field() { IFS= read -r -d '' "$1"; }
n=0
while field id; do
  field dir && field nv || break
  vars=(); for ((k = 0; k < nv; k++)); do field v || break 2; vars+=("$v"); done
  field nf || break
  files=(); for ((k = 0; k < nf; k++)); do field f || break 2; files+=("$f"); done
  if [ "$n" -ge "$par" ]; then wait -n; n=$((n-1)); fi
  echo "s $id"
  {
    if cd -- "$dir"; then
      (exec -c "@{drop[@]}" "$bash" -c "$evaluator" ootmod-dkms.conf "@{vars[@]}" -- "@{files[@]}") >"$out/$id.out" 2>"$out/$id.err"
      echo $? >"$out/$id.rc"
    fi
    echo "e $id"
  } </dev/null &
  n=$((n+1))
done
wait
`.replaceAll('@{', '${');

// Before the evaluator, in the reader: export the read's variables, given as NAME=value words up to "--".
const EXPORT_ARGS = 'while [ "$1" != -- ]; do export "$1"; shift; done; shift\n';

type ReadResult = ConfRun | undefined;

class ConfReader {
  private next = 0;
  private readonly waiting = new Map<number, { resolve: (r: ReadResult) => void; timeoutMs: number; timer?: NodeJS.Timeout }>();
  private readonly stop = new AbortController();
  private stdin?: NodeJS.WritableStream;
  private queued: string[] = [];
  private closed = false;
  private idle?: NodeJS.Timeout;
  private line = '';
  private reading: Promise<unknown>[] = [];
  /** Settles when the driver has ended and every read is answered. */
  readonly ended: Promise<void>;

  constructor(
    private readonly sandbox: NonNullable<Awaited<ReturnType<Sandbox['confineDriver']>>>,
    private readonly idleClose: boolean,
    /** Called once no more reads can be sent to it. */
    private readonly onClosed: () => void,
  ) {
    const { confine, outDir, drop } = sandbox;
    const bash = findOnPath('bash') ?? 'bash';
    this.ended = run('bash', ['-c', READER_DRIVER, 'ootmod-dkms.conf', outDir, String(availableParallelism()), bash, EXPORT_ARGS + EVALUATOR, ...drop], {
      cwd: confine.tmpDir,
      env: { PATH: process.env.PATH ?? HOST_TOOLS.defaultPath, LANG: 'C.UTF-8' },
      cleanEnv: true,
      allowFailure: true,
      confine,
      signal: this.stop.signal,
      feed: (stdin) => {
        this.stdin = stdin;
        for (const q of this.queued) stdin.write(q);
        this.queued = [];
        if (this.closed) stdin.end();
      },
      onStdout: (chunk) => this.onStdout(chunk),
    })
      .catch(() => undefined)
      .then(async () => {
        this.close();
        await Promise.all(this.reading);
        for (const id of [...this.waiting.keys()]) this.answer(id, undefined);
      })
      .finally(() => Promise.all([confine.tmpDir, outDir].map((d) => rm(d, { recursive: true, force: true }))).then(() => undefined));
  }

  /** A read's result, or undefined when it must be done alone. */
  read(req: ConfRequest): Promise<ReadResult> {
    if (this.closed) return Promise.resolve(undefined);
    const id = this.next++;
    const { confine } = this.sandbox;
    const vars = Object.entries({ ...req.env, ...confinedEnv(confine) }).map(([k, v]) => `${k}=${v}`);
    const fields = [String(id), path.dirname(req.files[0]!), String(vars.length), ...vars, String(req.files.length), ...req.files];
    const record = fields.map((f) => `${f}\0`).join('');
    const answer = new Promise<ReadResult>((resolve) => this.waiting.set(id, { resolve, timeoutMs: req.timeoutMs }));
    if (this.stdin) this.stdin.write(record);
    else this.queued.push(record);
    if (this.idleClose) {
      clearTimeout(this.idle);
      this.idle = setTimeout(() => this.close(), IDLE_CLOSE_MS);
    }
    return answer;
  }

  /** No more reads: the driver ends when the ones asked for have. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClosed();
    clearTimeout(this.idle);
    this.stdin?.end();
  }

  private onStdout(chunk: Buffer): void {
    this.line += chunk.toString('utf8');
    const lines = this.line.split('\n');
    this.line = lines.pop()!;
    for (const l of lines) {
      const [what, n] = l.split(' ');
      const id = Number(n);
      const w = this.waiting.get(id);
      if (!w) continue;
      if (what === 's') w.timer = setTimeout(() => this.hung(id), w.timeoutMs);
      else if (what === 'e') this.reading.push(this.collect(id));
    }
  }

  /** A read that outlived its timeout: reported as timed out; the driver ends, and the others are done alone. */
  private hung(id: number): void {
    this.answer(id, { res: { stdout: '', stderr: '', exitCode: 124, timedOut: true }, confined: true });
    this.close();
    this.stop.abort();
  }

  /** The output dir is root's alone (0700): no read can have put a link or a fifo there. */
  private async collect(id: number): Promise<void> {
    const file = (ext: string) => readFile(path.join(this.sandbox.outDir, `${id}.${ext}`), 'utf8').catch(() => undefined);
    const [rc, stdout, stderr] = await Promise.all([file('rc'), file('out'), file('err')]);
    const code = Number(rc?.trim() || NaN);
    this.answer(id, !Number.isInteger(code) || stdout === undefined || stderr === undefined ? undefined : { res: { stdout, stderr, exitCode: code, timedOut: false }, confined: true });
  }

  private answer(id: number, r: ReadResult): void {
    const w = this.waiting.get(id);
    if (!w) return;
    clearTimeout(w.timer);
    this.waiting.delete(id);
    w.resolve(r);
  }
}

/**
 * dkms.conf evaluation for one run, confined by the run's sandbox (its run context holds one: see
 * src/pipeline/context.ts). Confined reads share one sandbox, the reader, while one is open (see above).
 */
export class ConfEvaluator {
  /** The reader reads are sent to: the one open now (undefined once it is closed). */
  private reader: Promise<ConfReader | undefined> | undefined;

  constructor(readonly sandbox: Sandbox) {}

  async evaluate(files: string[], ctx: ConfContext, timeoutMs = 30_000): Promise<EvaluatedConf> {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? HOST_TOOLS.defaultPath,
      LANG: 'C.UTF-8',
      ...ctx,
      running_distribution: 'debian',
      __OOTMOD_NAMES: [...SCALAR_DIRECTIVES, ...ARRAY_DIRECTIVES].join(' '),
    };
    const req: ConfRequest = { files, env, timeoutMs, module: ctx.module };
    // dkms.conf is code: it runs as the build user, offline, with nothing but a scratch dir writable.
    // Confined reads share one sandbox (see ConfReader).
    const { res, confined } = this.sandbox.isConfined(ctx.module) ? await this.confinedRead(req) : await this.runAlone(req);
    return interpret(res, confined, files, timeoutMs, ctx.module);
  }

  /** Opens the reader now (while the caller goes on), when reads of dkms.conf would be confined. */
  open(): void {
    if (this.sandbox.policy.enabled && !this.reader) void this.openReader(false);
  }

  /** Closes the reader opened by open(); resolves when its driver has ended. */
  async close(): Promise<void> {
    const r = await this.reader;
    r?.close();
    await r?.ended;
  }

  private openReader(idleClose: boolean): Promise<ConfReader | undefined> {
    const forget = () => {
      if (this.reader === opened) this.reader = undefined;
    };
    const opened: Promise<ConfReader | undefined> = this.sandbox.confineDriver('dkms.conf')
      .then((sandbox) => (sandbox ? new ConfReader(sandbox, idleClose, forget) : undefined))
      // A reader that could not be set up: every read is done alone.
      .catch(() => undefined);
    this.reader = opened;
    void opened.then((r) => r ?? forget());
    return opened;
  }

  private async confinedRead(req: ConfRequest): Promise<ConfRun> {
    const r = await (this.reader ?? this.openReader(true));
    return (await r?.read(req)) ?? this.runAlone(req);
  }

  /** One evaluation in its own sandbox (or unconfined, when the policy says so). */
  private async runAlone(req: ConfRequest): Promise<ConfRun> {
    const confine = await this.sandbox.confineTo([], undefined, req.module);
    // Run the files from the source dir, as DKMS does, so relative `. ./x` works.
    const res = await run('bash', ['-c', EVALUATOR, 'ootmod-dkms.conf', ...req.files], {
      cwd: path.dirname(req.files[0]!),
      env: req.env,
      cleanEnv: true,
      timeoutMs: req.timeoutMs,
      allowFailure: true,
      confine,
    }).finally(() => confine && rm(confine.tmpDir, { recursive: true, force: true }));
    return { res, confined: confine !== undefined };
  }
}

/** The directives an evaluation printed, or the one-line error it deserves. */
function interpret(res: ConfRun['res'], confined: boolean, files: string[], timeoutMs: number, module: string): EvaluatedConf {
  if (confined && res.stderr.includes(`${files[0]}: Permission denied`)) {
    throw new OotmodError(`${files[0]}: the build user ${SANDBOX_USER} cannot read it`, `make the source dir world-readable (chmod -R a+rX), or put it under /usr/src`, ExitCode.Environment);
  }
  if (res.timedOut) {
    throw new OotmodError(`${files[0]}: evaluating dkms.conf took longer than ${timeoutMs / 1000}s`, 'remove the loop or blocking command from it', ExitCode.InvalidSource);
  }
  // bash reports "<file>: line N: syntax error near unexpected token `fi'"; the marks say which file.
  let reading = files[0]!;
  const stderr: string[] = [];
  for (const line of res.stderr.split('\n')) {
    const mark = /^__ootmod_reading (.*)$/.exec(line);
    if (mark) {
      reading = mark[1]!;
      continue;
    }
    stderr.push(line);
    const syntax = /: line (\d+): syntax error:? ?(.*)$/.exec(line);
    if (syntax) {
      const detail = syntax[2] ? ` (${syntax[2].trim()})` : '';
      throw new OotmodError(`${reading}: bash syntax error at line ${syntax[1]}${detail}`, `fix the shell syntax of ${path.basename(reading)} (bash -n shows it)`, ExitCode.InvalidSource);
    }
  }
  // dkms.conf only sets variables: one that writes outside or reaches the network is refused, visibly.
  const denied = confined ? sandboxDenial(stderr.join('\n')) : undefined;
  if (denied) {
    throw new OotmodError(
      `${reading}: reading it tried what the build sandbox does not give (${denied.replace(/^ootmod-dkms\.conf: /, '')})`,
      `dkms.conf must only set variables; if ${module} truly needs this, allow it by name: unconfined = ${module} in [build] of ootmod.conf`,
      ExitCode.InvalidSource,
    );
  }
  const directives = new Map<string, Map<number, string>>();
  const matches = new Map<string, Map<number, boolean>>();
  const fields = res.stdout.split('\0');
  let complete = false;
  for (let i = 0; i + 3 < fields.length; i += 4) {
    const [kind, name, index, value] = [fields[i]!, fields[i + 1]!, Number(fields[i + 2]), fields[i + 3]!];
    if (kind === 'E') {
      complete = true;
    } else if (kind === 'V') {
      if (!directives.has(name)) directives.set(name, new Map());
      directives.get(name)!.set(index, value);
    } else if (kind === 'M' && name in MATCHED) {
      if (!matches.has(name)) matches.set(name, new Map());
      matches.get(name)!.set(index, value === '1');
    }
  }
  if (!complete) {
    // DKMS reads nothing back from such a file either: every directive would look unset.
    throw new OotmodError(
      `${files[0]}: the shell reading dkms.conf exited (status ${res.exitCode}) before its end`,
      'remove the exit or exec from it, or the failing command that set -e stops at',
      ExitCode.InvalidSource,
    );
  }
  return { directives, matches, files, stderr: stderr.join('\n') };
}
