import { MAX_TIMER_MS, parseDuration } from '../duration.ts'
import type { Command } from 'commander'
import { TASK_STATES } from '../task-state.ts'
import { CliError, EXIT } from './errors.ts'
import { formatAge, toJson, truncate, examples } from './format.ts'
import { formatDuration } from '../duration.ts'
import { readStats, type StatsSnapshot } from '../admin/stats.ts'
import { listTasks } from '../admin/task-list.ts'
import { readTaskDetail, readTaskWorkers } from '../admin/task-detail.ts'
import { renderStatus } from './status-report.ts'
import { listWorkers, type WorkerInfo } from '../admin/workers.ts'
import { renderStats } from './stats-report.ts'
import { parseListFlags, renderList } from './task-list.ts'
import { addSettingOptions } from './settings.ts'
import { ONE_SHOT, createCliLogger, parseTaskId, waitForSignal, withDatabase } from './runtime.ts'

export function registerInspectCommands(program: Command): void {
  const status = program
    .command('status')
    .summary('show one task: state, attempts, timings, error, result')
    .argument('<id>', 'task id')
    .option('--json', 'print the task as JSON')
    .addHelpText('after', examples(['taskrelay status 42', 'taskrelay status 42 --json | jq .lastError']))
  addSettingOptions(status, ONE_SHOT)
  status.action((id: string, flags: Record<string, unknown>) =>
    withDatabase(ONE_SHOT, flags, 'status', async (db, s) => {
      const taskId = parseTaskId(id)
      const detail = await readTaskDetail(db.tr, taskId)
      if (!detail) throw notFound(taskId, s.process.schema)
      const { task, attempts, dependsOn, groupKey, heldBack } = detail
      const workers = await readTaskWorkers(db.tr, task)
      console.log(flags.json ? toJson({ ...task, attempts, groupKey, heldBack, dependsOn, workers }) : renderStatus(detail, workers))
    }),
  )

  const stats = program
    .command('stats')
    .summary('queue depth per state, throughput, oldest pending task, recent failures')
    .description(
      'Tasks per queue and state. Unfinished states count every task; succeeded, failed and cancelled count the last hour. ' +
        '"pending" counts tasks due now, "scheduled" pending tasks whose run_at is in the future.',
    )
    .option('--json', 'print JSON (with --watch: one JSON object per line)')
    .option('--watch', 'refresh until Ctrl-C (in place on a terminal)')
    .option('--interval <duration>', 'with --watch: time between refreshes', '2s')
    .addHelpText('after', examples(['taskrelay stats', 'taskrelay stats --watch --interval 1s', 'taskrelay stats --json | jq .totals.failedLastHour']))
  addSettingOptions(stats, ONE_SHOT)
  stats.action((flags: Record<string, unknown>) => {
    // A usage error before connecting to anything.
    const intervalMs = parseDuration(String(flags.interval))
    if (intervalMs === null || intervalMs < 100 || intervalMs > MAX_TIMER_MS) {
      throw new CliError(`--interval: expected a duration from 100ms to ${formatDuration(MAX_TIMER_MS)} such as 2s, got "${flags.interval}".`, EXIT.usage)
    }
    return withDatabase(ONE_SHOT, flags, 'stats', async (db, s) => {
      const render = (snap: StatsSnapshot) => (flags.json ? JSON.stringify(snap, null, flags.watch ? 0 : 2) : renderStats(snap, s.process.schema))
      if (!flags.watch) {
        console.log(render(await readStats(db.tr)))
        return
      }
      const tty = process.stdout.isTTY === true && !flags.json
      let stopped = false
      void waitForSignal(createCliLogger({ logLevel: 'silent', logFormat: 'json' }), async () => {
        stopped = true
        await db.close()
      })
      if (tty) process.stdout.write('\x1b[2J')
      while (!stopped) {
        const text = render(await readStats(db.tr))
        if (tty) process.stdout.write(`\x1b[H${text}\n\n(every ${formatDuration(intervalMs)}; Ctrl-C to stop)\x1b[J`)
        else process.stdout.write(text + (flags.json ? '\n' : '\n\n'))
        await new Promise((r) => setTimeout(r, intervalMs))
      }
    })
  })

  const list = program
    .command('list')
    .summary('list tasks, newest first, with filters and paging')
    .option('--state <states>', `comma-separated states: ${TASK_STATES.join(', ')}`)
    .option('--task <name>', 'task name; * matches anything (email.*)')
    .option('--queue <queue>', 'queue name')
    .option('--since <age>', 'created within this long ago (30m, 1h, 7d)')
    .option('--older-than <age>', 'created more than this long ago')
    .option('--limit <n>', 'rows per page (1-1000)', '50')
    .option('--offset <n>', 'skip this many rows (simple paging)')
    .option('--after <id>', 'rows older than task <id> (cursor paging: pass the id printed at the end of a page)')
    .option('--workflow <id>', 'only tasks of this workflow')
    .option('--json', 'print JSON: { tasks, nextAfter }')
    .addHelpText(
      'after',
      examples([
        'taskrelay list --state failed --since 1h',
        "taskrelay list --task 'email.*' --queue emails --limit 20",
        'taskrelay list --state pending,dispatched --older-than 10m     # stuck?',
        'taskrelay list --state failed --after 1200                     # next page',
      ]),
    )
  addSettingOptions(list, ONE_SHOT)
  list.action((flags: Record<string, unknown>) =>
    withDatabase(ONE_SHOT, flags, 'list', async (db, s) => {
      const filters = parseListFlags(flags)
      const page = await listTasks(db.tr, filters)
      if (flags.json) {
        console.log(toJson(page))
        return
      }
      if (page.tasks.length === 0) {
        console.log('no tasks match')
        return
      }
      console.log(renderList(page.tasks))
      if (page.nextAfter) {
        console.log(flags.offset !== undefined ? `\nmore: repeat with --offset ${filters.offset + filters.limit}` : `\nmore: repeat with --after ${page.nextAfter}`)
      }
    }),
  )

  const workers = program
    .command('workers')
    .summary('worker processes: queues, tasks held, last heartbeat')
    .description(
      'Worker processes that renew their row in <schema>.workers (every --presence-ms). A worker silent past --lost-after-ms ' +
        'is presumed dead and the sweeper retries the tasks it held; --all lists those too (kept for a day).',
    )
    .option('--all', 'also list workers that stopped renewing their row')
    .option('--json', 'print JSON')
    .addHelpText('after', examples(['taskrelay workers', 'taskrelay workers --all --json | jq ".[] | select(.alive | not)"']))
  addSettingOptions(workers, ONE_SHOT)
  workers.action((flags: Record<string, unknown>) =>
    withDatabase(ONE_SHOT, flags, 'workers', async (db) => {
      const list = await listWorkers(db.tr, { silent: flags.all === true })
      if (flags.json) return void console.log(toJson(list))
      console.log(list.length === 0 ? `no worker is running${flags.all ? ' or stopped in the last day without unregistering' : ''}` : renderWorkers(list))
    }),
  )
}

function renderWorkers(list: readonly WorkerInfo[]): string {
  const now = Date.now()
  const rows = list.map((w) => [
    w.id,
    w.alive ? 'alive' : 'silent',
    String(w.running),
    w.queues.join(','),
    formatAge(w.startedAt, now),
    formatAge(w.lastSeenAt, now),
  ])
  const head = ['worker', 'state', 'holds', 'queues', 'started', 'last seen']
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  return [head, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
}

export function notFound(id: string, schema: string): CliError {
  return new CliError(
    `task ${id} does not exist in schema "${schema}". Finished tasks are deleted after the sweeper's retention period ` +
      '(TASKRELAY_SWEEPER_RETENTION_MS, default 7 days); check the id and the schema (TASKRELAY_SCHEMA), or find tasks with `taskrelay list`.',
  )
}
