import { parseListInput, type ListFilters, type ListInput, type ListedTask } from '../admin/task-list.ts'
import { InvalidFiltersError } from '../errors.ts'
import { CliError, EXIT } from './errors.ts'
import { formatAge, renderTable } from './format.ts'

/** `taskrelay list`: filters from flags (checked in src/admin/task-list.ts), and the table. */
const FIELDS = ['state', 'task', 'queue', 'since', 'olderThan', 'limit', 'offset', 'after', 'workflow'] as const

/** The flag that sets a filter field: olderThan → --older-than. */
const flagName = (field: string) => `--${field.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`

export function parseListFlags(flags: Record<string, unknown>): ListFilters {
  const input: ListInput = {}
  for (const k of FIELDS) if (typeof flags[k] === 'string') input[k] = flags[k]
  try {
    return parseListInput(input)
  } catch (err) {
    if (!(err instanceof InvalidFiltersError)) throw err
    const lines = err.problems.map((p) => `  - ${p.fields.map(flagName).join(' and ')}: ${p.message}`)
    throw new CliError(`invalid filters:\n${lines.join('\n')}\nSee \`taskrelay list --help\`.`, EXIT.usage, { cause: err })
  }
}

export function renderList(tasks: ListedTask[]): string {
  const now = Date.now()
  return renderTable<ListedTask>(
    [
      { header: 'ID', value: (t) => t.id, right: true },
      { header: 'TASK', value: (t) => t.name, max: 40 },
      { header: 'QUEUE', value: (t) => t.queue, max: 20 },
      { header: 'STATE', value: (t) => t.state },
      { header: 'ATTEMPT', value: (t) => `${t.attempt}/${t.maxAttempts}`, right: true },
      { header: 'CREATED', value: (t) => formatAge(t.createdAt, now) },
      {
        header: 'FINISHED / RUNS',
        value: (t) => (t.finishedAt ? formatAge(t.finishedAt, now) : t.state === 'pending' && t.runAt.getTime() > now ? formatAge(t.runAt, now) : '-'),
      },
      { header: 'ERROR', value: (t) => t.error ?? '', max: 60 },
      // Only when a task on the page is held back by its queue (paused, at its limit, rate-limited).
      ...(tasks.some((t) => t.heldBack !== null && !t.heldBack.startsWith('delayed'))
        ? [{ header: 'WAITING FOR', value: (t: ListedTask) => (t.heldBack?.startsWith('delayed') ? '' : (t.heldBack ?? '')), max: 60 }]
        : []),
    ],
    tasks,
  )
}
