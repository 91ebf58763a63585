import type { Command } from 'commander'
import { Option } from 'commander'
import { scheduleGet, scheduleList, schedulePause, scheduleRemove, scheduleResume, scheduleRunNow, scheduleUpsert } from '../scheduler/schedules.ts'
import { ScheduleError, ScheduleNotFoundError } from '../errors.ts'
import { MISFIRE_POLICIES, type ScheduleRecord } from '../scheduler/spec.ts'
import type { ScheduleSpec } from '../define-task.ts'
import type { Task } from '../define-task.ts'
import { CliError, EXIT } from './errors.ts'
import { formatAge, renderTable, toJson, examples } from './format.ts'
import { formatDuration } from '../duration.ts'
import { addSettingOptions, resolveSettings, type SettingsRequest } from './settings.ts'
import { ONE_SHOT, withDatabase } from './runtime.ts'
import { loadTasks } from './load-tasks.ts'

const WITH_TASKS: SettingsRequest = { ...ONE_SHOT, process: [...ONE_SHOT.process, 'tasks'], required: [...(ONE_SHOT.required ?? []), 'tasks'] }

/** Schedule errors are the caller's input (exit 2); a missing schedule is "not found" (exit 1). */
async function explain<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw new CliError(`${err.message}; see the existing ones with \`taskrelay schedules list\`. Nothing was changed.`)
    if (err instanceof ScheduleError) throw new CliError(`${err.message}\nNothing was changed.`, EXIT.usage)
    throw err
  }
}

function when(s: ScheduleRecord): string {
  return s.cron !== null ? `cron ${s.cron}${s.timezone !== 'UTC' ? ` (${s.timezone})` : ''}` : `every ${formatDuration(s.everyMs ?? 0)}`
}

async function tasksFrom(flags: Record<string, unknown>): Promise<Task[]> {
  const s = resolveSettings(WITH_TASKS, flags)
  return loadTasks(s.process.tasks!)
}

export function registerScheduleCommands(program: Command): void {
  const group = program
    .command('schedules')
    .summary('list, add, remove, pause, resume or run periodic schedules now')
    .description('Manage the schedules that schedulers fire (see docs/scheduling.md). Schedules declared in defineTask({ schedules }) are synced by schedulers at start; the ones added here are kept as they are.')
    .addHelpText('after', examples(['taskrelay schedules list', "taskrelay schedules add nightly-report report.build --cron '0 3 * * *' --timezone Europe/Berlin --tasks ./src/tasks.ts", 'taskrelay schedules pause nightly-report']))

  const list = group
    .command('list')
    .summary('show every schedule with its next and last fire')
    .option('--task <name>', 'only schedules of this task')
    .option('--json', 'print JSON')
    .addHelpText('after', examples(['taskrelay schedules list', 'taskrelay schedules list --task report.build --json']))
  addSettingOptions(list, ONE_SHOT)
  list.action((flags: Record<string, unknown>) =>
    withDatabase(ONE_SHOT, flags, 'schedules', async (db) => {
      const schedules = await scheduleList(db.tr, flags.task === undefined ? {} : { task: String(flags.task) })
      if (flags.json) return void console.log(toJson(schedules))
      if (schedules.length === 0) return void console.log('no schedules; add one with `taskrelay schedules add` or declare it in defineTask({ schedules })')
      const now = Date.now()
      console.log(
        renderTable<ScheduleRecord>(
          [
            { header: 'NAME', value: (s) => s.name, max: 40 },
            { header: 'TASK', value: (s) => s.task, max: 40 },
            { header: 'WHEN', value: when },
            { header: 'STATE', value: (s) => (s.enabled ? 'active' : 'paused') },
            { header: 'NEXT FIRE', value: (s) => (s.enabled && s.nextFireAt ? `${s.nextFireAt.toISOString()} (${formatAge(s.nextFireAt, now)})` : '-') },
            { header: 'LAST FIRE', value: (s) => formatAge(s.lastFireAt, now) },
            { header: 'LAST TASK', value: (s) => s.lastTaskId ?? '-' },
            { header: 'SOURCE', value: (s) => s.source },
            { header: 'LAST ERROR', value: (s) => s.lastError ?? '', max: 60 },
          ],
          schedules,
        ),
      )
    }),
  )

  const add = group
    .command('add')
    .summary('create or update a schedule')
    .argument('<name>', 'schedule name, unique (e.g. nightly-report)')
    .argument('<task>', 'task name; the task must be exported by --tasks, which checks the payload')
    .option('--cron <expression>', 'cron expression: 5 fields, or 6 with seconds first')
    .option('--timezone <zone>', 'IANA time zone for --cron (default UTC)')
    .option('--every <duration>', 'fixed interval instead of cron: 30s, 5m, 1h30m (at least 1s)')
    .option('--payload <json>', 'payload of every fire, as JSON', '{}')
    .option('--queue <queue>', "queue of the fired tasks (default: the task's)")
    .option('--priority <n>', "priority of the fired tasks (default: the task's)")
    .option('--max-attempts <n>', "attempts of the fired tasks (default: the task's)")
    .addOption(new Option('--misfire <policy>', 'fire times missed while no scheduler ran: skip = fire the latest once, all = each, none = none').choices([...MISFIRE_POLICIES]))
    .option('--no-overlap', 'skip a fire while the task of the previous fire has not finished')
    .option('--paused', 'create it paused')
    .addHelpText(
      'after',
      examples([
        "taskrelay schedules add nightly-report report.build --cron '0 3 * * *' --timezone Europe/Berlin --payload '{\"kind\":\"sales\"}' --tasks ./src/tasks.ts",
        'taskrelay schedules add cleanup maintenance.cleanup --every 15m --no-overlap --tasks ./src/tasks.ts',
      ]),
    )
  addSettingOptions(add, WITH_TASKS)
  add.action(async (name: string, taskName: string, flags: Record<string, unknown>) => {
    let payload: unknown
    try {
      payload = JSON.parse(String(flags.payload))
    } catch (err) {
      throw new CliError(`--payload is not valid JSON (${(err as Error).message}). Nothing was changed.`, EXIT.usage)
    }
    const int = (flag: string, v: unknown) => {
      if (v === undefined) return undefined
      if (!/^-?\d+$/.test(String(v))) throw new CliError(`${flag}: expected a whole number, got "${v}". Nothing was changed.`, EXIT.usage)
      return Number(v)
    }
    const options = {
      ...(flags.queue !== undefined ? { queue: String(flags.queue) } : {}),
      ...(flags.priority !== undefined ? { priority: int('--priority', flags.priority) } : {}),
      ...(flags.maxAttempts !== undefined ? { maxAttempts: int('--max-attempts', flags.maxAttempts) } : {}),
    }
    const spec: ScheduleSpec = {
      name,
      task: taskName,
      payload: payload as never,
      ...(flags.cron !== undefined ? { cron: String(flags.cron) } : {}),
      ...(flags.every !== undefined ? { every: /^\d+$/.test(String(flags.every)) ? Number(flags.every) : String(flags.every) } : {}),
      ...(flags.timezone !== undefined ? { timezone: String(flags.timezone) } : {}),
      ...(Object.keys(options).length ? { options } : {}),
      ...(flags.misfire !== undefined ? { misfire: flags.misfire as ScheduleSpec['misfire'] & string } : {}),
      overlap: flags.overlap !== false,
      ...(flags.paused ? { enabled: false } : {}),
    }
    const tasks = await tasksFrom(flags)
    await withDatabase(WITH_TASKS, flags, 'schedules', async (db) => {
      const res = await explain(() => scheduleUpsert(db.tr, spec, { tasks }))
      const s = res.schedule
      const next = s.enabled && s.nextFireAt ? `next fire ${s.nextFireAt.toISOString()} (${formatAge(s.nextFireAt)})` : 'paused'
      console.log(`schedule "${s.name}" ${res.status} (${s.task}, ${when(s)}); ${next}`)
    })
  })

  const simple = (cmd: string, summary: string, run: (name: string, flags: Record<string, unknown>) => Promise<void>) => {
    const c = group.command(cmd).summary(summary).argument('<name>', 'schedule name').addHelpText('after', examples([`taskrelay schedules ${cmd} nightly-report`]))
    addSettingOptions(c, cmd === 'run-now' ? WITH_TASKS : ONE_SHOT)
    c.action((name: string, flags: Record<string, unknown>) => run(name, flags))
    return c
  }
  simple('remove', 'delete a schedule (tasks it already enqueued stay)', (name, flags) =>
    withDatabase(ONE_SHOT, flags, 'schedules', async (db) => {
      const missing = () => new CliError(`schedule "${name}" does not exist; see the existing ones with \`taskrelay schedules list\`. Nothing was changed.`)
      const existing = await scheduleGet(db.tr, name)
      if (!existing) throw missing()
      // A schedule declared in code comes back at the next scheduler start: removing it here alone would not last.
      if (existing.source === 'code' && !flags.force) {
        throw new CliError(
          `schedule "${name}" is declared in code (defineTask({ schedules }) of task "${existing.task}"); the next scheduler start would ` +
            'create it again. Remove it from the code instead; schedulers delete it when they start with the new code. ' +
            'To stop it now, use `taskrelay schedules pause`, or add --force to delete it until then. Nothing was changed.',
        )
      }
      if (!(await scheduleRemove(db.tr, name))) throw missing()
      console.log(`schedule "${name}" removed${existing.source === 'code' ? '; it comes back when a scheduler starts with code that still declares it' : ''}`)
    }),
  ).option('--force', 'also remove a schedule declared in code (it comes back when a scheduler starts with code that still declares it)')
  simple('pause', 'stop firing a schedule (kept paused across restarts)', (name, flags) =>
    withDatabase(ONE_SHOT, flags, 'schedules', async (db) => {
      await explain(() => schedulePause(db.tr, name))
      console.log(`schedule "${name}" paused`)
    }),
  )
  simple('resume', 'fire a paused schedule again, from its next fire time', (name, flags) =>
    withDatabase(ONE_SHOT, flags, 'schedules', async (db) => {
      const s = await explain(() => scheduleResume(db.tr, name))
      console.log(`schedule "${name}" active; next fire ${s.nextFireAt?.toISOString() ?? '-'}`)
    }),
  )
  simple('run-now', "enqueue the schedule's task once, now (regular fire times unchanged)", async (name, flags) => {
    const tasks = await tasksFrom(flags)
    await withDatabase(WITH_TASKS, flags, 'schedules', async (db) => {
      const { taskId } = await explain(() => scheduleRunNow(db.tr, name, { tasks }))
      console.log(`schedule "${name}" enqueued task ${taskId}`)
    })
  })
}
