/**
 * Output: the table on the terminal, the JSON record of every run, and the
 * Markdown summary (the progress bar while the suite runs: progress.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { BASELINE_SYSTEM, fmt, median, type ScenarioId, type SystemName } from './common.ts'
import { pairBaseline, roundRatios } from './paired.ts'
import { CEILINGS } from './ceilings.ts'
import { SCENARIO_INFO } from './scenarios.ts'
import { stageNote } from './stages.ts'
import { outageNote, targets } from './targets.ts'
import { chordNote } from './workflow-scenario.ts'
import { groupsNote, limitNote } from './flow-scenarios.ts'

export { Progress } from './progress.ts'

export interface Cell {
  scenario: ScenarioId
  system: SystemName
  run: number
  value: number | null
  valid: boolean
  verdict: string
  extra?: Record<string, number>
  /** the system's version when the cell ran (taskrelay: git commit) */
  version?: string
  /** set when the cell could not run at all */
  error?: string
  skipped?: string
  seconds: number
}

export interface BenchResult {
  date: string
  machine: Record<string, string | number>
  options: { quick: boolean; runs: number; scenarios: string[]; systems: string[]; sizes: object; baseline?: string }
  systems: Array<{ name: string; version: string; settings: string }>
  ceilings: Record<string, number[]>
  cells: Cell[]
  totalSeconds: number
}

export interface Row {
  scenario: ScenarioId
  system: SystemName
  median: number
  min: number
  max: number
  okRuns: number
  runs: number
  /** own / best peer (throughput) or best peer / own (latency): ≥ 1 is as good as or better than every peer */
  ratio: number | null
  extra: Record<string, number>
  note: string
}

export function summarize(result: BenchResult): Row[] {
  const rows: Row[] = []
  const scenarios = [...new Set(result.cells.map((c) => c.scenario))]
  for (const scenario of scenarios) {
    const info = SCENARIO_INFO[scenario]
    const systems = result.options.systems as SystemName[]
    const scenarioRows: Row[] = []
    for (const system of systems) {
      const cells = result.cells.filter((c) => c.scenario === scenario && c.system === system)
      if (cells.length === 0) continue
      const ok = cells.filter((c) => c.valid && c.value !== null && Number.isFinite(c.value))
      const values = ok.map((c) => c.value!)
      const extraKeys = [...new Set(ok.flatMap((c) => Object.keys(c.extra ?? {})))]
      const extra: Record<string, number> = {}
      for (const k of extraKeys) extra[k] = median(ok.map((c) => c.extra?.[k]).filter((x): x is number => typeof x === 'number' && Number.isFinite(x)))
      const bad = cells.filter((c) => !c.valid)
      const note = cells.every((c) => c.skipped)
        ? `not run: ${cells[0]!.skipped}`
        : bad.length
          ? bad.map((c) => `run ${c.run}: ${c.error ?? c.skipped ?? c.verdict}`).join('; ')
          : ok[0]?.verdict.replace(/^all \d+ /, 'all ') ?? ''
      scenarioRows.push({
        scenario,
        system,
        median: median(values),
        min: values.length ? Math.min(...values) : NaN,
        max: values.length ? Math.max(...values) : NaN,
        okRuns: ok.length,
        runs: cells.length,
        ratio: null,
        extra,
        note,
      })
    }
    // taskrelay at another commit (--baseline) is not a peer.
    const peers = scenarioRows.filter((r) => r.system !== 'taskrelay' && r.system !== BASELINE_SYSTEM && Number.isFinite(r.median))
    // S7: a peer that stops during the outage makes any ratio to it meaningless.
    if (peers.length && scenario !== 'S7') {
      const best = info.higherIsBetter ? Math.max(...peers.map((r) => r.median)) : Math.min(...peers.map((r) => r.median))
      for (const r of scenarioRows) {
        if (!Number.isFinite(r.median)) continue
        r.ratio = info.higherIsBetter ? r.median / best : best / r.median
      }
    }
    rows.push(...scenarioRows)
  }
  // S4L against S4 of the same round (they run back to back): the median of
  // the rounds' ratios, so a noisy round moves both of its figures alike.
  for (const r of rows.filter((x) => x.scenario === 'S4L')) {
    const ratios = roundRatios(result, { scenario: 'S4L', system: r.system }, { scenario: 'S4', system: r.system }).map((x) => x.ratio)
    if (ratios.length) {
      r.extra.vsS4 = median(ratios)
      r.extra.pairs = ratios.length
    }
  }
  // taskrelay ÷ taskrelay-baseline, paired the same way (--baseline).
  pairBaseline(result, rows)
  return rows
}


function figure(r: Row, which: 'median' | 'min' | 'max'): string {
  return fmt(r[which])
}

function ceilingRows(result: BenchResult): Array<[string, string, string, string]> {
  return CEILINGS.filter((c) => result.ceilings[c.id]?.length).map((c) => {
    const xs = result.ceilings[c.id]!
    return [c.id, c.label, `${fmt(median(xs))} ${c.unit}`, `${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}`]
  })
}

/** Systems whose code changed between cells of this run (taskrelay's working tree can move under a long run). */
export function versionWarnings(result: BenchResult): string[] {
  const out: string[] = []
  for (const s of result.systems) {
    const seen = [...new Set(result.cells.filter((c) => c.system === s.name && c.version).map((c) => c.version!))]
    if (seen.length > 1) out.push(`WARNING: ${s.name}'s code changed during this run (${seen.join(' → ')}); its rows mix versions — run again on a fixed commit.`)
  }
  return out
}

function valueCell(r: Row): string {
  if (r.scenario === 'S5') return `${fmt(r.extra.p50)} / ${fmt(r.extra.p95)} / ${fmt(r.extra.p99)}`
  return fmt(r.median)
}

function rangeCell(r: Row): string {
  if (!Number.isFinite(r.min)) return '—'
  return `${figure(r, 'min')}–${figure(r, 'max')}`
}

function extraCell(r: Row): string {
  if (r.scenario === 'S1' && r.extra.businessTxPerSec !== undefined) {
    return `business tx alone ${fmt(r.extra.businessTxPerSec)}/s; the enqueue adds ${fmt(r.extra.overheadMsPerTx, 3)} ms per tx (${fmt(r.extra.overheadPct, 0)} % fewer tx/s)`
  }
  if (r.scenario === 'S5' && r.extra.enqueueToDispatchMs !== undefined) return stageNote(r.extra)
  if (r.scenario === 'S7' && r.extra.rateA !== undefined) return outageNote(r.extra)
  if (r.scenario === 'S8' && r.extra.ms !== undefined) return chordNote(r.extra)
  if (r.scenario === 'S4L' && r.extra.limit !== undefined) return limitNote(r.extra)
  if (r.scenario === 'S9' && r.extra.spread !== undefined) return groupsNote(r.extra)
  if (r.scenario === 'S6' && r.extra.enqueuePerSec !== undefined) {
    const backlog = r.extra.meanBacklog === undefined ? '' : `, mean backlog ${fmt(r.extra.meanBacklog)}`
    return `enqueued ${fmt(r.extra.enqueuePerSec)}/s${backlog}`
  }
  return ''
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) => cells.map((c, i) => (i >= 2 && i <= 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ')
  return [line(headers), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

export function terminalReport(result: BenchResult): string {
  const rows = summarize(result)
  const out: string[] = []
  for (const w of versionWarnings(result)) out.push(w)
  out.push(`taskrelay benchmark — ${result.date} — ${result.machine.cpu} (${result.machine.cores} cores), ${result.options.quick ? 'QUICK, ' : ''}${result.options.runs} run(s) each, interleaved`)
  out.push('')
  const body: string[][] = []
  let last = ''
  for (const r of rows) {
    const info = SCENARIO_INFO[r.scenario]
    const head = r.scenario !== last ? `${r.scenario} ${info.title}` : ''
    last = r.scenario
    body.push([head, r.system, valueCell(r), rangeCell(r), r.ratio === null ? '—' : `${fmt(r.ratio)}×`, `${r.okRuns}/${r.runs}`, [extraCell(r), r.note].filter(Boolean).join('; ')])
  }
  out.push(table(['scenario', 'system', 'median', 'min–max', 'vs best peer', 'valid', 'notes'], body))
  out.push('')
  out.push('S5 figures are handler start − enqueue call start, p50 / p95 / p99 ms; ratio on p50 (≥ 1× = faster than every peer).')
  out.push('')
  const cr = ceilingRows(result)
  if (cr.length) {
    out.push('Ceilings (same servers, no queue library):')
    out.push(table(['id', 'what', 'median', 'min–max'], cr.map((r) => [...r])))
    out.push('')
  }
  const t = targets(result, rows)
  if (t.length) {
    out.push('taskrelay targets (issues 5, 15, 16, 17 and 18), on this run:')
    for (const x of t) out.push(`  ${x.met === null ? '    ' : x.met ? '  ok' : 'MISS'}  ${x.target.padEnd(46)} ${x.measured}`)
  }
  return out.join('\n')
}

export function markdownReport(result: BenchResult): string {
  const rows = summarize(result)
  const out: string[] = []
  out.push(`# taskrelay benchmark results`)
  out.push('')
  out.push(`${result.date} · ${result.machine.cpu}, ${result.machine.cores} cores, ${result.machine.memGiB} GiB · Node ${result.machine.node} · ${result.machine.postgres} · Redis ${result.machine.redis}`)
  out.push('')
  for (const w of versionWarnings(result)) out.push(`> **${w}**\n`)
  out.push(`${result.options.quick ? '**Quick run** (small sizes); ' : ''}${result.options.runs} run(s) per cell, systems interleaved; median and min–max of the valid runs; "vs best peer" = the figure divided by the best of BullMQ, pg-boss and graphile-worker on that row (for S5, best p50 divided by this p50, and min–max is of the p50), so ≥ 1.00× means ahead of every peer. Every run is checked against an independent ledger (S1–S3: each task stored exactly once; S4–S6: each task ran exactly once; S8: each member and callback ran exactly once and each callback got every result; S9: also at most one task per group in the handler at once; S7: the run without outage must be clean, the outage run's lost and ran-twice counts are its result, in the notes); a run that failed the check is not counted and is listed in the notes.`)
  out.push('')
  out.push('| scenario | system | median | min–max | vs best peer | valid runs | notes |')
  out.push('| --- | --- | ---: | ---: | ---: | :---: | --- |')
  let last = ''
  for (const r of rows) {
    const info = SCENARIO_INFO[r.scenario]
    const head = r.scenario !== last ? `**${r.scenario}** ${info.title} (${r.scenario === 'S5' ? 'p50 / p95 / p99 ms' : info.unit})` : ''
    last = r.scenario
    const note = [extraCell(r), r.note].filter(Boolean).join('; ').replaceAll('|', '\\|')
    out.push(`| ${head} | ${r.system} | ${valueCell(r)} | ${rangeCell(r)} | ${r.ratio === null ? '—' : `${fmt(r.ratio)}×`} | ${r.okRuns}/${r.runs} | ${note} |`)
  }
  out.push('')
  const cr = ceilingRows(result)
  if (cr.length) {
    out.push('Ceilings measured in the same run (no queue library):')
    out.push('')
    out.push('| id | what | median | min–max |')
    out.push('| --- | --- | ---: | ---: |')
    for (const r of cr) out.push(`| ${r.join(' | ')} |`)
    out.push('')
  }
  const t = targets(result, rows)
  if (t.length) {
    out.push('taskrelay targets from issues 5, 15, 16, 17 and 18, judged on this run:')
    out.push('')
    out.push('| target | measured | met |')
    out.push('| --- | --- | :---: |')
    for (const x of t) out.push(`| ${x.target} | ${x.measured} | ${x.met === null ? '' : x.met ? 'yes' : 'no'} |`)
    out.push('')
  }
  out.push('Versions and settings:')
  out.push('')
  for (const s of result.systems) out.push(`- **${s.name}** ${s.version}: ${s.settings}`)
  out.push('')
  out.push(`Sizes: ${JSON.stringify(result.options.sizes)}. Total wall time ${fmt(result.totalSeconds, 0)} s.`)
  out.push('')
  return out.join('\n')
}

export function writeOutputs(result: BenchResult, outDir: string): { json: string; md: string } {
  mkdirSync(outDir, { recursive: true })
  const stamp = result.date.replace(/[:]/g, '-').replace(/\..*$/, '')
  const json = join(outDir, `${stamp}.json`)
  const md = join(outDir, 'latest.md')
  writeFileSync(json, JSON.stringify(result, null, 2) + '\n')
  writeFileSync(md, markdownReport(result))
  return { json, md }
}
