-- Create or update one schedule by name.
-- $14 is the first fire time after now, computed by the caller (croner). It
-- replaces the stored next_fire_at only when the timing changed, the schedule
-- is being resumed, or none is stored: re-declaring an unchanged schedule
-- (every scheduler start syncs defineTask schedules) must not move
-- next_fire_at past fire times missed while no scheduler ran, or the misfire
-- policy would never see them.
-- An unchanged definition updates nothing: no row comes back, no NOTIFY.
-- $10 enabled: null keeps the stored value (true for a new row), so a pause
-- survives restarts. $15 is the injected clock, or null for now().
insert into :"schema".schedules as s
  (name, task_name, cron, every_ms, timezone, payload, queue, priority, max_attempts,
   enabled, misfire, overlap, source, next_fire_at, created_at, updated_at)
values ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9,
        coalesce($10::boolean, true), $11, $12, $13, $14::timestamptz,
        coalesce($15::timestamptz, now()), coalesce($15::timestamptz, now()))
on conflict (name) do update set
  task_name    = excluded.task_name,
  cron         = excluded.cron,
  every_ms     = excluded.every_ms,
  timezone     = excluded.timezone,
  payload      = excluded.payload,
  queue        = excluded.queue,
  priority     = excluded.priority,
  max_attempts = excluded.max_attempts,
  enabled      = coalesce($10::boolean, s.enabled),
  misfire      = excluded.misfire,
  overlap      = excluded.overlap,
  source       = excluded.source,
  next_fire_at = case
    when s.next_fire_at is null
      or (s.cron, s.every_ms, s.timezone) is distinct from (excluded.cron, excluded.every_ms, excluded.timezone)
      or (not s.enabled and coalesce($10::boolean, s.enabled))
    then excluded.next_fire_at
    else s.next_fire_at
  end,
  last_error   = null,
  updated_at   = excluded.updated_at
where (s.task_name, s.cron, s.every_ms, s.timezone, s.payload, s.queue, s.priority,
       s.max_attempts, s.enabled, s.misfire, s.overlap, s.source)
      is distinct from
      (excluded.task_name, excluded.cron, excluded.every_ms, excluded.timezone, excluded.payload, excluded.queue,
       excluded.priority, excluded.max_attempts, coalesce($10::boolean, s.enabled), excluded.misfire,
       excluded.overlap, excluded.source)
-- Columns listed, never *: a prepared `returning *` is refused after a
-- migration adds a column, until it is prepared again (same list as
-- SCHEDULE_COLUMNS in src/db/schedule-queries.ts).
returning (xmax = 0) as created,
          id, name, task_name, cron, every_ms, timezone, payload, queue, priority, max_attempts, enabled,
          misfire, overlap, source, last_fire_at, next_fire_at, last_task_id, last_error, created_at, updated_at
