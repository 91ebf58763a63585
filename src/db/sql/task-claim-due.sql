-- Worker, Postgres lane: claim up to $2 due tasks of its queues ($1, in the
-- order to serve them: the worker rotates it, so queues take turns) straight
-- from Postgres, without Redis. Used while Redis is unreachable (lane
-- "auto") or always (lane "postgres").
--
-- Pending rows, best first, as the relay would pick them (tasks_pending_idx
-- leads with queue). With $5 set, also dispatched rows whose Redis message
-- has waited over $5 ms: it may sit in a Redis the worker cannot reach. The
-- claim is the same fenced move as the Redis lane's: attempt + 1, a lease,
-- this worker's id, and this claim's own token ($7, a fresh UUID per claim),
-- so a message left in Redis for a row claimed here finds no match
-- (task-claim-batch.sql) and is dropped as stale. SKIP LOCKED lets relays
-- and other workers take other rows side by side; a row is claimed by
-- exactly one of them.
--
-- Idempotent for the claim that sent it: the worker sends a claim whose
-- reply was lost (a Postgres restart) again with the same token $7, and the
-- rows it already claimed come back as they are, same attempt, instead of
-- staying running with nobody on them until the lease expires. Only rows of
-- that token: a row running under another claim of this worker (one it is
-- finishing, or one whose outcome a crash undid) is never adopted, so an
-- attempt never runs twice. $6: ids the worker holds, never adopted either.
--
-- Queues with settings (0013) are not read here: flow_take() moved their
-- tasks, within the queues' limits, to dispatched with this claim's token
-- just before (task-flow-take.sql), and $8 lists them; they are claimed first.
with pending as (
  select c.id
    from unnest($1::text[]) as q(queue)
   cross join lateral (
     select t.id
       from :"schema".tasks t
      where t.state = 'pending'
        and t.queue = q.queue
        and t.run_at <= now()
      order by t.priority desc, t.run_at, t.id
      limit $2
        for update skip locked
   ) c
   where not exists (select 1 from :"schema".queues f where f.name = q.queue)
   limit $2
), flowed as (
  select t.id
    from :"schema".tasks t
   where t.id = any ($8::bigint[])
     and t.state = 'dispatched'
     and t.dispatch_token = $7::uuid
     for update skip locked
), stranded as (
  select c.id
    from unnest($1::text[]) as q(queue)
   cross join lateral (
     select t.id
       from :"schema".tasks t
      where t.state = 'dispatched'
        and t.queue = q.queue
        and t.dispatched_at < now() - $5::bigint * interval '1 millisecond'
      order by t.dispatched_at
      limit $2
        for update skip locked
   ) c
   where $5::bigint is not null
   limit $2
), orphaned as (
  -- tasks_running_worker_idx (0011)
  select t.id
    from :"schema".tasks t
   where t.state = 'running'
     and t.worker_id = $4
     and t.dispatch_token = $7::uuid
     and t.id <> all ($6::bigint[])
     for update skip locked
), picked as (
  -- Rows flow_take() gave this claim, orphans, then stranded rows: they have waited longest.
  select id from flowed
  union all
  select id from orphaned
  union all
  select id from stranded
  union all
  select id from pending
  limit $2
), claimed as (
update :"schema".tasks t
   set state = 'running',
       attempt = case when t.state = 'running' then t.attempt else t.attempt + 1 end,
       dispatched_at = case when t.state = 'pending' then now() else t.dispatched_at end,
       dispatch_token = $7::uuid,
       started_at = case when t.state = 'running' then t.started_at else now() end,
       progress = case when t.state = 'running' then t.progress else null end,
       lease_expires_at = now() + $3::bigint * interval '1 millisecond',
       worker_id = $4,
       -- A workflow step fed by its predecessors (0012): their results become its payload.
       payload = case when t.input is null then t.payload else :"schema".task_input(t.id, t.input) end,
       input = null
 where t.id = any (array(select id from picked))
returning t.id, t.name, t.queue, t.payload, t.priority, t.attempt, t.max_attempts,
          (extract(epoch from t.created_at) * 1000)::float8 as created_ms, t.workflow_id, t.group_key,
          t.trace_context
), started as (
  -- 'started' on <schema>.task_events (0016), as in task-claim-batch.sql.
  select pg_notify(:'schema' || '.task_events', 'started ' || queue || ' ' || string_agg(id::text, ','))
    from (select id, queue, (row_number() over ()) / 350 as chunk from claimed) c
   where exists (select 1 from :"schema".task_event_listeners l where l.expires_at > now()) -- only while someone subscribes (0019)
   group by queue, chunk
)
select c.* from claimed c
 where (select count(*) from started) >= 0
