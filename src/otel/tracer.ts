import { ProxyTracerProvider, trace, type Tracer } from '@opentelemetry/api'

/**
 * taskrelay traces through @opentelemetry/api alone: with no SDK registered
 * the API is a no-op, and these checks keep taskrelay from doing even the
 * no-op work on its hot paths.
 */

/** The API's no-op provider, the delegate of a proxy nothing was registered on. */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate()

/** Whether an application registered a tracer provider (an SDK) with the global API. */
export function tracingEnabled(): boolean {
  const provider = trace.getTracerProvider()
  // Another copy of the API registers its own proxy class: anything but our no-op counts.
  const delegate = provider instanceof ProxyTracerProvider ? provider.getDelegate() : provider
  return delegate !== NOOP_PROVIDER
}

let cached: Tracer | undefined

/** taskrelay's tracer (a proxy: it follows a provider registered later). */
export function tracer(): Tracer {
  return (cached ??= trace.getTracer('taskrelay'))
}

/** messaging.system of every taskrelay span. */
export const MESSAGING_SYSTEM = 'taskrelay'
