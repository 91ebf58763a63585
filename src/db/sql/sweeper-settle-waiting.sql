-- Sweeper: settle waiting tasks (dependsOn), a batch at a time by id from
-- $1 (the sweeper keeps the cursor and wraps around).
--   * a task it depends on failed or was cancelled: cancelled, never run
--     (its own dependents follow on a later pass);
--   * all it depends on succeeded: pending. The finish statement does this
--     at once; here only what two concurrent finishes both left waiting.
-- The UPDATEs re-check state = 'waiting', so a task settled meanwhile by a
-- finish or a cancel is left alone.
with batch as (
  select id
    from :"schema".tasks
   where state = 'waiting'
     and finished_at is null  -- always true; lets tasks_waiting_idx serve
     and id > $1
   order by id
   limit $2
), verdict as (
  select b.id,
         count(*) filter (where p.state in ('failed', 'cancelled')) as broken,
         count(*) filter (where p.state not in ('succeeded', 'failed', 'cancelled')) as unfinished
    from batch b
    left join :"schema".task_dependencies d on d.task_id = b.id
    left join :"schema".tasks p on p.id = d.depends_on
   group by b.id
), cancelled as (
  update :"schema".tasks t
     set state = 'cancelled',
         finished_at = now(),
         last_error = jsonb_build_object('message', 'not run: a task it depends on failed or was cancelled',
                                         'kind', 'dependency_failed', 'at', now())
    from verdict v
   where t.id = v.id
     and v.broken > 0
     and t.state = 'waiting'
  returning t.id, t.queue
), promoted as (
  update :"schema".tasks t
     set state = 'pending'
    from verdict v
   where t.id = v.id
     and v.broken = 0
     and v.unfinished = 0
     and t.state = 'waiting'
  returning t.id
), announced as (
  -- waitFor() listens here; at most 350 ids per notification (8000 bytes).
  select pg_notify(:'schema' || '.task_finished', string_agg(id::text, ','))
    from (select id, (row_number() over ()) / 350 as chunk from cancelled) c
   group by chunk
), events as (
  -- tr.events (0016): 'cancelled' per queue and 350 ids, as the enqueue
  -- trigger and cancel() send them, in this same statement.
  select pg_notify(:'schema' || '.task_events', 'cancelled ' || queue || ' ' || string_agg(id::text, ','))
    from (select id, queue, (row_number() over (partition by queue)) / 350 as chunk from cancelled) c
   group by queue, chunk
), woken as (
  select pg_notify(:'schema' || '.task_ready', '') from promoted having count(*) > 0
)
select (select count(*) from batch)::int as scanned,
       (select max(id) from batch)::text as last_id,
       (select count(*) from cancelled)::int as cancelled,
       (select count(*) from promoted)::int as promoted,
       (select count(*) from announced) + (select count(*) from woken) + (select count(*) from events) as notified
