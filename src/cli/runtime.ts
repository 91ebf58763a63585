import pg from 'pg'
import { pino, type Logger } from 'pino'
import { prettyFactory } from 'pino-pretty'
import { TaskRelay } from '../task-relay.ts'
import { toTaskId } from '../task-record.ts'
import { SchemaVersionError } from '../errors.ts'
import { databasePing } from '../db/executor.ts'
import { REDACT_PATHS, silentLogger } from '../logger.ts'
import { describeRedis, redisPing } from '../redis/connection.ts'
import { CliError, EXIT, errorText } from './errors.ts'
import { resolveSettings, type ResolvedSettings, type SettingsRequest } from './settings.ts'
import { redactSecrets } from '../logger.ts'
import type { ProcessSettings } from '../config.ts'

/** Where log lines go; `dev` swaps in a writer that keeps its progress line intact. */
export type LineWriter = (line: string) => void

/**
 * The CLI's root logger: JSON lines by default, pino-pretty when stdout is a
 * terminal (or --log-format pretty). Written synchronously and in-process, so
 * nothing is lost when the process exits right after a fatal message.
 */
export function createCliLogger(p: Pick<ProcessSettings, 'logLevel' | 'logFormat'>, write?: LineWriter): Logger {
  const pretty = p.logFormat === 'pretty' || (p.logFormat === 'auto' && process.stdout.isTTY === true)
  const out: LineWriter = write ?? ((line) => process.stdout.write(line))
  const prettify = pretty ? prettyFactory({ colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true }) : null
  return pino(
    { level: p.logLevel, base: { pid: process.pid }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    { write: (line: string) => out(prettify ? prettify(line) : line) },
  )
}


export interface Database {
  tr: TaskRelay
  pool: pg.Pool
  close(): Promise<void>
}

/**
 * Open a pool, prove Postgres answers, optionally check the schema is
 * migrated. Fails with one paragraph saying what to do; changes nothing.
 */
export async function openDatabase(
  p: ProcessSettings,
  log: Logger,
  opts: { requireMigrated: boolean; application: string },
): Promise<Database> {
  const url = p.databaseUrl!
  const pool = new pg.Pool({ connectionString: url, connectionTimeoutMillis: 10_000, application_name: opts.application, max: 10 })
  pool.on('error', (err) => log.warn({ err: { message: err.message } }, 'idle postgres connection failed'))
  try {
    await databasePing(pool)
  } catch (err) {
    await pool.end().catch(() => {})
    throw new CliError(
      `Cannot connect to PostgreSQL at ${redactSecrets(url)}: ${errorText(err)}. ` +
        'Make sure the server is running and reachable from here, and that DATABASE_URL (or --database-url) points at it. Nothing was changed.',
    )
  }
  const tr = new TaskRelay({ db: pool, schema: p.schema, logger: log })
  const close = async () => {
    await tr.close().catch(() => {})
    await pool.end().catch(() => {})
  }
  if (opts.requireMigrated) {
    try {
      await tr.assertSchemaCurrent()
    } catch (err) {
      await close()
      if (!(err instanceof SchemaVersionError)) throw err
      throw new CliError(
        `The taskrelay schema "${p.schema}" in ${redactSecrets(url)} is ${err.found === 0 ? 'not set up' : `at migration ${err.found}`}; ` +
          `this version needs migration ${err.expected}. Run \`taskrelay migrate\` with the same DATABASE_URL and TASKRELAY_SCHEMA ` +
          '(or apply the SQL from `taskrelay migrate --print-sql` with your own migration tool), then run this again.',
      )
    }
  }
  return { tr, pool, close }
}

/**
 * Check that Redis (or the Sentinel group's primary) answers PING, once, with
 * no retries: services retry forever by design, so a wrong URL at start
 * would otherwise look like a process that silently does nothing.
 */
export async function checkRedis(url: string): Promise<void> {
  try {
    await redisPing(url)
  } catch (err) {
    throw new CliError(
      `Cannot reach Redis at ${describeRedis(url)}: ${errorText(err)}. ` +
        'Make sure Redis (and, for redis+sentinel:// URLs, the sentinels) is running and reachable, and that REDIS_URL (or --redis-url) is right. Nothing was changed.',
    )
  }
}


/** Something with the Service plumbing: start/stop and health fields. */
export interface Runnable {
  start(): Promise<void>
  stop(): Promise<void>
  readonly running: boolean
  readonly lastSuccessAt: Date | null
  readonly consecutiveErrors: number
}

let earlySignal: NodeJS.Signals | null = null
const recordEarly = (signal: NodeJS.Signals) => (earlySignal ??= signal)

/**
 * Call first thing in a long-running command: a SIGTERM that arrives while it
 * is still connecting and starting (a container stopped right after start)
 * then stops it cleanly once started, instead of killing it half-way.
 */
export function trapEarlySignals(): void {
  process.on('SIGINT', recordEarly)
  process.on('SIGTERM', recordEarly)
}

/**
 * Wait for SIGINT/SIGTERM, then run `stop` and exit 0. A second signal while
 * stopping exits at once with 130 (the operator asked twice).
 */
export function waitForSignal(log: Logger, stop: () => Promise<void>): Promise<never> {
  return new Promise<never>(() => {
    let stopping = false
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting without waiting')
        process.exit(130)
      }
      stopping = true
      log.info({ signal }, 'stopping')
      stop().then(
        () => {
          log.info('stopped')
          process.exit(EXIT.ok)
        },
        (err: unknown) => {
          log.error({ err }, 'stop failed')
          process.exit(EXIT.failed)
        },
      )
    }
    // Listen before letting go of the early listener: with none, a signal takes its default action (exit).
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    process.off('SIGINT', recordEarly)
    process.off('SIGTERM', recordEarly)
    if (earlySignal) onSignal(earlySignal)
  })
}

/** What one-shot commands (status, list, retry, ...) read: a database and a schema. */
export const ONE_SHOT: SettingsRequest = { process: ['databaseUrl', 'schema'], required: ['databaseUrl'], components: [] }

/** Resolve settings, open a migrated schema, run `fn`, close. */
export async function withDatabase<T>(req: SettingsRequest, flags: Record<string, unknown>, application: string, fn: (db: Database, s: ResolvedSettings) => Promise<T>): Promise<T> {
  const s = resolveSettings(req, flags)
  const db = await openDatabase(s.process, silentLogger(), { requireMigrated: true, application: `taskrelay ${application}` })
  try {
    return await fn(db, s)
  } finally {
    await db.close()
  }
}

/** A task id from the command line, or a usage error. */
export function parseTaskId(text: string): string {
  // Digits only (BigInt would also read '0x10' or ' 1e3'); the range is the library's (toTaskId: 1..2^63-1).
  const id = /^\d{1,19}$/.test(text.trim()) ? toTaskId(text.trim()) : null
  if (id === null) {
    throw new CliError(`"${text}" is not a task id; task ids are positive whole numbers, as printed by \`taskrelay enqueue\` and \`taskrelay list\`.`, EXIT.usage)
  }
  return id.toString()
}
