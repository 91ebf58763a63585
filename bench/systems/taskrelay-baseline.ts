/**
 * taskrelay-baseline: taskrelay at another commit (`--baseline <ref>`, set up
 * by baseline.ts), run by that commit's own bench/systems/taskrelay.ts, so its
 * src/ and migrations are the baseline's. Its name differs from the adapter's,
 * and with it the run tag: its own schema (bench_tr_taskrelaybaseline_…), Redis
 * prefix and ledger key, and the forked worker/relay load this file again
 * (worker-child.ts imports systems/<name>.ts), which hands over to the worktree.
 */
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { BASELINE_SYSTEM } from '../common.ts'
import type { ProducerAdapter, WorkerModule, WorkerOptions } from './types.ts'

/** Set by the suite for --baseline; forked children inherit it. */
function baselineDir(): string {
  const dir = process.env.BENCH_BASELINE_DIR
  if (!dir) throw new Error(`${BASELINE_SYSTEM} needs --baseline <ref> (or BENCH_BASELINE_DIR, a checkout of that commit)`)
  return dir
}

type AdapterModule = { createProducer(): ProducerAdapter; worker: WorkerModule }

async function load(): Promise<AdapterModule> {
  return (await import(pathToFileURL(join(baselineDir(), 'bench/systems/taskrelay.ts')).href)) as AdapterModule
}

export async function createProducer(): Promise<ProducerAdapter> {
  const inner = (await load()).createProducer()
  // A Proxy, not a spread: `version` is a getter read again for every cell, and
  // every optional member (S4L's queueSettings, S8's prepareChord, …) passes through.
  return new Proxy(inner, {
    get(target, key, receiver) {
      if (key === 'name') return BASELINE_SYSTEM
      if (key === 'settings') return `${target.settings}; from a worktree of ${process.env.BENCH_BASELINE_REF ?? baselineDir()}`
      if (key === 'workerOptions') return (): WorkerOptions => ({ ...target.workerOptions(), system: BASELINE_SYSTEM })
      return Reflect.get(target, key, receiver)
    },
  })
}

export const worker: WorkerModule = {
  async prepareWorker(opts, onTask) {
    return (await load()).worker.prepareWorker(opts, onTask)
  },
  async prepareRole(role, opts) {
    const w = (await load()).worker
    if (!w.prepareRole) throw new Error(`the baseline's adapter has no role ${role}`)
    return w.prepareRole(role, opts)
  },
}
