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
