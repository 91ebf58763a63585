import { fileURLToPath } from 'node:url'
import type { Command } from 'commander'
import { TASK_STATES } from '../task-state.ts'
import { readStateCounts } from '../admin/stats.ts'
import { addSettingOptions, type SettingsRequest } from './settings.ts'
import { createCliLogger, trapEarlySignals, waitForSignal } from './runtime.ts'
import { relayTarget, schedulerTarget, startStack, sweeperTarget, workerTarget } from './services.ts'

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
        'example tasks (examples/tasks.ts) unless --tasks names yours. Ctrl-C stops it cleanly.',
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
    const started = await startStack('dev', DEV, flags, (ctx) => [relayTarget(ctx), sweeperTarget(ctx), workerTarget(ctx), schedulerTarget(ctx)], {
      migrate: true,
      needsRedis: true,
      log: (s) => createCliLogger(s.process, progress.write),
    })
    const { log, db } = started
    log.info(
      { try: `taskrelay enqueue ${started.settings.process.tasks === EXAMPLE_TASKS ? `email.welcome '{"userId": 1, "email": "ada@example.com"}'` : "<task> '<json>'"}` },
      'dev ready: enqueue a task from another terminal; Ctrl-C stops',
    )
    // Terminal: redraw often. Otherwise (CI, a pipe): a log line every 2 s, only when counts change.
    let last = ''
    let stopping = false
    const tick = async () => {
      try {
        const counts = await readStateCounts(db.tr)
        const text = TASK_STATES.filter((s) => s !== 'waiting' || counts.waiting > 0)
          .map((s) => `${s} ${counts[s]}`)
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
    })
  })
}
