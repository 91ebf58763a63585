import type { Command } from 'commander'
import { createReadStream } from 'node:fs'
import { resolve as resolvePath } from 'node:path'
import { taskEnqueueBySql, taskGetQueue, taskTypeExists } from '../db/admin-sql-api.ts'
import type { Executor } from '../db/executor.ts'
import { parseEnqueueOptions, prepareTaskAwaitable, type EnqueueOptions } from '../enqueue.ts'
import { DependencyNotFoundError, InvalidOptionsError, TaskRelayError } from '../errors.ts'
import { jsonbProblem } from '../jsonb.ts'
import type { Task } from '../define-task.ts'
import { CliError, EXIT, errorText } from './errors.ts'
import { DEFAULT_MAX_PAYLOAD_BYTES } from '../config.ts'
import { toJson, truncate, examples } from './format.ts'
import { parseDuration } from '../duration.ts'
import { addSettingOptions, resolveSettings, type SettingsRequest } from './settings.ts'
import { ONE_SHOT, parseTaskId, withDatabase } from './runtime.ts'
import { loadTasks } from './load-tasks.ts'

const WITH_TASKS: SettingsRequest = { ...ONE_SHOT, process: [...ONE_SHOT.process, 'tasks'] }

/** The library's default size limit (TaskRelayOptions.maxPayloadBytes), the one the SQL enqueue() enforces too. */
const MAX_PAYLOAD_BYTES = DEFAULT_MAX_PAYLOAD_BYTES
/** Input read for one payload at most: JSON with whitespace may shrink below the limit once parsed. */
const MAX_INPUT_BYTES = 4 * MAX_PAYLOAD_BYTES

function tooLarge(what: string): CliError {
  return new CliError(`${what}; the limit is 1 MiB (${MAX_PAYLOAD_BYTES} bytes). Store large data elsewhere and pass a reference. Nothing was written.`, EXIT.usage)
}

/**
 * The payload text: the argument itself, or with "-" stdin and with "@file"
 * a file, read up to MAX_INPUT_BYTES (shells cap one argument near 128 KiB,
 * below the payload limit).
 */
async function readPayloadText(source: string): Promise<string> {
  if (source !== '-' && !source.startsWith('@')) return source
  const from = source === '-' ? 'stdin' : resolvePath(process.cwd(), source.slice(1))
  const stream = source === '-' ? process.stdin : createReadStream(from)
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length
      if (size > MAX_INPUT_BYTES) throw tooLarge(`${from} holds more than ${MAX_INPUT_BYTES} bytes`)
      chunks.push(chunk)
    }
  } catch (err) {
    if (err instanceof CliError) throw err
    throw new CliError(`cannot read the payload from ${from}: ${errorText(err)}. Nothing was written.`, EXIT.usage, { cause: err })
  } finally {
    if (source !== '-') (stream as ReturnType<typeof createReadStream>).destroy()
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks))
  } catch {
    throw new CliError(`the payload in ${from} is not valid UTF-8 text. Nothing was written.`, EXIT.usage)
  }
}

export function registerEnqueueCommand(program: Command): void {
  const enqueue = program
    .command('enqueue')
    .summary('add a task (for scripts and smoke tests)')
    .argument('<task>', 'task name, e.g. email.welcome')
    .argument('<payload>', "payload as JSON, e.g. '{\"userId\": 1}'; - reads it from stdin, @file from a file (up to 1 MiB)")
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
        'taskrelay enqueue report.build @payload.json',
        'jq -c . big.json | taskrelay enqueue report.build -',
      ]),
    )
  addSettingOptions(enqueue, WITH_TASKS)
  enqueue.action(async (name: string, source: string, flags: Record<string, unknown>) => {
    const settings = resolveSettings(WITH_TASKS, flags)
    const json = await readPayloadText(source)
    let payload: unknown
    try {
      payload = JSON.parse(json)
    } catch (err) {
      throw new CliError(
        `the payload is not valid JSON (${(err as Error).message}). Pass one JSON argument, quoted for your shell, e.g. taskrelay enqueue ${name} '{"userId": 1}' ` +
          `(or - to read it from stdin, @file from a file). Nothing was written.`,
        EXIT.usage,
      )
    }
    const bytes = Buffer.byteLength(JSON.stringify(payload) ?? '')
    if (bytes > MAX_PAYLOAD_BYTES) throw tooLarge(`the payload is ${bytes} bytes as JSON`)
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
        await prepareTaskAwaitable(task, payload, options, MAX_PAYLOAD_BYTES)
      } catch (err) {
        if (err instanceof TaskRelayError) {
          throw new CliError(`${err.message}\nFix the payload or options to match task "${name}" in ${settings.process.tasks}. Nothing was written.`, EXIT.usage)
        }
        throw err
      }
    } else if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
      throw new CliError(`the payload must be a JSON object such as '{"userId": 1}', got ${truncate(json.trim(), 200)}. Nothing was written.`, EXIT.usage)
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
        id = await enqueueBySql(db.tr, name, payload, options)
        const at = { schema: s.process.schema }
        if (!(await taskTypeExists(db.tr.executor, { ...at, name }))) {
          const queue = (await taskGetQueue(db.tr.executor, { ...at, id })) ?? options.queue ?? 'default'
          // Workers serve their own tasks' queues, so without registered defaults the queue may be one no worker with this task serves.
          process.stderr.write(
            `note: no worker has registered a task named "${name}" yet, so its defaults are unknown and it was put on queue "${queue}". ` +
              `It runs once a worker serving queue "${queue}" has a task named "${name}"; workers on that queue without it hand it back ` +
              `(\`taskrelay status ${id}\` shows why). Give --queue to pick the queue.\n`,
          )
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
async function enqueueBySql(tr: { executor: Executor; schema: string }, name: string, payload: unknown, o: EnqueueOptions): Promise<string> {
  try {
    return await taskEnqueueBySql(tr.executor, { schema: tr.schema, name, payload, ...o })
  } catch (err) {
    const e = err as { code?: string; message: string; hint?: string }
    // 22023 (invalid_parameter_value): the function's own argument checks.
    if (e.code === '22023') throw new CliError(`${e.message}${e.hint ? ` (${e.hint})` : ''}. Nothing was written.`, EXIT.usage)
    throw err
  }
}
