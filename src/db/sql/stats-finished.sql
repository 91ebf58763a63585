-- Stats: finishes per queue over the last hour, minute and 15 minutes, from
-- the sweeper's per-minute rollups (0017) plus the rows finished since its
-- watermark ($1, as a value so the planner knows how few rows those are) (tasks_finished_idx; a few seconds' worth while a sweeper runs,
-- at most the hour when none does). Never the finished history.
-- Windows slide with now(): a minute only partly inside one counts pro rata
-- (exact for a steady rate), the current minute counts whole.
with m as (
  select r.queue, r.minute, r.succeeded, r.failed, r.cancelled
    from :"schema".task_rollups r
   where r.minute >= date_trunc('minute', now() - interval '1 hour')
  union all
  select t.queue, date_trunc('minute', t.finished_at),
         count(*) filter (where t.state = 'succeeded')::int,
         count(*) filter (where t.state = 'failed')::int,
         count(*) filter (where t.state = 'cancelled')::int
    from :"schema".tasks t
   where t.state in ('succeeded', 'failed', 'cancelled')
     and t.finished_at >= $1::timestamptz -- the watermark, read just before (rollupWatermark)
     and t.finished_at >= date_trunc('minute', now() - interval '1 hour')
   group by 1, 2
), w as (
  -- share of each minute inside the window ending now: 1 inside, 0 outside
  select m.*,
         least(1, greatest(0, extract(epoch from m.minute + interval '1 minute' - (now() - interval '1 hour')) / 60))::float8 as w60,
         least(1, greatest(0, extract(epoch from m.minute + interval '1 minute' - (now() - interval '15 minutes')) / 60))::float8 as w15,
         least(1, greatest(0, extract(epoch from m.minute + interval '1 minute' - (now() - interval '1 minute')) / 60))::float8 as w1
    from m
)
select queue,
       round(sum(succeeded * w60))::int as succeeded,
       round(sum(failed * w60))::int as failed,
       round(sum(cancelled * w60))::int as cancelled,
       sum(succeeded * w1)::float8 as succeeded_1m,
       sum(failed * w1)::float8 as failed_1m,
       sum(succeeded * w15)::float8 as succeeded_15m,
       sum(failed * w15)::float8 as failed_15m
  from w
 group by queue
having sum(w60) > 0
 order by queue
