/**
 * "Did you mean" for unknown names, shared by unknown option keys in code
 * (src/config/fields.ts strictOptions) and unknown TASKRELAY_* environment
 * variables (src/cli/settings.ts), so both suggest the same way.
 */

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = cur
    }
  }
  return row[b.length]!
}

/** Names other libraries use for our options: Levenshtein cannot see that retries means maxAttempts. */
const ALIASES: Record<string, readonly string[]> = {
  retries: ['maxAttempts'],
  attempts: ['maxAttempts'],
  timeout: ['timeoutMs'],
  delay: ['delayMs'],
  lease: ['leaseMs'],
}

/** The known name closest to `name` (at most 4 edits away), or null when none is close. */
export function closestName(name: string, known: Iterable<string>): string | null {
  const candidates = [...known]
  const alias = ALIASES[name]?.find((a) => candidates.includes(a))
  if (alias) return alias
  const best = candidates.map((k) => [k, editDistance(name, k)] as const).sort((a, b) => a[1] - b[1])[0]
  return best && best[1] <= 4 && best[1] < name.length ? best[0] : null
}
