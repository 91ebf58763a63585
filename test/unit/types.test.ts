import { describe, expect, expectTypeOf, it } from 'vitest'
import type pg from 'pg'
import type { Kysely, Transaction } from 'kysely'
import { z } from 'zod'
import {
  InvalidOptionsError,
  PayloadValidationError,
  TaskRelay,
  defineTask,
  type EnqueueOptions,
  type PayloadOf,
  type Queryable,
  type ResultOf,
  type Task,
  type TaskRecord,
} from '../../src/index.ts'

/**
 * Type tests for defineTask/enqueue inference. `tsc --noEmit` covers test/,
 * so every `@ts-expect-error` below fails the type check if the line it marks
 * starts compiling. The wrongly typed calls also run, against a TaskRelay that
 * never connects: validation rejects them before any SQL.
 */

const welcome = defineTask({
  name: 'email.welcome',
  payload: z.object({ userId: z.number(), locale: z.string().default('en') }),
  run: async (payload, ctx) => {
    expectTypeOf(payload).toEqualTypeOf<{ userId: number; locale: string }>()
    expectTypeOf(ctx.signal).toEqualTypeOf<AbortSignal>()
    expectTypeOf(ctx.attempt).toEqualTypeOf<number>()
    return { sent: true as boolean }
  },
})

// Never connects: pg.Pool connects lazily and these calls fail validation first.
const tr = new TaskRelay({ db: 'postgres://nobody@127.0.0.1:1/none', schema: 'types_never_used' })

// A pg client "inside a transaction" that fails any query: proves no SQL ran.
const trx = {
  getTransactionStatus: () => 'T',
  query: () => Promise.reject(new Error('no SQL expected')),
} as unknown as pg.PoolClient

describe('defineTask / enqueue type inference', () => {
  it('infers payload (schema input) and result types from the definition', () => {
    expectTypeOf(welcome).toEqualTypeOf<Task<typeof welcome.payload, { sent: boolean }>>()
    expectTypeOf<PayloadOf<typeof welcome>>().toEqualTypeOf<{ userId: number; locale?: string | undefined }>()
    expectTypeOf<ResultOf<typeof welcome>>().toEqualTypeOf<{ sent: boolean }>()
    // Types only: these calls are never made.
    expectTypeOf<Awaited<ReturnType<typeof tr.enqueue<typeof welcome>>>>().toEqualTypeOf<{ id: string; outcome: 'created' | 'existing' | 'debounced' }>()
    expectTypeOf<Awaited<ReturnType<typeof tr.enqueueMany>>>().toEqualTypeOf<{ ids: string[] }>()
    expectTypeOf(tr.getTask).returns.resolves.toEqualTypeOf<TaskRecord | null>()
  })

  it('accepts every documented kind of trx', () => {
    expectTypeOf<Transaction<any>>().toExtend<Queryable>()
    expectTypeOf<pg.PoolClient>().toExtend<Queryable>()
    expectTypeOf<pg.Client>().toExtend<Queryable>()
    // Also accepted by the types, refused at run time (not a transaction):
    expectTypeOf<pg.Pool>().toExtend<Queryable>()
    expectTypeOf<Kysely<any>>().toExtend<Queryable>()
  })

  it('rejects wrong payloads at compile time (and at run time)', async () => {
    // @ts-expect-error unknown key, missing userId
    await expect(tr.enqueue(trx, welcome, { wrong: 1 })).rejects.toBeInstanceOf(PayloadValidationError)
    // @ts-expect-error userId must be a number
    await expect(tr.enqueue(trx, welcome, { userId: '1' })).rejects.toBeInstanceOf(PayloadValidationError)
    // @ts-expect-error payload is required
    await expect(tr.enqueue(trx, welcome)).rejects.toBeInstanceOf(PayloadValidationError)
    // @ts-expect-error same without trx
    await expect(tr.enqueue(welcome, { userId: 'x' })).rejects.toBeInstanceOf(PayloadValidationError)
    // @ts-expect-error null is not the payload
    await expect(tr.enqueue(welcome, null)).rejects.toBeInstanceOf(PayloadValidationError)
  })

  it('rejects wrong options at compile time (and at run time)', async () => {
    // @ts-expect-error unknown option
    await expect(tr.enqueue(trx, welcome, { userId: 1 }, { priorty: 1 })).rejects.toBeInstanceOf(InvalidOptionsError)
    // @ts-expect-error priority is a number
    await expect(tr.enqueue(trx, welcome, { userId: 1 }, { priority: 'high' })).rejects.toBeInstanceOf(InvalidOptionsError)
    // @ts-expect-error runAt is a Date
    await expect(tr.enqueue(welcome, { userId: 1 }, { runAt: '2030-01-01' })).rejects.toBeInstanceOf(InvalidOptionsError)
    expectTypeOf<EnqueueOptions>().toEqualTypeOf<{
      runAt?: Date
      delayMs?: number
      priority?: number
      queue?: string
      maxAttempts?: number
      idempotencyKey?: string
      dependsOn?: ReadonlyArray<string | number | bigint>
      groupKey?: string
      idempotencyWindow?: number | string
      singletonKey?: string
      debounce?: { key: string; delay: number | string; maxWait?: number | string }
    }>()
  })

  it('rejects a trx that is no executor, and a task that is not a Task', async () => {
    // @ts-expect-error a string is not a trx
    await expect(tr.enqueue('trx', welcome, { userId: 1 })).rejects.toThrow()
    // @ts-expect-error not a task
    await expect(tr.enqueue(trx, { name: 'email.welcome' }, { userId: 1 })).rejects.toBeInstanceOf(InvalidOptionsError)
  })

  it('rejects bad definitions at compile time', () => {
    // @ts-expect-error run receives the parsed payload: userId is a number
    expect(() => defineTask({ name: 'x', payload: z.object({ userId: z.number() }), run: (p: { userId: string }) => p })).not.toThrow()
    // @ts-expect-error priority is a number
    expect(() => defineTask({ name: 'x', payload: z.object({}), run: () => {}, priority: 'high' })).toThrow(InvalidOptionsError)
    // @ts-expect-error payload is required
    expect(() => defineTask({ name: 'x', run: () => {} })).toThrow(InvalidOptionsError)
  })
})

describe('enqueueMany payload types', () => {
  it('checks each item against its own task', () => {
    const tr = new TaskRelay({ db: 'postgres://unused@127.0.0.1/unused' })
    const a = defineTask({ name: 'types.many-a', payload: z.object({ n: z.number() }), run: async () => null })
    const b = defineTask({ name: 'types.many-b', payload: z.object({ s: z.string() }), run: async () => null })
    const typed = () =>
      tr.enqueueMany([
        { task: a, payload: { n: 1 } },
        { task: b, payload: { s: 'x' } },
      ])
    const mapped = () => tr.enqueueMany([1, 2, 3].map((n) => ({ task: a, payload: { n } })))
    // @ts-expect-error: b's payload needs s, not n
    const wrong = () => tr.enqueueMany([{ task: b, payload: { n: 1 } }])
    expect([typed, mapped, wrong].every((f) => typeof f === 'function')).toBe(true)
    void tr.close()
  })
})

describe('typed results: waitFor(task, id)', () => {
  it('types result from the handler and payload from the schema; waitFor(id) stays untyped', () => {
    type Waited = Awaited<ReturnType<typeof tr.waitFor<typeof welcome>>>
    expectTypeOf<Waited>().toEqualTypeOf<TaskRecord<{ userId: number; locale?: string | undefined }, { sent: boolean }>>()
    expectTypeOf<Waited['result']>().toEqualTypeOf<{ sent: boolean } | null>()
    const untyped = (id: string) => tr.waitFor(id)
    expectTypeOf(untyped).returns.resolves.toEqualTypeOf<TaskRecord>()
    const wrongUse = async (id: string) => {
      const done = await tr.waitFor(welcome, id)
      // @ts-expect-error the handler returns { sent }, not { delivered }
      void done.result?.delivered
      // @ts-expect-error result may be null until checked
      void done.result.sent
      // @ts-expect-error the payload has no such field
      void done.payload.email
      // @ts-expect-error the first argument is a task or an id, not a name
      await tr.waitFor('email.welcome', id, {})
    }
    expect(typeof wrongUse).toBe('function')
  })
})
