import pg from 'pg'

/**
 * An independent ledger of handler runs, kept in Postgres tables of the
 * test's schema but written and read only by test code, never by taskrelay:
 *
 *   produced(n, task_id)  one row per task the producer enqueued, written in
 *                         the SAME transaction as the enqueue, so it holds
 *                         exactly the committed tasks (rolled-back ones vanish
 *                         with their task rows).
 *   ledger(run_id, ...)   one row per handler run: written (and committed)
 *                         before the handler does its work, finished when the
 *                         handler stops, whatever the outcome.
 *
 * From these, `checkLedger` finds lost tasks (produced, never run to
 * success), runs of tasks never produced (a rolled-back enqueue ran),
 * duplicate runs, two runs of one attempt, and two runs of one task that
 * overlapped in time (the "never concurrent" promise). Times are epoch ms
 * from Date.now() of the processes on this machine (one realtime clock).
 *
 * Handlers write through their own pool with an application_name that the
 * chaos code never terminates: the ledger is the instrument, not the
 * system under test.
 */

export const LEDGER_APPLICATION_NAME = 'tr_ledger'

function q(schema: string): string {
  return `"${schema.replaceAll('"', '""')}"`
}

export async function createLedgerTables(db: pg.Pool | pg.Client, schema: string): Promise<void> {
  await db.query(`
    create table if not exists ${q(schema)}.produced (
      n       bigint primary key,
      task_id bigint not null unique
    );
    create table if not exists ${q(schema)}.ledger (
      run_id       text primary key,
      task_id      bigint not null,
      n            bigint not null,
      attempt      int not null,
      pid          int not null,
      run_started  double precision not null,
      run_finished double precision,
      -- ok | error | aborted | killed (process SIGKILLed mid-run, finished = time of death)
      outcome      text
    );
    create index if not exists ledger_task_idx on ${q(schema)}.ledger (task_id);
  `)
}

/** In the producer: record committed tasks inside the caller's transaction. */
export async function recordProduced(client: pg.ClientBase, schema: string, rows: Array<{ n: number; taskId: string }>): Promise<void> {
  if (rows.length === 0) return
  await client.query(`insert into ${q(schema)}.produced (n, task_id) select * from unnest($1::bigint[], $2::bigint[])`, [
    rows.map((r) => r.n),
    rows.map((r) => r.taskId),
  ])
}

interface StartRow {
  runId: string
  taskId: string
  n: number
  attempt: number
  started: number
  done: () => void
  fail: (err: Error) => void
}
interface FinishRow {
  runId: string
  finished: number
  outcome: string
  done: () => void
  fail: (err: Error) => void
}

/**
 * Used inside worker processes. `start()` resolves once the run is durably
 * recorded (group commit: concurrent handlers share one INSERT), so a run
 * whose process is SIGKILLed a moment later is still in the ledger.
 */
export class LedgerWriter {
  readonly #pool: pg.Pool
  readonly #schema: string
  #seq = 0
  #starts: StartRow[] = []
  #finishes: FinishRow[] = []
  #flushing: Promise<void> | null = null
  #timer: NodeJS.Timeout | null = null

  constructor(databaseUrl: string, schema: string) {
    const url = new URL(databaseUrl)
    url.searchParams.set('application_name', LEDGER_APPLICATION_NAME)
    this.#pool = new pg.Pool({ connectionString: url.toString(), max: 4 })
    this.#pool.on('error', () => {})
    this.#schema = schema
  }

  /** Record the start of a run; resolves with its id once committed. */
  async start(taskId: string, n: number, attempt: number): Promise<string> {
    const runId = `${process.pid}:${++this.#seq}`
    const started = Date.now()
    await new Promise<void>((done, fail) => {
      this.#starts.push({ runId, taskId, n, attempt, started, done, fail })
      this.#schedule()
    })
    return runId
  }

  /** Record the end of a run (after the handler's work, whatever the outcome). */
  async finish(runId: string, outcome: 'ok' | 'error' | 'aborted'): Promise<void> {
    const finished = Date.now()
    await new Promise<void>((done, fail) => {
      this.#finishes.push({ runId, finished, outcome, done, fail })
      this.#schedule()
    })
  }

  #schedule(): void {
    if (this.#flushing || this.#timer) return
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#flushing = this.#flush().finally(() => {
        this.#flushing = null
        if (this.#starts.length || this.#finishes.length) this.#schedule()
      })
    }, 1)
  }

  async #flush(): Promise<void> {
    const starts = this.#starts.splice(0)
    const finishes = this.#finishes.splice(0)
    const s = q(this.#schema)
    // The instrument must not drop records: retry until written.
    for (let tries = 0; ; tries++) {
      try {
        if (starts.length) {
          await this.#pool.query(
            `insert into ${s}.ledger (run_id, task_id, n, attempt, pid, run_started)
             select r, t, n, a, $5, st from unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[], $6::float8[]) as x(r, t, n, a, st)
             on conflict (run_id) do nothing`,
            [starts.map((r) => r.runId), starts.map((r) => r.taskId), starts.map((r) => r.n), starts.map((r) => r.attempt), process.pid, starts.map((r) => r.started)],
          )
          for (const r of starts.splice(0)) r.done()
        }
        if (finishes.length) {
          await this.#pool.query(
            `update ${s}.ledger l set run_finished = f.fin, outcome = f.o
               from unnest($1::text[], $2::float8[], $3::text[]) as f(r, fin, o) where l.run_id = f.r`,
            [finishes.map((f) => f.runId), finishes.map((f) => f.finished), finishes.map((f) => f.outcome)],
          )
          for (const f of finishes.splice(0)) f.done()
        }
        return
      } catch (err) {
        if (tries >= 50) {
          for (const r of starts) r.fail(err as Error)
          for (const f of finishes) f.fail(err as Error)
          return
        }
        await new Promise((r) => setTimeout(r, 100))
      }
    }
  }

  async close(): Promise<void> {
    while (this.#flushing || this.#timer || this.#starts.length || this.#finishes.length) {
      await (this.#flushing ?? new Promise((r) => setTimeout(r, 5)))
    }
    await this.#pool.end()
  }
}

/** The test saw this process die (SIGKILL): its unfinished runs ended no later than `atMs`. */
export async function markProcessDead(db: pg.Pool, schema: string, pid: number, atMs: number): Promise<number> {
  const res = await db.query(
    `update ${q(schema)}.ledger set run_finished = $2, outcome = 'killed' where pid = $1 and run_finished is null`,
    [pid, atMs],
  )
  return res.rowCount ?? 0
}

export interface LedgerReport {
  produced: number
  /** ledger rows */
  runs: number
  /** produced tasks with at least one run that finished ok */
  completed: number
  /** produced n with no successful run */
  lost: number[]
  /** runs of n that were never produced (e.g. an enqueue that was rolled back) */
  unexpected: number[]
  /** tasks with more than one run */
  duplicates: Array<{ taskId: string; runs: number }>
  /** two runs recorded for the same (task, attempt): a claim ran twice */
  sameAttempt: Array<{ taskId: string; attempt: number; runs: number }>
  /** pairs of runs of one task that overlapped in time */
  overlaps: Array<{ taskId: string; a: string; b: string; aStart: number; aEnd: number | null; bStart: number; bEnd: number | null }>
  /** runs never finished whose process was not declared dead */
  unfinished: Array<{ runId: string; taskId: string; pid: number }>
}

/** Read both tables and find every violation of the delivery promise. */
export async function checkLedger(db: pg.Pool, schema: string): Promise<LedgerReport> {
  const s = q(schema)
  const [produced, runs, lost, unexpected, duplicates, sameAttempt, overlaps, unfinished, completed] = await Promise.all([
    db.query(`select count(*)::int as c from ${s}.produced`),
    db.query(`select count(*)::int as c from ${s}.ledger`),
    db.query(
      `select p.n from ${s}.produced p
        where not exists (select 1 from ${s}.ledger l where l.n = p.n and l.task_id = p.task_id and l.outcome = 'ok')
        order by p.n`,
    ),
    db.query(
      `select distinct l.n from ${s}.ledger l
        where not exists (select 1 from ${s}.produced p where p.n = l.n and p.task_id = l.task_id) order by l.n`,
    ),
    db.query(`select task_id::text, count(*)::int as runs from ${s}.ledger group by task_id having count(*) > 1 order by task_id`),
    db.query(
      `select task_id::text, attempt, count(*)::int as runs from ${s}.ledger group by task_id, attempt having count(*) > 1 order by task_id`,
    ),
    db.query(
      `select a.task_id::text, a.run_id as a, b.run_id as b, a.run_started as a_start, a.run_finished as a_end,
              b.run_started as b_start, b.run_finished as b_end
         from ${s}.ledger a
         join ${s}.ledger b on a.task_id = b.task_id and a.run_id < b.run_id
        where a.run_started < coalesce(b.run_finished, 'infinity'::float8)
          and b.run_started < coalesce(a.run_finished, 'infinity'::float8)`,
    ),
    db.query(`select run_id, task_id::text, pid from ${s}.ledger where run_finished is null`),
    db.query(
      `select count(*)::int as c from ${s}.produced p
        where exists (select 1 from ${s}.ledger l where l.n = p.n and l.task_id = p.task_id and l.outcome = 'ok')`,
    ),
  ])
  return {
    produced: produced.rows[0].c,
    runs: runs.rows[0].c,
    completed: completed.rows[0].c,
    lost: lost.rows.map((r) => Number(r.n)),
    unexpected: unexpected.rows.map((r) => Number(r.n)),
    duplicates: duplicates.rows.map((r) => ({ taskId: r.task_id, runs: r.runs })),
    sameAttempt: sameAttempt.rows.map((r) => ({ taskId: r.task_id, attempt: r.attempt, runs: r.runs })),
    overlaps: overlaps.rows.map((r) => ({
      taskId: r.task_id,
      a: r.a,
      b: r.b,
      aStart: r.a_start,
      aEnd: r.a_end,
      bStart: r.b_start,
      bEnd: r.b_end,
    })),
    unfinished: unfinished.rows.map((r) => ({ runId: r.run_id, taskId: r.task_id, pid: r.pid })),
  }
}

/**
 * Cross-check the ledger against the task rows: every produced task's row
 * is in `state`, the row count equals the produced count (no row from a
 * rolled-back transaction), and no task ran more often than it was claimed
 * (runs <= attempt: every run needs its own fenced claim).
 */
export async function checkTaskRows(
  db: pg.Pool,
  schema: string,
  state = 'succeeded',
): Promise<{ rows: number; notInState: Array<{ id: string; state: string }>; orphanRows: number; overRun: Array<{ id: string; runs: number; attempt: number }> }> {
  const s = q(schema)
  const [rows, notInState, orphan, overRun] = await Promise.all([
    db.query(`select count(*)::int as c from ${s}.tasks`),
    db.query(`select id::text, state from ${s}.tasks where state <> $1 order by id limit 50`, [state]),
    db.query(`select count(*)::int as c from ${s}.tasks t where not exists (select 1 from ${s}.produced p where p.task_id = t.id)`),
    db.query(
      `select t.id::text, t.attempt, count(l.*)::int as runs from ${s}.tasks t join ${s}.ledger l on l.task_id = t.id
        group by t.id, t.attempt having count(l.*) > t.attempt limit 50`,
    ),
  ])
  return {
    rows: rows.rows[0].c,
    notInState: notInState.rows.map((r) => ({ id: r.id, state: r.state })),
    orphanRows: orphan.rows[0].c,
    overRun: overRun.rows.map((r) => ({ id: r.id, runs: r.runs, attempt: r.attempt })),
  }
}
