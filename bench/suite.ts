/**
 * The orchestrator: rounds × scenarios × systems, interleaved
 * (round 1: S1 A B C D, S2 A B C D, …; round 2: the same with the system
 * order rotated). Each ceiling is measured once per round right before the
 * scenario it is the ceiling of (C1 before S1, C2 before S2, C3 before S3,
 * C4/C5 before S4, C6 before S5; the rest at the start of the round), then the report.
 * S7 gets a redis-server of its own per cell (redis-server.ts), since it kills it.
 */
import { cpus, totalmem } from 'node:os'
import { parseArgs } from 'node:util'
import { resolve } from 'node:path'
import pg from 'pg'
import { Redis } from 'ioredis'
import { BASELINE_SYSTEM, DATABASE_URL, REDIS_URL, SCENARIOS, SYSTEMS, fmt, runTag, type ScenarioId, type SystemName } from './common.ts'
import { BenchRedis } from './redis-server.ts'
import { CEILINGS, measureCeilings, toolsAvailable } from './ceilings.ts'
import { FULL, QUICK, RUNNERS, SCENARIO_INFO, type ScenarioContext } from './scenarios.ts'
import { Progress, markdownReport, terminalReport, writeOutputs, type BenchResult, type Cell } from './report.ts'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import type { ProducerAdapter } from './systems/types.ts'
import { prepareBaseline, removeBaseline, type Baseline } from './baseline.ts'

const USAGE = `usage: npm run bench -- [--quick] [--only S1,S4] [--systems taskrelay,bullmq,pg-boss,graphile-worker] [--runs 3] [--out bench/results] [--no-ceilings] [--profile] [--baseline <git ref> (adds system ${BASELINE_SYSTEM})] | --render bench/results/<date>.json`

async function loadProducer(system: SystemName): Promise<ProducerAdapter> {
  // taskrelay-baseline's is async: it imports the baseline worktree's adapter.
  const mod = (await import(`./systems/${system}.ts`)) as { createProducer(): ProducerAdapter | Promise<ProducerAdapter> }
  return mod.createProducer()
}

async function machine(): Promise<Record<string, string | number>> {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 })
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  try {
    const v = (await pool.query(`select current_setting('server_version') as v, current_setting('synchronous_commit') as sc, current_setting('fsync') as fsync, current_setting('shared_buffers') as sb`)).rows[0]
    const info = await redis.info('server')
    const persistence = await redis.info('persistence')
    const aof = /aof_enabled:(\d)/.exec(persistence)?.[1] === '1'
    const save = ((await redis.config('GET', 'save')) as string[])[1] ?? ''
    return {
      cpu: cpus()[0]?.model.trim() ?? 'unknown',
      cores: cpus().length,
      memGiB: Math.round(totalmem() / 2 ** 30),
      node: process.versions.node,
      postgres: `PostgreSQL ${v.v} (synchronous_commit=${v.sc}, fsync=${v.fsync}, shared_buffers=${v.sb})`,
      redis: `${/redis_version:(\S+)/.exec(info)?.[1] ?? '?'} (${aof ? 'AOF' : 'no AOF'}, ${save ? `save "${save}"` : 'no RDB snapshots'})`,
    }
  } finally {
    await pool.end()
    redis.disconnect()
  }
}

/**
 * CHECKPOINT before every cell, so each starts with the same WAL headroom: a
 * checkpoint forced by max_wal_size (11 in one full run on the default 1 GB)
 * otherwise lands inside whichever cell crosses it and costs that system alone
 * the flush and the full-page writes after it. False when the role may not
 * (PostgreSQL 15: superuser or pg_checkpoint); the run goes on without.
 */
async function checkpoint(pool: pg.Pool): Promise<boolean> {
  try {
    await pool.query('checkpoint')
    return true
  } catch {
    return false
  }
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      systems: { type: 'string' },
      runs: { type: 'string' },
      out: { type: 'string', default: 'bench/results' },
      'no-ceilings': { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      baseline: { type: 'string' },
      render: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    allowPositionals: false,
  })
  if (values.help) {
    console.log(USAGE)
    return 0
  }
  if (values.render) {
    // Re-print and re-write the Markdown of an earlier run from its JSON.
    const result = JSON.parse(readFileSync(values.render, 'utf8')) as BenchResult
    console.log(terminalReport(result))
    const md = resolve(values.out!, 'latest.md')
    mkdirSync(resolve(values.out!), { recursive: true })
    writeFileSync(md, markdownReport(result))
    console.log(`\nwrote ${md}`)
    return 0
  }
  const quick = values.quick!
  const runs = Number(values.runs ?? (quick ? 1 : 3))
  const scenarios = (values.only ? values.only.split(',').map((s) => s.trim().toUpperCase()) : [...SCENARIOS]) as ScenarioId[]
  // --baseline alone compares the checkout's taskrelay with the baseline's, nothing else.
  const defaultSystems: SystemName[] = values.baseline ? ['taskrelay', BASELINE_SYSTEM] : [...SYSTEMS]
  const systems = (values.systems ? values.systems.split(',').map((s) => s.trim()) : defaultSystems) as SystemName[]
  const known: readonly string[] = values.baseline || process.env.BENCH_BASELINE_DIR ? [...SYSTEMS, BASELINE_SYSTEM] : SYSTEMS
  for (const s of scenarios) if (!SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s}\n${USAGE}`)
  for (const s of systems) if (!known.includes(s)) throw new Error(`unknown system ${s}${s === BASELINE_SYSTEM ? ' without --baseline <ref>' : ''}\n${USAGE}`)
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer\n${USAGE}`)
  const outDir = resolve(values.out!)

  let baseline: Baseline | null = null
  if (values.baseline && systems.includes(BASELINE_SYSTEM)) {
    baseline = prepareBaseline(values.baseline)
    // Read by systems/taskrelay-baseline.ts, here and in the forked worker/relay.
    process.env.BENCH_BASELINE_DIR = baseline.dir
    process.env.BENCH_BASELINE_REF = baseline.sha.startsWith(values.baseline) ? baseline.sha.slice(0, 7) : `${values.baseline} (${baseline.sha.slice(0, 7)})`
    console.error(`${BASELINE_SYSTEM}: ${values.baseline} = ${baseline.sha.slice(0, 7)}, worktree ${baseline.dir}`)
    for (const n of baseline.notes) console.error(`note: ${n}`)
  }
  try {
    return await measure(values, { quick, runs, scenarios, systems, outDir })
  } finally {
    if (baseline) removeBaseline(baseline)
  }
}

interface Plan {
  quick: boolean
  runs: number
  scenarios: ScenarioId[]
  systems: SystemName[]
  outDir: string
}

async function measure(values: { 'no-ceilings'?: boolean; profile?: boolean }, { quick, runs, scenarios, systems, outDir }: Plan): Promise<number> {
  const sizes = quick ? QUICK : FULL
  const tools = await toolsAvailable()
  const ceilingIds = values['no-ceilings']
    ? []
    : CEILINGS.map((c) => c.id).filter((id) => (id <= 'C3' ? tools.pgbench : tools.redisBenchmark))
  if (!values['no-ceilings'] && (!tools.pgbench || !tools.redisBenchmark)) {
    console.error(`note: ${!tools.pgbench ? 'pgbench ' : ''}${!tools.redisBenchmark ? 'redis-benchmark ' : ''}not found; those ceilings are left out (Debian: apt-get install postgresql-client-15 redis-tools)`)
  }
  const producers = new Map<SystemName, ProducerAdapter>()
  for (const s of systems) producers.set(s, await loadProducer(s))
  const taskrelayDelivery = systems.includes('taskrelay') ? (await import('./systems/taskrelay.ts')).deliveryAvailable() : true

  const result: BenchResult = {
    date: new Date().toISOString(),
    machine: await machine(),
    options: { quick, runs, scenarios, systems, sizes, ...(process.env.BENCH_BASELINE_REF ? { baseline: process.env.BENCH_BASELINE_REF } : {}) },
    systems: systems.map((s) => ({ name: s, version: producers.get(s)!.version, settings: producers.get(s)!.settings })),
    ceilings: {},
    cells: [],
    totalSeconds: 0,
  }
  const t0 = Date.now()
  // Which ceilings to measure right before which scenario, so each is taken in the same conditions.
  const PAIRED: Partial<Record<ScenarioId, string[]>> = { S1: ['C1'], S2: ['C2'], S3: ['C3'], S4: ['C4', 'C5'], S5: ['C6'] }
  const ceilingGroups = new Map<ScenarioId | 'start', string[]>()
  for (const id of ceilingIds) {
    const owner = scenarios.find((sc) => PAIRED[sc]?.includes(id)) ?? 'start'
    ceilingGroups.set(owner, [...(ceilingGroups.get(owner) ?? []), id])
  }
  const total = runs * (scenarios.length * systems.length + ceilingGroups.size)
  const progress = new Progress(total)
  const profileDir = resolve('bench/results/profiles')
  const childExecArgv = values.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, '--cpu-prof-name=%ROLE%-${pid}.cpuprofile'] : []

  let interrupted = false
  process.once('SIGINT', () => {
    interrupted = true
    console.error('\ninterrupted: finishing the current cell, then writing what was measured')
  })

  const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 1 })
  admin.on('error', () => {})
  let checkpoints = true
  for (let run = 1; run <= runs && !interrupted; run++) {
    const measureGroup = async (key: ScenarioId | 'start') => {
      const ids = ceilingGroups.get(key)
      if (!ids?.length || interrupted) return
      progress.begin(`ceilings ${ids.join(', ')}, round ${run}/${runs}`)
      try {
        const c = await measureCeilings(quick ? 2 : 4, quick ? 50_000 : 200_000, ids)
        for (const [k, v] of Object.entries(c)) (result.ceilings[k] ??= []).push(v)
        progress.end(Object.entries(c).map(([k, v]) => `${k} ${fmt(v)}`).join(', '))
      } catch (err) {
        progress.end(`ceilings failed: ${(err as Error).message.split('\n')[0]}`)
      }
    }
    await measureGroup('start')
    // Rotate the system order each round so no system is always first after a ceiling.
    const order = systems.map((_, i) => systems[(i + run - 1) % systems.length]!)
    for (const scenario of scenarios) {
      await measureGroup(scenario)
      for (const system of order) {
        if (interrupted) break
        const a = producers.get(system)!
        const label = `${scenario} ${system} (round ${run}/${runs})`
        progress.begin(label)
        const cellStart = Date.now()
        const cell: Cell = { scenario, system, run, value: null, valid: false, verdict: '', seconds: 0, version: a.version }
        const skip =
          system === 'taskrelay' && ['S4', 'S4L', 'S5', 'S6', 'S7', 'S8', 'S9'].includes(scenario) && !taskrelayDelivery
            ? 'the delivery pipeline (src/relay/relay.ts, src/worker/worker.ts) is not in this checkout yet'
            : scenario === 'S8' && !a.prepareChord
              ? `${system} has no chord / flow API`
              : scenario === 'S4L' && !a.queueSettings
                ? 'taskrelay only: the cost of its own flow-controlled path, as a ratio to its S4'
                : scenario === 'S9' && !a.perGroupLimit
                  ? (a.noPerGroupLimit ?? `${system} has no open per-group concurrency limit`)
                  : null
        if (skip) {
          cell.skipped = skip
          cell.verdict = 'not run'
          result.cells.push(cell)
          progress.end(`skipped: ${skip}`)
          continue
        }
        const tag = runTag(system, scenario, run)
        const ctx: ScenarioContext = { sizes, tag, onProgress: (f) => progress.update(f), childExecArgv }
        let setUp = false
        let ownRedis: BenchRedis | null = null
        if (checkpoints && !(await checkpoint(admin))) {
          checkpoints = false
          console.error('note: this role may not CHECKPOINT; cells may see checkpoints forced by max_wal_size')
        }
        try {
          // S7 kills Redis: it gets one of its own, for the producers too.
          if (scenario === 'S7') ctx.redis = ownRedis = await BenchRedis.start()
          await a.setup(tag, ownRedis ? { redisUrl: ownRedis.url } : undefined)
          setUp = true
          const m = await RUNNERS[scenario](a, ctx)
          cell.value = Number.isFinite(m.value) ? m.value : null
          cell.valid = m.valid && cell.value !== null
          cell.verdict = m.verdict
          if (m.extra) cell.extra = m.extra
        } catch (err) {
          cell.error = String((err as Error)?.message ?? err).split('\n')[0]!.slice(0, 300)
          cell.verdict = `error: ${cell.error}`
        } finally {
          if (setUp) await a.teardown().catch((e) => console.error(`teardown of ${system} failed: ${e}`))
          await ownRedis?.kill()
        }
        cell.seconds = (Date.now() - cellStart) / 1000
        result.cells.push(cell)
        const info = SCENARIO_INFO[scenario]
        const fig =
          scenario === 'S5' && cell.extra
            ? `p50 ${fmt(cell.extra.p50)} / p99 ${fmt(cell.extra.p99)} ms`
            : scenario === 'S7' && cell.extra
              ? `${fmt(cell.value)}× (${fmt(cell.extra.rateB)} vs ${fmt(cell.extra.rateA)} tasks/s)`
              : scenario === 'S8' && cell.extra
                ? `${fmt(cell.value)} tasks/s (${fmt(cell.extra.ms)} ms to the callback)`
                : scenario === 'S9' && cell.extra
                  ? `${fmt(cell.value)} tasks/s, spread ${fmt(cell.extra.spread)}× (${fmt(cell.extra.fastestMs)}–${fmt(cell.extra.slowestMs)} ms)`
                  : `${fmt(cell.value)} ${info.unit}`
        progress.end(cell.error ? `ERROR ${cell.error}` : `${cell.valid ? fig : `INVALID (${fig})`} — ${cell.verdict}`)
      }
    }
  }
  progress.finish()
  await admin.end()
  result.totalSeconds = (Date.now() - t0) / 1000
  // What ran last is what the summary names; versionWarnings() flags a run that mixed versions.
  result.systems = systems.map((s) => ({ name: s, version: producers.get(s)!.version, settings: producers.get(s)!.settings }))
  console.log(terminalReport(result))
  const files = writeOutputs(result, outDir)
  console.log(`\nwrote ${files.json} and ${files.md}`)
  if (values.profile) console.log(`cpu profiles of the worker/relay processes: ${profileDir}`)
  return 0
}
