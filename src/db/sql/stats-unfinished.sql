-- Stats: unfinished tasks per queue, one count per state so each goes
-- through that state's partial index (the always-true conditions on
-- dispatched_at, lease_expires_at and finished_at let 0005's and 0008's
-- indexes serve, as in metrics-queue-depth.sql): O(backlog), not O(table).
-- held_back: due pending tasks of queues whose settings hold them now
-- (paused, throttled, at the limit, out of rate tokens); counted in pending too.
select queue,
       sum(waiting)::int as waiting, sum(pending)::int as pending, sum(scheduled)::int as scheduled,
       sum(dispatched)::int as dispatched, sum(running)::int as running, sum(held_back)::int as held_back,
       max(oldest_ms)::float8 as oldest_ms
  from (
    select queue, 0 as waiting, count(*) filter (where run_at <= now()) as pending, count(*) filter (where run_at > now()) as scheduled,
           0 as dispatched, 0 as running, 0 as held_back,
           extract(epoch from now() - min(run_at) filter (where run_at <= now())) * 1000 as oldest_ms
      from :"schema".tasks where state = 'pending' group by queue
    union all
    select queue, 0, 0, 0, count(*), 0, 0, null from :"schema".tasks where state = 'dispatched' and dispatched_at is not null group by queue
    union all
    select queue, 0, 0, 0, 0, count(*), 0, null from :"schema".tasks where state = 'running' and lease_expires_at is not null group by queue
    union all
    select queue, count(*), 0, 0, 0, 0, 0, null from :"schema".tasks where state = 'waiting' and finished_at is null group by queue
    union all
    select t.queue, 0, 0, 0, 0, 0, count(*), null
      from :"schema".queues q
      join :"schema".tasks t on t.queue = q.name and t.state = 'pending' and t.run_at <= now()
     where q.paused
        or q.throttled_until > now()
        or :"schema".bucket_tokens(q.tokens, q.refilled_at, q.rate_limit, q.rate_per_ms) < 1
        or q.concurrency <= (select count(*) from :"schema".tasks a
                              where a.queue = q.name and a.state in ('dispatched', 'running') and a.group_key >= '')
     group by t.queue
  ) s
 group by queue
 order by queue
