import { SpanKind, SpanStatusCode, context, isSpanContextValid, propagation, trace, type Link } from '@opentelemetry/api'
import { RateLimitedError } from '../errors.ts'
import type { TraceCarrier } from './carrier.ts'
import { MESSAGING_SYSTEM, tracer } from './tracer.ts'

/** What the consumer span needs of an attempt (a MiddlewareContext is one). */
export interface TracedAttempt {
  readonly task: { readonly id: string; readonly name: string; readonly queue: string; readonly attempt: number }
  readonly traceContext: TraceCarrier | null
}

/**
 * The worker's built-in outermost middleware while a tracer provider is
 * registered: each attempt runs in a CONSUMER span "process <queue>" with the
 * messaging semantic-convention attributes. The span links to the producer's
 * creation context stored with the task (as the convention asks of process
 * spans) and, since an attempt processes that one message, also takes it as
 * parent, so the attempt shows inside the enqueuing trace. The rest of the
 * chain and the handler run in the span's context: spans they start are its
 * children, and log lines carry its ids (traceLogFields).
 */
export function consumerSpan(ctx: TracedAttempt, next: () => Promise<unknown>): Promise<unknown> {
  const { task } = ctx
  let parent = context.active()
  let links: Link[] | undefined
  if (ctx.traceContext !== null) {
    const extracted = propagation.extract(parent, ctx.traceContext)
    const producer = trace.getSpanContext(extracted)
    if (producer !== undefined && isSpanContextValid(producer)) {
      parent = extracted
      links = [{ context: producer }]
    }
  }
  const span = tracer().startSpan(
    `process ${task.queue}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        'messaging.system': MESSAGING_SYSTEM,
        'messaging.operation.type': 'process',
        'messaging.operation.name': 'process',
        'messaging.destination.name': task.queue,
        'messaging.message.id': task.id,
        'taskrelay.task.name': task.name,
        'taskrelay.attempt': task.attempt,
      },
      ...(links ? { links } : {}),
    },
    parent,
  )
  return context.with(trace.setSpan(parent, span), next).then(
    (value) => {
      span.end()
      return value
    },
    (error: unknown) => {
      // ctx.rateLimited() ends the attempt without failing it: noted, not an error status.
      if (error instanceof RateLimitedError) span.setAttribute('taskrelay.outcome', 'rate_limited')
      else {
        span.recordException(error instanceof Error ? error : String(error))
        span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) })
      }
      span.end()
      throw error
    },
  )
}
