// ootmod's entry point: parse the command line, run one command, map errors to exit codes.
import { parseArgs } from 'node:util';
import { ExitCode, OotmodError, environmentFault, errorLine, usageError } from '../errors.js';
import { VERSION } from '../version.js';
import { createSession, type Options, type Session } from './session.js';

const HELP = `Usage: ootmod [OPTIONS] COMMAND [ARGS]

Builds and installs out-of-tree kernel modules from dkms.conf sources in /usr/src/<name>-<version>
for every installed kernel that has headers.

Commands:
  status [NAME[/VERSION]]      what is added, built, installed or failed, per kernel (--json)
  kernels                      installed kernels, their headers, compiler, signing, compression, Rust,
                               READY (every needed out-of-tree module installed), which boots next
  boot [status|apply|release]  the boot guard (GRUB): its state; run it now; give GRUB's default back
  add DIR                      copy a module source to /usr/src/<name>-<version> and run POST_ADD
  build NAME[/VERSION]|DIR...  build for the given (-k) or all kernels, without installing
  install NAME[/VERSION]|DIR...  build if needed and install
  uninstall NAME[/VERSION]     remove the installed modules, keep the builds
  remove NAME[/VERSION]        uninstall and forget the builds (the source stays)
  autoinstall                  build and install every AUTOINSTALL=yes module for all (-k) kernels
  rust prepare|status|clean    the per-kernel Rust trees (rust/*.rmeta, proc macros) of CONFIG_RUST kernels
  trigger                      bring every kernel up to date (dpkg's trigger runs this): remove what was
                               built for removed kernels and sources, then autoinstall
  hook NAME KVER [IMAGE]       the kernel hooks' logic (header_postinst, postinst, prerm, postrm; initramfs, boot-entry)
  mkdeb NAME[/VERSION] -k KVER -o DIR  write a .deb of the built modules for that kernel (any architecture)
  dkms ARGS                    DKMS's command line (what ootmod-dkms's /usr/sbin/dkms runs); see man ootmod

Options:
  -k, --kernel KVER   restrict to this kernel release (repeatable)
  -j, --jobs N        run up to N compilers at once (default: the number of cores)
      --force         rebuild even when the build is current; replace on add
  -n, --dry-run       print the plan and change nothing
      --json          machine-readable output (status, kernels)
      --root DIR      operate on the system rooted at DIR (default /)
  -o, --output DIR    where mkdeb writes the .deb
      --kernel-source DIR  kernel source tree for Rust trees (default: /usr/src/linux-source-X.Y.tar.xz)
  -v, --verbose       more detail
      --debug         stack traces for unexpected errors
  -V, --version       print the version
  -h, --help          this help

Exit codes: 0 ok, 1 a build/install/removal failed, 2 bad command line, 3 invalid module source,
4 no such module or kernel, 5 environment problem (missing program, permission), 70 internal error,
77 everything requested was skipped (BUILD_EXCLUSIVE or missing headers).
`;

function parseOptions(argv: string[]): { opts: Options; command?: string; args: string[]; help: boolean; version: boolean } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        kernel: { type: 'string', short: 'k', multiple: true },
        kernelver: { type: 'string', multiple: true },
        jobs: { type: 'string', short: 'j' },
        force: { type: 'boolean' },
        'dry-run': { type: 'boolean', short: 'n' },
        json: { type: 'boolean' },
        root: { type: 'string' },
        'kernel-source': { type: 'string' },
        output: { type: 'string', short: 'o' },
        verbose: { type: 'boolean', short: 'v' },
        debug: { type: 'boolean' },
        version: { type: 'boolean', short: 'V' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw usageError(errorLine(err).replace(/\. To specify a positional.*$/, ''));
  }
  const v = parsed.values;
  let jobs = 0;
  if (v.jobs !== undefined) {
    jobs = Number(v.jobs);
    if (!Number.isInteger(jobs) || jobs < 1) throw usageError(`--jobs wants a whole number >= 1, not '${v.jobs}'`);
  }
  const [command, ...args] = parsed.positionals;
  return {
    opts: {
      root: v.root ?? '/',
      dryRun: v['dry-run'] ?? false,
      jobs,
      verbose: v.verbose ?? false,
      json: v.json ?? false,
      kernels: [...(v.kernel ?? []), ...(v.kernelver ?? [])],
      force: v.force ?? false,
      debug: v.debug ?? false,
      kernelSource: v['kernel-source'],
      output: v.output,
    },
    command,
    args,
    help: v.help ?? false,
    version: v.version ?? false,
  };
}

async function dispatch(s: Session, command: string, args: string[]): Promise<ExitCode> {
  switch (command) {
    case 'status':
      return (await import('./commands/status.js')).statusCommand(s, args);
    case 'kernels':
      return (await import('./commands/kernels.js')).kernelsCommand(s);
    case 'add':
      return (await import('./commands/add.js')).addCommand(s, args);
    case 'build':
    case 'install':
    case 'autoinstall':
      return (await import('./commands/build.js')).jobsCommand(s, command, args);
    case 'trigger':
      return (await import('./commands/trigger.js')).triggerCommand(s);
    case 'hook':
      return (await import('./commands/hook.js')).hookCommand(s, args);
    case 'rust':
      return (await import('./commands/rust.js')).rustCommand(s, args);
    case 'mkdeb':
      return (await import('./commands/mkdeb.js')).mkdebCommand(s, args);
    case 'boot':
      return (await import('./commands/boot.js')).bootCommand(s, args);
    case 'uninstall':
    case 'remove':
      return (await import('./commands/remove.js')).removeCommand(s, command, args);
    default:
      throw usageError(`unknown command '${command}'`);
  }
}

/** `ootmod [--root DIR] dkms ARGS`: DKMS's own command line follows, parsed by the dkms front end. */
function dkmsArgs(argv: string[]): { root: string; args: string[] } | undefined {
  if (argv[0] === 'dkms') return { root: '/', args: argv.slice(1) };
  if (argv[0] === '--root' && argv[1] && argv[2] === 'dkms') return { root: argv[1], args: argv.slice(3) };
  if (argv[0]?.startsWith('--root=') && argv[1] === 'dkms') return { root: argv[0].slice('--root='.length), args: argv.slice(2) };
  return undefined;
}

export async function main(argv: string[]): Promise<number> {
  let debug = argv.includes('--debug');
  try {
    const dkms = dkmsArgs(argv);
    if (dkms) return await (await import('./commands/dkms.js')).dkmsMain(dkms.root, dkms.args);
    const { opts, command, args, help, version } = parseOptions(argv);
    debug = opts.debug;
    if (version) {
      process.stdout.write(`ootmod ${VERSION}\n`);
      return ExitCode.Ok;
    }
    if (help || !command) {
      (help ? process.stdout : process.stderr).write(HELP);
      return help ? ExitCode.Ok : ExitCode.Usage;
    }
    return await dispatch(createSession(opts), command, args);
  } catch (err) {
    if (err instanceof OotmodError) {
      process.stderr.write(`ootmod: ${err.line()}\n`);
      return err.exitCode;
    }
    const fault = environmentFault(err);
    if (fault) {
      process.stderr.write(`ootmod: ${fault.line()}\n`);
      return fault.exitCode;
    }
    process.stderr.write(`ootmod: internal error: ${debug && err instanceof Error ? err.stack : errorLine(err)}\n`);
    if (!debug) process.stderr.write('ootmod: run again with --debug for the stack trace, and please report it\n');
    return ExitCode.Internal;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  () => {
    process.exitCode = ExitCode.Internal;
  },
);
