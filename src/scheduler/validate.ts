import { z } from 'zod/v4'
import { isTask, tasksByName, type Task } from '../define-task.ts'
import { prepareTask } from '../enqueue.ts'
import { maxAttemptsSchema, prioritySchema, queueNameSchema, strictOptions, TASK_NAME_PATTERN, taskNameSchema, zodProblems } from '../config.ts'
import { InvalidOptionsError, PayloadValidationError, ScheduleError, TaskRelayError } from '../errors.ts'
import { cronProblem, parseEvery, timezoneProblem, type ScheduleTiming } from './cron.ts'
import { MISFIRE_POLICIES, type MisfirePolicy, type ScheduleSource } from './spec.ts'

/** A schedule checked in full and ready for the upsert; nothing invalid gets this far. */
export interface ResolvedSchedule {
  name: string
  taskName: string
  timing: ScheduleTiming
  payloadJson: string
  queue: string | null
  priority: number | null
  maxAttempts: number | null
  misfire: MisfirePolicy
  overlap: boolean
  /** null: keep the stored value (true for a new schedule). */
  enabled: boolean | null
  source: ScheduleSource
}

const optionsSchema = strictOptions({
  queue: queueNameSchema.optional(),
  priority: prioritySchema.optional(),
  maxAttempts: maxAttemptsSchema.optional(),
})

// Schedule names follow the task-name rule.
const declaredSchema = strictOptions({
  name: taskNameSchema,
  cron: z.string().optional(),
  every: z.union([z.number(), z.string()], 'expected milliseconds (number) or a duration string like "30s"').optional(),
  timezone: z.string().optional(),
  payload: z.unknown().optional(),
  options: optionsSchema.optional(),
  misfire: z.enum(MISFIRE_POLICIES as ['skip', 'all', 'none']).optional(),
  overlap: z.boolean().optional(),
  enabled: z.boolean().optional(),
})

const apiSchema = declaredSchema.extend({
  task: z.union([z.custom<Task>(isTask), z.string().regex(TASK_NAME_PATTERN, 'expected a task from defineTask() or a task name')], 'expected a task from defineTask() or a task name'),
})

export interface ResolveContext {
  /** Known tasks by name: a task given by name must be one of them. */
  tasks: ReadonlyMap<string, Task>
  maxPayloadBytes: number
  /** The task that declares the schedule (defineTask({ schedules })); absent for tr.schedules.upsert(). */
  declaredBy?: Task
  now?: Date
}

/**
 * Check a schedule in full — shape, cron or interval, time zone, task, payload
 * against the task's schema, enqueue options — and throw one ScheduleError
 * listing every problem, before anything is written.
 */
export function resolveSchedule(spec: unknown, ctx: ResolveContext): ResolvedSchedule {
  const rawName = typeof (spec as { name?: unknown })?.name === 'string' ? (spec as { name: string }).name : null
  if (typeof spec !== 'object' || spec === null) throw new ScheduleError(null, ['expected a schedule object { name, cron | every, ... }'])
  const parsed = (ctx.declaredBy ? declaredSchema : apiSchema).safeParse(spec)
  if (!parsed.success) {
    const problems = zodProblems(parsed.error)
    if (ctx.declaredBy && 'task' in spec) problems.push(`task: not allowed in defineTask({ schedules }); the schedule belongs to task "${ctx.declaredBy.name}"`)
    throw new ScheduleError(rawName, problems)
  }
  const s = parsed.data
  const problems: string[] = []

  let timing: ScheduleTiming | null = null
  if (s.cron !== undefined && s.every !== undefined) problems.push('give cron or every, not both')
  else if (s.cron === undefined && s.every === undefined) problems.push('give cron (e.g. "0 3 * * *") or every (e.g. "5m")')
  else if (s.every !== undefined) {
    if (s.timezone !== undefined) problems.push('timezone: applies to cron schedules only; every is a plain interval')
    const every = parseEvery(s.every)
    if ('problem' in every) problems.push(`every: ${every.problem}`)
    else timing = { everyMs: every.ms }
  } else {
    const timezone = s.timezone ?? 'UTC'
    const tzProblem = timezoneProblem(timezone)
    if (tzProblem) problems.push(`timezone: ${tzProblem}`)
    const cron = s.cron!.trim()
    const cProblem = cronProblem(cron, tzProblem ? 'UTC' : timezone, ctx.now)
    if (cProblem) problems.push(`cron: ${cProblem}`)
    if (!tzProblem && !cProblem) timing = { cron, timezone }
  }

  const given = (s as { task?: Task | string }).task
  let task: Task | undefined
  if (ctx.declaredBy) task = ctx.declaredBy
  else if (isTask(given)) task = given
  else {
    task = ctx.tasks.get(given as string)
    if (!task) {
      problems.push(`task: unknown task "${String(given)}"; pass the handle from defineTask(), or include the task in the tasks given to this call`)
    }
  }

  let payloadJson = '{}'
  if (task) {
    try {
      payloadJson = prepareTask(task, s.payload ?? {}, s.options, ctx.maxPayloadBytes).payloadJson
    } catch (err) {
      problems.push(...payloadProblems(err))
    }
  }

  if (problems.length > 0 || !timing || !task) throw new ScheduleError(s.name, problems)
  return {
    name: s.name,
    taskName: task.name,
    timing,
    payloadJson,
    queue: s.options?.queue ?? null,
    priority: s.options?.priority ?? null,
    maxAttempts: s.options?.maxAttempts ?? null,
    misfire: s.misfire ?? 'skip',
    overlap: s.overlap ?? true,
    enabled: s.enabled ?? null,
    source: ctx.declaredBy ? 'code' : 'manual',
  }
}

function payloadProblems(err: unknown): string[] {
  if (err instanceof PayloadValidationError) {
    return err.issues.map((i) => `payload${i.path ? '.' + i.path : ''}: ${i.message} (schema of task "${err.taskName}")`)
  }
  if (err instanceof InvalidOptionsError) return err.problems.map((p) => `options.${p}`)
  if (err instanceof TaskRelayError) return [`payload: ${err.message}`]
  throw err
}

/** Two resolved schedules with the same name define the same thing. */
export function sameDefinition(a: ResolvedSchedule, b: ResolvedSchedule): boolean {
  const { payloadJson: pa, ...ra } = a
  const { payloadJson: pb, ...rb } = b
  // Compare payloads as values: key order in the source must not matter.
  return JSON.stringify(ra) === JSON.stringify(rb) && canonicalJson(JSON.parse(pa)) === canonicalJson(JSON.parse(pb))
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}

/** Tasks by name; the same name on two different handles is an error (which would fire?). */
export function taskMap(tasks: readonly Task[] | undefined, where: string): Map<string, Task> {
  const { byName, notTasks, conflicts } = tasksByName(tasks ?? [])
  const problems = [
    ...notTasks.map((i) => ({ i, text: `tasks.${i}: expected a task from defineTask()` })),
    ...conflicts.map((c) => ({ i: c.index, text: `tasks.${c.index}: two different tasks are named "${c.name}"` })),
  ]
  if (problems.length > 0) throw new InvalidOptionsError(where, problems.sort((a, b) => a.i - b.i).map((p) => p.text))
  return byName
}
