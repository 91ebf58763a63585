/**
 * The worker process (and taskrelay's relay process) of a delivery scenario
 * (S4-S7), forked from worker-child.ts, driven over IPC. Moved out of
 * scenarios.ts so the outage scenario (outage.ts) drives them the same way.
 */
import { fork, type ChildProcess } from 'node:child_process'
import type { ProducerAdapter, ServiceEvent, WorkerOptions } from './systems/types.ts'

export interface Child {
  proc: ChildProcess
  role: string
  count: number
  onCount: Set<() => void>
  waitFor(type: string, timeoutMs?: number): Promise<any>
  error: string | null
}

export interface DeliveryOptions {
  /** extra node flags for forked processes (profiling) */
  childExecArgv?: string[]
  /** merged over the adapter's workerOptions() (S7: the scenario's own Redis) */
  override?: Partial<WorkerOptions>
}

function spawnChild(role: string, a: ProducerAdapter, key: string, o: DeliveryOptions): Child {
  const opts = { ...a.workerOptions(), ...o.override }
  const proc = fork(new URL('./worker-child.ts', import.meta.url), [JSON.stringify({ role, opts, ledgerKey: key })], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [...(o.childExecArgv ?? []).map((f) => f.replace('%ROLE%', `${a.name}-${role}`))],
  })
  const waiters = new Map<string, Array<(m: any) => void>>()
  const child: Child = {
    proc,
    role,
    count: 0,
    onCount: new Set(),
    error: null,
    waitFor(type, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${a.name} ${role}: no "${type}" within ${timeoutMs} ms${child.error ? `: ${child.error}` : ''}`)), timeoutMs)
        const list = waiters.get(type) ?? []
        list.push((m) => {
          clearTimeout(timer)
          if (m.type === 'error') reject(new Error(`${a.name} ${role}: ${m.message}`))
          else resolve(m)
        })
        waiters.set(type, list)
      })
    },
  }
  proc.on('message', (m: any) => {
    if (m.type === 'count') {
      child.count = m.n
      for (const f of child.onCount) f()
      return
    }
    if (m.type === 'error') {
      child.error = m.message
      for (const list of waiters.values()) for (const w of list.splice(0)) w(m)
      return
    }
    for (const w of (waiters.get(m.type) ?? []).splice(0)) w(m)
  })
  proc.on('exit', (code) => {
    if (code && code !== 0) {
      child.error ??= `exited with code ${code}`
      for (const list of waiters.values()) for (const w of list.splice(0)) w({ type: 'error', message: child.error })
    }
  })
  return child
}

/** S9, per group, from the worker's handler (worker-child.ts): when its last task finished (nowMs), tasks done, most in the handler at once. */
export interface GroupStats {
  lastAt: number
  done: number
  maxActive: number
}

export interface Delivery {
  worker: Child
  others: Child[]
  start(): Promise<void>
  /** resolves when the worker's count reaches n */
  until(n: number, timeoutMs: number): Promise<boolean>
  /** latencies: the worker's (S5); events: what the services reported (S7), every process's; groups: the worker's per group (S9) */
  stop(): Promise<{ latencies: number[]; events: ServiceEvent[]; groups: Record<string, GroupStats> }>
}

export async function startDelivery(a: ProducerAdapter, key: string, o: DeliveryOptions): Promise<Delivery> {
  const others = (a.extraRoles ?? []).map((r) => spawnChild(r, a, key, o))
  const worker = spawnChild('worker', a, key, o)
  const all = [...others, worker]
  try {
    await Promise.all(all.map((c) => c.waitFor('ready')))
  } catch (err) {
    for (const c of all) c.proc.kill('SIGKILL')
    throw err
  }
  return {
    worker,
    others,
    async start() {
      await Promise.all(
        all.map((c) => {
          const p = c.waitFor('started')
          c.proc.send({ type: 'start' })
          return p
        }),
      )
    },
    until(n, timeoutMs) {
      return new Promise((resolve) => {
        if (worker.count >= n) return resolve(true)
        const timer = setTimeout(() => {
          worker.onCount.delete(check)
          resolve(false)
        }, timeoutMs)
        const check = () => {
          if (worker.count >= n || worker.error) {
            clearTimeout(timer)
            worker.onCount.delete(check)
            resolve(worker.count >= n)
          }
        }
        worker.onCount.add(check)
      })
    },
    async stop() {
      let latencies: number[] = []
      let groups: Record<string, GroupStats> = {}
      const events: ServiceEvent[] = []
      // Worker first (it must not be left waiting on a relay that is gone), then the rest.
      for (const c of [worker, ...others]) {
        if (c.proc.exitCode !== null) continue
        try {
          const p = c.waitFor('stopped', 20_000)
          c.proc.send({ type: 'stop' })
          const m = await p
          if (c === worker) {
            latencies = m.latencies
            groups = m.groups ?? {}
          }
          events.push(...((m.events ?? []) as ServiceEvent[]))
        } catch {
          c.proc.kill('SIGKILL')
        }
      }
      return { latencies, events, groups }
    },
  }
}
