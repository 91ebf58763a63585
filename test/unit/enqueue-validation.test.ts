import { describe, it } from 'vitest'
import { prepareTask } from '../../src/enqueue.ts'
import { badEnqueueCases, expectRefusal } from '../support/enqueue-tasks.ts'

/**
 * The bad-input table against prepareTask(), the pure check every enqueue
 * path runs before any SQL: no database needed. That enqueue and enqueueMany
 * run it first and write nothing is in test/integration/enqueue-bad-input.test.ts.
 */

/** TaskRelay's default maxPayloadBytes (1 MiB): the table's size case is written against it. */
const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024

function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  throw new Error('expected the call to throw')
}

describe('bad input throws a typed, exported error', () => {
  it.each(badEnqueueCases)('$what', (c) => {
    const err = thrown(() => prepareTask(c.task, c.payload, c.options as never, DEFAULT_MAX_PAYLOAD_BYTES))
    expectRefusal(err, c)
    c.check?.(err)
  })
})
