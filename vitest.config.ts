import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
    // Vitest's default (cores − 1) is one worker on a 2-core machine; most files wait on spawned
    // CLIs and servers, so two workers cut the suite by a quarter there (three gain nothing more).
    maxWorkers: 2,
    // Files share their worker's modules (sharp, zod, DuckDB… load once per worker, not per file):
    // the code under test keeps no module-level state, jobs keep theirs in their sessions.
    isolate: false,
    reporters: ['default', 'json'],
    outputFile: { json: 'test/.artifacts/vitest.json' },
  },
});
