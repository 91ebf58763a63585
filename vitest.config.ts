import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    globalSetup: ['./test/support/global-setup.ts'],
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    // Two cores: more parallel files only adds contention.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Failures must be real: no retries that hide flakiness.
    retry: 0,
  },
})
