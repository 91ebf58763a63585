import { isTask } from '../define-task.ts'
import { parseEnqueueOptions, prepareTaskAwaitable } from '../enqueue.ts'
import { InvalidWorkflowError, TaskRelayError } from '../errors.ts'
import type { AnyNode, StepNode, WorkflowOptions } from './canvas.ts'
import type { PlannedRow, PlannedWorkflow, StoredStep } from '../db/workflow-queries.ts'

export type { PlannedRow, PlannedWorkflow, StoredStep }

/** Most steps one workflow may hold (compensations and the error callback included). */
export const MAX_WORKFLOW_STEPS = 10_000

/** What precedes a node: nothing, one step, or a group's members (their results form a list). */
interface Tail {
  rows: number[]
  isGroup: boolean
}

/**
 * Flatten a workflow into rows and check everything before anything is
 * written: every step a task from defineTask(), payloads against their
 * schemas, options, no empty group or chain, a fed step with something
 * before it, at most MAX_WORKFLOW_STEPS rows. Cycles cannot be built: a
 * node only ever waits for nodes before it.
 */
export async function planWorkflow(root: AnyNode, options: WorkflowOptions, maxPayloadBytes: number): Promise<PlannedWorkflow> {
  const problems: string[] = []
  const rows: Array<PlannedRow | Promise<PlannedRow | null> | null> = []
  const pending: Array<Promise<unknown>> = []

  const stored = (s: StepNode<unknown, unknown>, where: string): Promise<StoredStep | null> =>
    Promise.resolve()
      .then(() => prepareTaskAwaitable(s.task, s.payload, pick(s.options), maxPayloadBytes))
      .then((p) => ({ name: p.name, queue: p.queue, payload: JSON.parse(p.payloadJson) as unknown, priority: p.priority, maxAttempts: p.maxAttempts }))
      .catch((err: unknown) => (problems.push(`${where}: ${describe(err)}`), null))

  const visit = (node: AnyNode, before: Tail, where: string): Tail => {
    if (node === null || typeof node !== 'object' || !['step', 'chain', 'group'].includes((node as { kind?: string }).kind ?? '')) {
      problems.push(`${where}: expected a step(), chain(), group() or chord(), got ${node === null ? 'null' : typeof node}`)
      return before
    }
    if (node.kind === 'chain' || node.kind === 'group') {
      const nodes = (node as unknown as { nodes: readonly AnyNode[] }).nodes
      if (nodes.length === 0) {
        problems.push(`${where}: an empty ${node.kind}; give it at least one step`)
        return before
      }
      if (node.kind === 'chain') return nodes.reduce((tail, n, i) => visit(n, tail, `${where} > chain step ${i + 1}`), before)
      const members = nodes.map((n, i) => {
        const tail = visit(n, before, `${where} > group member ${i + 1}`)
        if (tail.isGroup) problems.push(`${where} > group member ${i + 1}: ends in a group; a group member must end in one step (wrap it: chord(group(...), step(collect)))`)
        return tail.rows[0] ?? -1
      })
      return { rows: members, isGroup: true }
    }
    const s = node as StepNode<unknown, unknown>
    if (!isTask(s.task)) {
      problems.push(`${where}: not a task from defineTask() (got ${typeof s.task})`)
      return before
    }
    const at = `${where} (${s.task.name})`
    if (s.fed && before.rows.length === 0) problems.push(`${at}: takes its predecessor's result, but nothing comes before it; give it a payload`)
    const index = rows.length
    const compensation = s.options.compensate ? stored(s.options.compensate, `${at} compensation`) : Promise.resolve(null)
    pending.push(compensation)
    rows.push(planRow(s, before, compensation, maxPayloadBytes).catch((err: unknown) => (problems.push(`${at}: ${describe(err)}`), null)))
    return { rows: [index], isGroup: false }
  }

  const tail = visit(root, { rows: [], isGroup: false }, 'workflow')
  const onError = options.onError ? await stored(options.onError, 'onError') : null
  const resolved = await Promise.all(rows)
  await Promise.all(pending)
  if (resolved.length > MAX_WORKFLOW_STEPS) problems.push(`${resolved.length} steps; a workflow holds at most ${MAX_WORKFLOW_STEPS}`)
  if (options.name !== undefined && (typeof options.name !== 'string' || options.name.length === 0 || options.name.length > 200)) {
    problems.push('name: a string of 1-200 characters')
  }
  if (problems.length > 0 || resolved.some((r) => r === null)) throw new InvalidWorkflowError(problems)
  const planned = resolved as PlannedRow[]
  return { name: options.name ?? planned[0]!.name, rows: planned, resultRows: tail.rows, resultIsList: tail.isGroup, onError }
}

async function planRow(s: StepNode<unknown, unknown>, before: Tail, compensation: Promise<StoredStep | null>, maxPayloadBytes: number): Promise<PlannedRow> {
  const opts = pick(s.options)
  const prepared = s.fed
    ? { ...parseEnqueueOptions(`step options of "${s.task.name}"`, opts), payloadJson: 'null', name: s.task.name }
    : await prepareTaskAwaitable(s.task, s.payload, opts, maxPayloadBytes)
  return {
    name: s.task.name,
    queue: prepared.queue ?? s.task.policy.queue,
    payloadJson: prepared.payloadJson,
    priority: prepared.priority ?? s.task.policy.priority,
    maxAttempts: prepared.maxAttempts ?? s.task.policy.maxAttempts,
    delayMs: prepared.delayMs ?? 0,
    dependsOn: [...before.rows],
    input: s.fed ? (before.isGroup ? 'results' : 'result') : null,
    compensation: await compensation,
  }
}

/** The enqueue options of a step's options (compensate is the workflow's business). */
function pick(o: StepNode<unknown, unknown>['options']) {
  const { compensate: _, ...enqueue } = o ?? {}
  return enqueue
}

function describe(err: unknown): string {
  if (err instanceof TaskRelayError) return err.message
  throw err // not bad input: a bug, let it surface
}
