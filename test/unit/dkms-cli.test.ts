// DKMS's command line and status format, as ootmod-dkms takes and prints them.
import { describe, expect, it, vi } from 'vitest';
import type { StatusRow } from '../../src/state/status.js';
import { dkmsExit } from '../../src/cli/commands/dkms.js';
import { parseDkmsArgs } from '../../src/dkms/args.js';
import { dkmsStatusLines, withDkmsTree } from '../../src/dkms/status.js';
import { ExitCode, OotmodError } from '../../src/errors.js';

function usage(argv: string[]): OotmodError {
  try {
    parseDkmsArgs(argv);
  } catch (err) {
    if (err instanceof OotmodError) return err;
    throw err;
  }
  throw new Error(`no error for ${argv.join(' ')}`);
}

describe('parseDkmsArgs', () => {
  it('reads the forms dh_dkms scripts and common.postinst use', () => {
    expect(parseDkmsArgs(['status', '-m', 'acpi-call', '-v', '1.2.2'])).toMatchObject({ action: 'status', module: 'acpi-call', version: '1.2.2', kernels: [] });
    expect(parseDkmsArgs(['remove', '-m', 'v4l2loopback', '-v', '0.15.4', '--all'])).toMatchObject({ action: 'remove', module: 'v4l2loopback', version: '0.15.4', all: true });
    expect(parseDkmsArgs(['build', '-m', 'x', '-v', '1', '-k', '8.1.4+deb15-amd64', '-a', 'x86_64'])).toMatchObject({
      action: 'build', kernels: [{ kver: '8.1.4+deb15-amd64', arch: 'x86_64' }],
    });
  });

  it('takes NAME/VERSION, --opt=value, -k KVER/ARCH (repeatable), a source path and the options', () => {
    const r = parseDkmsArgs(['install', 'foo/2.0', '--kernelver=6.1.0-1-amd64', '-k', '7.0-amd64/aarch64', '-j', '3', '--force', '--verbose', '--no-initrd']);
    expect(r).toMatchObject({
      action: 'install', module: 'foo', version: '2.0', force: true, verbose: true, jobs: 3,
      kernels: [{ kver: '6.1.0-1-amd64' }, { kver: '7.0-amd64', arch: 'aarch64' }], ignored: ['--no-initrd'],
    });
    expect(parseDkmsArgs(['add', '/tmp/src/foo-1.0/dkms.conf'])).toMatchObject({ action: 'add', path: '/tmp/src/foo-1.0' });
    expect(parseDkmsArgs(['-m', 'foo/1', 'uninstall', '--dkmstree', '/d', '--sourcetree=/s', '--installtree', '/i', '-q'])).toMatchObject({
      action: 'uninstall', module: 'foo', version: '1', dkmsTree: '/d', sourceTree: '/s', installTree: '/i', quiet: true,
    });
    expect(parseDkmsArgs(['--version']).action).toBe('version');
    // ootmod's --dry-run (DKMS has none).
    expect(parseDkmsArgs(['--dry-run', 'remove', 'foo/1', '--all'])).toMatchObject({ action: 'remove', module: 'foo', dryRun: true, all: true });
    expect(parseDkmsArgs(['add', 'foo/1']).dryRun).toBe(false);
    expect(parseDkmsArgs(['-V']).action).toBe('version');
  });

  it('refuses what DKMS refuses, with one line and exit 2', () => {
    for (const [argv, text] of [
      [['build', 'foo/1', '--all'], '--all is not valid for build'],
      [['remove', 'foo/1', '--all', '-k', '6.1'], '--all and -k exclude each other'],
      [['status', '--frob'], "unknown option '--frob'"],
      [['install', 'remove', 'foo/1'], 'two actions given'],
      [['foo/1'], 'no action given'],
      [['kernel_prerm'], 'kernel_prerm needs exactly one -k KVER'],
      [['build', 'foo/1', '-k', 'a', '-k', 'b', '-a', 'x', '-a', 'y', '-a', 'z'], '3 -a given for 2 -k'],
    ] as const) {
      const err = usage([...argv]);
      expect(err.line(), argv.join(' ')).toContain(text);
      expect(err.line()).not.toContain('\n');
      expect(err.exitCode).toBe(ExitCode.Usage);
    }
  });

  it('names the ootmod way for DKMS actions it does not implement', () => {
    expect(usage(['mktarball', 'foo/1']).line()).toMatch(/^dkms mktarball is not implemented by ootmod-dkms: .*ootmod install/);
    expect(usage(['match', '--templatekernel', '6.1', '-k', '7.0']).line()).toMatch(/not supported|ootmod autoinstall -k KVER/);
  });

  it("takes an empty -m/-v (an unset variable in a package's script) as no module, as DKMS does", () => {
    const mv = (argv: string[]) => {
      const r = parseDkmsArgs(argv);
      return [r.action, r.module, r.version];
    };
    expect(mv(['status', '-m', ''])).toEqual(['status', undefined, undefined]);
    expect(mv(['status', '-m', '', '-v', ''])).toEqual(['status', undefined, undefined]);
    expect(mv(['status', '--module=', ''])).toEqual(['status', undefined, undefined]);
    expect(mv(['status', 'foo/'])).toEqual(['status', 'foo', undefined]);
    // DKMS splits NAME/VERSION at the first '/'; a version holds '-<digit>' as it is.
    expect(parseDkmsArgs(['add', '-m', 'foo/1.2-3'])).toMatchObject({ module: 'foo', version: '1.2-3' });
  });

  it('knows generate_mok', () => {
    expect(parseDkmsArgs(['generate_mok']).action).toBe('generate_mok');
  });
});

const row = (over: Partial<StatusRow>): StatusRow => ({
  module: 'm', version: '1', kernel: null, arch: null, status: 'added', detail: null, signed: null, files: [], log: null, error: null, updatedAt: null, ...over,
});

describe('dkmsStatusLines', () => {
  it("prints DKMS's lines: per kernel when built or installed, else added; sorted", () => {
    const out = dkmsStatusLines([
      row({ module: 'v4l2loopback', version: '0.15.4', kernel: '8.1.4+deb15-amd64', arch: 'x86_64', status: 'installed', files: ['/x'] }),
      row({ module: 'acpi-call', version: '1.2.2', kernel: '8.1.4+deb15-amd64', arch: 'x86_64', status: 'built' }),
      row({ module: 'acpi-call', version: '1.2.2', kernel: '6.12.9+deb13-amd64', arch: 'x86_64', status: 'installed', files: ['/y'] }),
      row({ module: 'dkms_test', version: '1.0' }),
    ]);
    expect(out.lines).toEqual([
      'acpi-call/1.2.2, 6.12.9+deb13-amd64, x86_64: installed',
      'acpi-call/1.2.2, 8.1.4+deb15-amd64, x86_64: built',
      'dkms_test/1.0: added',
      'v4l2loopback/0.15.4, 8.1.4+deb15-amd64, x86_64: installed',
    ]);
    expect(out.warnings).toEqual([]);
  });

  it('shows a failed build as added (DKMS has no failed state) and says why on stderr', () => {
    const out = dkmsStatusLines([row({ module: 'bad', version: '2', kernel: 'k1', arch: 'x86_64', status: 'failed', error: 'make exited with 2 (bad.c:4:5: error: x undeclared)' })]);
    expect(out.lines).toEqual(['bad/2: added']);
    expect(out.warnings).toEqual(['Warning: bad/2 failed to build for k1: make exited with 2 (bad.c:4:5: error: x undeclared) (see ootmod status bad/2)']);
  });

  it('keeps -k: only those kernels, and added when none of them has a build', () => {
    const rows = [row({ kernel: 'k1', arch: 'x86_64', status: 'installed', files: ['/a'] }), row({ kernel: 'k2', arch: 'x86_64', status: 'broken', files: ['/b'] })];
    expect(dkmsStatusLines(rows, ['k2']).lines).toEqual(['m/1, k2, x86_64: installed (Built modules are missing in the kernel modules folder)']);
    expect(dkmsStatusLines(rows, ['k3']).lines).toEqual(['m/1: added']);
  });

  it("adds DKMS's own builds for kernels ootmod has nothing of its own for; ootmod's build or older install wins", () => {
    const dkms = [
      { module: 'nvidia-current', version: '550.1', kernel: 'k1', arch: 'x86_64', installed: true },
      { module: 'nvidia-current', version: '550.1', kernel: 'k2', arch: 'x86_64', installed: false },
      { module: 'nvidia-current', version: '550.1', kernel: 'k3', arch: 'x86_64', installed: true },
      { module: 'nvidia-current', version: '550.1', kernel: 'k4', arch: 'x86_64', installed: true },
    ];
    const ours = [
      // ootmod failed for k1 with nothing of its own installed: DKMS's copy is what is in use.
      row({ module: 'nvidia-current', version: '550.1', kernel: 'k1', arch: 'x86_64', status: 'failed', error: 'error: x' }),
      row({ module: 'nvidia-current', version: '550.1', kernel: 'k3', arch: 'x86_64', status: 'built' }),
      // ootmod's older build stays installed after a failure.
      row({ module: 'nvidia-current', version: '550.1', kernel: 'k4', arch: 'x86_64', status: 'failed', files: ['/old'] }),
    ];
    const out = dkmsStatusLines(withDkmsTree(ours, dkms));
    expect(out.lines).toEqual([
      'nvidia-current/550.1, k1, x86_64: installed',
      'nvidia-current/550.1, k2, x86_64: built',
      'nvidia-current/550.1, k3, x86_64: built',
      'nvidia-current/550.1, k4, x86_64: installed',
    ]);
    expect(out.warnings).toHaveLength(2);
    expect(dkmsStatusLines(withDkmsTree([], dkms.slice(1, 2))).lines).toEqual(['nvidia-current/550.1, k2, x86_64: built']);
  });
});

describe('dkmsExit', () => {
  it("maps ootmod's exit codes to DKMS's", () => {
    expect(dkmsExit(ExitCode.Skipped, 'build')).toBe(77);
    expect(dkmsExit(ExitCode.Failed, 'build')).toBe(10);
    expect(dkmsExit(ExitCode.Failed, 'autoinstall')).toBe(11);
    expect(dkmsExit(ExitCode.InvalidSource, 'add')).toBe(8);
    expect(dkmsExit(ExitCode.NotFound, 'remove')).toBe(3);
    expect(dkmsExit(ExitCode.Ok, 'status')).toBe(0);
  });
});

describe('dkms -q', () => {
  it('prints nothing, with the exit code kept, and leaves the process its own stdout and stderr', async () => {
    const { dkmsMain } = await import('../../src/cli/commands/dkms.js');
    const { makeRoot } = await import('../support/roots.js');
    const [realOut, realErr] = [process.stdout.write, process.stderr.write];
    const written: string[] = [];
    const capture = (s: NodeJS.WriteStream) => vi.spyOn(s, 'write').mockImplementation((chunk: string | Uint8Array) => (written.push(String(chunk)), true));
    const spies = [capture(process.stdout), capture(process.stderr)];
    try {
      const root = makeRoot();
      // A module that does not exist: loud, DKMS's exit code and a line saying so.
      const args = ['build', '-m', 'nosuch', '-v', '1.0', '-k', 'nokernel'];
      const loud = await dkmsMain(root, args);
      expect(loud).not.toBe(0);
      expect(written.join('')).toMatch(/^ootmod-dkms: .*nosuch/m);
      written.length = 0;
      // Quiet: the same exit code, and not a word.
      expect(await dkmsMain(root, ['-q', ...args])).toBe(loud);
      expect(written).toEqual([]);
      // The session's streams were silenced, not the process's.
      expect(process.stdout.write).toBe(spies[0]);
      expect(process.stderr.write).toBe(spies[1]);
    } finally {
      for (const s of spies) s.mockRestore();
    }
    expect([process.stdout.write, process.stderr.write]).toEqual([realOut, realErr]);
  });
});
