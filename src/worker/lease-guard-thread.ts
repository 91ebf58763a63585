/**
 * The lease guard's thread (see lease-guard.ts). It shares a clock with the
 * worker's event loop: slot 0 is the loop's last pulse, slot 1 the guard's
 * last renewal, both in epoch ms. It needs no list of attempts: the rows a
 * worker instance holds are the running rows with its worker_id. It renews
 * the worker's own row too: a blocked loop cannot, and the sweeper would
 * take the worker for dead.
 */
import { parentPort, workerData } from 'node:worker_threads'
import pg from 'pg'
import { loadSql } from '../db/sql.ts'

export interface LeaseGuardData {
  connection: pg.ClientConfig
  schema: string
  workerId: string
  leaseMs: number
  /** the loop counts as blocked once it misses this long (the shorter of heartbeatMs and presenceMs) */
  heartbeatMs: number
  /** the worker row's renewal: it expires this long after (lostAfterMs) */
  presenceTtlMs: number
  shared: SharedArrayBuffer
}

const data = workerData as LeaseGuardData
const clock = new BigInt64Array(data.shared)
const statement = loadSql('task-heartbeat-by-worker.sql', data.schema)
let client: pg.Client | null = null
let running = false

async function renew(blockedMs: number): Promise<void> {
  const sentAt = Date.now()
  try {
    if (!client) {
      client = new pg.Client({ ...data.connection, application_name: 'taskrelay lease guard' })
      client.on('error', () => (client = null))
      await client.connect()
    }
    const res = await client.query(statement, [data.workerId, data.leaseMs, data.presenceTtlMs])
    Atomics.store(clock, 1, BigInt(sentAt))
    parentPort?.postMessage({ type: 'renewed', count: res.rowCount ?? 0, blockedMs })
  } catch (err) {
    const old = client
    client = null
    await old?.end().catch(() => {})
    parentPort?.postMessage({ type: 'failed', message: err instanceof Error ? err.message : String(err), blockedMs })
  }
}

// Check twice per heartbeat: a loop blocked past one heartbeat has missed a renewal.
setInterval(() => {
  const blockedMs = Date.now() - Number(Atomics.load(clock, 0))
  if (running || blockedMs < data.heartbeatMs) return
  running = true
  void renew(blockedMs).finally(() => (running = false))
}, Math.max(25, Math.floor(data.heartbeatMs / 2)))
