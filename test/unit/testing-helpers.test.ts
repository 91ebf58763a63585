import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { defineTask, PayloadValidationError } from '../../src/index.ts'
import { runInline } from '../../src/testing.ts'

describe('runInline', () => {
  const greet = defineTask({
    name: 'testing.greet',
    payload: z.object({ who: z.string(), at: z.coerce.date() }),
    run: async ({ who, at }, ctx) => `${who}@${at.getUTCFullYear()} attempt ${ctx.attempt}`,
  })

  it('runs the handler with the payload as a worker would see it', async () => {
    await expect(runInline(greet, { who: 'ada', at: new Date('2020-05-01T00:00:00Z') })).resolves.toBe('ada@2020 attempt 1')
    await expect(runInline(greet, { who: 'ada', at: '2021-01-01' }, { attempt: 3 })).resolves.toBe('ada@2021 attempt 3')
  })

  it('rejects payloads the worker would reject', async () => {
    await expect(runInline(greet, { who: 1 } as never)).rejects.toBeInstanceOf(PayloadValidationError)
  })
})
