// dkms.conf is a bash fragment: evaluate it as DKMS does, by bash in a child process with DKMS's
// variables set, and read back only the known directives. Functions and other variables are discarded.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { ExitCode, OotmodError } from '../errors.js';
import { run } from '../system/run.js';
import { HOST_TOOLS } from '../system/layout.js';
import { SANDBOX_USER, confineTo, sandboxDenial } from '../system/sandbox.js';

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
__ootmod_expand() {
  # DKMS writes each value as VAR="value" and sources that again, expanding it a second time.
  local __in=$1 __out
  case $__in in *'$'*|*'@BQ@'*) eval "__out=\"$__in\"" 2>/dev/null && __in=$__out ;; esac
  printf '%s' "$__in"
}
for __ootmod_v in $__OOTMOD_NAMES; do
  eval "__ootmod_idx=(\"\@{!$__ootmod_v[@]}\")"
  for __ootmod_i in "@{__ootmod_idx[@]}"; do
    eval "__ootmod_val=\@{$__ootmod_v[$__ootmod_i]}"
    __ootmod_val=$(__ootmod_expand "@{__ootmod_val%$'\r'}")
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

export async function evaluateConf(files: string[], ctx: ConfContext, timeoutMs = 30_000): Promise<EvaluatedConf> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? HOST_TOOLS.defaultPath,
    LANG: 'C.UTF-8',
    ...ctx,
    running_distribution: 'debian',
    __OOTMOD_NAMES: [...SCALAR_DIRECTIVES, ...ARRAY_DIRECTIVES].join(' '),
  };
  // dkms.conf is code: it runs as the build user, offline, with nothing but a scratch dir writable.
  const confine = await confineTo([], undefined, ctx.module);
  // Run the files from the source dir, as DKMS does, so relative `. ./x` works.
  const res = await run('bash', ['-c', EVALUATOR, 'ootmod-dkms.conf', ...files], {
    cwd: path.dirname(files[0]!),
    env,
    cleanEnv: true,
    timeoutMs,
    allowFailure: true,
    confine,
  }).finally(() => confine && rm(confine.tmpDir, { recursive: true, force: true }));
  if (confine && res.stderr.includes(`${files[0]}: Permission denied`)) {
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
  const denied = confine ? sandboxDenial(stderr.join('\n')) : undefined;
  if (denied) {
    throw new OotmodError(
      `${reading}: reading it tried what the build sandbox does not give (${denied.replace(/^ootmod-dkms\.conf: /, '')})`,
      `dkms.conf must only set variables; if ${ctx.module} truly needs this, allow it by name: unconfined = ${ctx.module} in [build] of ootmod.conf`,
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
