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

if (import.meta.main) {
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' })
  const schema = process.env.TASKRELAY_SCHEMA ?? 'taskrelay'
  const taskId = process.argv[2]
  try {
    for (const q of statusQueries()) {
      const aboutOneTask = / = 42\b/.test(q.sql)
      if (aboutOneTask && taskId === undefined) continue
      const { text, values } = forSchema(q.sql, schema, aboutOneTask ? taskId : undefined)
      console.log(`\n-- ${q.question}\n${text.replace('$1', String(taskId))}\n`)
      const res = await pool.query(text, values)
      if (res.rows.length === 0) console.log('(no rows)')
      else console.table(res.rows)
    }
  } finally {
    await pool.end()
  }
}
