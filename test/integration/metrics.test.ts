import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { NonRetryableError, Relay, Sweeper, TaskRelay, TaskRelayEvents, Worker, createMetrics, defineTask } from '../../src/index.ts'
import { createTestDb, redisUrl, waitUntil, type TestDb } from '../support/db.ts'

/**
 * createMetrics() against real services: counters fed by their events, and
 * queue depth read from Postgres when scraped.
 */
let db: TestDb

beforeAll(async () => {
  db = await createTestDb()
})

afterAll(async () => {
  await db?.cleanup()
})

/** The value of one sample line of the Prometheus text, or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('createMetrics', () => {
  it('counts attempts by outcome, dispatches and redispatches, and reports queue depth', async () => {
    let flaky = 0
    const ok = defineTask({ name: 'm.ok', queue: 'mq', payload: z.object({}), run: async () => 'fine' })
    const bad = defineTask({ name: 'm.bad', queue: 'mq', payload: z.object({}), run: async () => { throw new NonRetryableError('no') } })
    const retry = defineTask({
      name: 'm.retry',
      queue: 'mq',
      payload: z.object({}),
      backoff: { type: 'fixed', delayMs: 0 },
      run: async () => {
        if (++flaky === 1) throw new Error('once')
      },
    })
    const events = new TaskRelayEvents()
    const metrics = createMetrics({ events, tr: db.tr, processMetrics: false, queueDepthCacheMs: 0 })
    const keyPrefix = `m${randomBytes(4).toString('hex')}`
    const relay = new Relay(db.tr, { redis: redisUrl(), keyPrefix, pollIntervalMs: 50 }, { events })
    // Lane redis: every task goes through the relay, so its dispatch count is exact (an idle worker on auto may claim from Postgres).
    const worker = new Worker(db.tr, { redis: redisUrl(), keyPrefix, tasks: [ok, bad, retry], queues: ['mq'], lane: 'redis', leaseMs: 2000, heartbeatMs: 500, blockMs: 200 }, { events })
    const sweeper = new Sweeper(db.tr, { dispatchTimeoutMs: 1000, intervalMs: 100 }, { events })
    try {
      // A dispatched task nobody will claim (its Redis message is gone): the sweeper re-dispatches it.
      await db.pool.query(
        `insert into "${db.schema}".tasks (name, queue, state, dispatched_at, dispatch_token)
         values ('m.orphan', 'nobody', 'dispatched', now() - interval '1 minute', gen_random_uuid())`,
      )
      // Not due for an hour: counted as pending, not as waiting.
      const later = await db.tr.enqueue(ok, {}, { delayMs: 3_600_000, queue: 'later' })
      await db.tr.enqueue(ok, {}, { queue: 'later', dependsOn: [later.id] }) // waiting
      await Promise.all([relay.start(), worker.start(), sweeper.start()])
      const ids = await Promise.all([db.tr.enqueue(ok, {}), db.tr.enqueue(ok, {}), db.tr.enqueue(bad, {}), db.tr.enqueue(retry, {})])
      for (const { id } of ids) await db.tr.waitFor(id, { timeoutMs: 20_000 }).catch(() => {})

      // waitFor wakes on the outcome's commit; the worker counts it when the commit's reply
      // reaches it, which may be a moment later: wait for the last outcome's count too.
      const text = await waitUntil(async () => {
        const t = await metrics.registry.metrics()
        const finished = (task: string, outcome: string) => sample(t, `taskrelay_tasks_finished_total{queue="mq",task="${task}",outcome="${outcome}"}`) ?? 0
        const allCounted = finished('m.ok', 'succeeded') >= 2 && finished('m.bad', 'failed') >= 1 && finished('m.retry', 'succeeded') >= 1
        return (sample(t, 'taskrelay_redispatched_total{reason="dispatch-timeout"}') ?? 0) >= 1 && allCounted && t
      }, { what: 'the sweeper to re-dispatch the orphan and every outcome to be counted' })
      const m = (series: string) => sample(text, series)
      expect(m('taskrelay_tasks_started_total{queue="mq",task="m.ok"}')).toBe(2)
      expect(m('taskrelay_tasks_started_total{queue="mq",task="m.retry"}')).toBe(2)
      expect(m('taskrelay_tasks_finished_total{queue="mq",task="m.ok",outcome="succeeded"}')).toBe(2)
      expect(m('taskrelay_tasks_finished_total{queue="mq",task="m.bad",outcome="failed"}')).toBe(1)
      expect(m('taskrelay_tasks_finished_total{queue="mq",task="m.retry",outcome="retried"}')).toBe(1)
      expect(m('taskrelay_tasks_finished_total{queue="mq",task="m.retry",outcome="succeeded"}')).toBe(1)
      expect(m('taskrelay_task_duration_seconds_count{queue="mq",task="m.ok",outcome="succeeded"}')).toBe(2)
      expect(m('taskrelay_relay_dispatched_total{queue="mq"}')).toBe(5) // 4 tasks + 1 retry
      expect(m('taskrelay_tasks{queue="later",state="pending"}')).toBe(1)
      expect(m('taskrelay_tasks{queue="later",state="waiting"}')).toBe(1)
      expect(m('taskrelay_queue_depth_up')).toBe(1)
      // Re-dispatched: pending again, then pushed again by the relay (no worker serves "nobody").
      expect((m('taskrelay_tasks{queue="nobody",state="pending"}') ?? 0) + (m('taskrelay_tasks{queue="nobody",state="dispatched"}') ?? 0)).toBe(1)
      expect(m('taskrelay_tasks{queue="mq",state="running"}')).toBeUndefined()
      expect(m('taskrelay_oldest_due_pending_seconds{queue="later"}')).toBeUndefined() // not due

      // With no relay running, a due task waits, and its age shows.
      await relay.stop()
      await db.tr.enqueue(ok, {}, { queue: 'idle' })
      // Scrape until the task has waited measurably (its age starts at 0).
      const waiting = await waitUntil(async () => {
        const t = await metrics.registry.metrics()
        return (sample(t, 'taskrelay_oldest_due_pending_seconds{queue="idle"}') ?? 0) > 0 && t
      }, { what: 'the idle queue to show a waiting task' })
      expect(sample(waiting, 'taskrelay_tasks{queue="idle",state="pending"}')).toBe(1)
      expect(sample(waiting, 'taskrelay_oldest_due_pending_seconds{queue="idle"}')).toBeGreaterThan(0)

      // A queue that empties reads 0 rather than vanishing.
      await db.pool.query(`delete from "${db.schema}".tasks where queue = 'later'`)
      const after = await metrics.registry.metrics()
      expect(sample(after, 'taskrelay_tasks{queue="later",state="pending"}')).toBe(0)
      expect(sample(after, 'taskrelay_tasks{queue="later",state="waiting"}')).toBe(0)

      metrics.close()
      await relay.start()
      const { id } = await db.tr.enqueue(ok, {})
      await db.tr.waitFor(id, { timeoutMs: 20_000 })
      expect(sample(await metrics.registry.metrics(), 'taskrelay_tasks_started_total{queue="mq",task="m.ok"}')).toBe(2) // closed: no longer counting
    } finally {
      await Promise.all([relay.stop(), worker.stop(), sweeper.stop()])
    }
  })

  it('still serves the event counters when Postgres cannot be read, and says the depth read failed', async () => {
    const unreachable = new TaskRelay({ db: 'postgres://127.0.0.1:1/none', schema: db.schema })
    const events = new TaskRelayEvents()
    const metrics = createMetrics({ events, tr: unreachable, processMetrics: false, queueDepthCacheMs: 0 })
    try {
      events.emit('task:started', { id: '1', name: 'm.ok', queue: 'mq', attempt: 1 })
      const text = await metrics.registry.metrics()
      expect(sample(text, 'taskrelay_tasks_started_total{queue="mq",task="m.ok"}')).toBe(1)
      expect(sample(text, 'taskrelay_queue_depth_up')).toBe(0)
      expect(text).not.toMatch(/^taskrelay_tasks\{/m)
    } finally {
      metrics.close()
      await unreachable.close()
    }
  })
})
