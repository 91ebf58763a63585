import type { Command } from 'commander'
import { QueueHandle, listQueues, readQueue, type QueueInfo, type StoredRateLimit } from '../admin/queues.ts'
import type { QueueSettings, RateLimit } from '../queue-settings.ts'
import { formatDuration } from '../duration.ts'
import type { TaskRelay } from '../task-relay.ts'
import { CliError, EXIT } from './errors.ts'
import { examples, formatAge, renderTable, toJson } from './format.ts'
import { addSettingOptions } from './settings.ts'
import { ONE_SHOT, withDatabase } from './runtime.ts'

function rateText(r: StoredRateLimit | null): string {
  return r === null ? '-' : `${r.limit}/${formatDuration(r.perMs)}`
}

function stateText(q: QueueInfo): string {
  if (q.paused) return 'paused'
  if (q.pausedGroups.length > 0) return `active (paused groups: ${q.pausedGroups.join(', ')})`
  if (q.throttledUntil !== null) return `throttled ${formatAge(q.throttledUntil)}`
  return 'active'
}

/** "--concurrency 5" or "none" (clears it). */
function limitFlag(flag: string, v: unknown): number | null | undefined {
  if (v === undefined) return undefined
  const text = String(v)
  if (text === 'none') return null
  if (!/^-?\d+$/.test(text)) throw new CliError(`${flag}: expected a whole number or "none", got "${text}". Nothing was changed.`, EXIT.usage)
  return Number(text)
}

/** "--rate 100/1m" or "none". */
function rateFlag(flag: string, v: unknown): RateLimit | null | undefined {
  if (v === undefined) return undefined
  const text = String(v)
  if (text === 'none') return null
  const m = /^(-?\d+)\/(\S+)$/.exec(text)
  if (!m) throw new CliError(`${flag}: expected LIMIT/PERIOD such as 100/1m or 10/1s, or "none"; got "${text}". Nothing was changed.`, EXIT.usage)
  return { limit: Number(m[1]), per: m[2]! }
}

/** Refuse a queue taskrelay does not know (no tasks, settings or task types): most likely a typo. */
async function knownQueue(tr: TaskRelay, name: string, create = false): Promise<void> {
  if (create || (await readQueue(tr, name)) !== null) return
  const known = (await listQueues(tr)).map((q) => q.queue)
  throw new CliError(
    `no such queue "${name}": no tasks, settings or task types use it (known: ${known.length ? known.join(', ') : 'none'}). ` +
      'Check the name; to set up a queue before its first task, add --create. Nothing was changed.',
    EXIT.usage,
  )
}

export function registerQueueCommands(program: Command): void {
  const group = program
    .command('queues')
    .summary('list queues, set their limits and rates, pause or resume them')
    .description(
      'Flow control: settings in Postgres (taskrelay.queues) that every relay and worker applies within a round, no restart needed. ' +
        'Settings set here are kept when workers start with code that declares others (defineTask({ queueSettings })).',
    )
    .addHelpText('after', examples(['taskrelay queues list', 'taskrelay queues set emails --concurrency 5 --rate 100/1m', 'taskrelay queues pause emails']))

  const list = group.command('list').summary('every queue with its settings, state and unfinished tasks').option('--json', 'print JSON')
  list.addHelpText('after', examples(['taskrelay queues list', 'taskrelay queues list --json']))
  addSettingOptions(list, ONE_SHOT)
  list.action((flags: Record<string, unknown>) =>
    withDatabase(ONE_SHOT, flags, 'queues', async (db) => {
      const queues = await listQueues(db.tr)
      if (flags.json) return void console.log(toJson(queues))
      if (queues.length === 0) return void console.log('no queues yet: they appear with their first task, task type or settings')
      console.log(
        renderTable<QueueInfo>(
          [
            { header: 'QUEUE', value: (q) => q.queue, max: 40 },
            { header: 'STATE', value: stateText, max: 60 },
            { header: 'CONCURRENCY', value: (q) => q.concurrency ?? '-', right: true },
            { header: 'RATE', value: (q) => rateText(q.rateLimit) },
            { header: 'PER GROUP', value: (q) => q.groupConcurrency ?? '-', right: true },
            { header: 'GROUP RATE', value: (q) => rateText(q.groupRateLimit) },
            { header: 'DUE', value: (q) => q.due, right: true },
            { header: 'DELAYED', value: (q) => q.delayed, right: true },
            { header: 'IN FLIGHT', value: (q) => q.dispatched + q.running, right: true },
            { header: 'SOURCE', value: (q) => q.source },
          ],
          queues,
        ),
      )
    }),
  )

  const set = group
    .command('set')
    .summary("change a queue's limits and rates (applies within a second, on every worker)")
    .argument('<queue>', 'queue name')
    .option('--concurrency <n>', 'at most n tasks of the queue running at once, across all workers; "none" removes the limit')
    .option('--rate <limit/period>', 'at most limit starts per period, e.g. 100/1m; "none" removes it')
    .option('--group-concurrency <n>', 'at most n tasks of one group (groupKey) at once; "none" removes it')
    .option('--group-rate <limit/period>', 'at most limit starts per period for each group; "none" removes it')
    .option('--create', 'set up a queue that has no tasks or task types yet')
    .addHelpText('after', examples(['taskrelay queues set emails --concurrency 5', 'taskrelay queues set api-calls --rate 100/1m --group-rate 10/1m', 'taskrelay queues set emails --concurrency none']))
  addSettingOptions(set, ONE_SHOT)
  set.action((name: string, flags: Record<string, unknown>) => {
    const settings: QueueSettings = {}
    const concurrency = limitFlag('--concurrency', flags.concurrency)
    const rate = rateFlag('--rate', flags.rate)
    const groupConcurrency = limitFlag('--group-concurrency', flags.groupConcurrency)
    const groupRate = rateFlag('--group-rate', flags.groupRate)
    if (concurrency !== undefined) settings.concurrency = concurrency
    if (rate !== undefined) settings.rateLimit = rate
    if (groupConcurrency !== undefined) settings.groupConcurrency = groupConcurrency
    if (groupRate !== undefined) settings.groupRateLimit = groupRate
    if (Object.keys(settings).length === 0) {
      throw new CliError('give at least one of --concurrency, --rate, --group-concurrency, --group-rate. Nothing was changed.', EXIT.usage)
    }
    return withDatabase(ONE_SHOT, flags, 'queues', async (db) => {
      await knownQueue(db.tr, name, flags.create === true)
      const q = await new QueueHandle(db.tr, name).configure(settings)
      console.log(
        `queue "${q.queue}": concurrency ${q.concurrency ?? 'unlimited'}, rate ${rateText(q.rateLimit)}, ` +
          `per group ${q.groupConcurrency ?? 'unlimited'}, group rate ${rateText(q.groupRateLimit)}`,
      )
    })
  })

  for (const action of ['pause', 'resume'] as const) {
    const c = group
      .command(action)
      .summary(action === 'pause' ? 'start nothing new of a queue (or one group); running tasks finish' : 'start tasks of a paused queue (or group) again')
      .argument('<queue>', 'queue name')
      .option('--group <key>', 'only this group of the queue')
      .addHelpText('after', examples([`taskrelay queues ${action} emails`, `taskrelay queues ${action} imports --group tenant-7`]))
    addSettingOptions(c, ONE_SHOT)
    c.action((name: string, flags: Record<string, unknown>) =>
      withDatabase(ONE_SHOT, flags, 'queues', async (db) => {
        await knownQueue(db.tr, name)
        const handle = new QueueHandle(db.tr, name)
        const options = flags.group === undefined ? {} : { group: String(flags.group) }
        const what = flags.group === undefined ? `queue "${name}"` : `group "${String(flags.group)}" of queue "${name}"`
        if (action === 'pause') {
          await handle.pause(options)
          return void console.log(`${what} paused: nothing new starts; running tasks finish`)
        }
        const resumed = await handle.resume(options)
        console.log(resumed ? `${what} resumed` : `${what} was not paused`)
      }),
    )
  }
}
