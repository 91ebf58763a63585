import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { relaySettingsSchema, sweeperSettingsSchema, workerSettingsSchema } from '../../src/config.ts'
import { schedulerSettingsSchema } from '../../src/config.ts'

/**
 * docs/api.md is written by hand from the TSDoc comments (typedoc cannot run
 * beside TypeScript 7). This test keeps it from going stale: every name the
 * package exports has an entry, and every option type has a table listing
 * exactly its keys — read from the TypeScript source for interfaces and from
 * the zod schemas for settings — so a new, renamed or removed option fails
 * here until docs/api.md says so.
 */
const SRC = new URL('../../src/', import.meta.url).pathname
const API = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8')

/** Names exported by a module's `export { … } from` / `export type { … } from` lists and its own `export function|class|const`. */
function exportedNames(file: string): string[] {
  const text = readFileSync(join(SRC, file), 'utf8')
  const fromLists = [...text.matchAll(/export\s+(?:type\s+)?\{([^}]*)\}\s*from/g)].flatMap((m) =>
    m[1]!
      .split(',')
      .map((n) => n.trim().replace(/^type\s+/, '').split(/\s+as\s+/).at(-1)!)
      .filter(Boolean),
  )
  const declared = [...text.matchAll(/^export\s+(?:async\s+)?(?:function|class|const|interface|type)\s+([A-Za-z_$][\w$]*)/gm)].map((m) => m[1]!)
  return [...new Set([...fromLists, ...declared])]
}

const SOURCES = readdirSync(SRC, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.ts'))
  .map((f) => readFileSync(join(SRC, f), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, ''))

const UTILITY_TYPES = new Set(['Partial', 'Omit', 'Pick', 'Readonly', 'Required'])

/** The keys an exported interface declares itself, and the types it extends (wherever in src/ it is declared). */
function interfaceMembers(name: string): { keys: string[]; bases: string[] } {
  const pattern = new RegExp(`export interface ${name}\\b`)
  const text = SOURCES.find((s) => pattern.test(s))
  if (!text) throw new Error(`no "export interface ${name}" in src/`)
  let i = text.search(pattern) + `export interface ${name}`.length
  // Generic parameters (which may say "extends" too) are not bases.
  if (text[i] === '<') i = skipBalanced(text, i)
  const open = text.indexOf('{', i)
  const bases = [...text.slice(i, open).matchAll(/[A-Z][\w$]*/g)].map((m) => m[0]).filter((b) => !UTILITY_TYPES.has(b))
  // The body's top level only: what is nested in (), [], {} or <> is a member's type, not a member.
  let top = ''
  for (let j = open + 1, depth = 0; j < text.length; j++) {
    const c = text[j]!
    if (c === '=' && text[j + 1] === '>') {
      j++
      continue
    }
    if (depth === 0) top += c
    if ('([{<'.includes(c)) depth++
    else if (')]}>'.includes(c)) {
      if (depth === 0) break
      depth--
    }
  }
  const keys = [...top.matchAll(/(?:^|[\n;,])\s*(?:readonly\s+)?([A-Za-z_$][\w$]*)\??\s*[:(<]/g)].map((m) => m[1]!)
  return { keys, bases }
}

function skipBalanced(text: string, at: number): number {
  let depth = 0
  for (let j = at; j < text.length; j++) {
    if (text[j] === '=' && text[j + 1] === '>') j++
    else if (text[j] === '<') depth++
    else if (text[j] === '>' && --depth === 0) return j + 1
  }
  return text.length
}

/** The keys of a settings schema (a strict object under .default()/refinements). */
function schemaKeys(schema: unknown): string[] {
  let s = schema as { shape?: Record<string, unknown>; def?: { innerType?: unknown; in?: unknown } }
  while (!s.shape) s = (s.def?.innerType ?? s.def?.in) as typeof s
  return Object.keys(s.shape)
}

/** The part of docs/api.md under the heading that names `name` (up to the next heading of the same or a higher level). */
function apiSection(name: string): string {
  const heading = new RegExp(`^(#{2,4}) \`${name}\`[^\\n]*$`, 'm').exec(API)
  expect(heading, `docs/api.md has a heading "### \`${name}\`"`).not.toBeNull()
  const rest = API.slice(heading!.index + heading![0].length)
  const next = new RegExp(`^#{2,${heading![1]!.length}} `, 'm').exec(rest)
  return rest.slice(0, next ? next.index : undefined)
}

/** Option keys documented in a section: the first cells of its table rows. */
function documentedKeys(section: string): string[] {
  return [...section.matchAll(/^\| `([A-Za-z_$][\w$]*)\??`/gm)].map((m) => m[1]!)
}

/** What to fix in docs/api.md so that the table under `name` lists exactly `keys`. */
function keyProblems(name: string, keys: readonly string[], documented: readonly string[]): string[] {
  return [
    ...keys.filter((k) => !documented.includes(k)).map((k) => `${name}: document \`${k}\``),
    ...documented.filter((k) => !keys.includes(k)).map((k) => `${name}: \`${k}\` is not an option (any more)`),
  ]
}

const PUBLIC = [...exportedNames('index.ts'), ...exportedNames('testing.ts')]
/** Interfaces whose every key is a user's option (or what a handler receives). */
const OPTION_INTERFACES = PUBLIC.filter((n) => /(Options|Spec|Settings)$|^Task(Definition|Policy|Context)$/.test(n) && SOURCES.some((s) => new RegExp(`export interface ${n}\\b`).test(s)))
const SETTINGS_SCHEMAS: Record<string, unknown> = {
  RelaySettings: relaySettingsSchema,
  WorkerSettings: workerSettingsSchema,
  SweeperSettings: sweeperSettingsSchema,
  SchedulerSettings: schedulerSettingsSchema,
}

describe('docs/api.md', () => {
  it('has an entry for every name exported by taskrelay and taskrelay/testing', () => {
    expect(PUBLIC.length).toBeGreaterThan(60)
    const missing = PUBLIC.filter((name) => !new RegExp(`^(#{2,4} \`${name}\\b|\\| \`${name}\\b)`, 'm').test(API))
    expect(missing, 'exported names without a heading or table row in docs/api.md').toEqual([])
  })

  it('names nothing the package no longer exports', () => {
    const headings = [...API.matchAll(/^#{2,4} `([A-Z][\w$]*|[a-z][\w$]*)`/gm)].map((m) => m[1]!)
    expect(headings.length).toBeGreaterThan(30)
    expect(headings.filter((h) => !PUBLIC.includes(h))).toEqual([])
  })

  it('lists exactly the keys of every option interface, and names the types it extends', () => {
    expect(OPTION_INTERFACES.length).toBeGreaterThanOrEqual(12)
    const stale: string[] = []
    for (const name of OPTION_INTERFACES) {
      const { keys, bases } = interfaceMembers(name)
      expect(keys.length, `${name} has keys`).toBeGreaterThan(0)
      const section = apiSection(name)
      stale.push(...keyProblems(name, keys, documentedKeys(section)))
      for (const base of bases) if (!section.includes(`\`${base}\``)) stale.push(`${name}: say that it takes every key of \`${base}\``)
    }
    expect(stale).toEqual([])
  })

  it('lists exactly the keys of every settings schema (the options of Relay, Worker, Sweeper and Scheduler)', () => {
    const stale = Object.entries(SETTINGS_SCHEMAS).flatMap(([name, schema]) => keyProblems(name, schemaKeys(schema), documentedKeys(apiSection(name))))
    expect(stale).toEqual([])
  })
})
