// The failure line names the compiler's (or modpost's, or make's own) first error, not "Error 2".
// The logs are real outputs of failing module builds against Debian's headers, and of rustc.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { firstError } from '../../src/system/run.js';

const log = (name: string) => readFileSync(path.join(__dirname, '../fixtures/build-failures', name), 'utf8');

describe('firstError', () => {
  it.each([
    ['c-undeclared.log', 'ootmod_broken.c:4:53: error: ‘this_symbol_does_not_exist’ undeclared (first use in this function)'],
    ['missing-header.log', 'h.c:2:10: fatal error: missing_header.h: No such file or directory'],
    ['modpost-undefined.log', 'ERROR: modpost: "ootmod_no_such_function" [/tmp/dkmsw/fail/modpost/m.ko] undefined!'],
    ['makefile-error.log', 'Makefile:2: this driver needs CONFIG_FOO_BAR enabled in the kernel'],
    ['no-rule.log', "No rule to make target '/tmp/dkmsw/fail/norule/nothere.o', needed by '/tmp/dkmsw/fail/norule/'"],
    ['rustc-error.log', 'r.rs:3:20: error[E0425]: cannot find value `x` in this scope'],
  ])('%s', (file, expected) => {
    const line = firstError(log(file));
    expect(line).toBe(expected);
    expect(line).not.toMatch(/Error \d+$/);
  });

  it('says nothing when nothing names an error (the caller then shows the last line)', () => {
    expect(firstError('make: Entering directory\nmake: *** [Makefile:5: all] Error 2\n')).toBe('');
  });
});
