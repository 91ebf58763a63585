/**
 * What PostgreSQL cannot store, found before it aborts a transaction.
 *
 * jsonb refuses the escape \u0000 (22P05) and a lone UTF-16 surrogate such as
 * \ud800 (22P02); JSON.stringify writes both as escapes, and a lone surrogate
 * is what `str.slice()` leaves when it cuts an emoji in half. text columns
 * refuse NUL too (22021).
 */

// An escape that is not itself escaped: an even run of backslashes, then \u0000 or \ud800-\udfff.
// JSON.stringify writes well-formed surrogate pairs as they are, so any escaped surrogate is a lone one.
const UNSTORABLE_ESCAPE = /(?<!\\)(?:\\\\)*\\u(0000|d[89a-f][0-9a-f]{2})/i

/**
 * Why `json` (a JSON.stringify result) cannot go into a jsonb column, with the
 * path of the first offending string (`.a.b[2]`, `(key)` for an object key),
 * or null when it can.
 */
export function jsonbProblem(json: string): string | null {
  const m = UNSTORABLE_ESCAPE.exec(json)
  if (!m) return null
  const what = m[1] === '0000' ? 'the NUL character (\\u0000)' : `a lone UTF-16 surrogate (\\u${m[1]!.toLowerCase()})`
  const path = pathOfUnstorable(JSON.parse(json) as unknown, '')
  return `${path ? `${path}: ` : ''}contains ${what}, which PostgreSQL cannot store; remove it, or make the text well-formed with str.toWellFormed()`
}

function isUnstorable(s: string): boolean {
  return s.includes('\u0000') || !s.isWellFormed()
}

function pathOfUnstorable(value: unknown, path: string): string | null {
  if (typeof value === 'string') return isUnstorable(value) ? path : null
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = pathOfUnstorable(value[i], `${path}[${i}]`)
      if (found !== null) return found
    }
    return null
  }
  if (value !== null && typeof value === 'object') {
    for (const [key, v] of Object.entries(value)) {
      if (isUnstorable(key)) return `${path}(key)`
      const found = pathOfUnstorable(v, `${path}.${key}`)
      if (found !== null) return found
    }
  }
  return null
}

/** `text` made storable: NUL and lone surrogates become U+FFFD. */
export function storableText(text: string): string {
  return text.toWellFormed().replaceAll('\u0000', '\uFFFD')
}

/** `text` cut to at most `max` UTF-16 units, marked when cut, never splitting a surrogate pair. */
export function truncateText(text: string, max: number): string {
  if (text.length <= max) return text
  const marker = `… [truncated: ${text.length} characters]`
  return (text.slice(0, Math.max(0, max - marker.length)) + marker).toWellFormed()
}
