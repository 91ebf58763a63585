-- When this scheduler should wake next: the earliest next_fire_at among
-- enabled schedules of its tasks (null next_fire_at = due now), and how far
-- that is from now. clock_timestamp(), not now(): the tick's transaction may
-- have started a while ago. $1 injected clock or null; $2 task names.
with c as (select coalesce($1::timestamptz, clock_timestamp()) as now),
     due as (select min(coalesce(s.next_fire_at, c.now)) as next_fire_at
               from :"schema".schedules s, c
              where s.enabled and s.task_name = any($2::text[]))
select due.next_fire_at,
       extract(epoch from due.next_fire_at - c.now)::float8 * 1000 as due_in_ms
  from due, c
