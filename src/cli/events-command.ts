import type { Command } from 'commander'
import { InvalidOptionsError } from '../errors.ts'
import { TASK_EVENT_TYPES, parseFilter, type TaskEvent, type TaskEventFilter, type TaskEventGap, type TaskEventType } from '../events/task-event-types.ts'
import { CliError, EXIT } from './errors.ts'
import { examples, truncate } from './format.ts'
import { addSettingOptions } from './settings.ts'
import { ONE_SHOT, createCliLogger, parseTaskId, waitForSignal, withDatabase } from './runtime.ts'

/** Filter keys as the command's flags spell them, for usage errors. */
const FLAG_OF: Record<string, string> = { taskId: '--id', queue: '--queue', name: '--task', workflowId: '--workflow', types: '--type' }

/**
 * `taskrelay events`: tail task events live (tr.events) until Ctrl-C, one
 * line each, or JSON lines. The banner goes to stderr so stdout stays
 * exactly the events.
 */
export function registerEventsCommand(program: Command): void {
  const cmd = program
    .command('events')
    .summary('tail task events live: enqueued, started, progress, retried, succeeded, failed, cancelled')
    .description(
      'Print task state changes as they commit, from every process, until Ctrl-C (LISTEN/NOTIFY on <schema>.task_events). ' +
        'Lossy by design: nothing is delivered while the connection is down, and a "gap" line says so after it comes back; ' +
        'the rows (`taskrelay list`, `status`) are the truth. Each line shows the task row as read when the event arrived.',
    )
    .option('--id <id>', 'only this task')
    .option('--task <name>', 'only this task name; * matches anything (email.*)')
    .option('--queue <queue>', 'only this queue')
    .option('--workflow <id>', 'only tasks of this workflow (its UUID)')
    .option('--type <types>', `comma-separated event types: ${TASK_EVENT_TYPES.join(', ')}`)
    .option('--no-details', 'do not read the task rows (no name, attempt or error; one query less per notification)')
    .option('--json', 'print one JSON object per line: { type, taskId, queue, at, details }')
    .addHelpText(
      'after',
      examples([
        'taskrelay events --queue emails',
        'taskrelay events --type failed,retried --json | jq -r .details.error.message',
        'taskrelay events --id 42',
      ]),
    )
  addSettingOptions(cmd, ONE_SHOT)
  cmd.action((flags: Record<string, unknown>) => {
    // Usage errors before connecting to anything.
    const filter = eventsFilter(flags)
    return withDatabase(ONE_SHOT, flags, 'events', async (db, s) => {
      const print = (e: TaskEvent | TaskEventGap) => process.stdout.write((flags.json ? JSON.stringify(e) : renderEvent(e)) + '\n')
      const stop = await db.tr.events.subscribe(filter, print)
      process.stderr.write(`listening for task events in schema "${s.process.schema}" (Ctrl-C to stop)\n`)
      await waitForSignal(createCliLogger({ logLevel: 'silent', logFormat: 'json' }), async () => {
        await stop()
        await db.close()
      })
    })
  })
}

/** The flags as a tr.events filter; a CliError (exit 2) naming the flag for anything wrong. */
export function eventsFilter(flags: Record<string, unknown>): TaskEventFilter {
  const filter: TaskEventFilter = { details: flags.details !== false }
  if (flags.id !== undefined) filter.taskId = parseTaskId(String(flags.id))
  if (flags.task !== undefined) filter.name = String(flags.task)
  if (flags.queue !== undefined) filter.queue = String(flags.queue)
  if (flags.workflow !== undefined) filter.workflowId = String(flags.workflow)
  if (flags.type !== undefined) {
    const types = String(flags.type).split(',').map((t) => t.trim())
    const unknown = types.filter((t) => !(TASK_EVENT_TYPES as readonly string[]).includes(t))
    if (unknown.length > 0) throw new CliError(`--type: unknown event type ${unknown.map((t) => `"${t}"`).join(', ')}; use a comma-separated list of ${TASK_EVENT_TYPES.join(', ')}.`, EXIT.usage)
    filter.types = types as TaskEventType[]
  }
  try {
    parseFilter(filter)
  } catch (err) {
    if (!(err instanceof InvalidOptionsError)) throw err
    const problems = err.problems.map((p) => p.replace(/^(\w+):/, (_all, key: string) => `${FLAG_OF[key] ?? key}:`))
    throw new CliError(`invalid flags:\n${problems.map((p) => `  - ${p}`).join('\n')}`, EXIT.usage)
  }
  return filter
}

/** One event as a line: time, type, task, queue, then what the row says. */
export function renderEvent(e: TaskEvent | TaskEventGap): string {
  const time = e.at.toISOString()
  if (e.type === 'gap') {
    return `${time}  gap        events were lost (${e.reason === 'reconnected' ? 'the LISTEN connection dropped and came back' : 'task rows could not be read'}); re-read what you watch with taskrelay list or status`
  }
  const d = e.details
  const parts = [time, e.type.padEnd(9), `task ${e.taskId}`, d ? d.name : '', `queue ${e.queue}`]
  if (d) {
    if (e.type === 'started' || e.type === 'retried' || e.type === 'failed') parts.push(`attempt ${d.attempt}/${d.maxAttempts}`)
    if (e.type === 'progress' && d.progress) parts.push(`${d.progress.value}%`)
    if (d.workflowId) parts.push(`workflow ${d.workflowId}`)
    if (d.error) parts.push(`error: ${truncate(d.error.message, 120)}`)
  } else if (d === null) {
    parts.push('(row gone)')
  }
  return parts.filter(Boolean).join('  ')
}
