-- Sweeper: running tasks that lost their worker (crash, SIGKILL, partition).
-- Two signs, whichever comes first:
--   * the worker's row in workers expired: it stopped renewing it
--     for lostAfterMs (a few seconds), so it died or cannot reach Postgres
--     (and aborts its own attempts before this; see WorkerPresence);
--   * the task's lease expired: a worker without a workers row (older
--     versions, or one that unregistered while a handler ignored its abort).
-- Retry them after $2 ms while attempts remain, else fail them; either way
-- the error says the worker was lost. The old worker's late writes are
-- fenced out by (id, attempt, state = 'running'). The attempt goes into
-- task_attempts as 'lost', and the task's event to task_events (0016).
with silent_workers as (
  -- Rows are removed a day after they expire (workers-prune.sql).
  select id
    from :"schema".workers
   where expires_at < now()
), abandoned as (
  -- One probe per silent worker (tasks_running_worker_idx, 0011).
  select t.id
    from silent_workers w
    join :"schema".tasks t on t.worker_id = w.id and t.state = 'running'
   limit $1
     for update of t skip locked
), expired as (
  select id
    from :"schema".tasks
   where state = 'running'
     and lease_expires_at < now()
   order by lease_expires_at
   limit $1
     for update skip locked
), lost as (
  select id from abandoned
  union
  select id from expired
), moved as (
  update :"schema".tasks t
     set state       = case when t.attempt < t.max_attempts then 'pending' else 'failed' end,
         run_at      = case when t.attempt < t.max_attempts
                            then now() + $2::bigint * interval '1 millisecond' else t.run_at end,
         finished_at = case when t.attempt < t.max_attempts then null else now() end,
         lease_expires_at = null,
         dispatch_token = null,
         last_error = jsonb_build_object(
           'message', case when t.lease_expires_at < now()
                           then format('worker %s was lost during attempt %s (lease expired at %s)',
                                       coalesce(t.worker_id, 'unknown'), t.attempt, t.lease_expires_at)
                           else format('worker %s was lost during attempt %s (it stopped renewing its row in the workers table)',
                                       t.worker_id, t.attempt)
                      end,
           'kind', 'lost_worker', 'attempt', t.attempt, 'at', now())
    from lost
   where t.id = lost.id
  returning t.id, t.state, t.queue, t.attempt, t.worker_id, t.started_at, t.last_error
), history as (
  insert into :"schema".task_attempts (task_id, attempt, worker_id, started_at, outcome, error)
  select id, attempt, worker_id, started_at, 'lost', last_error
    from moved
  on conflict do nothing
), events as (
  select pg_notify(:'schema' || '.task_events',
                   case state when 'failed' then 'failed' else 'retried' end || ' ' || queue || ' ' || string_agg(id::text, ','))
    from (select id, state, queue, (row_number() over ()) / 350 as chunk from moved) e
   group by state, queue, chunk
), announced as (
  -- At most 350 ids per notification, as in task-finish-batch.sql (8000-byte payloads).
  select pg_notify(:'schema' || '.task_finished', string_agg(id::text, ','))
    from (select id, (row_number() over ()) / 350 as chunk
            from moved
           where state = 'failed') finished
   group by chunk
), retry_due as (
  -- Retries are due in $2 ms: tell the relays and Postgres-lane workers (see task-finish-batch.sql).
  select pg_notify(:'schema' || '.task_ready', $2::bigint::text)
    from moved
   where state = 'pending'
  having count(*) > 0
)
select count(*) filter (where state = 'pending')::int as retried,
       count(*) filter (where state = 'failed')::int as failed,
       (select count(*) from announced) + (select count(*) from retry_due) + (select count(*) from events) as notified
  from moved
