import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
    // Vitest's default (cores − 1) is one worker on a 2-core machine; most files wait on spawned
    // CLIs and servers, so two workers cut the suite from ~9 to ~7 minutes there.
    maxWorkers: 2,
    reporters: ['default', 'json'],
    outputFile: { json: 'test/.artifacts/vitest.json' },
  },
});
