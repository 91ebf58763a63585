/**
 * The stored form of a task's trace context (tasks.trace_context, 0016): what
 * the registered propagator injected at enqueue, W3C `traceparent` and
 * `tracestate` with the default one. Only strings are kept: the column is
 * read back from a row anyone with SQL access may have written.
 */
export type TraceCarrier = Readonly<Record<string, string>>

/** The carrier in a claimed row's trace_context, or null when there is none usable. */
export function parseCarrier(value: unknown): TraceCarrier | null {
  if (value === null || value === undefined) return null
  // pg parses jsonb; a custom type parser may hand over the text instead.
  let parsed = value
  if (typeof parsed === 'string') {
    try {
      parsed = JSON.parse(parsed)
    } catch {
      return null
    }
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return null
  const carrier: Record<string, string> = {}
  for (const [k, v] of Object.entries(parsed)) if (typeof v === 'string') carrier[k] = v
  return Object.keys(carrier).length > 0 ? carrier : null
}
