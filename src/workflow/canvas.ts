import type { PayloadOf, ResultOf, Task } from '../define-task.ts'
import type { EnqueueOptions } from '../enqueue.ts'

/**
 * Workflow building blocks, as in Celery's canvas: a step (one task), a
 * chain (steps in order, each fed the previous one's result), a group
 * (steps side by side, their results gathered in order) and a chord (a
 * group, then a callback that receives every result). Nodes are plain
 * descriptions; TaskRelay.enqueueWorkflow() checks and writes them in one
 * statement, inside the caller's transaction when given one.
 *
 * Types carry what each node takes and gives: a step fed by its
 * predecessor must accept that predecessor's result (a chain that does not
 * fit is not a WorkflowNode, so enqueueWorkflow refuses it at compile time).
 */

/** Put as a step's payload: the step is fed its predecessor's result (after a group, the list of its results). */
export const previousResult: unique symbol = Symbol('taskrelay.previousResult')

/** Per-step options: the task's policy overrides of enqueue(), and a compensating step. */
export interface StepOptions {
  queue?: EnqueueOptions['queue']
  priority?: EnqueueOptions['priority']
  maxAttempts?: EnqueueOptions['maxAttempts']
  delayMs?: EnqueueOptions['delayMs']
  /**
   * Run if a later step of the workflow fails after this one succeeded
   * (the saga pattern): compensations run one after another, the latest
   * completed step's first. A step with a payload of its own.
   */
  compensate?: StepNode<unknown, unknown>
}

/** What every node has; `In` is what it takes from its predecessor (unknown: anything), `Out` what it gives. */
export interface WorkflowNode<In, Out> {
  readonly kind: 'step' | 'chain' | 'group'
  /** types only, never set: `In` as a parameter (contravariant), `Out` as a result */
  readonly types?: { readonly take: (input: In) => void; readonly give: () => Out }
}

export interface StepNode<In, Out> extends WorkflowNode<In, Out> {
  readonly kind: 'step'
  readonly task: Task
  /** true: fed its predecessor's result(s); false: `payload` is its own */
  readonly fed: boolean
  readonly payload: unknown
  readonly options: StepOptions
}

export interface ChainNode<In, Out> extends WorkflowNode<In, Out> {
  readonly kind: 'chain'
  readonly nodes: readonly AnyNode[]
}

export interface GroupNode<In, Out> extends WorkflowNode<In, Out> {
  readonly kind: 'group'
  readonly nodes: readonly AnyNode[]
}

export type AnyNode = WorkflowNode<any, any>
export type NodeInput<N> = N extends WorkflowNode<infer I, unknown> ? I : never
export type NodeOutput<N> = N extends WorkflowNode<never, infer O> ? O : never

/**
 * A step: `step(task, payload)` runs the task with its own payload;
 * `step(task)` or `step(task, previousResult, options)` feeds it its
 * predecessor's result (after a group: the results, in member order).
 */
export function step<T extends Task>(task: T): StepNode<PayloadOf<T>, ResultOf<T>>
export function step<T extends Task>(task: T, payload: typeof previousResult, options?: StepOptions): StepNode<PayloadOf<T>, ResultOf<T>>
export function step<T extends Task>(task: T, payload: PayloadOf<T>, options?: StepOptions): StepNode<unknown, ResultOf<T>>
export function step(task: Task, ...rest: unknown[]): StepNode<unknown, unknown> {
  const fed = rest.length === 0 || rest[0] === previousResult
  return { kind: 'step', task, fed, payload: fed ? undefined : rest[0], options: (rest[1] as StepOptions | undefined) ?? {} }
}

type Last<N extends readonly unknown[]> = N extends readonly [...unknown[], infer L] ? L : N[number]

/** Each node's result fits the next node's input: true, or where it does not. */
type ChainFits<N extends readonly unknown[]> = N extends readonly [infer A, infer B, ...infer Rest]
  ? [NodeOutput<A>] extends [NodeInput<B>]
    ? ChainFits<[B, ...Rest]>
    : { error: 'a step cannot take the result of the step before it'; result: NodeOutput<A>; expected: NodeInput<B> }
  : true

/** Steps in order; each step fed by its predecessor gets that predecessor's result. */
export function chain<const N extends readonly AnyNode[]>(
  ...nodes: N
): ChainFits<N> extends true ? ChainNode<NodeInput<N[0]>, NodeOutput<Last<N>>> : ChainFits<N> {
  return { kind: 'chain', nodes } as unknown as ChainFits<N> extends true ? ChainNode<NodeInput<N[0]>, NodeOutput<Last<N>>> : ChainFits<N>
}

type Intersect<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never

/** Steps side by side; the group's result is the list of their results, in member order. */
export function group<const N extends readonly AnyNode[]>(
  ...nodes: N
): GroupNode<Intersect<NodeInput<N[number]>>, { -readonly [K in keyof N]: NodeOutput<N[K]> }> {
  return { kind: 'group', nodes }
}

/** A group, then a callback fed the list of every member's result, run once all have succeeded. */
export function chord<G extends GroupNode<any, any>, C extends AnyNode>(
  members: G,
  callback: C,
): [NodeOutput<G>] extends [NodeInput<C>] ? ChainNode<NodeInput<G>, NodeOutput<C>> : ChainFits<[G, C]> {
  return chain(members, callback) as never
}

/** Options of a whole workflow. */
export interface WorkflowOptions {
  /** shown by status, `taskrelay workflow` and the workflow_status view; default: the first step's task name */
  name?: string
  /**
   * Enqueued once if a step fails with no attempts left (Celery's
   * link_error), after the compensations are enqueued; its payload gets
   * `workflowId`, `failedTaskId` and `error` (the failed step's message) added.
   */
  onError?: StepNode<unknown, unknown>
  /**
   * Add these steps to an existing, unfinished workflow instead of starting
   * a new one (a handler growing its own workflow: `addTo: ctx.task.workflowId`,
   * in the transaction it completes in with ctx.complete). The workflow keeps
   * its name, error callback and result; `name` and `onError` are refused.
   */
  addTo?: string
}
