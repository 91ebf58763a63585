import { readFileSync } from 'node:fs'

/**
 * Hot-path SQL lives in src/db/sql/*.sql, one statement per file, so a DBA can
 * read it. `:"schema"` is replaced with the quoted schema name and
 * `:'schema'` with the schema as a string literal (psql's own syntax, so the
 * files also run in psql with -v schema=taskrelay).
 */
const cache = new Map<string, string>()

export function quoteIdent(name: string): string {
  return '"' + name.replaceAll('"', '""') + '"'
}

export function quoteLiteral(value: string): string {
  return "'" + value.replaceAll("'", "''") + "'"
}

export function withSchema(text: string, schema: string): string {
  return text.replaceAll(':"schema"', quoteIdent(schema)).replaceAll(":'schema'", quoteLiteral(schema))
}

/**
 * A Postgres array literal, '{a,b,c}', for elements that never need quoting:
 * integers, ids (digit strings), uuids, fixed words. node-pg quotes and
 * escapes every element of an array parameter, a visible share of a worker's
 * CPU at hundreds of rows per statement. Anything else goes as a JS array.
 */
export function plainArray(values: ReadonlyArray<string | number>): string {
  return '{' + values.join(',') + '}'
}

const resolved = new Map<string, string>()

export function loadSql(file: string, schema: string): string {
  const key = `${schema}/${file}`
  let text = resolved.get(key)
  if (text === undefined) {
    let raw = cache.get(file)
    if (raw === undefined) {
      raw = readFileSync(new URL(`./sql/${file}`, import.meta.url), 'utf8')
      cache.set(file, raw)
    }
    text = withSchema(raw, schema)
    resolved.set(key, text)
  }
  return text
}

/**
 * A statement with psql-style integer variables (`:batch_size`) written in as
 * literals: for limits fixed per process, so Postgres plans them knowing the
 * number (a `LIMIT $1` makes the cached generic plan guess, and guess badly).
 * Compose once and keep the text: each distinct text is prepared separately.
 */
export function withIntegers(text: string, values: Readonly<Record<string, number>>): string {
  return text.replace(/(?<!:):([a-z_]+)\b/g, (whole, name: string) => {
    const value = values[name]
    if (value === undefined) return whole
    if (!Number.isSafeInteger(value)) throw new TypeError(`:${name} must be an integer, got ${value}`)
    return String(value)
  })
}

const trimmed = new Map<string, string>()

/**
 * A statement without its optional part `section`: the lines from
 * `-- begin <section>` to `-- end <section>`. For statements whose rare
 * cases (a retry in an outcome batch) would cost every execution: each CTE
 * is planned, opened and run even when it has no rows.
 */
export function loadSqlWithout(file: string, schema: string, section: string): string {
  const key = `${schema}/${file}/${section}`
  let text = trimmed.get(key)
  if (text === undefined) {
    const full = loadSql(file, schema)
    text = full.replace(new RegExp(`^-- begin ${section}\\b[^\\n]*\\n[\\s\\S]*?^-- end ${section}\\n`, 'm'), '')
    if (text === full) throw new Error(`${file} has no section "${section}"`)
    trimmed.set(key, text)
  }
  return text
}

/** The outcome batch (task-finish-batch.sql): its retry part only when a retry or a throttle is in it. */
export function finishStatement(schema: string, withRetries: boolean): string {
  return withRetries ? loadSql('task-finish-batch.sql', schema) : loadSqlWithout('task-finish-batch.sql', schema, 'retries')
}

const composed = new Map<string, string>()

/**
 * An enqueue statement (task-insert-*.sql) with the relay wake-up
 * (wake-idle-relays.sql) folded in: the wake-up is an uncorrelated subquery,
 * so it runs once per statement however many rows it inserts, and the rows
 * come back as the INSERT returns them (in input order).
 */
export function enqueueStatement(file: string, schema: string): string {
  const key = `${schema}/${file}`
  let text = composed.get(key)
  if (text === undefined) {
    text = [
      'with inserted as (',
      loadSql(file, schema).trim(),
      '), woken as (',
      loadSql('wake-idle-relays.sql', schema).trim(),
      ')',
      'select * from inserted where (select count(*) from woken) >= 0',
    ].join('\n')
    composed.set(key, text)
  }
  return text
}

/** Channels the schema's triggers and services notify on. */
export function channels(schema: string) {
  return {
    /** new or re-queued pending tasks: wakes relays */
    taskReady: `${schema}.task_ready`,
    /** comma-separated ids that reached a final state: wakes waitFor */
    taskFinished: `${schema}.task_finished`,
    /** schedules changed: wakes schedulers */
    schedulesChanged: `${schema}.schedules_changed`,
  }
}
