-- Claim due schedules for one scheduler tick. The row locks are held until
-- the tick commits the task rows and the advanced next_fire_at together, so
-- a replica racing for the same schedule skips it, and a scheduler that dies
-- mid-tick rolls back both (another replica then fires the same fire times,
-- under the same idempotency keys).
-- Under READ COMMITTED a row that another replica advanced and committed
-- after this statement's snapshot is re-checked against next_fire_at <= now
-- before it is locked, so it is not claimed twice.
-- $1 injected clock or null for now(); $2 task names this scheduler can
-- enqueue (others are left to schedulers that know them); $3 batch size.
-- next_fire_at null: written by hand (SQL), computed on this tick.
select s.id, s.name, s.task_name, s.cron, s.every_ms, s.timezone, s.payload, s.queue, s.priority,
       s.max_attempts, s.misfire, s.overlap, s.next_fire_at, s.last_task_id,
       (select t.state from :"schema".tasks t where t.id = s.last_task_id) as last_task_state,
       coalesce($1::timestamptz, now()) as now
  from :"schema".schedules s
 where s.enabled
   and s.task_name = any($2::text[])
   and (s.next_fire_at <= coalesce($1::timestamptz, now()) or s.next_fire_at is null)
 order by s.next_fire_at nulls first
 limit $3
   for update of s skip locked
