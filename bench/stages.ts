/**
 * S5's stage split for taskrelay, from the task rows' own timestamps (one
 * clock: Postgres). Since issue 17 a task takes one of two paths:
 *  - direct: an idle worker heard the enqueue's NOTIFY and claimed the row
 *    from Postgres; task-claim-due.sql sets dispatched_at and started_at to
 *    the same now() in one statement, so they are equal;
 *  - via the relay: the relay's dispatch sets dispatched_at, the worker's
 *    claim of the Redis message sets started_at in a later transaction.
 * created_at is now() of the enqueue's transaction.
 */
import { fmt } from './common.ts'

export function stageSplitSql(schema: string): string {
  const ms = (a: string, b: string) => `extract(epoch from ${a} - ${b}) * 1000`
  const p50 = (expr: string, direct: boolean) =>
    `percentile_cont(0.5) within group (order by ${expr}) filter (where dispatched_at ${direct ? '=' : '<>'} started_at)`
  return `select
      count(*) filter (where dispatched_at = started_at)::int as direct,
      count(*) filter (where dispatched_at <> started_at)::int as relayed,
      ${p50(ms('started_at', 'created_at'), true)} as direct_enqueue_to_claim,
      ${p50(ms('dispatched_at', 'created_at'), false)} as enqueue_to_dispatch,
      ${p50(ms('started_at', 'dispatched_at'), false)} as dispatch_to_claim,
      ${p50(ms('started_at', 'created_at'), false)} as relay_enqueue_to_claim
    from "${schema}".tasks where started_at is not null`
}

/** The query's row as the cell's extra fields (ms; NaN where no task took that path). */
export function stageFields(row: Record<string, unknown>): Record<string, number> {
  const n = (k: string) => (row[k] === null || row[k] === undefined ? NaN : Number(row[k]))
  const total = n('direct') + n('relayed')
  return {
    directPct: total ? (n('direct') / total) * 100 : NaN,
    directEnqueueToClaimMs: n('direct_enqueue_to_claim'),
    // Names kept from before the direct path: older result files render the same way.
    enqueueToDispatchMs: n('enqueue_to_dispatch'),
    dispatchToClaimMs: n('dispatch_to_claim'),
    relayEnqueueToClaimMs: n('relay_enqueue_to_claim'),
  }
}

/** The S5 note for taskrelay's row. */
export function stageNote(x: Record<string, number>): string {
  if (x.directPct === undefined) {
    return `stages p50 (Postgres clock): enqueue tx → relay dispatch ${fmt(x.enqueueToDispatchMs)} ms, dispatch → worker claim ${fmt(x.dispatchToClaimMs)} ms`
  }
  const relayPct = Number.isFinite(x.directPct) ? 100 - x.directPct! : NaN
  return (
    `stages p50 (Postgres clock): direct from Postgres ${fmt(x.directPct, 0)} % of tasks, enqueue tx → claim ${fmt(x.directEnqueueToClaimMs)} ms; ` +
    `via relay ${fmt(relayPct, 0)} %, enqueue tx → dispatch ${fmt(x.enqueueToDispatchMs)} ms, dispatch → claim ${fmt(x.dispatchToClaimMs)} ms (enqueue tx → claim ${fmt(x.relayEnqueueToClaimMs)} ms)`
  )
}
