import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createTestDb, databaseUrl, waitUntil, type TestDb } from '../support/db.ts'

/**
 * Real scheduler processes killed with SIGKILL, mid-tick and at random
 * moments: every fire time of an every-second schedule must end up with
 * exactly one task, none lost and none doubled.
 */

const FIXTURE = new URL('./fixtures/scheduler-child.ts', import.meta.url).pathname
const SCHEDULE = 'kill-every-second'

interface Message {
  event: 'started' | 'tick' | 'hanging'
  fires?: string[]
}

class Child {
  readonly proc: ChildProcess
  readonly messages: Message[] = []
  readonly exited: Promise<void>
  stderr = ''

  constructor(env: Record<string, string>) {
    this.proc = spawn(process.execPath, [FIXTURE], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    createInterface({ input: this.proc.stdout! }).on('line', (line) => this.messages.push(JSON.parse(line) as Message))
    this.proc.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()))
    this.exited = new Promise((resolve) => this.proc.once('exit', () => resolve()))
  }

  async waitFor(event: Message['event'], timeoutMs = 20_000): Promise<Message> {
    return waitUntil(() => this.messages.find((m) => m.event === event), { timeoutMs, what: `child ${event} (stderr: ${this.stderr.slice(-500)})` })
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL')
    await this.exited
  }
}

let db: TestDb
const children: Child[] = []

beforeAll(async () => {
  db = await createTestDb()
})
afterAll(async () => {
  await db.cleanup()
})
afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => c.kill()))
})

function startChild(env: Record<string, string> = {}): Child {
  const child = new Child({ DATABASE_URL: databaseUrl(), TR_SCHEMA: db.schema, ...env })
  children.push(child)
  return child
}

async function fireTimes(): Promise<Array<{ at: string; n: number }>> {
  const res = await db.pool.query<{ at: Date; n: number }>(
    `select run_at as at, count(*)::int as n from "${db.schema}".tasks where idempotency_key like $1 group by run_at order by run_at`,
    [`schedule:${SCHEDULE}:%`],
  )
  return res.rows.map((r) => ({ at: r.at.toISOString(), n: r.n }))
}

/** Wait until fire times up to `iso` (plus `more` seconds) have tasks. */
async function waitForFiresThrough(iso: string, more: number): Promise<void> {
  const target = Date.parse(iso) + more * 1000
  await waitUntil(async () => {
    const times = await fireTimes()
    return times.length > 0 && Date.parse(times.at(-1)!.at) >= target
  }, { timeoutMs: 30_000, what: `fires through ${new Date(target).toISOString()}` })
}

function expectExactlyOnePerSecond(times: Array<{ at: string; n: number }>): void {
  expect(times.length).toBeGreaterThan(5)
  for (const t of times) expect(t, `fire time ${t.at}`).toMatchObject({ n: 1 })
  for (let i = 1; i < times.length; i++) {
    expect(Date.parse(times[i]!.at) - Date.parse(times[i - 1]!.at), `gap before ${times[i]!.at}`).toBe(1000)
  }
}

describe('scheduler killed with SIGKILL', () => {
  it('mid-tick (task rows inserted, not committed): the next scheduler fires those fire times once; none lost, none doubled', async () => {
    const first = startChild({ HANG_ON_TICK: '3' })
    const hanging = await first.waitFor('hanging')
    const hungFires = hanging.fires!
    expect(hungFires.length).toBeGreaterThan(0)
    // The hung tick's rows exist only inside its open transaction.
    expect((await fireTimes()).filter((t) => hungFires.includes(t.at))).toEqual([])

    await first.kill()
    // Killing the process ends its connection; Postgres rolls the tick back.
    expect((await fireTimes()).filter((t) => hungFires.includes(t.at))).toEqual([])

    const second = startChild()
    await second.waitFor('started')
    await waitForFiresThrough(hungFires.at(-1)!, 3)
    const refired = second.messages.filter((m) => m.event === 'tick').flatMap((m) => m.fires!)
    expect(refired).toEqual(expect.arrayContaining(hungFires))
    await second.kill()

    const times = await fireTimes()
    expectExactlyOnePerSecond(times)
    for (const at of hungFires) expect(times.filter((t) => t.at === at)).toEqual([{ at, n: 1 }])
  })

  it('at random moments, three times over, with a replica running alongside: every second has exactly one task', async () => {
    await db.pool.query(`truncate "${db.schema}".task_dependencies, "${db.schema}".tasks, "${db.schema}".schedules`)
    const steady = startChild()
    await steady.waitFor('started')
    const steadyStartedAt = Date.now()
    let lastKillAt = 0
    for (let round = 0; round < 3; round++) {
      const victim = startChild()
      await victim.waitFor('started')
      // The kill moment is what is random here (mid-claim, mid-insert, idle...).
      await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 1500)))
      await victim.kill()
      lastKillAt = Date.now()
    }
    // The steady replica alone must carry on past the last kill, and the run
    // must span enough seconds to judge (the kills' random delays may be short).
    await waitForFiresThrough(new Date(Math.max(lastKillAt, steadyStartedAt + 6000)).toISOString(), 2)
    await steady.kill()
    expectExactlyOnePerSecond(await fireTimes())
  })
})
