-- Worker: claim the tasks whose Redis messages it popped. One conditional
-- UPDATE for the batch: a row is claimed only if it is still dispatched
-- with the same token, so stale messages claim nothing, and a duplicated
-- message claims nothing for any other worker.
-- attempt only ever grows; (id, attempt) fences every later write.
--
-- Idempotent for the worker instance that sent it ($4, unique per instance):
-- a row it already claimed with the same token comes back as it is (same
-- attempt, lease renewed). When a claim's reply is lost after its commit,
-- the worker sends the claim again and gets its tasks, instead of leaving
-- them running with nobody on them until the lease expires (which would use
-- up an attempt). The worker drops rows whose attempt it already holds.
-- Each claim is announced on <schema>.task_events as 'started' (0016).
with claimed as (
update :"schema".tasks t
   set state = 'running',
       attempt = case when t.state = 'dispatched' then t.attempt + 1 else t.attempt end,
       started_at = case when t.state = 'dispatched' then now() else t.started_at end,
       -- A new attempt starts with no progress of its own.
       progress = case when t.state = 'dispatched' then null else t.progress end,
       lease_expires_at = now() + $3::bigint * interval '1 millisecond',
       worker_id = $4,
       -- A workflow step fed by its predecessors (0012): their results become its payload.
       payload = case when t.input is null then t.payload else :"schema".task_input(t.id, t.input) end,
       input = null
  from unnest($1::bigint[], $2::uuid[]) as m(id, token)
 where t.id = m.id
   and t.dispatch_token = m.token
   and (t.state = 'dispatched' or (t.state = 'running' and t.worker_id = $4))
-- created_at as epoch milliseconds: a float8 parses far cheaper in the
-- worker than a timestamptz, hundreds of times per batch.
returning t.id, t.name, t.queue, t.payload, t.priority, t.attempt, t.max_attempts,
          (extract(epoch from t.created_at) * 1000)::float8 as created_ms, t.workflow_id, t.group_key,
          t.trace_context
), started as (
  select pg_notify(:'schema' || '.task_events', 'started ' || queue || ' ' || string_agg(id::text, ','))
    from (select id, queue, (row_number() over ()) / 350 as chunk from claimed) c
   where exists (select 1 from :"schema".task_event_listeners l where l.expires_at > now()) -- only while someone subscribes (0019)
   group by queue, chunk
)
-- (The condition reads started, so that its NOTIFYs are sent: a CTE that
-- only selects runs when something reads it.)
select c.* from claimed c
 where (select count(*) from started) >= 0
