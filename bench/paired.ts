/**
 * Ratios of two cells of the same round: S4L ÷ S4 (issue 16) and taskrelay ÷
 * taskrelay-baseline (--baseline, issue 18). A pair ran back to back in one
 * round, so a noisy minute moves both of its figures alike; the median of
 * the rounds' ratios is steadier than the ratio of the two medians.
 */
import { BASELINE_SYSTEM, fmt, median, type ScenarioId, type SystemName } from './common.ts'
import type { BenchResult, Row } from './report.ts'

export interface RoundRatio {
  run: number
  ratio: number
}

/** `num`'s value ÷ `den`'s, per round in which both cells are valid. */
export function roundRatios(result: BenchResult, num: { scenario: ScenarioId; system: SystemName }, den: { scenario: ScenarioId; system: SystemName }): RoundRatio[] {
  const ok = (sc: ScenarioId, sys: SystemName, run: number) => result.cells.find((c) => c.scenario === sc && c.system === sys && c.run === run && c.valid && c.value !== null)
  const out: RoundRatio[] = []
  for (const c of result.cells.filter((x) => x.scenario === num.scenario && x.system === num.system)) {
    const [a, b] = [ok(num.scenario, num.system, c.run), ok(den.scenario, den.system, c.run)]
    if (a && b) out.push({ run: c.run, ratio: a.value! / b.value! })
  }
  return out
}

/**
 * Puts into each row of taskrelay-baseline: vsBaseline (taskrelay ÷ baseline,
 * median of the rounds), its min and max, pairs, and the per-round ratios in the note.
 */
export function pairBaseline(result: BenchResult, rows: Row[]): void {
  for (const r of rows.filter((x) => x.system === BASELINE_SYSTEM)) {
    const ratios = roundRatios(result, { scenario: r.scenario, system: 'taskrelay' }, { scenario: r.scenario, system: BASELINE_SYSTEM })
    if (!ratios.length) continue
    const xs = ratios.map((x) => x.ratio)
    Object.assign(r.extra, { vsBaseline: median(xs), vsBaselineMin: Math.min(...xs), vsBaselineMax: Math.max(...xs), pairs: xs.length })
    const per = ratios.map((x) => `r${x.run} ${fmt(x.ratio, 3)}`).join(', ')
    r.note = [`taskrelay ÷ baseline: median ${fmt(median(xs), 3)} × (per round: ${per})`, r.note].filter(Boolean).join('; ')
  }
}

/** Issue 18: attempt history (and the rest of c4e7397's hot-path additions) costs at most 5 % of S4 and S6, against --baseline. */
export function issue18(result: BenchResult, rows: Row[]): Array<{ target: string; measured: string; met: boolean | null }> {
  const base = (s: ScenarioId) => rows.find((r) => r.scenario === s && r.system === BASELINE_SYSTEM)
  const [s4, s6] = [base('S4'), base('S6')]
  if (!s4 && !s6) return []
  const part = (s: ScenarioId, r: Row | undefined) =>
    r?.extra.vsBaseline === undefined ? `${s} —` : `${s} ${fmt(r.extra.vsBaseline, 3)} × (${fmt(r.extra.vsBaselineMin, 3)}–${fmt(r.extra.vsBaselineMax, 3)}, ${r.extra.pairs} round(s))`
  const xs = [s4?.extra.vsBaseline ?? NaN, s6?.extra.vsBaseline ?? NaN]
  return [
    {
      target: 'attempt history ≤ 5 % (issue 18)',
      measured: `S4 and S6 ≥ 0.95 × ${result.options.baseline ?? 'the baseline'}; median of the rounds' ratios: ${part('S4', s4)}, ${part('S6', s6)}`,
      met: xs.every(Number.isFinite) ? xs.every((x) => x >= 0.95) : null,
    },
  ]
}
