/**
 * Small text helpers for the CLI: durations out (in: src/duration.ts), ages, tables. Kept
 * dependency-free (a table is 20 lines; cli-table3 would pull in a tree).
 */

import { formatDuration } from '../duration.ts'

/** "3m ago" / "in 5s" relative to `now`. */
export function formatAge(date: Date | null | undefined, now = Date.now()): string {
  if (!date) return '-'
  const diff = now - date.getTime()
  return diff >= 0 ? `${formatDuration(diff)} ago` : `in ${formatDuration(-diff)}`
}

export function truncate(text: string, max: number): string {
  const oneLine = text.replace(/\s+/g, ' ')
  return oneLine.length <= max ? oneLine : oneLine.slice(0, Math.max(0, max - 1)) + '…'
}

export interface Column<R> {
  header: string
  value: (row: R) => string | number
  /** right-align (numbers) */
  right?: boolean
  /** cut longer cells to this many characters */
  max?: number
}

/** A plain, aligned text table: header, rule, rows. */
export function renderTable<R>(columns: readonly Column<R>[], rows: readonly R[]): string {
  const cells = rows.map((row) => columns.map((c) => truncate(String(c.value(row)), c.max ?? 200)))
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)))
  const line = (values: string[]) =>
    values
      .map((v, i) => (columns[i]!.right ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()
  return [line(columns.map((c) => c.header)), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n')
}

/** JSON for humans and scripts: dates as ISO strings, bigints as strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => (typeof v === 'bigint' ? String(v) : v), 2)
}

/** The "Examples:" block of a command's --help. */
export function examples(lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`
}
