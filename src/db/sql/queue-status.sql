-- Queues with their settings and unfinished tasks (the queue_status view,
-- 0015): all of them ($1 null) or one.
select queue, paused, coalesce(paused_groups, '{}') as paused_groups,
       concurrency, rate_limit, rate_per_ms, group_concurrency, group_rate_limit, group_rate_per_ms,
       throttled_until, source, due::int, delayed::int, dispatched::int, running::int
  from :"schema".queue_status
 where $1::text is null or queue = $1
 order by queue
