import { describe, expect, it } from 'vitest'
import { Slots } from '../../src/worker/slots.ts'

describe('Slots: a worker slot accounting, without Redis or Postgres', () => {
  it('takes concurrency plus prefetch, minus what runs and what is queued or being claimed', () => {
    const slots = new Slots(3, 2)
    expect(slots.free(0)).toBe(5)
    slots.busy = 3
    expect(slots.canStart).toBe(false)
    expect(slots.free(1)).toBe(1)
    expect(slots.free(4)).toBe(0) // never negative
  })

  it('prefetches nothing once stuck handlers hold every slot', () => {
    const slots = new Slots(2, 10)
    slots.busy = 2
    slots.stuck = 1
    expect(slots.allStuck).toBe(false)
    expect(slots.free(0)).toBe(10)
    slots.stuck = 2
    expect(slots.allStuck).toBe(true)
    expect(slots.free(0)).toBe(0)
  })

  it('changed() resolves on notify() or on the signal, and notify() wakes every waiter once', async () => {
    const slots = new Slots(1, 0)
    const stop = new AbortController()
    let woken = 0
    const waits = [slots.changed(stop.signal), slots.changed(stop.signal)].map((p) => p.then(() => woken++))
    slots.notify()
    await Promise.all(waits)
    expect(woken).toBe(2)
    const pending = slots.changed(stop.signal)
    stop.abort()
    await pending
    await slots.changed(stop.signal) // already aborted: at once
  })
})
