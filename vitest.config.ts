import { defaultServerConditions } from 'vite'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  // "taskrelay" (the examples and README code import it by name) means the
  // TypeScript sources here, as in the npm scripts' --conditions: never a
  // stale dist/, and never a second copy of every class.
  ssr: { resolve: { conditions: ['taskrelay-source', ...defaultServerConditions.filter((c) => c !== 'module')] } },
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
