import { defineConfig } from 'vitest/config';

// The fault suite (npm run test:faults): disk full, SIGKILL, hostile dkms.conf, sandbox escapes,
// concurrent commands. OOTMOD_FAULTS_TIER=quick runs the small tier CI uses.
export default defineConfig({
  test: {
    include: ['test/faults/**/*.faults.test.ts'],
    globalSetup: ['test/faults/lib/table-setup.ts'],
    testTimeout: 3_600_000,
    hookTimeout: 3_600_000,
    fileParallelism: false,
  },
});
