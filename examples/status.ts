import { readFileSync } from 'node:fs'
import pg from 'pg'

/**
 * Print the SQL status queries of status-queries.sql and their results.
 *
 *   node examples/status.ts            # the overview queries
 *   node examples/status.ts 42         # ... and what happened to task 42
 *
 * Settings: DATABASE_URL, TASKRELAY_SCHEMA (default taskrelay).
 */
export interface StatusQuery {
  name: string
  question: string
  sql: string
}

/** The queries of status-queries.sql, by name, in file order. */
export function statusQueries(): StatusQuery[] {
  const text = readFileSync(new URL('./status-queries.sql', import.meta.url), 'utf8')
  return text
    .split(/^-- name: /m)
    .slice(1)
    .map((block) => {
      const [name, questionLine, ...rest] = block.split('\n')
      return { name: name!.trim(), question: questionLine!.replace(/^-- /, '').trim(), sql: rest.join('\n').trim() }
    })
}

/** The query for another schema and task id (the file uses taskrelay and 42, as a psql user would). */
export function forSchema(sql: string, schema: string, taskId?: string): { text: string; values: unknown[] } {
  const text = sql.replaceAll('taskrelay.', `"${schema.replaceAll('"', '""')}".`)
  return taskId === undefined ? { text, values: [] } : { text: text.replace(/ = 42\b/, ' = $1'), values: [taskId] }
}

/** The question as asked about this task ("What happened to task 7?"), not about the file's example 42. */
export function questionFor(q: StatusQuery, taskId?: string): string {
  return taskId === undefined ? q.question : q.question.replace(/\b42\b/, taskId)
}

/** Intervals (run_duration, waited) as psql prints them, e.g. 00:00:01.5, instead of pg's PostgresInterval objects. */
const INTERVAL_OID = 1186
const asPsqlPrints = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INTERVAL_OID ? (value: string) => value : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
}

if (import.meta.main) {
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' })
  const schema = process.env.TASKRELAY_SCHEMA ?? 'taskrelay'
  const taskId = process.argv[2]
  try {
    for (const q of statusQueries()) {
      const aboutOneTask = / = 42\b/.test(q.sql)
      if (aboutOneTask && taskId === undefined) continue
      const { text, values } = forSchema(q.sql, schema, aboutOneTask ? taskId : undefined)
      console.log(`\n-- ${questionFor(q, aboutOneTask ? taskId : undefined)}\n${text.replace('$1', String(taskId))}\n`)
      const res = await pool.query({ text, values, types: asPsqlPrints })
      if (res.rows.length === 0) console.log('(no rows)')
      else console.table(res.rows)
    }
  } finally {
    await pool.end()
  }
}
