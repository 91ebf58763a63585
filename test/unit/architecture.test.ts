import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join, normalize } from 'node:path'
import { describe, expect, it } from 'vitest'

/**
 * The import graph of src/ (issue 14: "no import cycles, and no module
 * importing a layer above it"). Read with regular expressions, not the
 * compiler: every `from '…'`, `import '…'` and `import('…')` of a relative
 * path counts, type-only imports included — a type cycle still ties two
 * modules together and still has to be untied before either can move.
 *
 * The known exceptions below are listed edge by edge so they cannot grow
 * silently; an entry that no longer occurs fails too, so the list shrinks as
 * the work lands.
 */
const SRC = new URL('../../src/', import.meta.url).pathname

/**
 * Lowest first: a module may import its own layer and those before it. Each
 * file belongs to the layer of its longest matching entry (a folder ends in /).
 * The facade sits above the services on purpose: services take the narrow
 * TaskRelayContext (src/db/context.ts), never TaskRelay.
 */
const LAYERS: ReadonlyArray<readonly [layer: string, paths: readonly string[]]> = [
  ['core', ['errors.ts', 'duration.ts', 'jsonb.ts', 'task-state.ts', 'task-record.ts', 'clock.ts', 'wake-timer.ts', 'events.ts', 'logger.ts', 'config.ts', 'config/', 'redis/', 'otel/']],
  ['db', ['db/']],
  ['tasks', ['define-task.ts', 'queue-settings.ts', 'enqueue.ts', 'enqueue-coalescer.ts', 'scheduler/spec.ts']],
  // Workflows as data (canvas, plan, status): the facade, admin and CLI use them.
  ['workflows', ['workflow/']],
  // Schedules as data (validation, CRUD, firing): the facade's schedule() uses them.
  ['schedules', ['scheduler/']],
  ['services', ['service.ts', 'task-log.ts', 'metrics.ts', 'events/', 'relay/', 'worker/', 'sweeper/', 'scheduler/scheduler.ts']],
  ['admin', ['admin/']],
  ['facade', ['task-relay.ts']],
  ['dashboard', ['dashboard/']],
  ['cli', ['cli/']],
  ['entry', ['index.ts', 'testing.ts']],
]

/** Upward imports allowed, `from -> to`, each with the reason: none since issue 14. Keep it so. */
const KNOWN_UPWARD = new Map<string, string>([
])

/**
 * Item 3 (read models out of the CLI): the dashboard parses and renders in
 * its own words, so it imports nothing of the CLI. Empty since the read
 * models moved to src/admin/; keep it so.
 */
const KNOWN_DASHBOARD_TO_CLI = new Set<string>([])

/** Cycles allowed, as their sorted members joined by " ": none since issue 14. Keep it so. */
const KNOWN_CYCLES = new Map<string, string>([
])

const IMPORT_PATTERNS = [
  /^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]/gm,
  /^\s*import\s*['"]([^'"]+)['"]/gm,
  /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
]

/** Every src file (relative to src/, with /) and the src .ts files it imports. */
function importGraph(): Map<string, string[]> {
  const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' })
    .map((f) => f.split('\\').join('/'))
    .filter((f) => f.endsWith('.ts'))
    .sort()
  const graph = new Map<string, string[]>()
  for (const file of files) {
    const text = readFileSync(join(SRC, file), 'utf8')
    const targets = IMPORT_PATTERNS.flatMap((re) => [...text.matchAll(re)].map((m) => m[1]!))
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => normalize(join(dirname(file), spec)).split('\\').join('/'))
      .filter((target) => target.endsWith('.ts') && !target.startsWith('..'))
    graph.set(file, [...new Set(targets)].sort())
  }
  return graph
}

function layerOf(file: string): number {
  let best = -1
  let bestLength = 0
  LAYERS.forEach(([, paths], index) => {
    for (const p of paths) {
      const matches = p.endsWith('/') ? file.startsWith(p) : file === p
      if (matches && p.length > bestLength) [best, bestLength] = [index, p.length]
    }
  })
  return best
}

/** Strongly connected components with more than one member (or a self-import), by Tarjan. */
function cycles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const found: string[][] = []
  const visit = (v: string): void => {
    index.set(v, index.size)
    low.set(v, index.get(v)!)
    stack.push(v)
    onStack.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!))
      }
    }
    if (low.get(v) !== index.get(v)) return
    const component: string[] = []
    let w: string
    do {
      w = stack.pop()!
      onStack.delete(w)
      component.push(w)
    } while (w !== v)
    if (component.length > 1 || graph.get(v)?.includes(v)) found.push(component.sort())
  }
  for (const v of graph.keys()) if (!index.has(v)) visit(v)
  return found
}

const graph = importGraph()
const edges = [...graph].flatMap(([from, targets]) => targets.map((to) => ({ from, to, edge: `${from} -> ${to}` })))
const isDashboardToCli = (e: { from: string; to: string }): boolean => e.from.startsWith('dashboard/') && e.to.startsWith('cli/')

describe('architecture: the import graph of src/', () => {
  it('reads a plausible graph (the parser did not go blind)', () => {
    expect(graph.size).toBeGreaterThan(50)
    expect(graph.get('task-relay.ts')).toContain('db/connections.ts')
  })

  it('places every src file in a layer', () => {
    expect([...graph.keys()].filter((f) => layerOf(f) < 0)).toEqual([])
  })

  it('has no import cycles beyond the known ones', () => {
    const found = cycles(graph).map((c) => c.join(' '))
    expect(found.filter((c) => !KNOWN_CYCLES.has(c)), 'new import cycle').toEqual([])
    expect([...KNOWN_CYCLES.keys()].filter((c) => !found.includes(c)), 'fixed: remove it from KNOWN_CYCLES').toEqual([])
  })

  it('has no module importing a layer above its own, beyond the known ones', () => {
    const upward = edges.filter((e) => !isDashboardToCli(e) && layerOf(e.to) > layerOf(e.from)).map((e) => e.edge)
    const described = upward.map((edge) => `${edge} (${LAYERS[layerOf(edge.split(' -> ')[0]!)]![0]} -> ${LAYERS[layerOf(edge.split(' -> ')[1]!)]![0]})`)
    expect(described.filter((_, i) => !KNOWN_UPWARD.has(upward[i]!)), 'new upward import').toEqual([])
    expect([...KNOWN_UPWARD.keys()].filter((e) => !upward.includes(e)), 'fixed: remove it from KNOWN_UPWARD').toEqual([])
  })

  it('has nothing under src/dashboard/ importing src/cli/, beyond the known ones', () => {
    const found = edges.filter(isDashboardToCli).map((e) => e.edge)
    expect(found.filter((e) => !KNOWN_DASHBOARD_TO_CLI.has(e)), 'new dashboard -> cli import').toEqual([])
    expect([...KNOWN_DASHBOARD_TO_CLI].filter((e) => !found.includes(e)), 'fixed: remove it from KNOWN_DASHBOARD_TO_CLI').toEqual([])
  })
})

/** A string literal that starts like a statement and goes on like one: SQL text. */
const SQL_TEXT = /[`'"]\s*(?:select|insert\s+into|update|delete\s+from|with)\s[^`'"]*?\b(?:from|set|values|where|as)\b/i

describe('architecture: SQL lives in src/db/ (and migrations/)', () => {
  it('has no SQL text in any src file outside src/db/', () => {
    const offenders: string[] = []
    for (const file of readdirSync(SRC, { recursive: true, encoding: 'utf8' })) {
      if (!file.endsWith('.ts') || file.startsWith('db/') || file.startsWith(`db${'\\'}`)) continue
      readFileSync(join(SRC, file), 'utf8')
        .split('\n')
        .forEach((line, i) => {
          // Comments and the CLI's help examples (psql -c "...") are prose about SQL, not statements.
          if (/^\s*(\/\/|\*|\/\*)/.test(line) || line.includes('$ psql')) return
          if (SQL_TEXT.test(line)) offenders.push(`${file}:${i + 1}: ${line.trim().slice(0, 100)}`)
        })
    }
    expect(offenders).toEqual([])
  })
})
