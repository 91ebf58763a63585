import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { defineTask } from '../../src/index.ts'
import { createTestDb, databaseUrl, waitUntil, type TestDb } from '../support/db.ts'

/**
 * OpenTelemetry across processes (issue 18 item 5). This process enqueues
 * inside an application span with the SDK and an in-memory exporter; a
 * worker in another process (fixtures/otel-worker.ts, its own SDK) runs the
 * tasks. The stored W3C context must link the worker's consumer spans to
 * the producer spans, with the messaging attributes, and the handler's log
 * lines must carry the consumer span's ids.
 */

const charge = defineTask({
  name: 'otel.charge',
  queue: 'payments',
  payload: z.object({ order: z.number(), failFirst: z.boolean() }),
  run: async () => {},
})

interface SpanDump {
  name: string
  kind: number
  traceId: string
  spanId: string
  parentSpanId: string | null
  links: Array<{ traceId: string; spanId: string }>
  attributes: Record<string, unknown>
  status: { code: number; message?: string }
  events: string[]
}

const exporter = new InMemorySpanExporter()
let db: TestDb
let child: ChildProcess | undefined
beforeAll(async () => {
  db = await createTestDb()
})
afterAll(async () => {
  child?.kill('SIGKILL')
  trace.disable()
  context.disable()
  propagation.disable()
  await db.cleanup()
})

async function traceContextOf(id: string): Promise<unknown> {
  const res = await db.pool.query(`select trace_context from "${db.schema}".tasks where id = $1`, [id])
  return res.rows[0]!.trace_context
}

describe('OpenTelemetry', () => {
  it('stores no trace context and makes no span while no SDK is registered', async () => {
    const { id } = await db.tr.enqueue(charge, { order: 0, failFirst: false })
    expect(await traceContextOf(id)).toBeNull()
  })

  it('links the worker process’s consumer spans to the enqueuing code’s producer spans', async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
    propagation.setGlobalPropagator(new W3CTraceContextPropagator())
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }))

    // One enqueue and one batch, inside the application's own span.
    const ids = await trace.getTracer('app').startActiveSpan('checkout', async (span) => {
      const { id: single } = await db.tr.enqueue(charge, { order: 1, failFirst: true })
      const batch = await db.tr.enqueueMany([
        { task: charge, payload: { order: 2, failFirst: false } },
        { task: charge, payload: { order: 3, failFirst: false } },
      ])
      span.end()
      return [single, ...batch.ids]
    })
    const local = exporter.getFinishedSpans()
    const checkout = local.find((s) => s.name === 'checkout')!
    const producers = local.filter((s) => s.kind === SpanKind.PRODUCER)
    expect(producers.map((s) => s.name)).toEqual(['send payments', 'send payments', 'send payments'])
    const producerOf = new Map<string, (typeof producers)[number]>()
    for (const p of producers) {
      expect(p.spanContext().traceId).toBe(checkout.spanContext().traceId)
      expect(p.parentSpanContext?.spanId).toBe(checkout.spanContext().spanId)
      expect(p.attributes['messaging.system']).toBe('taskrelay')
      expect(p.attributes['messaging.operation.type']).toBe('send')
      producerOf.set(String(p.attributes['messaging.message.id']), p)
    }
    expect([...producerOf.keys()].sort()).toEqual([...ids].sort())
    // The stored carrier is the producer span's W3C traceparent.
    for (const id of ids) {
      const p = producerOf.get(id)!
      expect(await traceContextOf(id)).toEqual({ traceparent: `00-${p.spanContext().traceId}-${p.spanContext().spanId}-01` })
    }

    const worker = spawn(process.execPath, ['--no-warnings', fileURLToPath(new URL('./fixtures/otel-worker.ts', import.meta.url))], {
      env: { ...process.env, DATABASE_URL: databaseUrl(), TR_SCHEMA: db.schema },
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    })
    child = worker
    let stdout = ''
    worker.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
    const messages: Array<{ type: string; spans?: SpanDump[] }> = []
    worker.on('message', (m: { type: string; spans?: SpanDump[] }) => messages.push(m))
    await waitUntil(() => messages.some((m) => m.type === 'ready'), { what: 'the worker process to start', timeoutMs: 30_000 })
    await waitUntil(
      async () => {
        const tasks = await Promise.all(ids.map((id) => db.tr.getTask(id)))
        return tasks.every((t) => t?.state === 'succeeded')
      },
      { what: 'the traced tasks to succeed', timeoutMs: 30_000 },
    )
    worker.send({ type: 'report' })
    const report = await waitUntil(() => messages.find((m) => m.type === 'spans'), { what: 'the worker’s spans' })
    const spans = report.spans!

    const allConsumers = spans.filter((s) => s.kind === SpanKind.CONSUMER)
    // The task of the first test, enqueued untraced: its own root span, no link.
    const untraced = allConsumers.filter((c) => !ids.includes(String(c.attributes['messaging.message.id'])))
    expect(untraced.map((c) => [c.parentSpanId, c.links])).toEqual([[null, []]])
    const consumers = allConsumers.filter((c) => !untraced.includes(c))
    // Task 1 failed its first attempt: four attempts in all, each its own span.
    expect(consumers).toHaveLength(4)
    for (const c of consumers) {
      const id = String(c.attributes['messaging.message.id'])
      const p = producerOf.get(id)!
      expect(c.name).toBe('process payments')
      expect(c.traceId).toBe(p.spanContext().traceId)
      expect(c.parentSpanId).toBe(p.spanContext().spanId)
      expect(c.links).toEqual([{ traceId: p.spanContext().traceId, spanId: p.spanContext().spanId }])
      expect(c.attributes).toMatchObject({
        'messaging.system': 'taskrelay',
        'messaging.operation.type': 'process',
        'messaging.destination.name': 'payments',
        'taskrelay.task.name': 'otel.charge',
      })
    }
    const firstTask = consumers.filter((c) => c.attributes['messaging.message.id'] === ids[0])
    expect(firstTask.map((c) => c.attributes['taskrelay.attempt']).sort()).toEqual([1, 2])
    const failed = firstTask.find((c) => c.attributes['taskrelay.attempt'] === 1)!
    expect(failed.status).toEqual({ code: SpanStatusCode.ERROR, message: 'bank timed out' })
    expect(failed.events).toContain('exception')
    for (const c of consumers.filter((x) => x !== failed)) expect(c.status.code).toBe(SpanStatusCode.UNSET)

    // The handler's own span is a child of its attempt's consumer span.
    const bankCalls = spans.filter((s) => s.name === 'call bank' && s.traceId !== untraced[0]!.traceId)
    expect(bankCalls).toHaveLength(4)
    for (const b of bankCalls) expect(consumers.some((c) => c.spanId === b.parentSpanId && c.traceId === b.traceId)).toBe(true)

    // Each handler log line carries its consumer span's trace and span id.
    const lines = stdout
      .split('\n')
      .filter((l) => l.includes('"charging"'))
      .map((l) => JSON.parse(l) as { trace_id?: string; span_id?: string })
    expect(lines).toHaveLength(5)
    for (const l of lines) expect(allConsumers.some((c) => c.traceId === l.trace_id && c.spanId === l.span_id)).toBe(true)
  }, 60_000)

  it('stores the producer context of a keyed enqueue (a singleton) too, from the caller that wrote the row', async () => {
    // The SDK of the previous test is still registered (the API takes one provider per process).
    exporter.reset()
    const app = trace.getTracer('app')
    const first = await app.startActiveSpan('first', async (span) => {
      const r = await db.tr.enqueue(charge, { order: 10, failFirst: false }, { singletonKey: 'order-10', delayMs: 60_000 })
      span.end()
      return r
    })
    const second = await app.startActiveSpan('second', async (span) => {
      const r = await db.tr.enqueue(charge, { order: 10, failFirst: false }, { singletonKey: 'order-10', delayMs: 60_000 })
      span.end()
      return r
    })
    expect([first.outcome, second.outcome, second.id]).toEqual(['created', 'existing', first.id])
    const sent = exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.PRODUCER)
    const firstTrace = exporter.getFinishedSpans().find((s) => s.name === 'first')!.spanContext().traceId
    const writer = sent.find((s) => s.spanContext().traceId === firstTrace)!
    expect(await traceContextOf(first.id)).toEqual({ traceparent: `00-${firstTrace}-${writer.spanContext().spanId}-01` })
  })
})
