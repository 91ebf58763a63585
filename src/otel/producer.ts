import { SpanKind, SpanStatusCode, context, propagation, trace, type Context, type Span } from '@opentelemetry/api'
import { MESSAGING_SYSTEM, tracer } from './tracer.ts'

/**
 * The enqueue side. The caller's context is captured when a task is prepared
 * (in the caller's own async context: a coalesced enqueue is written later,
 * from another), and only when it holds a span; the PRODUCER span is made
 * around the INSERT that writes the task, so it times the real write and can
 * name the task id. Without an SDK no span is ever active: one lookup per
 * enqueue, and no allocation.
 */

/** The caller's context when it has an active span (what a producer span will be a child of), else null. */
export function enqueueTraceParent(): Context | null {
  const active = context.active()
  return trace.getSpan(active) === undefined ? null : active
}

/** What a producer span needs of a task. */
export interface TracedEnqueue {
  readonly name: string
  readonly queue: string
  readonly traceParent: Context | null
}

/** Producer spans of one insert: the carriers to store, then end() with the ids (or fail()). */
export interface ProducerSpans {
  /** per task, in order: the JSON text for tasks.trace_context, or null (not traced) */
  readonly carriers: ReadonlyArray<string | null>
  end(ids: readonly string[]): void
  fail(error: unknown): void
}

/**
 * A PRODUCER span "send <queue>" per traced task (a batch's tasks may come
 * from different callers, each its own trace), each one the creation context
 * its task stores: what the worker's consumer span links to. Null when no
 * task is traced.
 */
export function startProducerSpans(tasks: readonly TracedEnqueue[]): ProducerSpans | null {
  if (!tasks.some((t) => t.traceParent !== null)) return null
  const spans: Array<Span | null> = []
  const carriers: Array<string | null> = []
  for (const t of tasks) {
    if (t.traceParent === null) {
      spans.push(null)
      carriers.push(null)
      continue
    }
    const span = tracer().startSpan(
      `send ${t.queue}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          'messaging.system': MESSAGING_SYSTEM,
          'messaging.operation.type': 'send',
          'messaging.operation.name': 'send',
          'messaging.destination.name': t.queue,
          'taskrelay.task.name': t.name,
          ...(tasks.length > 1 ? { 'messaging.batch.message_count': tasks.length } : {}),
        },
      },
      t.traceParent,
    )
    const carrier: Record<string, string> = {}
    propagation.inject(trace.setSpan(t.traceParent, span), carrier)
    spans.push(span)
    // A propagator that injects nothing (none registered): nothing to store.
    carriers.push(Object.keys(carrier).length > 0 ? JSON.stringify(carrier) : null)
  }
  return {
    carriers,
    end(ids) {
      spans.forEach((span, i) => {
        if (span === null) return
        if (ids[i] !== undefined) span.setAttribute('messaging.message.id', ids[i])
        span.end()
      })
    },
    fail(error) {
      for (const span of spans) {
        if (span === null) continue
        span.recordException(error instanceof Error ? error : String(error))
        span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) })
        span.end()
      }
    },
  }
}
