import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { InvalidOptionsError, Relay, SchemaVersionError, Sweeper, TaskRelay, Worker, defineTask } from '../../src/index.ts'
import { redisUrl, uniqueSchema } from '../support/db.ts'
import { db, usePipeline } from '../support/pipeline.ts'

/**
 * Services refuse bad options and unmigrated schemas before they start.
 * Real Postgres and Redis; the shared stack is in test/support/pipeline.ts.
 */

usePipeline()

describe('bad input', () => {
  it('rejects invalid service options, listing every problem', () => {
    const t = defineTask({ name: 'p.opts', payload: z.object({}), run: async () => null })
    expect(() => new Worker(db.tr, { redis: redisUrl(), tasks: [] })).toThrow(InvalidOptionsError)
    let error: InvalidOptionsError | undefined
    try {
      new Worker(db.tr, { redis: redisUrl(), tasks: [t], leaseMs: 1000, heartbeatMs: 600, concurrency: 0, bogus: 1 } as never)
    } catch (err) {
      error = err as InvalidOptionsError
    }
    expect(error).toBeInstanceOf(InvalidOptionsError)
    expect(error!.problems.join('\n')).toMatch(/concurrency/)
    expect(error!.problems.join('\n')).toMatch(/bogus/)
    expect(() => new Relay(db.tr, { redis: redisUrl(), batchSize: -1 })).toThrow(/batchSize/)
    expect(() => new Sweeper(db.tr, { dispatchTimeoutMs: 'soon' } as never)).toThrow(/dispatchTimeoutMs/)
    const other = defineTask({ name: 'p.opts', payload: z.object({ x: z.string() }), run: async () => null })
    expect(() => new Worker(db.tr, { redis: redisUrl(), tasks: [t, other] })).toThrow(/two different tasks are named "p.opts"/)
  })

  it('refuses to start against a schema that is not migrated', async () => {
    const tr = new TaskRelay({ db: db.pool, schema: uniqueSchema('unmigrated') })
    const sweeper = new Sweeper(tr)
    await expect(sweeper.start()).rejects.toBeInstanceOf(SchemaVersionError)
    await expect(sweeper.start()).rejects.toThrow(/run `taskrelay migrate`/)
  })
})
