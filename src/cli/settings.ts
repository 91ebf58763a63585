import type { z } from 'zod/v4'
import { Option, type Command } from 'commander'
import { closestName, processSettingsSchema, type ProcessSettings, type RelaySettings, type SchedulerSettings, type SweeperSettings, type WorkerSettings } from '../config.ts'
import { redactSecrets, secretsIn } from '../logger.ts'
import { SettingsError } from './errors.ts'
import { parseDuration } from '../duration.ts'
import {
  COMPONENTS,
  COMPONENT_SCHEMAS,
  SETTING_DEFS,
  defaultText,
  requestedDefs,
  unwrap,
  type Component,
  type Group,
  type ProcessKey,
  type SettingDef,
  type SettingsRequest,
} from './settings-defs.ts'

/**
 * Resolving settings for one command: flags (commander's parsed options),
 * then environment variables, then defaults, validated by the zod schemas,
 * with every problem reported at once. The definitions (names, flags, env
 * vars, descriptions) are in settings-defs.ts.
 */
export * from './settings-defs.ts'
/** The one redaction function (src/logger.ts), as the CLI's settings module redacts with it. */
export { redactSecrets }

/** Group headings in --help. */
const HELP_GROUPS: Record<Group, string> = {
  process: 'Connection and logging (flag, else environment variable, else default):',
  relay: 'Relay settings:',
  worker: 'Worker settings:',
  sweeper: 'Sweeper settings:',
  scheduler: 'Scheduler settings:',
}

/** Add the flags of these settings to a command, with env var names and defaults in the help. */
export function addSettingOptions(cmd: Command, req: SettingsRequest): Command {
  for (const def of requestedDefs(req)) {
    const value = def.kind === 'ms' ? 'ms' : def.kind === 'list' ? 'list' : def.kind === 'url' ? 'url' : def.kind === 'int' ? 'n' : def.kind === 'bool' ? 'true|false' : 'value'
    // The CLI's worker serves the loaded tasks' queues unless told otherwise (services.ts).
    const dflt = def.key === 'worker.queues' ? "the tasks' queues" : (req.defaults?.[def.field as ProcessKey] ?? defaultText(def))
    const extra = [`env ${def.env}`, dflt ? `default ${def.kind === 'url' ? redactSecrets(dflt) : dflt}` : '']
      .filter(Boolean)
      .join(', ')
    const option = new Option(`--${def.flag} <${value}>`, `${def.description} [${extra}]`).helpGroup(HELP_GROUPS[def.group])
    if (def.kind === 'enum') option.choices((unwrap(def.schema) as unknown as { options: string[] }).options)
    cmd.addOption(option)
  }
  return cmd
}

export interface ResolvedSettings {
  process: Readonly<ProcessSettings>
  relay: Readonly<RelaySettings>
  worker: Readonly<WorkerSettings>
  sweeper: Readonly<SweeperSettings>
  scheduler: Readonly<SchedulerSettings>
  /** where each requested value came from: "--flag", "ENV_VAR" or "default" */
  sources: Readonly<Record<string, string>>
}

function showValue(def: SettingDef, raw: string): string {
  return JSON.stringify(def.kind === 'url' ? redactSecrets(raw) : raw)
}

function convert(def: SettingDef, raw: string): { ok: true; value: unknown } | { ok: false } {
  const text = raw.trim()
  switch (def.kind) {
    case 'int':
      return /^-?\d+$/.test(text) ? { ok: true, value: Number(text) } : { ok: false }
    case 'ms': {
      const ms = parseDuration(text)
      return ms === null ? { ok: false } : { ok: true, value: ms }
    }
    case 'list':
      return { ok: true, value: text.split(',').map((s) => s.trim()).filter(Boolean) }
    case 'bool':
      return /^(true|1|yes)$/i.test(text) ? { ok: true, value: true } : /^(false|0|no)$/i.test(text) ? { ok: true, value: false } : { ok: false }
    default:
      return { ok: true, value: text }
  }
}

/**
 * Resolve the requested settings from flags (commander's parsed options),
 * then env, then defaults; validate with the zod schemas; throw one
 * SettingsError listing every problem.
 */
export function resolveSettings(
  req: SettingsRequest,
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedSettings {
  const problems: string[] = []
  const sources: Record<string, string> = {}
  const given: Record<string, string> = {}
  const inputs: Record<Group, Record<string, unknown>> = { process: {}, relay: {}, worker: {}, sweeper: {}, scheduler: {} }
  const defs = requestedDefs(req)
  const label = (def: SettingDef) => `${def.key} (--${def.flag} / ${def.env})`

  const known = new Set(SETTING_DEFS.map((d) => d.env))
  for (const name of Object.keys(env).filter((n) => n.startsWith('TASKRELAY_') && !known.has(n)).sort()) {
    const best = closestName(name, known)
    problems.push(`${name}: unknown setting${best ? `; did you mean ${best}?` : ''} (unset it, or see --help for the settings)`)
  }

  for (const def of defs) {
    const attr = def.flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
    const fromFlag = flags[attr]
    let raw: string | undefined
    if (typeof fromFlag === 'string') {
      raw = fromFlag
      sources[def.key] = `--${def.flag}`
    } else if (env[def.env] !== undefined && env[def.env] !== '') {
      raw = env[def.env]
      sources[def.key] = def.env
    } else if (def.group === 'process' && req.defaults?.[def.field as ProcessKey] !== undefined) {
      raw = req.defaults[def.field as ProcessKey]
      sources[def.key] = 'default'
    } else {
      sources[def.key] = 'default'
      if (def.group === 'process' && req.required?.includes(def.field as ProcessKey)) {
        problems.push(`${label(def)}: not set; expected ${def.expected}`)
      }
      continue
    }
    given[def.key] = raw!
    const converted = convert(def, raw!)
    if (!converted.ok) {
      problems.push(`${label(def)}: got ${showValue(def, raw!)} from ${sources[def.key]}; expected ${def.expected}`)
      continue
    }
    inputs[def.group][def.field] = converted.value
  }

  const describeIssue = (group: Group, issue: z.core.$ZodIssue) => {
    const def = defs.find((d) => d.group === group && d.field === String(issue.path[0]))
    if (!def) return `${group}${issue.path.length ? '.' + issue.path.join('.') : ''}: ${issue.message}`
    const raw = given[def.key]
    const what = raw === undefined ? 'the default' : `${showValue(def, raw)} from ${sources[def.key]}`
    // Type and bound issues read better as "expected ..."; refinements carry their own reason.
    const reason = issue.code === 'custom' ? issue.message : `expected ${def.expected}`
    return `${label(def)}: got ${what}; ${reason}`
  }

  const parse = <S extends z.ZodType>(group: Group, schema: S): z.output<S> | undefined => {
    const res = schema.safeParse(inputs[group])
    if (res.success) return Object.freeze(res.data) as z.output<S>
    for (const issue of res.error.issues) {
      // A value we could not convert is reported already; zod then only sees it missing.
      const def = defs.find((d) => d.group === group && d.field === String(issue.path[0]))
      if (def && given[def.key] !== undefined && !(def.field in inputs[group])) continue
      problems.push(describeIssue(group, issue))
    }
    return undefined
  }

  const pick = Object.fromEntries(req.process.map((k) => [k, true])) as Record<ProcessKey, true>
  const processSettings = parse('process', processSettingsSchema.pick(pick))
  const components: Partial<Record<Component, unknown>> = {}
  for (const c of COMPONENTS) {
    components[c] = req.components.includes(c) ? parse(c, COMPONENT_SCHEMAS[c]) : COMPONENT_SCHEMAS[c].parse({})
  }
  if (problems.length > 0) {
    // Messages from parsers may quote the raw value (e.g. a sentinel list that was really a password).
    const secrets = defs.filter((d) => d.kind === 'url' && given[d.key]).flatMap((d) => secretsIn(given[d.key]!))
    const scrub = (p: string) => secrets.reduce((text, secret) => text.replaceAll(secret, '***'), p)
    throw new SettingsError(problems.map(scrub))
  }
  return Object.freeze({
    process: processSettings as ProcessSettings,
    relay: components.relay as RelaySettings,
    worker: components.worker as WorkerSettings,
    sweeper: components.sweeper as SweeperSettings,
    scheduler: components.scheduler as SchedulerSettings,
    sources: Object.freeze(sources),
  })
}

/** The effective configuration for the start-up log line: secrets redacted, with sources. */
export function describeSettings(req: SettingsRequest, s: ResolvedSettings): Record<string, unknown> {
  const p = s.process
  const out: Record<string, unknown> = {}
  for (const key of req.process) {
    const value = p[key]
    if (value === undefined) continue
    // Named "database"/"redis": the logger censors any field called databaseUrl/redisUrl outright.
    if (key === 'databaseUrl') out.database = redactSecrets(String(value))
    else if (key === 'redisUrl') out.redis = redactSecrets(String(value))
    else out[key] = value
  }
  for (const c of req.components) out[c] = s[c]
  const nonDefault = Object.fromEntries(Object.entries(s.sources).filter(([, src]) => src !== 'default'))
  out.setFrom = nonDefault
  return out
}
