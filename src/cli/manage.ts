import type { Command } from 'commander'
import { quoteIdent } from '../db/sql.ts'
import { parseEnqueueOptions, prepareTask, type EnqueueOptions } from '../enqueue.ts'
import { DependencyNotFoundError, InvalidOptionsError, TaskNotFoundError, TaskRelayError } from '../errors.ts'
import { MAX_DELAY_MS } from '../duration.ts'
import { jsonbProblem } from '../jsonb.ts'
import type { Task } from '../define-task.ts'
import { CliError, EXIT } from './errors.ts'
import { formatDuration, parseDuration, toJson, examples } from './format.ts'
import { addSettingOptions, resolveSettings, type SettingsRequest } from './settings.ts'
import { ONE_SHOT, loadTasks, parseTaskId, withDatabase } from './runtime.ts'
import { notFound } from './inspect.ts'

const WITH_TASKS: SettingsRequest = { ...ONE_SHOT, process: [...ONE_SHOT.process, 'tasks'] }

/** Same size limit as the library's default (TaskRelayOptions.maxPayloadBytes). */
const MAX_PAYLOAD_BYTES = 1024 * 1024

export function registerManageCommands(program: Command): void {
  const retry = program
    .command('retry')
    .summary('run a failed or cancelled task again (one, or every failed task matching filters)')
    .argument('[id]', 'task id')
    .option('--failed', 'retry every failed task that matches --task/--queue/--since')
    .option('--task <name>', 'with --failed: only this task name (* matches anything)')
    .option('--queue <queue>', 'with --failed: only this queue')
    .option('--since <age>', 'with --failed: only tasks that failed within this long (30m, 1h, 7d)')
    .option('--dry-run', 'with --failed: count the matching tasks, change nothing')
    .addHelpText(
      'after',
      examples(['taskrelay retry 42', 'taskrelay retry --failed --task email.welcome --since 1h', "taskrelay retry --failed --task 'report.*' --dry-run"]),
    )
  addSettingOptions(retry, ONE_SHOT)
  retry.action(async (id: string | undefined, flags: Record<string, unknown>) => {
    const bulkFlags = ['task', 'queue', 'since', 'dryRun'].filter((k) => flags[k] !== undefined)
    if (id !== undefined && flags.failed) throw new CliError('give a task id or --failed, not both.', EXIT.usage)
    if (id === undefined && !flags.failed) throw new CliError('give the id of the task to retry, or --failed to retry every failed task (see `taskrelay retry --help`).', EXIT.usage)
    if (id !== undefined && bulkFlags.length) throw new CliError(`--${bulkFlags[0]!.replace('dryRun', 'dry-run')} only applies with --failed.`, EXIT.usage)
    if (id !== undefined) {
      const taskId = parseTaskId(id)
      await withDatabase(ONE_SHOT, flags, 'retry', async (db, s) => {
        let ok: boolean
        try {
          ok = await db.tr.retry(taskId)
        } catch (err) {
          if (err instanceof TaskNotFoundError) throw notFound(taskId, s.process.schema)
          throw err
        }
        const task = await db.tr.getTask(taskId)
        if (!ok) throw new CliError(`task ${taskId} is ${task?.state ?? 'gone'}; only failed or cancelled tasks can be retried. Nothing was changed.`)
        console.log(`task ${taskId} (${task?.name}) is pending again; attempt ${(task?.attempt ?? 0) + 1} of ${task?.maxAttempts} is next`)
      })
      return
    }
    const sinceMs = flags.since === undefined ? null : parseDuration(String(flags.since))
    if (flags.since !== undefined && sinceMs === null) throw new CliError(`--since: expected an age such as 30m, 1h or 7d, got "${flags.since}".`, EXIT.usage)
    if (sinceMs !== null && sinceMs > MAX_DELAY_MS) throw new CliError(`--since: must be at most 3650d (10 years), got "${flags.since}".`, EXIT.usage)
    await withDatabase(ONE_SHOT, flags, 'retry', async (db, s) => {
      const schema = quoteIdent(s.process.schema)
      const where = ["state = 'failed'"]
      const values: unknown[] = []
      const add = (text: string, value: unknown) => {
        values.push(value)
        where.push(text.replace('?', `$${values.length}`))
      }
      const task = flags.task === undefined ? null : String(flags.task)
      if (task !== null) add(task.includes('*') ? "name like ? escape '\\'" : 'name = ?', task.includes('*') ? task.replace(/[\\%_]/g, '\\$&').replaceAll('*', '%') : task)
      if (flags.queue !== undefined) add('queue = ?', String(flags.queue))
      if (sinceMs !== null) add("finished_at >= now() - ? * interval '1 millisecond'", sinceMs)
      const scope = [task && `task ${task}`, flags.queue !== undefined && `queue ${String(flags.queue)}`, sinceMs !== null && `failed in the last ${formatDuration(sinceMs)}`]
        .filter(Boolean)
        .join(', ')
      if (flags.dryRun) {
        const res = await db.tr.executor.query<{ n: number }>(`select count(*)::int as n from ${schema}.tasks where ${where.join(' and ')}`, values)
        console.log(`${res.rows[0]?.n ?? 0} failed task(s) would be retried${scope ? ` (${scope})` : ''}; nothing was changed`)
        return
      }
      // retry() re-checks the state in its own UPDATE, so a task that moved on meanwhile is left alone.
      const res = await db.tr.executor.query<{ retried: number }>(
        `select count(*) filter (where ok)::int as retried
           from (select ${schema}.retry(id) as ok from ${schema}.tasks where ${where.join(' and ')} order by id) s`,
        values,
      )
      const n = res.rows[0]?.retried ?? 0
      console.log(n === 0 ? `no failed tasks match${scope ? ` (${scope})` : ''}; nothing was changed` : `retried ${n} failed task(s)${scope ? ` (${scope})` : ''}`)
    })
  })

  const cancel = program
    .command('cancel')
    .summary('cancel a task that has not finished')
    .argument('<id>', 'task id')
    .description('Cancel a task that has not finished. A running handler is told through ctx.signal at its next heartbeat, and its outcome is discarded.')
    .addHelpText('after', examples(['taskrelay cancel 42']))
  addSettingOptions(cancel, ONE_SHOT)
  cancel.action((id: string, flags: Record<string, unknown>) => {
    const taskId = parseTaskId(id)
    return withDatabase(ONE_SHOT, flags, 'cancel', async (db, s) => {
      const before = await db.tr.getTask(taskId)
      if (!before) throw notFound(taskId, s.process.schema)
      let ok: boolean
      try {
        ok = await db.tr.cancel(taskId)
      } catch (err) {
        if (err instanceof TaskNotFoundError) throw notFound(taskId, s.process.schema)
        throw err
      }
      if (!ok) {
        const after = await db.tr.getTask(taskId)
        throw new CliError(`task ${taskId} already ${after?.state ?? 'finished'}; only unfinished tasks can be cancelled. Nothing was changed.`)
      }
      console.log(`task ${taskId} (${before.name}) cancelled${before.state === 'running' ? '; its running handler is told through ctx.signal at its next heartbeat' : ''}`)
    })
  })

  const enqueue = program
    .command('enqueue')
    .summary('add a task (for scripts and smoke tests)')
    .argument('<task>', 'task name, e.g. email.welcome')
    .argument('<payload>', "payload as JSON, e.g. '{\"userId\": 1}'")
    .description(
      'Add one task. With --tasks (or TASKRELAY_TASKS) the payload is checked against the task\'s schema first, as ' +
        'tr.enqueue() does; without it the SQL function <schema>.enqueue() is used, with the defaults workers registered.',
    )
    .option('--queue <queue>', "queue (default: the task's)")
    .option('--priority <n>', 'priority, -1000..1000, higher first')
    .option('--delay <duration>', 'not before this long from now (30s, 5m, 1h)')
    .option('--run-at <time>', 'not before this time (ISO 8601, e.g. 2030-01-01T09:00:00Z)')
    .option('--max-attempts <n>', 'attempts before the task fails (1-1000)')
    .option('--idempotency-key <key>', 'a second enqueue with the same key returns the first task instead')
    .option('--depends-on <ids>', 'comma-separated task ids that must succeed first (the task waits until then)')
    .option('--json', 'print {"id": ...}')
    .addHelpText(
      'after',
      examples([
        'taskrelay enqueue email.welcome \'{"userId": 1, "email": "ada@example.com"}\'',
        'taskrelay enqueue email.welcome \'{"userId": 1, "email": "ada@example.com"}\' --tasks ./examples/tasks.ts --delay 5m',
        "id=$(taskrelay enqueue report.build '{}' --json | jq -r .id)",
        'taskrelay enqueue report.mail \'{}\' --depends-on "$id"',
      ]),
    )
  addSettingOptions(enqueue, WITH_TASKS)
  enqueue.action(async (name: string, json: string, flags: Record<string, unknown>) => {
    const settings = resolveSettings(WITH_TASKS, flags)
    let payload: unknown
    try {
      payload = JSON.parse(json)
    } catch (err) {
      throw new CliError(
        `the payload is not valid JSON (${(err as Error).message}). Pass one JSON argument, quoted for your shell, e.g. taskrelay enqueue ${name} '{"userId": 1}'. Nothing was written.`,
        EXIT.usage,
      )
    }
    const options = enqueueOptions(flags)
    let task: Task | null = null
    if (settings.process.tasks) {
      const tasks = await loadTasks(settings.process.tasks)
      task = tasks.find((t) => t.name === name) ?? null
      if (!task) {
        throw new CliError(`--tasks: ${settings.process.tasks} has no task named "${name}" (it has: ${tasks.map((t) => t.name).sort().join(', ')}). Nothing was written.`, EXIT.usage)
      }
      // Validate before connecting: a bad payload is reported even when the database is down.
      try {
        prepareTask(task, payload, options, MAX_PAYLOAD_BYTES)
      } catch (err) {
        if (err instanceof TaskRelayError) {
          throw new CliError(`${err.message}\nFix the payload or options to match task "${name}" in ${settings.process.tasks}. Nothing was written.`, EXIT.usage)
        }
        throw err
      }
    } else if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
      throw new CliError(`the payload must be a JSON object such as '{"userId": 1}', got ${json}. Nothing was written.`, EXIT.usage)
    } else {
      // What jsonb refuses, said here: the SQL function would only report a raw 22P05/22P02.
      const problem = jsonbProblem(JSON.stringify(payload))
      if (problem !== null) throw new CliError(`the payload cannot be stored: ${problem.replace(/^\./, '')}. Nothing was written.`, EXIT.usage)
    }
    await withDatabase(WITH_TASKS, flags, 'enqueue', async (db, s) => {
      let id: string
      if (task) {
        try {
          id = (await db.tr.enqueue(task, payload as never, options)).id
        } catch (err) {
          if (err instanceof DependencyNotFoundError) throw new CliError(`${err.message}. Nothing was written.`, EXIT.usage)
          throw err
        }
      } else {
        id = await enqueueBySql(db.tr.executor, s.process.schema, name, payload, options)
        const known = await db.tr.executor.query(`select 1 from ${quoteIdent(s.process.schema)}.task_types where name = $1`, [name])
        if (known.rows.length === 0) {
          process.stderr.write(`note: no worker has registered a task named "${name}" yet; it runs once a worker with that task starts.\n`)
        }
      }
      console.log(flags.json ? toJson({ id, name }) : `enqueued task ${id} (${name})`)
    })
  })
}

function enqueueOptions(flags: Record<string, unknown>): EnqueueOptions {
  const problems: string[] = []
  const options: EnqueueOptions = {}
  const int = (flag: string, v: unknown, min: number, max: number) => {
    const n = Number(v)
    if (!/^-?\d+$/.test(String(v)) || n < min || n > max) problems.push(`${flag}: expected a whole number in ${min}..${max}, got "${v}"`)
    return n
  }
  if (flags.queue !== undefined) options.queue = String(flags.queue)
  if (flags.priority !== undefined) options.priority = int('--priority', flags.priority, -1000, 1000)
  if (flags.maxAttempts !== undefined) options.maxAttempts = int('--max-attempts', flags.maxAttempts, 1, 1000)
  if (flags.idempotencyKey !== undefined) options.idempotencyKey = String(flags.idempotencyKey)
  if (flags.dependsOn !== undefined) {
    try {
      options.dependsOn = String(flags.dependsOn).split(',').map(parseTaskId)
    } catch {
      problems.push(`--depends-on: expected 1-1000 comma-separated task ids such as 41,42, got "${flags.dependsOn}"`)
    }
  }
  if (flags.delay !== undefined) {
    const ms = parseDuration(String(flags.delay))
    if (ms === null) problems.push(`--delay: expected a duration such as 30s, 5m or 1h, got "${flags.delay}"`)
    else options.delayMs = ms
  }
  if (flags.runAt !== undefined) {
    const d = new Date(String(flags.runAt))
    if (Number.isNaN(d.getTime())) problems.push(`--run-at: expected an ISO 8601 time such as 2030-01-01T09:00:00Z, got "${flags.runAt}"`)
    else options.runAt = d
  }
  if (options.runAt && options.delayMs !== undefined) problems.push('--delay and --run-at: give one, not both')
  if (!problems.length) {
    // The library's own rules (ranges, reserved key prefix), for the SQL path too, in flag names.
    try {
      parseEnqueueOptions('enqueue options', options)
    } catch (err) {
      if (!(err instanceof InvalidOptionsError)) throw err
      problems.push(...err.problems.map((p) => p.replace(/^(\w+):/, (whole, key: string) => (FLAG_OF[key] ? `${FLAG_OF[key]}:` : whole))))
    }
  }
  if (problems.length) throw new CliError(`invalid options:\n${problems.map((p) => `  - ${p}`).join('\n')}\nNothing was written.`, EXIT.usage)
  return options
}

/** EnqueueOptions field → the flag that sets it, for messages. */
const FLAG_OF: Record<string, string> = {
  runAt: '--run-at',
  delayMs: '--delay',
  priority: '--priority',
  queue: '--queue',
  maxAttempts: '--max-attempts',
  idempotencyKey: '--idempotency-key',
  dependsOn: '--depends-on',
}

/** The SQL API path: the same function psql users call, with the task types' registered defaults. */
async function enqueueBySql(db: { query: <R>(text: string, values?: readonly unknown[]) => Promise<{ rows: R[] }> }, schema: string, name: string, payload: unknown, o: EnqueueOptions): Promise<string> {
  try {
    // enqueue_after() (0008) is enqueue() for a task that depends on others.
    const [fn, after] = o.dependsOn ? ['enqueue_after', 'depends_on => $9::bigint[], '] : ['enqueue', '']
    const res = await db.query<{ id: string }>(
      `select ${quoteIdent(schema)}.${fn}(${after}
         task_name => $1, payload => $2::jsonb, queue => $3, priority => $4, run_at => $5,
         delay => $6 * interval '1 millisecond', max_attempts => $7, idempotency_key => $8) as id`,
      [
        name,
        JSON.stringify(payload),
        o.queue ?? null,
        o.priority ?? null,
        o.runAt ?? null,
        o.delayMs ?? null,
        o.maxAttempts ?? null,
        o.idempotencyKey ?? null,
        ...(o.dependsOn ? [o.dependsOn.map(String)] : []),
      ],
    )
    return String(res.rows[0]!.id)
  } catch (err) {
    const e = err as { code?: string; message: string; hint?: string }
    // 22023 (invalid_parameter_value): the function's own argument checks.
    if (e.code === '22023') throw new CliError(`${e.message}${e.hint ? ` (${e.hint})` : ''}. Nothing was written.`, EXIT.usage)
    throw err
  }
}
