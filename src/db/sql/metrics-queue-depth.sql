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
union all
-- 'held_back': the due pending tasks of queues whose settings hold them now
-- (0013: paused, throttled, at the concurrency limit, out of rate tokens).
-- Counted in 'pending' too. Reads only queues that have settings.
select t.queue, 'held_back', count(*)::int, null
  from :"schema".queues q
  join :"schema".tasks t on t.queue = q.name and t.state = 'pending' and t.run_at <= now()
 where q.paused
    or q.throttled_until > now()
    or :"schema".bucket_tokens(q.tokens, q.refilled_at, q.rate_limit, q.rate_per_ms) < 1
    or q.concurrency <= (select count(*) from :"schema".tasks a
                          where a.queue = q.name and a.state in ('dispatched', 'running') and a.group_key >= '')
 group by t.queue
