-- Metrics: unfinished tasks by queue and state, and each queue's oldest due
-- pending task's age in seconds. One count per state, so each goes through
-- that state's partial index (the always-true conditions on dispatched_at
-- and lease_expires_at let 0005's indexes serve): the cost grows with the
-- backlog, not with the table.
select queue, 'pending' as state, count(*)::int as tasks,
       extract(epoch from now() - min(run_at) filter (where run_at <= now()))::float8 as oldest_due_seconds
  from :"schema".tasks
 where state = 'pending'
 group by queue
union all
select queue, 'dispatched', count(*)::int, null
  from :"schema".tasks
 where state = 'dispatched'
   and dispatched_at is not null
 group by queue
union all
select queue, 'running', count(*)::int, null
  from :"schema".tasks
 where state = 'running'
   and lease_expires_at is not null
 group by queue
union all
select queue, 'waiting', count(*)::int, null
  from :"schema".tasks
 where state = 'waiting'
   and finished_at is null
 group by queue
