import { context, isSpanContextValid, trace } from '@opentelemetry/api'

/**
 * A pino `mixin`: the active span's trace_id, span_id and trace_flags on
 * every log line written inside it (ctx.log in a handler runs inside the
 * attempt's consumer span). Without an SDK there is never an active span,
 * and each line costs one lookup. A new object each call: pino's default
 * merge strategy assigns the line's own fields into it.
 *
 * @example
 * const logger = pino({ mixin: traceLogFields })
 */
export function traceLogFields(): Record<string, string> {
  const span = trace.getSpan(context.active())
  if (span === undefined) return {}
  const sc = span.spanContext()
  if (!isSpanContextValid(sc)) return {}
  return { trace_id: sc.traceId, span_id: sc.spanId, trace_flags: `0${sc.traceFlags.toString(16)}`.slice(-2) }
}
