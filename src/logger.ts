import { pino, type Logger, type LoggerOptions } from 'pino'
import { traceLogFields } from './otel/log-fields.ts'

export type { Logger }

/** Secrets never reach a log line, whatever key path they hide under. */
export const REDACT_PATHS = [
  'password',
  '*.password',
  '*.*.password',
  'sentinelPassword',
  '*.sentinelPassword',
  '*.*.sentinelPassword',
  'databaseUrl',
  '*.databaseUrl',
  'redisUrl',
  '*.redisUrl',
]

export interface LoggerSettings {
  level?: string
  /** human-readable output (pino-pretty); default: when stdout is a terminal */
  pretty?: boolean
}

/** The root logger; every service takes `logger.child({ component })`. */
export function createLogger(settings: LoggerSettings = {}): Logger {
  const options: LoggerOptions = {
    level: settings.level ?? process.env.LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // trace_id/span_id of the active span (an attempt's consumer span); nothing without an SDK.
    mixin: traceLogFields,
  }
  const pretty = settings.pretty ?? process.stdout.isTTY === true
  if (pretty) {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } } })
  }
  return pino(options)
}

/** A logger that writes nothing: the default for library use and tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}

// A URL inside any text: scheme://, then up to whitespace or a quote.
const URL_IN_TEXT = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s"'<>]*)/gi
// Query parameters that carry secrets: password, sslpassword, sentinelPassword, *passphrase, tokens.
const SECRET_PARAM = /pass|pwd|secret|token/i

/** Where the secrets are in `text`: [start, end) of each URL password and secret query value. */
function secretSpans(text: string): Array<[number, number]> {
  const spans: Array<[number, number]> = []
  for (const m of text.matchAll(URL_IN_TEXT)) {
    const start = m.index + m[1]!.length
    const rest = m[2]!
    const query = rest.search(/[?#]/)
    // Userinfo ends at the LAST @ before the query, as URL parsers read it:
    // an unescaped @ (or /) in a password stays inside the redacted part.
    const at = rest.slice(0, query < 0 ? rest.length : query).lastIndexOf('@')
    const colon = rest.indexOf(':')
    if (at > 0 && colon >= 0 && colon + 1 < at) spans.push([start + colon + 1, start + at])
    if (query < 0) continue
    for (const p of rest.slice(query).matchAll(/[?&;]([^=&#]*)=([^&#]*)/g)) {
      const valueAt = start + query + p.index + p[0].length - p[2]!.length
      if (p[2] && SECRET_PARAM.test(p[1]!)) spans.push([valueAt, valueAt + p[2].length])
    }
  }
  return spans
}

/**
 * `text` with every password in the URLs it contains replaced by `***`: the
 * userinfo password (postgres://user:***@host, redis://:***@host, sentinel
 * URLs with several hosts) and secret query parameters (?sslpassword=***,
 * ?sentinelPassword=***). For logs, --help and error messages.
 */
export function redactSecrets(text: string): string {
  let out = text
  for (const [a, b] of secretSpans(text).reverse()) out = out.slice(0, a) + '***' + out.slice(b)
  return out
}

/** The secrets in `text` as written and decoded, to scrub from messages that quote them in other forms. */
export function secretsIn(text: string): string[] {
  const found = new Set<string>()
  for (const [a, b] of secretSpans(text)) {
    const raw = text.slice(a, b)
    found.add(raw)
    try {
      found.add(decodeURIComponent(raw))
      found.add(decodeURIComponent(raw.replaceAll('+', ' ')))
    } catch {
      // a malformed %-escape: the raw form is all there is
    }
  }
  return [...found]
}
