import type { Command } from 'commander'
import { countFailed, retryFailed } from '../admin/bulk.ts'
import { TaskNotFoundError } from '../errors.ts'
import { MAX_DELAY_MS, parseDuration } from '../duration.ts'
import { CliError, EXIT } from './errors.ts'
import { examples } from './format.ts'
import { formatDuration } from '../duration.ts'
import { addSettingOptions } from './settings.ts'
import { ONE_SHOT, parseTaskId, withDatabase } from './runtime.ts'
import { notFound } from './inspect.ts'
import { registerEnqueueCommand } from './enqueue-command.ts'

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
    await withDatabase(ONE_SHOT, flags, 'retry', async (db) => {
      const task = flags.task === undefined ? null : String(flags.task)
      const filter = { task, queue: flags.queue === undefined ? null : String(flags.queue), failedWithinMs: sinceMs }
      const scope = [task && `task ${task}`, flags.queue !== undefined && `queue ${String(flags.queue)}`, sinceMs !== null && `failed in the last ${formatDuration(sinceMs)}`]
        .filter(Boolean)
        .join(', ')
      if (flags.dryRun) {
        console.log(`${await countFailed(db.tr, filter)} failed task(s) would be retried${scope ? ` (${scope})` : ''}; nothing was changed`)
        return
      }
      const n = await retryFailed(db.tr, filter)
      // Nothing to retry exits 1 in both forms, as `retry <id>` of a task that is not failed (like grep: 1 = no match).
      if (n === 0) throw new CliError(`no failed tasks match${scope ? ` (${scope})` : ''}; nothing was changed.`)
      console.log(`retried ${n} failed task(s)${scope ? ` (${scope})` : ''}`)
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
  registerEnqueueCommand(program)
}
