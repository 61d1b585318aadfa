// ootmod as Debian packages, for real: the .debs dpkg-buildpackage makes from this tree, installed in a
// fresh sid chroot, driven only by dpkg and apt (kernel hooks, file triggers, ootmod's named trigger).
// Every scenario checks the files, `ootmod status --json` and that dpkg is left clean.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKernel, freshChroot, kernelGccPackage, kernelRustToolchain, parseKernelConfig, type Chroot, type KernelInfo } from './lib/chroot.js';
import { buildDeb, buildOotmodDebs, fixtureDeb, lintianProblems, type OotmodDebs } from './lib/debs.js';

const log = (msg: string) => process.stderr.write(`[e2e] ${msg}\n`);
const re = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** Inside the chroot: where the test's .debs are copied. */
const DEBS = '/root/debs';

interface StatusRow {
  module: string;
  version: string;
  kernel: string | null;
  status: string;
  files: string[];
  log: string | null;
  error: string | null;
}

interface TreeRow {
  kernel: string;
  state: string;
  detail: string | null;
  dir: string | null;
  rustc: string | null;
  abi: { ok: boolean } | null;
}

describe('Debian packages in a fresh sid chroot', () => {
  let chroot: Chroot;
  let kernel: KernelInfo;
  let debs: OotmodDebs;
  const work = mkdtempSync(path.join(os.tmpdir(), 'ootmod-e2e-debian-'));
  const fixtureDebs: Record<string, string> = {};
  /** Why the Rust assertions cannot run (no rustc in the archive matching the kernel), if so. */
  let rustSkip: string | undefined;
  let rustcPackages: string[] = [];
  let kernelRustcText = '';

  const sh = async (script: string, timeoutMs = 1_500_000) => {
    const r = await chroot.run(['bash', '-c', script], { reject: false, timeoutMs, env: { LC_ALL: 'C.UTF-8' } });
    return { code: r.exitCode, out: r.stdout, err: r.stderr, all: `${r.stdout}\n${r.stderr}` };
  };
  /** apt-get with its whole output, which carries the hooks' and the trigger's messages. */
  const apt = (args: string) => sh(`apt-get -y -o Dpkg::Use-Pty=0 --no-install-recommends ${args} 2>&1`);
  const status = async (): Promise<StatusRow[]> => {
    const r = await sh('ootmod status --json');
    expect(r.code, r.err).toBe(0);
    return (JSON.parse(r.out) as { modules: StatusRow[] }).modules;
  };
  const trees = async (): Promise<TreeRow[]> => {
    const r = await sh('ootmod rust status --json');
    expect(r.code, r.err).toBe(0);
    return (JSON.parse(r.out) as { trees: TreeRow[] }).trees;
  };
  const row = (rows: StatusRow[], module: string, kver: string | null) => rows.find((r) => r.module === module && r.kernel === kver);
  const exists = async (p: string) => (await sh(`test -e '${p}'`)).code === 0;
  const modulesDep = async (kver: string) => (await sh(`cat /usr/lib/modules/${kver}/modules.dep`)).out;
  const installDir = () => `/usr/lib/modules/${kernel.kver}/updates/ootmod`;

  /** dpkg is clean: nothing to audit, every package fully installed. */
  const expectDpkgClean = async () => {
    const audit = await sh('dpkg --audit');
    expect(audit.out.trim(), 'dpkg --audit').toBe('');
    const q = await sh("dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n'");
    expect(q.code).toBe(0);
    const notInstalled = q.out.split('\n').filter((l) => l.trim() && !l.startsWith('ii '));
    expect(notInstalled, 'packages not in state ii').toEqual([]);
  };

  beforeAll(async () => {
    debs = await buildOotmodDebs(log);
    // The test's own packages go to a dir of its own (ootmod's .debs are a shared cache: read only).
    const fixtures = path.join(work, 'fixtures');
    for (const f of ['ootmod-hello-1.0', 'ootmod-rust-hello-1.0', 'ootmod-pair-2.1', 'ootmod-broken-1.0']) fixtureDebs[f] = await fixtureDeb(f, fixtures);
    chroot = await freshChroot('sid', 'sid-debian');
    kernel = await currentKernel(chroot);
    await sh(`mkdir -p ${DEBS}`);
    for (const deb of [debs.ootmod, debs.ootmodStatic, ...Object.values(fixtureDebs)]) {
      writeFileSync(chroot.path(`${DEBS}/${path.basename(deb)}`), readFileSync(deb));
    }
  });

  afterAll(() => {
    if (debs && !debs.prebuilt) rmSync(debs.dir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it('builds lintian-clean packages', async () => {
    expect(await lintianProblems(debs.ootmod)).toEqual([]);
    // ootmod-static's overrides (the official Node binary: embedded zlib, no PIE) carry their reasons.
    expect(await lintianProblems(debs.ootmodStatic)).toEqual([]);
    expect(debs.log).not.toMatch(/^dh_\w+: warning/m);
  });

  it('installs ootmod with dpkg -i and apt-get -f install; the hooks call ootmod and exit 0', async () => {
    const first = await sh(`dpkg -i ${DEBS}/${path.basename(debs.ootmod)} 2>&1`);
    // On a minimal system nodejs, gcc and friends are missing: dpkg leaves it unconfigured, apt fixes it.
    if (first.code !== 0) expect(first.out).toMatch(/dependency problems/);
    const fix = await apt('-f install');
    expect(fix.code, fix.out).toBe(0);
    await expectDpkgClean();

    expect((await sh('ootmod --version')).out.trim()).toBe(`ootmod ${debs.version.replace(/-[^-]+$/, '')}`);
    expect((await sh('head -n1 /usr/sbin/ootmod')).out.trim()).toBe('#!/usr/bin/node');
    const conffiles = (await sh("dpkg-query -W -f '${Conffiles}' ootmod")).out;
    for (const hook of ['header_postinst', 'postinst', 'prerm']) {
      expect(conffiles).toContain(`/etc/kernel/${hook}.d/ootmod`);
      expect((await sh(`test -x /etc/kernel/${hook}.d/ootmod`)).code).toBe(0);
    }
    expect(conffiles).toContain('/etc/ootmod/ootmod.conf');
    expect(await exists('/var/lib/ootmod')).toBe(true);
    expect(await exists('/usr/share/man/man8/ootmod.8.gz')).toBe(true);
    expect(await exists('/usr/share/bash-completion/completions/ootmod')).toBe(true);

    // run-parts would run them like this; the hook's output goes to stderr, stdout stays empty.
    const hook = await sh('DEB_MAINT_PARAMS="remove" /etc/kernel/prerm.d/ootmod 0.0.0-none-amd64 /boot/vmlinuz-0.0.0-none-amd64');
    expect(hook.code, hook.all).toBe(0);
    expect(hook.out).toBe('');
    expect(hook.err).toMatch(/ootmod: removed 0 module build\(s\) of 0\.0\.0-none-amd64/);
    const outside = await sh('DEB_MAINT_PARAMS="configure 1" /etc/kernel/postinst.d/ootmod 0.0.0-none-amd64 /boot/vmlinuz-0.0.0-none-amd64');
    expect(outside.code, outside.all).toBe(0);
    expect(outside.out).toBe('');
  });

  it('builds the module sources for a new kernel: headers, image, rustc, rust-src, bindgen, libclang-dev and linux-source in one apt-get run', async () => {
    // The module packages first: with no kernel yet, the /usr/src trigger runs and has nothing to build.
    const sources = await apt(`install ${DEBS}/${path.basename(fixtureDebs['ootmod-hello-1.0'])} ${DEBS}/${path.basename(fixtureDebs['ootmod-rust-hello-1.0'])}`);
    expect(sources.code, sources.out).toBe(0);
    expect(sources.out).toMatch(/Processing triggers for ootmod /);
    for (const m of ['ootmod-hello', 'ootmod-rust-hello']) expect(row(await status(), m, null)?.status).toBe('added');

    // The rustc the kernel needs, from the headers package's .config, before anything is installed.
    const dl = await sh(`cd /tmp && apt-get download ${kernel.headersPackage}=${kernel.version} >/dev/null && dpkg-deb --fsys-tarfile ${kernel.headersPackage}_*.deb | tar -xO ./usr/src/${kernel.headersPackage}/.config; rm -f /tmp/${kernel.headersPackage}_*.deb`);
    expect(dl.code, dl.err).toBe(0);
    const config = parseKernelConfig(dl.out);
    const gcc = /\bgcc-(\d+)\b/.exec(config.get('CONFIG_CC_VERSION_TEXT') ?? '')?.[1];
    expect(gcc, 'kernel compiler').toBeTruthy();
    const toolchain = await kernelRustToolchain(chroot, kernel.kver, config);
    if (toolchain.ok) {
      rustcPackages = toolchain.packages;
      kernelRustcText = toolchain.rustcText;
      for (const w of toolchain.warnings) log(`warning: ${w}`);
    } else {
      rustSkip = `no rustc matching ${kernel.kver} in sid: ${toolchain.reason}`;
      log(`Rust assertions skipped: ${rustSkip}`);
    }
    // linux-source of exactly the headers' version; rustc etc. without a version pin when none matches.
    const pkgs = [
      `${kernel.headersPackage}=${kernel.version}`,
      kernel.imagePackage,
      `${kernel.sourcePackage}=${kernel.version}`,
      `gcc-${gcc}`,
      ...(toolchain.ok ? toolchain.packages : ['rustc', 'rust-src', 'bindgen', 'libclang-dev']),
    ];
    log(`sid-debian: one apt-get install of ${pkgs.join(' ')}`);
    const t0 = Date.now();
    const r = await apt(`install ${pkgs.join(' ')}`);
    log(`sid-debian: kernel transaction took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    expect(r.code, r.out.slice(-6000)).toBe(0);
    // The hooks ran inside dpkg and deferred to the trigger, which ran once at the end.
    expect(r.out).toMatch(new RegExp(`ootmod: ${re(kernel.kver)} queued`));
    expect(r.out).toMatch(/Processing triggers for ootmod /);
    expect((await sh('ls -A /var/lib/ootmod/queue')).out.trim()).toBe('');
    await expectDpkgClean();
    expect(await kernelGccPackage(chroot, kernel.kver)).toBe(`gcc-${gcc}`);

    const rows = await status();
    const hello = row(rows, 'ootmod-hello', kernel.kver);
    expect(hello?.status, JSON.stringify(rows)).toBe('installed');
    expect(hello!.files).toHaveLength(1);
    expect(hello!.files[0]).toMatch(new RegExp(`^${re(installDir())}/ootmod_hello\\.ko`));
    expect(await exists(hello!.files[0])).toBe(true);
    expect(await modulesDep(kernel.kver)).toMatch(/^updates\/ootmod\/ootmod_hello\.ko/m);
    if (rustSkip) {
      // Honest, not silent: the Rust module is not installed, and says why.
      expect(row(rows, 'ootmod-rust-hello', kernel.kver)?.status).not.toBe('installed');
    }
  });

  it('has prepared the Rust tree and built the Rust module in that same run', async (ctx) => {
    if (rustSkip) ctx.skip(rustSkip);
    const [tree, ...others] = await trees();
    expect(others).toEqual([]);
    expect(tree).toMatchObject({ kernel: kernel.kver, state: 'current', rustc: kernelRustcText, abi: { ok: true } });
    expect(await exists(`${tree.dir}/rust/libkernel.rmeta`)).toBe(true);
    const rust = row(await status(), 'ootmod-rust-hello', kernel.kver);
    expect(rust?.status, JSON.stringify(rust)).toBe('installed');
    expect(rust!.files[0]).toMatch(new RegExp(`^${re(installDir())}/ootmod_rust_hello\\.ko`));
    const vermagic = await sh(`modinfo -F vermagic ${rust!.files[0]}`);
    expect(vermagic.out).toMatch(new RegExp(`^${re(kernel.kver)} `));
  });

  it('builds a module package installed later for every kernel, and removing the package removes its modules', async () => {
    const pair = fixtureDebs['ootmod-pair-2.1'];
    const install = await apt(`install ${DEBS}/${path.basename(pair)}`);
    expect(install.code, install.out).toBe(0);
    expect(install.out).toMatch(/Processing triggers for ootmod /);
    await expectDpkgClean();
    const { kernels } = JSON.parse((await sh('ootmod kernels --json')).out) as { kernels: { release: string; headers: string | null }[] };
    const releases = kernels.filter((k) => k.headers).map((k) => k.release);
    expect(releases).toContain(kernel.kver);
    const rows = await status();
    for (const kver of releases) {
      const pairRow = row(rows, 'ootmod-pair', kver);
      expect(pairRow?.status, JSON.stringify(rows)).toBe('installed');
      expect(pairRow!.files.map((f) => path.basename(f).replace(/\.ko.*$/, '')).sort()).toEqual(['ootmod_pair_beta', 'pair_alpha']);
      for (const f of pairRow!.files) expect(await exists(f)).toBe(true);
      expect(await modulesDep(kver)).toMatch(/^updates\/ootmod\/pair_alpha\.ko/m);
    }

    const remove = await apt('purge ootmod-pair-source');
    expect(remove.code, remove.out).toBe(0);
    expect(remove.out).toMatch(/Processing triggers for ootmod /);
    await expectDpkgClean();
    expect(await exists('/usr/src/ootmod-pair-2.1')).toBe(false);
    expect((await status()).filter((r) => r.module === 'ootmod-pair')).toEqual([]);
    for (const kver of releases) {
      expect((await sh(`ls /usr/lib/modules/${kver}/updates/ootmod`)).out).not.toMatch(/pair/);
      expect(await modulesDep(kver)).not.toMatch(/pair_alpha|ootmod_pair_beta/);
    }
    // The other modules stay.
    expect(row(await status(), 'ootmod-hello', kernel.kver)?.status).toBe('installed');
  });

  it('reports a module whose build fails, and the apt transaction still succeeds', async () => {
    const r = await apt(`install ${DEBS}/${path.basename(fixtureDebs['ootmod-broken-1.0'])}`);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/Processing triggers for ootmod /);
    expect(r.out).toMatch(/some modules failed; see ootmod status/);
    await expectDpkgClean();
    const broken = row(await status(), 'ootmod-broken', kernel.kver);
    expect(broken?.status).toBe('failed');
    expect(broken!.error).toBeTruthy();
    expect(broken!.error!.split('\n')).toHaveLength(1);
    expect(broken!.log).toBeTruthy();
    const buildLog = await sh(`cat '${broken!.log}'`);
    expect(buildLog.code).toBe(0);
    expect(buildLog.out).toMatch(/error/i);
    expect(row(await status(), 'ootmod-hello', kernel.kver)?.status).toBe('installed');

    const remove = await apt('purge ootmod-broken-source');
    expect(remove.code, remove.out).toBe(0);
    await expectDpkgClean();
    expect((await status()).filter((x) => x.module === 'ootmod-broken')).toEqual([]);
  });

  it('marks the Rust tree stale when the Rust toolchain changes, and reports why it cannot rebuild it', async (ctx) => {
    if (rustSkip) ctx.skip(rustSkip);
    // sid carries one rustc; if it carries another upstream version, install that: a real change.
    const want = /^rustc (\d+\.\d+\.\d+)/.exec(kernelRustcText)![1];
    const madison = (await sh('apt-cache madison rustc')).out;
    const other = madison
      .split('\n')
      .map((l) => l.split('|').map((f) => f.trim()))
      .find((f) => f.length === 3 && !f[1].replace(/^\d+:/, '').startsWith(`${want}+`) && !f[1].replace(/^\d+:/, '').startsWith(`${want}-`))?.[1];
    let change: string;
    let undo: string;
    let otherText: RegExp;
    if (other) {
      log(`toolchain change: sid has rustc ${other} besides the kernel's ${want}`);
      change = `install --allow-downgrades rustc=${other}`;
      undo = `install --allow-downgrades ${rustcPackages.join(' ')}`;
      otherText = new RegExp(`rustc ${re(other.replace(/^\d+:/, '').replace(/[+~-].*$/, ''))}`);
    } else {
      // Simulated, and said so: a package that diverts /usr/bin/rustc (dpkg-divert, as real packages
      // do) and ships a rustc reporting another version. To ootmod this is what a rustc upgrade looks
      // like (another `rustc --version` at /usr/bin/rustc), and dpkg fires the same file trigger.
      log(`toolchain change: sid has only rustc ${want}: simulated with a package diverting /usr/bin/rustc`);
      const divert = 'dpkg-divert --package rustc-ootmod-e2e --rename --divert /usr/bin/rustc.distrib';
      const deb = await buildDeb(
        {
          package: 'rustc-ootmod-e2e',
          version: '1.0',
          description: 'ootmod e2e: a rustc that reports another version',
          files: {
            '/usr/bin/rustc': {
              mode: 0o755,
              content: '#!/bin/sh\ncase " $* " in *" --version "*|*" -V "*|*" -vV "*) echo "rustc 1.0.0 (000000000 2015-05-15) (ootmod e2e)"; exit 0;; esac\nexec /usr/bin/rustc.distrib "$@"\n',
            },
          },
          scripts: {
            preinst: `#!/bin/sh\nset -e\nif [ "$1" = install ] || [ "$1" = upgrade ]; then ${divert} --add /usr/bin/rustc; fi\n`,
            postrm: `#!/bin/sh\nset -e\nif [ "$1" = remove ] || [ "$1" = abort-install ] || [ "$1" = disappear ]; then ${divert} --remove /usr/bin/rustc; fi\n`,
          },
        },
        path.join(work, 'toolchain'),
      );
      writeFileSync(chroot.path(`${DEBS}/${path.basename(deb)}`), readFileSync(deb));
      change = `install ${DEBS}/${path.basename(deb)}`;
      undo = 'purge rustc-ootmod-e2e';
      otherText = /rustc 1\.0\.0 \(000000000 2015-05-15\) \(ootmod e2e\)/;
    }

    const r = await apt(change);
    expect(r.code, r.out.slice(-4000)).toBe(0);
    expect(r.out).toMatch(/Processing triggers for ootmod /);
    await expectDpkgClean();
    const [tree] = await trees();
    expect(tree.state, JSON.stringify(tree)).toBe('stale');
    // One line: what the kernel needs and what is installed.
    expect(tree.detail).toMatch(otherText);
    expect(tree.detail!.split('\n')).toHaveLength(1);
    // The trigger said so too, in one line naming the kernel and the rustc found.
    expect(r.out).toMatch(new RegExp(`^.*${re(kernel.kver)}.*${otherText.source}.*$`, 'm'));
    // The module built with the right rustc stays installed.
    const during = row(await status(), 'ootmod-rust-hello', kernel.kver);
    expect(during?.files.length, JSON.stringify(during)).toBe(1);
    expect(await exists(during!.files[0])).toBe(true);
    expect(['installed', 'failed'], JSON.stringify(during)).toContain(during!.status);

    const back = await apt(undo);
    expect(back.code, back.out.slice(-4000)).toBe(0);
    expect(back.out).toMatch(/Processing triggers for ootmod /);
    await expectDpkgClean();
    expect((await trees())[0]).toMatchObject({ state: 'current', rustc: kernelRustcText });
    // With the kernel's rustc back, everything is as before the change.
    const rows = await status();
    for (const m of ['ootmod-rust-hello', 'ootmod-hello']) expect(row(rows, m, kernel.kver)?.status, JSON.stringify(rows)).toBe('installed');
  });

  it('removes the modules and the Rust tree of a kernel whose image and headers are removed', async () => {
    const pkgs = (await sh(`dpkg-query -W -f '\${Package}\\n' 'linux-*-${kernel.kver}'`)).out.split('\n').filter(Boolean);
    expect(pkgs).toContain(kernel.headersPackage);
    const r = await apt(`purge ${pkgs.join(' ')}`);
    expect(r.code, r.out.slice(-6000)).toBe(0);
    expect(r.out).toMatch(new RegExp(`ootmod: removed \\d+ module build\\(s\\)( and the Rust tree)? of ${re(kernel.kver)}`));
    await expectDpkgClean();
    expect(await exists(installDir())).toBe(false);
    expect(await exists(`/var/lib/ootmod/rust/${kernel.kver}`)).toBe(false);
    expect(await exists(`/var/lib/ootmod/built/${kernel.kver}`)).toBe(false);
    expect((await status()).filter((x) => x.kernel === kernel.kver)).toEqual([]);
    // The sources stay, waiting for the next kernel.
    expect(row(await status(), 'ootmod-hello', null)?.status).toBe('added');
  });

  it('replaces ootmod by ootmod-static, which runs without nodejs', async () => {
    const r = await apt(`install ${DEBS}/${path.basename(debs.ootmodStatic)}`);
    expect(r.code, r.out).toBe(0);
    // The conffiles went over to ootmod-static; purging what is left of ootmod keeps ootmod-static's state.
    const purge = await sh('dpkg --purge ootmod 2>&1');
    expect(purge.code, purge.out).toBe(0);
    const nodejs = await apt('purge nodejs');
    expect(nodejs.code, nodejs.out).toBe(0);
    await sh('apt-get -y autoremove --purge >/dev/null 2>&1');
    await expectDpkgClean();
    expect((await sh('command -v node nodejs')).out.trim()).toBe('');
    expect(await exists('/var/lib/ootmod/state.json')).toBe(true);
    for (const hook of ['header_postinst', 'postinst', 'prerm']) {
      expect((await sh(`dpkg -S /etc/kernel/${hook}.d/ootmod`)).out).toMatch(/^ootmod-static: /);
    }

    const version = await sh('ootmod --version');
    expect(version.code).toBe(0);
    expect(version.out.trim()).toBe(`ootmod ${debs.version.replace(/-[^-]+$/, '')}`);
    const kernels = await sh('ootmod kernels');
    expect(kernels.code, kernels.all).toBe(0);
    expect(kernels.all).not.toMatch(/internal error/);
    // A module source package triggers ootmod-static as it triggered ootmod.
    const again = await apt(`install --reinstall ${DEBS}/${path.basename(fixtureDebs['ootmod-hello-1.0'])}`);
    expect(again.code, again.out).toBe(0);
    expect(again.out).toMatch(/Processing triggers for ootmod-static /);
    await expectDpkgClean();
  });
});
