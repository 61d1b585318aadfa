// Deliberate breaks of the code, each with the test that claims to guard against it (run by
// test/mutants/run.ts, `npm run test:mutants`). A mutant replaces one exact text, which must occur once in
// its file; after a refactor moves the text, the runner says so and the entry is updated here.

export interface Mutant {
  id: string;
  /** What the break does, in a few words. */
  break: string;
  file: string;
  find: string;
  replace: string;
  /** The test file that must fail with the break (and pass without it). */
  test: string;
  /** vitest -t: only the tests whose name matches. */
  filter?: string;
  /** vitest --config, for the fault suite. */
  config?: string;
  /** quick: unit and integration tests; faults: the fault suite (root, minutes each). */
  tier: 'quick' | 'faults';
}

const FAULTS = 'vitest.faults.config.mts';

export const MUTANTS: Mutant[] = [
  {
    id: 'state-lost-write',
    break: 'a save writes only its own store\'s view, dropping what another store wrote since it loaded',
    file: 'src/state/store.ts',
    find: 'if (!base) return this.data.records;',
    replace: 'return this.data.records;',
    test: 'test/unit/state.test.ts',
    tier: 'quick',
  },
  {
    id: 'rust-prepare-json-text',
    break: '`rust prepare --json` with nothing to prepare prints a sentence, not JSON',
    file: 'src/cli/commands/rust.ts',
    find: '!plan.jobs.length && !s.opts.json) {',
    replace: '!plan.jobs.length) {',
    test: 'test/integration/dry-run.test.ts',
    filter: 'rust prepare',
    tier: 'quick',
  },
  {
    id: 'trigger-keeps-queue',
    break: "the trigger's plan has no job that takes the queued requests (their removal is outside the plan again)",
    file: 'src/pipeline/work.ts',
    find: "dequeue: { files: opts.queued ?? [],",
    replace: "dequeue: { files: [],",
    test: 'test/integration/dry-run.test.ts',
    filter: 'autoinstall|queued request',
    tier: 'quick',
  },
  {
    id: 'rust-reason-dropped',
    break: 'the plan line of a kernel whose Rust tree cannot be built no longer says why',
    file: 'src/cli/progress.ts',
    find: 'no Rust tree can be built for ${r.kernel}: ${r.reason}`',
    replace: 'no Rust tree can be built for ${r.kernel}`',
    test: 'test/integration/rust-tree.test.ts',
    tier: 'quick',
  },
  {
    id: 'erofs-internal-error',
    break: 'a read-only filesystem is an internal error (exit 70), not one line with its fix',
    file: 'src/errors.ts',
    find: "case 'EROFS':\n      return new OotmodError",
    replace: "case 'EROFS-not':\n      return new OotmodError",
    test: 'test/faults/environment.faults.test.ts',
    config: FAULTS,
    tier: 'faults',
  },
  {
    id: 'rust-prepare-no-lock',
    break: '`rust prepare` runs without taking the global lock',
    file: 'src/cli/commands/rust.ts',
    find: 'return withLock(s, async () => {\n    const planned = await planRustPrepare(s);',
    replace: 'return (async (f: () => Promise<ExitCode>) => f())(async () => {\n    const planned = await planRustPrepare(s);',
    test: 'test/faults/concurrency.faults.test.ts',
    config: FAULTS,
    tier: 'faults',
  },
  {
    id: 'abi-item-paths-ignored',
    break: 'the metadata tree\'s ABI check finds every item path, so a tree built from another .config passes',
    file: 'src/rust/v0.ts',
    find: 'if (!kinds) return names;',
    replace: 'if (!kinds) return undefined;',
    test: 'test/unit/rust-metadata.test.ts',
    filter: 'item paths',
    tier: 'quick',
  },
  {
    id: 'silent-wait',
    break: 'a run waiting for the lock no longer says which run it waits for',
    file: 'src/cli/session.ts',
    find: 'onWait: (holder) => session.err(',
    replace: 'onWait: (holder) => void (',
    test: 'test/faults/concurrency.faults.test.ts',
    config: FAULTS,
    tier: 'faults',
  },
];
