import type { Command } from 'commander'
import { examples } from './format.ts'
import type { Logger } from 'pino'
import type { Server } from 'node:http'
import { Relay } from '../relay/relay.ts'
import { Worker, taskQueues } from '../worker/worker.ts'
import { Sweeper } from '../sweeper/sweeper.ts'
import { Scheduler } from '../scheduler/scheduler.ts'
import { TaskRelayEvents } from '../events.ts'
import type { Task } from '../define-task.ts'
import type { TaskRelay } from '../task-relay.ts'
import { latestMigrationId } from '../db/migrate.ts'
import { migrationScript } from '../db/admin-migration-script.ts'
import { CliError, EXIT, errorText } from './errors.ts'
import { addSettingOptions, describeSettings, resolveSettings, type ResolvedSettings, type SettingsRequest, type Component } from './settings.ts'
import { checkRedis, createCliLogger, openDatabase, trapEarlySignals, waitForSignal, type Database, type Runnable } from './runtime.ts'
import { loadTaskModule } from './load-tasks.ts'
import type { TaskMiddleware } from '../worker/middleware.ts'
import { logTaskProgress } from '../task-log.ts'
import { startHealthServer, type HealthTarget } from './health.ts'
import { createMetrics } from '../metrics.ts'

const LONG_RUNNING: SettingsRequest['process'] = ['databaseUrl', 'redisUrl', 'schema', 'keyPrefix', 'logLevel', 'logFormat', 'healthPort']

export interface StackContext {
  settings: ResolvedSettings
  tr: TaskRelay
  events: TaskRelayEvents
  tasks: Task[]
  /** the --tasks module's `middleware` export, for the worker */
  middleware: TaskMiddleware[]
  log: Logger
}

export interface Started {
  db: Database
  log: Logger
  settings: ResolvedSettings
  targets: HealthTarget[]
  /** stop every service, the health server and the pool */
  stop(): Promise<void>
}

/** Build the services one command runs; `components` also decides which settings are read. */
export type Build = (ctx: StackContext) => HealthTarget[]

export function relayTarget(ctx: StackContext): HealthTarget {
  const p = ctx.settings.process
  const relay = new Relay(ctx.tr, { redis: p.redisUrl!, keyPrefix: p.keyPrefix, ...ctx.settings.relay }, { events: ctx.events })
  return { name: 'relay', service: relay, staleAfterMs: 3 * ctx.settings.relay.pollIntervalMs + 30_000, degraded: () => relay.degraded }
}

export function workerTarget(ctx: StackContext): HealthTarget {
  const p = ctx.settings.process
  // Queues left unset: the Worker serves the loaded tasks' queues (its own default).
  const { queues, ...settings } = ctx.settings.worker
  const given = ctx.settings.sources['worker.queues'] === 'default' ? {} : { queues }
  if (p.redisUrl === undefined && settings.lane !== 'postgres') {
    throw new CliError('REDIS_URL (or --redis-url) is required unless the worker runs on the Postgres lane alone (--lane postgres). Nothing was changed.', EXIT.usage)
  }
  const redis = p.redisUrl === undefined ? {} : { redis: p.redisUrl }
  const worker = new Worker(ctx.tr, { ...redis, keyPrefix: p.keyPrefix, tasks: ctx.tasks, middleware: ctx.middleware, ...settings, ...given }, { events: ctx.events })
  return {
    name: 'worker',
    service: worker,
    staleAfterMs: 3 * ctx.settings.worker.blockMs + 30_000,
    ...workerHealth(worker),
  }
}

/** A worker's health beyond its loop: busy is fine, unless stuck handlers hold every slot. */
export function workerHealth(worker: Worker): Pick<HealthTarget, 'busy' | 'impaired' | 'degraded'> {
  const { concurrency } = worker.settings
  return {
    // Every slot busy: the fetch loop waits for a slot, which is not a hang.
    busy: () => worker.activeCount >= concurrency,
    // Unless the slots are held by handlers that outlived their attempts: then nothing runs.
    impaired: () =>
      worker.stuckCount >= concurrency
        ? `every slot (${concurrency}) is held by a handler that ignored its timeout or abort (ctx.signal); restart the worker`
        : null,
    degraded: () => worker.lane.degraded,
  }
}

export function sweeperTarget(ctx: StackContext): HealthTarget {
  const sweeper = new Sweeper(ctx.tr, ctx.settings.sweeper, { events: ctx.events })
  return { name: 'sweeper', service: sweeper, staleAfterMs: 3 * ctx.settings.sweeper.intervalMs + 30_000 }
}

export function schedulerTarget(ctx: StackContext): HealthTarget {
  const scheduler = new Scheduler(ctx.tr, { tasks: ctx.tasks, ...ctx.settings.scheduler }, { events: ctx.events })
  // The loop sleeps until the next fire time, at most maxSleepMs.
  return { name: 'scheduler', service: scheduler, staleAfterMs: 2 * ctx.settings.scheduler.maxSleepMs + 30_000 }
}

/**
 * The start sequence every long-running command shares: settings (all
 * problems at once), logger, the start-up line with the effective
 * configuration, tasks module, Postgres and Redis reachability, then the
 * services. Nothing is started when any check fails.
 */
export async function startStack(
  command: string,
  req: SettingsRequest,
  flags: Record<string, unknown>,
  build: Build,
  /** needsRedis: refuse to start while Redis is unreachable (a worker with --lane redis); others start degraded */
  opts: { migrate?: boolean; needsRedis: boolean | ((s: ResolvedSettings) => boolean); log?: (s: ResolvedSettings) => Logger },
): Promise<Started> {
  const settings = resolveSettings(req, flags)
  const p = settings.process
  const log = opts.log?.(settings) ?? createCliLogger(p)
  const { tasks, middleware } = p.tasks ? await loadTaskModule(p.tasks) : { tasks: [], middleware: [] }
  const config = describeSettings(req, settings)
  // Queues left unset: the worker serves its tasks' queues, so the line shows those, not the schema's "default".
  if (req.components.includes('worker') && settings.sources['worker.queues'] === 'default') config.worker = { ...settings.worker, queues: taskQueues(tasks) }
  log.info({ command, config }, 'taskrelay starting')
  const db = await openDatabase(p, log, { requireMigrated: !opts.migrate, application: `taskrelay ${command}` })
  const started: Runnable[] = []
  let server: Server | null = null
  const stop = async () => {
    await Promise.allSettled(started.map((s) => s.stop()))
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
    await db.close()
  }
  try {
    // Every server is checked before anything is changed: a failed start changes nothing, as its message says.
    const needsRedis = typeof opts.needsRedis === 'function' ? opts.needsRedis(settings) : opts.needsRedis
    if (needsRedis) await checkRedis(p.redisUrl!)
    if (opts.migrate) {
      const res = await db.tr.migrate()
      log.info({ schema: p.schema, applied: res.applied, current: res.current }, res.applied.length ? 'migrations applied' : 'schema up to date')
    }
    const events = new TaskRelayEvents()
    logTaskProgress(events, log)
    // Counted from the start, served on /metrics when there is a health port.
    const metrics = p.healthPort !== undefined ? createMetrics({ events, tr: db.tr }) : null
    const targets = build({ settings, tr: db.tr, events, tasks, middleware, log })
    for (const t of targets) {
      await t.service.start()
      started.push(t.service)
    }
    if (p.healthPort !== undefined) {
      server = await startHealthServer(p.healthPort, targets, log, metrics?.registry).catch((err: unknown) => {
        throw new CliError(`--health-port ${p.healthPort}: cannot listen (${errorText(err)}). Pick a free port or leave the setting out.`)
      })
    }
    log.info({ command, services: targets.map((t) => t.name), tasks: tasks.map((t) => t.name) }, 'taskrelay ready')
    return { db, log, settings, targets, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

/** redis "optional": read when given, required by the component itself (a worker unless --lane postgres). */
function longRunning(cmd: Command, components: Component[], opts: { tasks: boolean; redis: boolean | 'optional' }): SettingsRequest {
  const process = LONG_RUNNING.filter((k) => opts.redis || (k !== 'redisUrl' && k !== 'keyPrefix'))
  const req: SettingsRequest = {
    process: opts.tasks ? [...process, 'tasks'] : process,
    required: ['databaseUrl', ...(opts.redis === true ? (['redisUrl'] as const) : []), ...(opts.tasks ? (['tasks'] as const) : [])],
    components,
  }
  addSettingOptions(cmd, req)
  return req
}

export function registerServiceCommands(program: Command): void {
  const migrateCmd = program
    .command('migrate')
    .summary('create or upgrade the taskrelay schema in PostgreSQL')
    .description(
      'Apply every pending migration under an advisory lock (safe to run from many processes at once). ' +
        'With --print-sql, print the SQL instead, for your own migration tool; it also records each ' +
        'migration in <schema>.migrations, so relays and workers accept the schema afterwards.',
    )
    .option('--print-sql', 'print the migration SQL instead of applying it (no database needed)')
    .option('--from <n>', 'with --print-sql: only migrations after number n (for upgrades)')
    .addHelpText(
      'after',
      examples([
        'DATABASE_URL=postgres://app:secret@db:5432/app taskrelay migrate',
        'taskrelay migrate --schema jobs --print-sql > db/migrations/20250101_taskrelay.sql',
        'taskrelay migrate --print-sql --from 1     # only what is new since migration 1',
      ]),
    )
  const migrateReq: SettingsRequest = { process: ['databaseUrl', 'schema'], required: ['databaseUrl'], components: [] }
  addSettingOptions(migrateCmd, migrateReq)
  migrateCmd.action(async (flags: Record<string, unknown>) => {
    if (flags.printSql) {
      const s = resolveSettings({ ...migrateReq, required: [] }, flags)
      const from = flags.from === undefined ? 0 : Number(flags.from)
      const latest = latestMigrationId()
      if (!/^\d+$/.test(String(flags.from ?? 0)) || from > latest) {
        throw new CliError(`--from: expected the number of a migration this version has, 0 to ${latest}, got ${JSON.stringify(flags.from)}.`, EXIT.usage)
      }
      process.stdout.write(migrationScript(s.process.schema, from))
      return
    }
    if (flags.from !== undefined) throw new CliError('--from only applies with --print-sql.', EXIT.usage)
    const s = resolveSettings(migrateReq, flags)
    const db = await openDatabase(s.process, createCliLogger({ logLevel: 'warn', logFormat: 'json' }), { requireMigrated: false, application: 'taskrelay migrate' })
    try {
      const res = await db.tr.migrate()
      console.log(
        res.applied.length
          ? `applied ${res.applied.join(', ')} to schema "${s.process.schema}" (now at migration ${res.current})`
          : `schema "${s.process.schema}" is up to date (migration ${res.current})`,
      )
    } finally {
      await db.close()
    }
  })

  const relayCmd = program
    .command('relay')
    .summary('move committed tasks from PostgreSQL to Redis')
    .description('Run a relay: wakes on NOTIFY when tasks are committed and pushes them to Redis in batches. Run two or more for availability; they coordinate through row locks.')
    .addHelpText('after', examples(['taskrelay relay', 'REDIS_URL=redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster taskrelay relay --batch-size 1000 --health-port 8080']))
  const relayReq = longRunning(relayCmd, ['relay'], { tasks: false, redis: true })
  relayCmd.action((flags: Record<string, unknown>) => runForever('relay', relayReq, flags, (ctx) => [relayTarget(ctx)], { needsRedis: false }))

  const workerCmd = program
    .command('worker')
    .summary('run task handlers')
    .description(
      'Run a worker: takes task ids from Redis (or, while Redis is unreachable or with --lane postgres, due tasks straight ' +
        'from PostgreSQL), claims each task in PostgreSQL with a fenced UPDATE, runs its handler and records the outcome. --tasks names a module exporting your tasks (defineTask). On SIGTERM ' +
        'running tasks get --shutdown-grace-ms to finish; the rest are handed back without using an attempt.',
    )
    .addHelpText(
      'after',
      examples([
        'taskrelay worker --tasks ./src/tasks.ts',
        'taskrelay worker --tasks ./dist/tasks.js --queues default,emails --concurrency 50',
        'TASKRELAY_TASKS=./dist/tasks.js TASKRELAY_WORKER_CONCURRENCY=20 taskrelay worker --health-port 8080',
      ]),
    )
  const workerReq = longRunning(workerCmd, ['worker'], { tasks: true, redis: 'optional' })
  const workerNeedsRedis = (s: ResolvedSettings) => s.worker.lane === 'redis'
  workerCmd.action((flags: Record<string, unknown>) => runForever('worker', workerReq, flags, (ctx) => [workerTarget(ctx)], { needsRedis: workerNeedsRedis }))

  const sweeperCmd = program
    .command('sweeper')
    .summary('repair what crashes leave behind; prune old tasks')
    .description(
      'Run a sweeper: puts tasks that were dispatched but never claimed back to pending, retries tasks whose worker ' +
        'was lost (expired lease), and deletes finished tasks after the retention period. Needs PostgreSQL only.',
    )
    .addHelpText('after', examples(['taskrelay sweeper', 'taskrelay sweeper --sweep-interval-ms 10s --retention-ms 3d']))
  const sweeperReq = longRunning(sweeperCmd, ['sweeper'], { tasks: false, redis: false })
  sweeperCmd.action((flags: Record<string, unknown>) => runForever('sweeper', sweeperReq, flags, (ctx) => [sweeperTarget(ctx)], { needsRedis: false }))
  const schedulerCmd = program
    .command('scheduler')
    .summary('turn cron and interval schedules into tasks')
    .description(
      'Run a scheduler: fires the schedules of the tasks in --tasks exactly once per fire time, however many schedulers run. ' +
        'At start it syncs the schedules declared in defineTask({ schedules }). Needs PostgreSQL only. See docs/scheduling.md.',
    )
    .addHelpText('after', examples(['taskrelay scheduler --tasks ./src/tasks.ts', 'taskrelay scheduler --tasks ./dist/tasks.js --sync-schedules false --health-port 8080']))
  const schedulerReq = longRunning(schedulerCmd, ['scheduler'], { tasks: true, redis: false })
  schedulerCmd.action((flags: Record<string, unknown>) => runForever('scheduler', schedulerReq, flags, (ctx) => [schedulerTarget(ctx)], { needsRedis: false }))
}

async function runForever(
  command: string,
  req: SettingsRequest,
  flags: Record<string, unknown>,
  build: Build,
  opts: { needsRedis: boolean | ((s: ResolvedSettings) => boolean) },
): Promise<void> {
  trapEarlySignals()
  const started = await startStack(command, req, flags, build, opts)
  await waitForSignal(started.log, started.stop)
}
