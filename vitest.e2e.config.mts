import { defineConfig } from 'vitest/config';

// The end-to-end suite: real debootstrapped Debian chroots and the real kernels under QEMU.
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.e2e.test.ts'],
    testTimeout: 1_800_000,
    hookTimeout: 3_600_000,
    fileParallelism: false,
  },
});
