-- Record one tick's outcome for each claimed schedule (same transaction as
-- the task inserts). Null last_fire_at / last_task_id keep the stored value;
-- last_error is replaced (null clears it); disable turns the schedule off
-- (its definition cannot be evaluated any more).
update :"schema".schedules s
   set next_fire_at = u.next_fire_at,
       last_fire_at = coalesce(u.last_fire_at, s.last_fire_at),
       last_task_id = coalesce(u.last_task_id, s.last_task_id),
       last_error   = u.last_error,
       enabled      = s.enabled and not u.disable
  from unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::bigint[], $5::text[], $6::boolean[])
       as u(id, next_fire_at, last_fire_at, last_task_id, last_error, disable)
 where s.id = u.id
