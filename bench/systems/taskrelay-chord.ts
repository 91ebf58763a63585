/**
 * taskrelay's half of S8 (issue 15): a chord of `members` no-op members and
 * its callback, enqueued with one enqueueWorkflow call, run by the bench's
 * usual relay + worker processes.
 *
 *   member { n }        records n in the ledger, returns n
 *   callback (results)  gets the members' results (task_input() at claim);
 *                       records base + members in the ledger when they are
 *                       members long and in order (base, base+1, …), else
 *                       -1 (an unknown number: the run is INVALID)
 *
 * Completion is taskrelay's own: waitFor() on the callback's id (LISTEN on
 * task_finished, after the finish statement committed). inspect() reads the
 * workflow's rows: the payload the callback was given, and where the time
 * went, on Postgres's clock.
 */
import type pgTypes from 'pg'
import { z } from 'zod'
import { chord, defineTask, group, step, type TaskRelay } from '../../src/index.ts'
import { nowMs, type BenchPayload } from '../common.ts'
import type { ChordRun } from './types.ts'

export const MEMBER_TASK = 'bench.chord.member'
export const CALLBACK_TASK = 'bench.chord.callback'

/** The two tasks; `members` is how many results the callback must get. */
export function chordTasks(onTask: (p: BenchPayload) => void = () => {}, members = 0) {
  const member = defineTask({
    name: MEMBER_TASK,
    payload: z.object({ n: z.number().int() }),
    maxAttempts: 3,
    run: (p): number => {
      onTask(p)
      return p.n
    },
  })
  const callback = defineTask({
    name: CALLBACK_TASK,
    payload: z.array(z.unknown()),
    maxAttempts: 3,
    run: (results): number => {
      const base = results[0]
      const ok = typeof base === 'number' && results.length === members && results.every((r, i) => r === base + i)
      onTask({ n: ok ? base + members : -1 })
      return results.length
    },
  })
  return { member, callback }
}

const { member, callback } = chordTasks()

/** The stages of one chord, from its rows (ms, Postgres's clock; created_at is the enqueue's transaction). */
function stagesSql(schema: string): string {
  const ms = (a: string, b: string) => `extract(epoch from ${a} - ${b}) * 1000`
  return `with m as (
      select min(created_at) as created, min(started_at) as first_start, max(finished_at) as last_finish,
             count(*) filter (where dispatched_at = started_at)::int as direct,
             count(*)::int as n
        from "${schema}".tasks where workflow_id = $1 and name = '${MEMBER_TASK}'
    ), c as (
      select dispatched_at, started_at, finished_at, payload from "${schema}".tasks where id = $2
    )
    select ${ms('m.first_start', 'm.created')} as to_first_member,
           ${ms('m.last_finish', 'm.first_start')} as members_run,
           ${ms('c.dispatched_at', 'm.last_finish')} as last_member_to_callback_dispatch,
           ${ms('c.started_at', 'c.dispatched_at')} as callback_dispatch_to_claim,
           ${ms('c.finished_at', 'c.started_at')} as callback_claim_to_finish,
           extract(epoch from c.finished_at) * 1000 as callback_finished_epoch_ms,
           m.direct, m.n,
           c.dispatched_at = c.started_at as callback_direct,
           c.payload
      from m, c`
}

/** One chord, built before the clock starts. */
export function prepareChord(tr: TaskRelay, pool: pgTypes.Pool, schema: string, members: number, base: number): ChordRun {
  const flow = chord(group(...Array.from({ length: members }, (_, i) => step(member, { n: base + i }))), step(callback))
  let ids: { id: string; callbackId: string } | null = null
  let doneAt = NaN
  return {
    async enqueue() {
      const { id, taskIds } = await tr.enqueueWorkflow(flow, { name: 'bench-chord' })
      ids = { id, callbackId: taskIds[taskIds.length - 1]! }
    },
    async completed(timeoutMs) {
      if (!ids) throw new Error('the chord was not enqueued')
      const record = await tr.waitFor(ids.callbackId, { timeoutMs })
      doneAt = nowMs()
      if (record.state !== 'succeeded') throw new Error(`the callback ended ${record.state}`)
    },
    async inspect(): Promise<{ problem: string | null; stages: Record<string, number> }> {
      if (!ids) return { problem: 'the chord was not enqueued', stages: {} }
      const r = (await pool.query(stagesSql(schema), [ids.id, ids.callbackId])).rows[0]
      if (!r) return { problem: 'no rows for the chord', stages: {} }
      const payload = r.payload as unknown
      const ok = Array.isArray(payload) && payload.length === members && payload.every((x, i) => x === base + i)
      const problem = ok ? null : `callback payload is not the ${members} results in order (got ${Array.isArray(payload) ? `${payload.length} items` : typeof payload})`
      return {
        problem: r.n !== members ? `${r.n} member rows, expected ${members}` : problem,
        stages: {
          toFirstMemberMs: Number(r.to_first_member),
          membersRunMs: Number(r.members_run),
          lastMemberToCallbackDispatchMs: Number(r.last_member_to_callback_dispatch),
          callbackDispatchToClaimMs: Number(r.callback_dispatch_to_claim),
          callbackClaimToFinishMs: Number(r.callback_claim_to_finish),
          // Postgres's finished_at (the finish transaction's start) to waitFor resolving here: same machine, same wall clock.
          finishToWaitForMs: doneAt - Number(r.callback_finished_epoch_ms),
          membersDirectPct: (r.direct / members) * 100,
          callbackDirect: r.callback_direct ? 1 : 0,
        },
      }
    },
  }
}
