// Imports run downward only. A file may import files of its own layer's dirs and of any layer below; an
// import of a higher layer, or of another dir of the same layer, fails this test. (Type-only and
// dynamic imports count: a type is a dependency too.)
//
// The layers, top to bottom (README, "Code layout"):
//   cli       the command line: parses, calls the pipeline, renders (cli/, cli/commands/)
//   pipeline  reads the system, makes a plan, hands it to the executor, sums up; creates the run context
//   execute   runs the jobs of a plan (the plan's job types are its input)
//   plan      pure: facts in, a graph of typed jobs out
//   dkms, rust, package   readers and tools of one subject each: DKMS's files and formats, the kernels'
//             Rust trees, the .deb writer; none of them imports another
//   state     ootmod's state file and the status rows made from it
//   modules   module sources: dkms.conf, names, specs
//   kernel    installed kernels, their headers, config, toolchain, boot loader
//   system    the machine: running programs, the sandbox, files, paths, config, lock
//   (base)    src/errors.ts, src/version.ts
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(__dirname, '../../src');

const LAYERS: string[][] = [
  ['cli'],
  ['pipeline'],
  ['execute'],
  ['plan'],
  ['dkms', 'rust', 'package'],
  ['state'],
  ['modules'],
  ['kernel'],
  ['system'],
  ['(base)'],
];

/** The top dir under src/ a file belongs to ("(base)" for src/*.ts). */
function unitOf(file: string): string {
  const rel = path.relative(SRC, file).split(path.sep);
  return rel.length > 1 ? rel[0]! : '(base)';
}

function rankOf(unit: string): number {
  const i = LAYERS.findIndex((l) => l.includes(unit));
  if (i < 0) throw new Error(`src/${unit} is in no layer: add it to LAYERS in ${path.basename(__filename)} (and to README's "Code layout")`);
  return i;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** The relative imports of a file: static (also `import type` and `export … from`) and dynamic. */
export function importsOf(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)(['"])(\.[^'"]*)\1/gm)) found.push(m[2]!);
  return found;
}

/** Every import that goes up a layer or sideways into another dir of the same layer. */
export function layerViolations(files: { file: string; text: string }[]): string[] {
  const out: string[] = [];
  for (const { file, text } of files) {
    const from = unitOf(file);
    for (const spec of importsOf(text)) {
      const target = path.resolve(path.dirname(file), spec.replace(/\.js$/, '.ts'));
      const to = unitOf(target);
      if (to === from) continue;
      const [a, b] = [rankOf(from), rankOf(to)];
      if (b < a) out.push(`src/${path.relative(SRC, file)} (${from}) imports ${spec} (${to}, a higher layer)`);
      else if (b === a) out.push(`src/${path.relative(SRC, file)} (${from}) imports ${spec} (${to}, beside it in the same layer)`);
    }
  }
  return out;
}

describe('layers', () => {
  it('every import of src/ runs downward', () => {
    const files = sourceFiles(SRC).map((file) => ({ file, text: readFileSync(file, 'utf8') }));
    expect(files.length).toBeGreaterThan(50);
    expect(layerViolations(files)).toEqual([]);
  });

  it('finds an upward import, a sideways one, a type-only one, a dynamic one and a bare one', () => {
    const at = (p: string) => path.join(SRC, p);
    const files = [
      { file: at('system/sandbox.ts'), text: "import { findOnPath } from '../kernel/toolchain.js';\n" },
      { file: at('rust/tree.ts'), text: "import type { X } from '../dkms/framework.js';\n" },
      { file: at('dkms/status.ts'), text: "import type { StatusRow } from '../cli/commands/status.js';\n" },
      { file: at('plan/facts.ts'), text: "const m = await import('../execute/signing.js');\n" },
      { file: at('cli/main.ts'), text: "import { run } from '../system/run.js';\nexport { x } from './format.js';\n" },
      { file: at('kernel/boot.ts'), text: 'import "../modules/names.js";\n' },
      { file: at('errors.ts'), text: "import { ExitCode } from './version.js';\n" },
    ];
    expect(layerViolations(files)).toEqual([
      "src/system/sandbox.ts (system) imports ../kernel/toolchain.js (kernel, a higher layer)",
      "src/rust/tree.ts (rust) imports ../dkms/framework.js (dkms, beside it in the same layer)",
      "src/dkms/status.ts (dkms) imports ../cli/commands/status.js (cli, a higher layer)",
      "src/plan/facts.ts (plan) imports ../execute/signing.js (execute, a higher layer)",
      "src/kernel/boot.ts (kernel) imports ../modules/names.js (modules, a higher layer)",
    ]);
  });
});
