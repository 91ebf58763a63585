import { EventEmitter } from 'node:events'

/**
 * Typed events, `noun:verb`. Logs, metrics and tests subscribe here; services
 * don't know who listens.
 */
export interface TaskEventFields {
  id: string
  name: string
  queue: string
  attempt: number
  /** the worker instance that ran the attempt (Worker.workerId) */
  workerId?: string
}

export interface EventMap {
  'relay:batch': [{ dispatched: number; byQueue: Record<string, number>; durationMs: number; ids: string[] }]
  'relay:redispatch': [{ count: number; reason: 'redis-reconnect' | 'redis-data-lost' | 'push-failed' }]
  'task:started': [TaskEventFields]
  'task:succeeded': [TaskEventFields & { durationMs: number }]
  'task:retried': [TaskEventFields & { durationMs: number; delayMs: number; error: string }]
  'task:failed': [TaskEventFields & { durationMs: number; error: string; kind?: string }]
  'task:lease-lost': [TaskEventFields]
  'task:handed-back': [TaskEventFields]
  'worker:stale-messages': [{ count: number }]
  /** the worker started taking tasks from this lane (lane "auto": Redis unreachable, or back) */
  'worker:lane': [{ workerId: string; lane: 'redis' | 'postgres'; reason: 'redis-unreachable' | 'configured' | 'redis-back' }]
  /** the relay cannot reach Redis (false) or can again (true) */
  'relay:redis': [{ reachable: boolean }]
  'sweeper:run': [{ redispatched: number; leasesReclaimed: number; pruned: number }]
  'service:error': [{ component: string; error: Error }]
}

export class TaskRelayEvents extends EventEmitter<EventMap> {}
