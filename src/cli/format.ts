/**
 * Small text helpers for the CLI: durations in and out, ages, tables. Kept
 * dependency-free (a table is 20 lines; cli-table3 would pull in a tree).
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

/**
 * Parse "1500", "500ms", "30s", "5m", "1h30m", "7d" into milliseconds; a bare
 * number is milliseconds. Returns null for anything else (callers say what
 * was expected, with the setting's name).
 */
export function parseDuration(text: string): number | null {
  const s = text.trim().toLowerCase()
  if (/^\d+$/.test(s)) return Number(s)
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d|w))+$/.test(s)) return null
  let total = 0
  for (const [, n, unit] of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) total += Number(n) * UNIT_MS[unit!]!
  return Math.round(total)
}

/** 1234 → "1.2s", 90_000 → "1m30s", 0 → "0ms". */
export function formatDuration(ms: number): string {
  const sign = ms < 0 ? '-' : ''
  let rest = Math.abs(Math.round(ms))
  if (rest < 1000) return `${sign}${rest}ms`
  if (rest < 60_000) return `${sign}${(rest / 1000).toFixed(rest < 10_000 ? 1 : 0)}s`
  const parts: string[] = []
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`)
      rest %= size
    }
    if (parts.length === 2) break
  }
  return sign + parts.join('')
}

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
