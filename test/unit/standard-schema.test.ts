import { describe, expect, expectTypeOf, it } from 'vitest'
import { z } from 'zod'
import { z as z3 } from 'zod/v3'
import { InvalidOptionsError, PayloadValidationError, defineTask, type PayloadOf, type StandardSchemaV1, type Task } from '../../src/index.ts'
import { prepareTask, prepareTaskAwaitable } from '../../src/enqueue.ts'
import { runInline } from '../../src/testing.ts'

/**
 * Payload schemas are any Standard Schema v1 (zod 3.24+ and 4, valibot,
 * arktype): validated at enqueue and again before the handler runs, sync or
 * async. No database: prepareTask is everything enqueue checks before SQL.
 */

/** A hand-written Standard Schema: a trimmed, non-empty `name`; the output adds its length. */
function nameSchema(opts: { async?: boolean } = {}): StandardSchemaV1<{ name: string }, { name: string; length: number }> {
  const validate = (value: unknown) => {
    const name = (value as { name?: unknown } | null)?.name
    if (typeof name !== 'string' || name.trim() === '') {
      return { issues: [{ message: 'must be a non-empty string', path: [{ key: 'name' }] }] }
    }
    return { value: { name: name.trim(), length: name.trim().length } }
  }
  return {
    '~standard': {
      version: 1,
      vendor: 'handmade',
      validate: opts.async ? async (value: unknown) => validate(value) : validate,
    },
  }
}

const MAX = 1024 * 1024
/** What enqueue checks, as a promise (prepareTaskAwaitable throws at once for a sync schema). */
const prepared = (task: Task, payload: unknown) => Promise.resolve().then(() => prepareTaskAwaitable(task, payload, undefined, MAX))

describe('Standard Schema payloads', () => {
  const greet = defineTask({ name: 'std.greet', payload: nameSchema(), run: (p) => `hello ${p.name} (${p.length})` })

  it('a hand-written schema: input type for enqueue, output type for the handler', async () => {
    expectTypeOf<PayloadOf<typeof greet>>().toEqualTypeOf<{ name: string }>()
    expect((await prepared(greet, { name: ' Ada ' })).payloadJson).toBe('{"name":" Ada "}')
    expect(await runInline(greet, { name: ' Ada ' })).toBe('hello Ada (3)')
  })

  it('its issues become a PayloadValidationError with dotted paths (path segments as { key })', async () => {
    const err = await prepared(greet, { name: '' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(PayloadValidationError)
    expect((err as PayloadValidationError).issues).toEqual([{ path: 'name', message: 'must be a non-empty string' }])
  })

  it('an asynchronous schema works wherever taskrelay can wait, and is refused clearly where it cannot', async () => {
    const slow = defineTask({ name: 'std.slow', payload: nameSchema({ async: true }), run: (p) => p.length })
    expect((await prepared(slow, { name: 'Bo' })).payloadJson).toBe('{"name":"Bo"}')
    await expect(prepared(slow, { name: 1 } as never)).rejects.toBeInstanceOf(PayloadValidationError)
    expect(await runInline(slow, { name: 'Bo' })).toBe(2)
    expect(() => prepareTask(slow, { name: 'Bo' }, undefined, MAX)).toThrow(/validates asynchronously/)
  })

  it('zod 4 stays the default', async () => {
    const task = defineTask({ name: 'std.zod4', payload: z.object({ n: z.number().default(1) }), run: (p) => p.n })
    expect(await runInline(task, {})).toBe(1)
    const err = await prepared(task, { n: 'x' } as never).catch((e: unknown) => e)
    expect((err as PayloadValidationError).issues).toMatchObject([{ path: 'n' }])
  })

  it('zod 3 (3.25, as zod/v3) is accepted too', async () => {
    const task = defineTask({ name: 'std.zod3', payload: z3.object({ when: z3.coerce.date() }), run: (p) => p.when.getUTCFullYear() })
    expect(await runInline(task, { when: new Date('2025-06-01T00:00:00Z') })).toBe(2025)
    await expect(prepared(task, { when: 'not a date' } as never)).rejects.toBeInstanceOf(PayloadValidationError)
  })

  it('anything else is refused, naming the requirement', () => {
    const notASchema = { parse: (v: unknown) => v }
    expect(() => defineTask({ name: 'std.bad', payload: notASchema as never, run() {} })).toThrow(InvalidOptionsError)
    expect(() => defineTask({ name: 'std.bad', payload: notASchema as never, run() {} })).toThrow(/payload: expected a zod schema \(zod 3\.25\.1 or later\) or another schema implementing Standard Schema v1/)
    const wrongVersion = { '~standard': { version: 2, vendor: 'x', validate: () => ({ value: 1 }) } }
    expect(() => defineTask({ name: 'std.bad', payload: wrongVersion as never, run() {} })).toThrow(/Standard Schema v1/)
  })
})
