-- Sweeper: open workflows (0012), a batch at a time by id from $1 (the
-- sweeper keeps the cursor and wraps around), through workflows_open_idx.
--   * a step failed and its failure is not handled yet: workflow_compensate()
--     enqueues the compensations and the error callback, once (it sets
--     failure_handled_at first; a second sweeper finds it set);
--   * nothing of it is unfinished and any failure was handled: finished_at,
--     so later passes no longer read it.
-- The compensations enqueued here are unfinished tasks of the workflow, so
-- a workflow that failed closes on a later pass, once they have run.
with batch as (
  select w.id, w.failure_handled_at
    from :"schema".workflows w
   where w.finished_at is null
     and w.id > $1::uuid
   order by w.id
   limit $2
), verdict as (
  select b.id, b.failure_handled_at,
         count(t.id) filter (where t.state = 'failed') as failed,
         count(t.id) filter (where t.state in ('waiting', 'pending', 'dispatched', 'running')) as unfinished
    from batch b
    left join :"schema".tasks t on t.workflow_id = b.id
   group by b.id, b.failure_handled_at
), compensated as (
  select :"schema".workflow_compensate(v.id) as enqueued
    from verdict v
   where v.failed > 0
     and v.failure_handled_at is null
), finished as (
  update :"schema".workflows w
     set finished_at = now()
    from verdict v
   where w.id = v.id
     and v.unfinished = 0
     and (v.failed = 0 or v.failure_handled_at is not null)
     and w.finished_at is null
  returning w.id
)
select (select count(*) from batch)::int as scanned,
       (select max(id::text) from batch) as last_id,
       (select count(*) from compensated where enqueued > 0)::int as failed_handled,
       (select coalesce(sum(enqueued), 0) from compensated)::int as enqueued,
       (select count(*) from finished)::int as finished
