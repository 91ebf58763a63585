import { describe, expect, it } from 'vitest'
import { pino } from 'pino'
import type { Executor, QueryResult } from '../../src/db/executor.ts'
import { Completer } from '../../src/worker/completer.ts'
import type { AttemptOutcome } from '../../src/worker/run-attempt.ts'

/**
 * The completer's batching, without a database: a fake Executor records each
 * finish batch (the ids and error records it was sent) and answers with the
 * ids the fence matched, or with the error a test wants.
 */

interface Batch {
  ids: string[]
  errors: Array<{ name?: string; kind?: string } | null>
}

/** `refuse(batch)` returns the error that query fails with, if any; `gate` holds every query until it resolves. */
function fakeExecutor(opts: { refuse?: (b: Batch) => Error | undefined; gate?: Promise<void>; owned?: (id: string) => boolean } = {}) {
  const batches: Batch[] = []
  const db: Executor = {
    async query<R>(_text: string, values?: readonly unknown[]): Promise<QueryResult<R>> {
      const list = String(values![0]).slice(1, -1)
      const b: Batch = {
        ids: list === '' ? [] : list.split(','),
        errors: (values![4] as Array<string | null>).map((e) => (e === null ? null : JSON.parse(e))),
      }
      batches.push(b)
      await opts.gate
      const err = opts.refuse?.(b)
      if (err) throw err
      const rows = b.ids.filter((id) => opts.owned?.(id) ?? true).map((id) => ({ id }))
      return { rows: rows as R[], rowCount: rows.length }
    },
  }
  return { db, batches }
}

const ok: AttemptOutcome = { state: 'succeeded', result: 'null' }
const silent = pino({ level: 'silent' })

/** Record `ids` and resolve with what each done() reported, in order. */
function recordAll(completer: Completer, ids: string[], outcome: AttemptOutcome = ok): Promise<boolean[]> {
  return Promise.all(ids.map((id) => new Promise<boolean>((resolve) => completer.record(id, 1, outcome, resolve))))
}

function range(from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => String(from + i))
}

function withCode(code: string): Error {
  return Object.assign(new Error(`sqlstate ${code}`), { code })
}

describe('group commit', () => {
  it('outcomes recorded within flushIntervalMs share one UPDATE', async () => {
    const { db, batches } = fakeExecutor()
    const completer = new Completer(db, 's', 20, silent)
    expect(await recordAll(completer, ['1', '2', '3'])).toEqual([true, true, true])
    expect(batches.map((b) => b.ids)).toEqual([['1', '2', '3']])
  })

  it('outcomes recorded while a flush is in flight wait for it, then share the next one', async () => {
    let open!: () => void
    const { db, batches } = fakeExecutor({ gate: new Promise<void>((r) => (open = r)) })
    const completer = new Completer(db, 's', 1, silent)
    const first = recordAll(completer, ['1'])
    while (batches.length === 0) await new Promise((r) => setTimeout(r, 1))
    const later = recordAll(completer, ['2', '3'])
    await new Promise((r) => setTimeout(r, 20))
    expect(batches).toHaveLength(1)
    open()
    await Promise.all([first, later])
    expect(batches.map((b) => b.ids)).toEqual([['1'], ['2', '3']])
  })

  it('reports false for attempts the fence no longer matched', async () => {
    const { db } = fakeExecutor({ owned: (id) => id !== '2' })
    const completer = new Completer(db, 's', 1, silent)
    expect(await recordAll(completer, ['1', '2', '3'])).toEqual([true, false, true])
  })

  it('writes at most MAX_BATCH (500) outcomes per UPDATE', async () => {
    const { db, batches } = fakeExecutor()
    const completer = new Completer(db, 's', 5, silent)
    await recordAll(completer, range(1, 1200))
    expect(batches.map((b) => b.ids.length)).toEqual([500, 500, 200])
  })
})

describe('failures', () => {
  it('retries a batch the database could not take (connection error) until it is written', async () => {
    let calls = 0
    const { db, batches } = fakeExecutor({ refuse: () => (++calls === 1 ? withCode('ECONNRESET') : undefined) })
    const completer = new Completer(db, 's', 1, silent)
    expect(await recordAll(completer, ['1', '2'])).toEqual([true, true])
    expect(batches.map((b) => b.ids)).toEqual([
      ['1', '2'],
      ['1', '2'],
    ])
  })

  it('splits a batch Postgres refuses as data (SQLSTATE 22xxx) until the outcome at fault is found, and records it as failed', async () => {
    // The outcome of task 3 is refused until it is replaced by the plain failure.
    const refuse = (b: Batch) =>
      b.ids.some((id, i) => id === '3' && b.errors[i]?.name !== 'UnstorableOutcomeError') ? withCode('22P05') : undefined
    const { db, batches } = fakeExecutor({ refuse })
    const completer = new Completer(db, 's', 1, silent)
    expect(await recordAll(completer, ['1', '2', '3', '4'])).toEqual([true, true, true, true])
    expect(batches.map((b) => b.ids)).toEqual([['1', '2', '3', '4'], ['1', '2'], ['3', '4'], ['3'], ['3'], ['4']])
    expect(batches[4]!.errors[0]).toMatchObject({ name: 'UnstorableOutcomeError', kind: 'invalid_result' })
  })

  it('drain() flushes at once, and reports false for what it could not write in time', async () => {
    const { db, batches } = fakeExecutor()
    const completer = new Completer(db, 's', 60_000, silent)
    const done = recordAll(completer, ['1'])
    await completer.drain(1000)
    expect(await done).toEqual([true])
    expect(batches).toHaveLength(1)

    const stuck = new Completer(fakeExecutor({ refuse: () => withCode('57P01') }).db, 's', 60_000, silent)
    const lost = recordAll(stuck, ['2'])
    await stuck.drain(50)
    expect(await lost).toEqual([false])
  })
})
