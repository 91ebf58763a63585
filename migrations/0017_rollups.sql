-- taskrelay 0017: per-minute rollups of finished tasks, so stats, charts and
-- rates read O(queues × minutes) rows instead of scanning the finished history.
--
-- Written by the sweeper (src/sweeper/rollup-writer.ts, rollup-*.sql), never
-- on the worker's hot path: every pass adds the tasks finished in
-- [watermark, horizon) to their (minute, queue) rows and moves the watermark
-- to horizon, in one transaction that holds the watermark row's lock. Two
-- sweepers therefore take turns, and a crash rolls both back together: each
-- finish is counted once. Readers add the few rows finished since the
-- watermark (through tasks_finished_idx) for exact recent counts.
--
-- A finish is counted when it happens: a failed task retried later and then
-- succeeded counts once as failed and once as succeeded.

-- Histogram buckets (mirrored in src/admin/charts.ts): 0 is under 1 ms,
-- b in 1..62 holds [2^((b-1)/2), 2^(b/2)) ms, 63 is 2^31 ms (~25 days) and up.
-- Log-spaced and fixed, so any set of minutes adds up element by element and
-- a percentile of an hour or a day is exact to the bucket (a factor √2).
create function :"schema".rollup_bucket(ms double precision) returns integer
language sql immutable parallel safe
return case when ms is null then null
            when ms < 1 then 0
            else least(63, 1 + floor(2 * ln(ms) / ln(2)))::int end;

create function :"schema".hist_add(a integer[], b integer[]) returns integer[]
language sql immutable parallel safe
return array(select coalesce(a[i], 0) + coalesce(b[i], 0) from generate_series(1, 64) i order by i);

-- One row per queue and minute in which something of it finished. Keyed by
-- minute first: reads and pruning take a time range across every queue.
create table :"schema".task_rollups (
  minute    timestamptz not null,
  queue     text        not null,
  succeeded integer     not null default 0,
  failed    integer     not null default 0,
  cancelled integer     not null default 0,
  -- wait: started_at - run_at (due until its last attempt started), of
  -- succeeded and failed tasks; run: finished_at - started_at of the last attempt
  wait_hist integer[]   not null,
  run_hist  integer[]   not null,
  primary key (minute, queue)
);

-- Everything finished before `upto` is in task_rollups. Starts a day before
-- the migration: the sweeper's first passes roll up the last day (a chunk
-- per pass), and until then readers count those rows themselves.
create table :"schema".task_rollup_watermark (
  id   boolean primary key default true check (id),
  upto timestamptz not null
);
insert into :"schema".task_rollup_watermark (upto) values (now() - interval '1 day');

-- `taskrelay list --state failed` (and cancelled), newest first, reads a page
-- of this index instead of walking the primary key through the history. Only
-- failing and cancelled finishes add an entry (a finish is never a HOT
-- update: state is in the partial indexes' predicates).
create index tasks_failed_idx on :"schema".tasks (id) where state in ('failed', 'cancelled');

-- queue_status (0015) counted `state in ('pending', 'dispatched', 'running')`
-- in one scan, which no partial index serves: a sequential scan of the whole
-- history on every stats, `queues list` and dashboard read. Same columns, one
-- count per state, each through its own index (the always-true companions,
-- as in metrics-queue-depth.sql, let 0005's indexes serve).
create or replace view :"schema".queue_status as
with names as (
  select name as queue from :"schema".queues
  union
  select queue from :"schema".task_types
), counts as (
  select queue, sum(due)::bigint as due, sum(delayed)::bigint as delayed,
         sum(dispatched)::bigint as dispatched, sum(running)::bigint as running
    from (
      select t.queue, count(*) filter (where t.run_at <= now()) as due, count(*) filter (where t.run_at > now()) as delayed,
             0 as dispatched, 0 as running
        from :"schema".tasks t where t.state = 'pending' group by t.queue
      union all
      select t.queue, 0, 0, count(*), 0
        from :"schema".tasks t where t.state = 'dispatched' and t.dispatched_at is not null group by t.queue
      union all
      select t.queue, 0, 0, 0, count(*)
        from :"schema".tasks t where t.state = 'running' and t.lease_expires_at is not null group by t.queue
    ) s
   group by queue
)
select n.queue,
       coalesce(q.paused, false) as paused,
       q.concurrency, q.rate_limit, q.rate_per_ms,
       q.group_concurrency, q.group_rate_limit, q.group_rate_per_ms,
       (select array_agg(g.group_key order by g.group_key) from :"schema".queue_groups g
         where g.queue = n.queue and g.paused) as paused_groups,
       case when q.throttled_until > now() then q.throttled_until end as throttled_until,
       :"schema".bucket_tokens(q.tokens, q.refilled_at, q.rate_limit, q.rate_per_ms) as tokens,
       coalesce(q.source, 'none') as source,
       coalesce(c.due, 0) as due, coalesce(c.delayed, 0) as delayed,
       coalesce(c.dispatched, 0) as dispatched, coalesce(c.running, 0) as running
  from (select queue from names union select queue from counts) n
  left join :"schema".queues q on q.name = n.queue
  left join counts c on c.queue = n.queue;
