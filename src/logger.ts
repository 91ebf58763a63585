import { pino, type Logger, type LoggerOptions } from 'pino'

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

/** Replace the password in a connection URL, for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@')
  }
}
