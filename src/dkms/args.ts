// DKMS's command line, as packages, scripts and admins use it, parsed into a typed request. Pure.
import { ExitCode, OotmodError } from '../errors.js';

/** The actions ootmod implements. */
export const DKMS_ACTIONS = [
  'add', 'build', 'install', 'uninstall', 'unbuild', 'remove', 'status', 'autoinstall',
  'kernel_preinst', 'kernel_postinst', 'kernel_prerm', 'generate_mok',
] as const;
export type DkmsAction = (typeof DKMS_ACTIONS)[number];

/** DKMS actions ootmod does not implement, with the ootmod way to get the same, where there is one. */
export const UNSUPPORTED_ACTIONS: Record<string, string> = {
  mktarball: 'ootmod keeps no binary tarballs: copy /usr/src/<name>-<version> to move a source, and rebuild with ootmod install',
  ldtarball: 'unpack the source to /usr/src/<name>-<version> and run ootmod install <name>/<version>',
  match: 'ootmod autoinstall -k KVER builds every AUTOINSTALL=yes module for a kernel',
};

export interface KernelArg {
  kver: string;
  arch?: string;
}

export interface DkmsRequest {
  action?: DkmsAction | 'version' | 'help';
  module?: string;
  version?: string;
  /** A source dir (or its dkms.conf) given instead of NAME/VERSION. */
  path?: string;
  kernels: KernelArg[];
  arch?: string;
  all: boolean;
  force: boolean;
  jobs?: number;
  quiet: boolean;
  verbose: boolean;
  noDepmod: boolean;
  /** --dry-run (ootmod's, not DKMS's): print the plan, change nothing. */
  dryRun: boolean;
  kernelSourceDir?: string;
  sourceTree?: string;
  installTree?: string;
  dkmsTree?: string;
  /** Options DKMS has that change nothing here (deprecated no-ops), for --verbose. */
  ignored: string[];
}

const WITH_VALUE: Record<string, keyof DkmsRequest | 'module' | 'kernel' | 'config' | 'directive' | 'templatekernel' | 'archive'> = {
  '-m': 'module', '--module': 'module',
  '-v': 'version',
  '-k': 'kernel', '--kernelver': 'kernel',
  '-a': 'arch', '--arch': 'arch',
  '-j': 'jobs',
  '-c': 'config', '--config': 'config',
  '--kernelsourcedir': 'kernelSourceDir',
  '--sourcetree': 'sourceTree',
  '--installtree': 'installTree',
  '--dkmstree': 'dkmsTree',
  '--directive': 'directive',
  '--templatekernel': 'templatekernel',
  '--archive': 'archive',
};

/** Options that take no value and need nothing from ootmod (DKMS's no-ops and ootmod's defaults). */
const NO_OPS = new Set([
  '--no-initrd', '--no-clean-kernel', '--no-prepare-kernel', '--rpm_safe_upgrade', '--modprobe-on-install',
  '--force-version-override', '--symlink-modules', '--debug', '--binaries-only', '--source-only',
]);

function fail(message: string, remedy = 'see man dkms, or ootmod dkms --help'): never {
  throw new OotmodError(message, remedy, ExitCode.Usage);
}

/** -m NAME[/VERSION] or NAME/VERSION, split at the first '/' as DKMS does; empty parts name nothing. */
function setModule(req: DkmsRequest, value: string): void {
  // `-m ""` (an unset variable in a package's script) names no module, as under DKMS: status lists all.
  if (value === '') return;
  const slash = value.indexOf('/');
  const name = slash < 0 ? value : value.slice(0, slash);
  const version = slash < 0 ? '' : value.slice(slash + 1);
  if (!name || version.includes('/')) fail(`'${value}' is not a module: write NAME or NAME/VERSION`);
  if (req.module && req.module !== name) fail(`two modules given ('${req.module}' and '${name}'): DKMS acts on one module at a time`);
  req.module = name;
  setVersion(req, version);
}

function setVersion(req: DkmsRequest, value: string): void {
  if (value === '') return;
  if (req.version && req.version !== value) fail(`two versions given ('${req.version}' and '${value}')`);
  req.version = value;
}

/** An option that takes a value: sets it on the request (or refuses it, with the ootmod way). */
function setValue(req: DkmsRequest, arches: string[], opt: string, target: (typeof WITH_VALUE)[string], value: string): void {
  switch (target) {
    case 'module': setModule(req, value); break;
    case 'version': setVersion(req, value); break;
    case 'kernel': {
      const [kver, arch] = value.split('/');
      if (!kver) fail(`'${value}' is not a kernel release: write KVER or KVER/ARCH`);
      req.kernels.push({ kver, arch });
      break;
    }
    case 'arch': arches.push(value); break;
    case 'jobs': {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0) fail(`-j wants a whole number, not '${value}'`);
      req.jobs = n;
      break;
    }
    case 'kernelSourceDir': req.kernelSourceDir = value; break;
    case 'sourceTree': req.sourceTree = value; break;
    case 'installTree': req.installTree = value; break;
    case 'dkmsTree': req.dkmsTree = value; break;
    case 'config':
    case 'directive':
    case 'templatekernel':
    case 'archive':
      // --directive: ootmod keeps each module current with its dkms.conf, so a one-off override would be
      // rebuilt away by the next trigger (README, "Differences from DKMS 3.2.2 kept").
      fail(`${opt} is not supported by ootmod-dkms`, target === 'directive' ? 'put the directive in /etc/dkms/<module>.conf, which every build reads (a one-off override would be rebuilt away by the next trigger)' : 'see man ootmod');
  }
}

/** An option without a value: true when it is one. */
function setFlag(req: DkmsRequest, opt: string): boolean {
  switch (opt) {
    case '--all': req.all = true; return true;
    case '--force': req.force = true; return true;
    case '-q': case '--quiet': req.quiet = true; return true;
    case '--verbose': req.verbose = true; return true;
    case '--no-depmod': req.noDepmod = true; return true;
    case '--dry-run': req.dryRun = true; return true;
    case '-h': case '--help': req.action ??= 'help'; return true;
  }
  if (!NO_OPS.has(opt)) return false;
  req.ignored.push(opt);
  return true;
}

/** The options, in DKMS's forms (--opt=value, -kVALUE, -k VALUE); returns the words that are not options. */
function readOptions(req: DkmsRequest, arches: string[], argv: readonly string[]): string[] {
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    let opt = arg;
    let value: string | undefined;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      opt = arg.slice(0, eq);
      value = arg.slice(eq + 1);
    } else if (/^-[mvkajc]./.test(arg)) {
      opt = arg.slice(0, 2);
      value = arg.slice(2);
    }
    // DKMS's version query (the module version is -v, which has no long form).
    if (opt === '-V' || opt === '--version') {
      req.action ??= 'version';
      continue;
    }
    const target = WITH_VALUE[opt];
    if (target) {
      if (value === undefined) {
        value = argv[++i];
        if (value === undefined) fail(`${opt} needs a value`);
      }
      setValue(req, arches, opt, target, value);
      continue;
    }
    if (setFlag(req, opt)) continue;
    if (arg.startsWith('-') && arg !== '-') fail(`unknown option '${arg}'`);
    positionals.push(arg);
  }
  return positionals;
}

/** The words: the action, NAME/VERSION, a source path. */
function readWords(req: DkmsRequest, positionals: string[]): void {
  for (const word of positionals) {
    if (req.action === undefined || req.action === 'version' || req.action === 'help') {
      if ((DKMS_ACTIONS as readonly string[]).includes(word)) {
        if (req.action === undefined) {
          req.action = word as DkmsAction;
          continue;
        }
      } else if (word in UNSUPPORTED_ACTIONS) {
        throw new OotmodError(`dkms ${word} is not implemented by ootmod-dkms`, UNSUPPORTED_ACTIONS[word], ExitCode.Usage);
      }
    }
    if ((DKMS_ACTIONS as readonly string[]).includes(word) && req.action !== undefined && req.action !== word) {
      fail(`two actions given ('${req.action}' and '${word}'): give one`);
    }
    if (word.startsWith('/') || word.startsWith('.')) {
      if (req.path) fail(`two source paths given ('${req.path}' and '${word}')`);
      req.path = word.replace(/\/dkms\.conf$/, '');
    } else {
      setModule(req, word);
    }
  }
}

/** -a pairs with -k one to one; a single -a applies to every -k. */
function pairArches(req: DkmsRequest, arches: string[]): void {
  if (!arches.length) return;
  if (arches.length === 1) {
    req.arch = arches[0];
    for (const k of req.kernels) k.arch ??= arches[0];
  } else if (arches.length === req.kernels.length) {
    req.kernels.forEach((k, n) => (k.arch ??= arches[n]));
  } else {
    fail(`${arches.length} -a given for ${req.kernels.length} -k: give one -a, or one per -k`);
  }
}

/** Parses DKMS's arguments: the action, NAME/VERSION or -m/-v, -k KVER[/ARCH], and the options. */
export function parseDkmsArgs(argv: readonly string[]): DkmsRequest {
  const req: DkmsRequest = { kernels: [], all: false, force: false, quiet: false, verbose: false, noDepmod: false, dryRun: false, ignored: [] };
  const arches: string[] = [];
  readWords(req, readOptions(req, arches, argv));
  if (req.action === undefined) fail('no action given', `use one of ${DKMS_ACTIONS.slice(0, 8).join(', ')}`);
  pairArches(req, arches);
  if (req.all && req.kernels.length) fail('--all and -k exclude each other: give one');
  if (req.all && ['build', 'install', 'autoinstall', 'add', 'kernel_preinst', 'kernel_postinst', 'kernel_prerm'].includes(req.action)) {
    fail(`--all is not valid for ${req.action}`, `use -k KVER (repeatable), or leave it out for every kernel`);
  }
  if (req.action.startsWith('kernel_') && req.kernels.length !== 1) fail(`${req.action} needs exactly one -k KVER`);
  if (req.action === 'autoinstall' && req.kernels.length > 1) fail('autoinstall takes one -k KVER at most, as DKMS does', 'run it once per kernel, or use ootmod autoinstall');
  return req;
}
