// Bundles src/cli/main.ts into dist/ootmod: one executable CommonJS file that runs on node >= 18.19.
import { build } from 'esbuild';
import { chmodSync, readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const shebang = process.env.OOTMOD_SHEBANG ?? '#!/usr/bin/env node';
await build({
  entryPoints: ['src/cli/main.ts'],
  outfile: 'dist/ootmod',
  bundle: true,
  platform: 'node',
  target: 'node18',
  format: 'cjs',
  banner: { js: shebang },
  define: { OOTMOD_VERSION: JSON.stringify(pkg.version) },
  logLevel: 'warning',
});
chmodSync('dist/ootmod', 0o755);
