import { fileURLToPath } from 'node:url'
import type { Command } from 'commander'
import type { Logger } from 'pino'
import { TASK_STATES, isFinal } from '../task-state.ts'
import { readStateCounts } from '../admin/stats.ts'
import { addSettingOptions, resolveSettings, type SettingsRequest } from './settings.ts'
import { createCliLogger, trapEarlySignals, waitForSignal } from './runtime.ts'
import type { EmbeddedPostgres } from './embedded-postgres.ts'
import { relayTarget, schedulerTarget, startStack, sweeperTarget, workerTarget, type StackContext } from './services.ts'

/** The bundled example tasks (TypeScript: installed as a package, `dev` needs --tasks, see loadTasks). */
export const EXAMPLE_TASKS = fileURLToPath(new URL('../../examples/tasks.ts', import.meta.url))

const DEV: SettingsRequest = {
  process: ['databaseUrl', 'redisUrl', 'schema', 'keyPrefix', 'logLevel', 'logFormat', 'healthPort', 'tasks'],
  components: ['relay', 'worker', 'sweeper', 'scheduler'],
  defaults: {
    databaseUrl: 'postgres://postgres@127.0.0.1:5432/postgres',
    redisUrl: 'redis://127.0.0.1:6379',
    tasks: EXAMPLE_TASKS,
  },
}

/**
 * A status line pinned under the log output on a terminal: each log line
 * first erases it, then it is drawn again, so the two never interleave.
 */
class ProgressLine {
  #text = ''
  readonly #tty: boolean
  constructor(tty: boolean) {
    this.#tty = tty
  }
  write = (line: string) => {
    if (!this.#tty || !this.#text) return void process.stdout.write(line)
    process.stdout.write(`\r\x1b[2K${line}${this.#text}`)
  }
  update(text: string) {
    this.#text = text
    if (this.#tty) process.stdout.write(`\r\x1b[2K${text}`)
  }
  clear() {
    if (this.#tty && this.#text) process.stdout.write('\r\x1b[2K')
    this.#text = ''
  }
}

export function registerDevCommand(program: Command): void {
  const dev = program
    .command('dev')
    .summary('everything in one process, for development: migrate, relay, sweeper, worker, scheduler')
    .description(
      'Apply migrations, then run a relay, a sweeper, a worker and a scheduler in this process, with a live line of task ' +
        'counts per state. Uses the local servers unless DATABASE_URL / REDIS_URL say otherwise, and the bundled ' +
        'example tasks (examples/tasks.ts) unless --tasks names yours. With no DATABASE_URL and nothing on ' +
        '127.0.0.1:5432 it starts an embedded PostgreSQL in .taskrelay/postgres (kept between runs); with no Redis ' +
        'it runs on the Postgres lane. Ctrl-C stops it cleanly.',
    )
    .addHelpText(
      'after',
      [
        '',
        'Examples:',
        '  $ taskrelay dev',
        '  $ taskrelay dev --tasks ./src/tasks.ts --concurrency 4',
        '  $ DATABASE_URL=postgres://postgres@localhost/app taskrelay dev --schema app_tasks',
        '',
        'Then, from another terminal:',
        '  $ taskrelay enqueue email.welcome \'{"userId": 1, "email": "ada@example.com"}\'',
        '  $ psql -c "select taskrelay.enqueue(\'email.welcome\', \'{\\"userId\\": 2, \\"email\\": \\"bob@example.com\\"}\')"',
      ].join('\n'),
    )
  addSettingOptions(dev, DEV)
  dev.action(async (flags: Record<string, unknown>) => {
    trapEarlySignals()
    const tty = process.stdout.isTTY === true
    const progress = new ProgressLine(tty)
    // Resolved here too, for the logger and the embedded-Postgres decision before startStack opens the database.
    const settings = resolveSettings(DEV, flags)
    const logger = createCliLogger(settings.process, progress.write)
    const embedded = await embeddedPostgres(settings.sources['process.databaseUrl'] === 'default', logger)
    const build = (ctx: StackContext) => [relayTarget(ctx), sweeperTarget(ctx), workerTarget(ctx), schedulerTarget(ctx)]
    // Redis is optional: without it relay and worker start degraded and the worker claims from Postgres.
    const started = await startStack('dev', DEV, embedded ? { ...flags, databaseUrl: embedded.url } : flags, build, {
      migrate: true,
      needsRedis: false,
      log: () => logger,
    }).catch(async (err: unknown) => {
      await embedded?.stop()
      throw err
    })
    const { log, db } = started
    let stopping = false
    void embedded?.exited.then((code) => stopping || log.error({ code }, 'the embedded PostgreSQL exited; restart taskrelay dev'))
    const example = started.settings.process.tasks === EXAMPLE_TASKS ? `email.welcome '{"userId": 1, "email": "ada@example.com"}'` : "<task> '<json>'"
    log.info(
      { try: `${embedded ? `DATABASE_URL=${embedded.url} ` : ''}taskrelay enqueue ${example}` },
      'dev ready: enqueue a task from another terminal; Ctrl-C stops',
    )
    // Terminal: redraw often. Otherwise (CI, a pipe): a log line every 2 s, only when counts change.
    let last = ''
    const tick = async () => {
      try {
        const counts = await readStateCounts(db.tr)
        const text = TASK_STATES.filter((s) => s !== 'waiting' || counts.waiting > 0)
          .map((s) => `${s}${isFinal(s) ? ' (1h)' : ''} ${counts[s]}`)
          .join(' · ')
        if (stopping) return
        if (tty && text !== last) progress.update(`tasks: ${text}   (Ctrl-C to stop)`)
        else if (text !== last) log.info({ counts }, 'progress')
        last = text
      } catch (err) {
        if (!stopping) log.warn({ err }, 'could not read task counts')
      }
    }
    await tick()
    const timer = setInterval(() => void tick(), tty ? 500 : 2000)
    await waitForSignal(log, async () => {
      stopping = true
      clearInterval(timer)
      progress.clear()
      await started.stop()
      // Last: the services' final writes need it.
      await embedded?.stop()
    })
  })
}

/** The default Postgres address, where dev looks before starting an embedded one. */
const DEFAULT_PG = new URL(DEV.defaults!.databaseUrl!)

/**
 * An embedded PostgreSQL when DATABASE_URL was not given and nothing answers
 * on the default address; null otherwise (the given or local server is used).
 * Loaded with import() so no other command ever loads it.
 */
async function embeddedPostgres(urlIsDefault: boolean, log: Logger): Promise<EmbeddedPostgres | null> {
  if (!urlIsDefault) return null
  const { answers, startEmbeddedPostgres } = await import('./embedded-postgres.ts')
  if (await answers(DEFAULT_PG.hostname, Number(DEFAULT_PG.port))) return null
  const pg = await startEmbeddedPostgres()
  log.info(
    { dataDir: pg.dataDir, port: pg.port, database: pg.url, created: pg.created },
    `no Postgres on ${DEFAULT_PG.host} and no DATABASE_URL: using an embedded Postgres in ${pg.dataDir}`,
  )
  return pg
}
