-- Sweeper: running tasks whose lease expired lost their worker (crash,
-- SIGKILL, partition). Retry them after $2 ms while attempts remain, else
-- fail them; either way the error says the worker was lost. The old
-- worker's late writes are fenced out by (id, attempt, state = 'running').
with expired as (
  select id
    from :"schema".tasks
   where state = 'running'
     and lease_expires_at < now()
   order by lease_expires_at
   limit $1
     for update skip locked
), moved as (
  update :"schema".tasks t
     set state       = case when t.attempt < t.max_attempts then 'pending' else 'failed' end,
         run_at      = case when t.attempt < t.max_attempts
                            then now() + $2::bigint * interval '1 millisecond' else t.run_at end,
         finished_at = case when t.attempt < t.max_attempts then null else now() end,
         lease_expires_at = null,
         dispatch_token = null,
         last_error = jsonb_build_object(
           'message', format('worker %s was lost during attempt %s (lease expired at %s)',
                             coalesce(t.worker_id, 'unknown'), t.attempt, t.lease_expires_at),
           'kind', 'lost_worker', 'attempt', t.attempt, 'at', now())
    from expired
   where t.id = expired.id
  returning t.id, t.state
), announced as (
  select pg_notify(:'schema' || '.task_finished', string_agg(id::text, ','))
    from moved where state = 'failed' having count(*) > 0
)
select count(*) filter (where state = 'pending')::int as retried,
       count(*) filter (where state = 'failed')::int as failed,
       (select count(*) from announced) as announced
  from moved
