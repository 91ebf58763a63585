-- Rollups: add the tasks finished in [$1, $2) to their (minute, queue) rows
-- and move the watermark to $2, in the transaction that holds the watermark
-- lock (rollup-lock.sql chose $2): at-most-once and at-least-once together.
-- Reads through tasks_finished_idx, a range of a few seconds' finishes.
-- Histograms are dense int[64] (0017's rollup_bucket); an existing row adds
-- them element by element (hist_add).
with f as (
  select date_trunc('minute', t.finished_at) as minute, t.queue, t.state,
         case when t.state <> 'cancelled' then :"schema".rollup_bucket(extract(epoch from t.started_at - t.run_at)::float8 * 1000) end as wb,
         case when t.state <> 'cancelled' then :"schema".rollup_bucket(extract(epoch from t.finished_at - t.started_at)::float8 * 1000) end as rb
    from :"schema".tasks t
   where t.state in ('succeeded', 'failed', 'cancelled')
     and t.finished_at >= $1::timestamptz
     and t.finished_at < $2::timestamptz
), c as (
  select minute, queue,
         count(*) filter (where state = 'succeeded')::int as succeeded,
         count(*) filter (where state = 'failed')::int as failed,
         count(*) filter (where state = 'cancelled')::int as cancelled
    from f
   group by 1, 2
), cells as (
  select minute, queue, 1 as kind, wb as b, count(*)::int as n from f where wb is not null group by 1, 2, 4
  union all
  select minute, queue, 2, rb, count(*)::int from f where rb is not null group by 1, 2, 4
), h as (
  select c.minute, c.queue, k.kind, array_agg(coalesce(x.n, 0) order by i.i) as hist
    from c
   cross join (values (1), (2)) k(kind)
   cross join generate_series(0, 63) i(i)
    left join cells x on x.minute = c.minute and x.queue = c.queue and x.kind = k.kind and x.b = i.i
   group by 1, 2, 3
), ins as (
  insert into :"schema".task_rollups as r (minute, queue, succeeded, failed, cancelled, wait_hist, run_hist)
  select c.minute, c.queue, c.succeeded, c.failed, c.cancelled, w.hist, rh.hist
    from c
    join h w on w.minute = c.minute and w.queue = c.queue and w.kind = 1
    join h rh on rh.minute = c.minute and rh.queue = c.queue and rh.kind = 2
  on conflict (minute, queue) do update
     set succeeded = r.succeeded + excluded.succeeded,
         failed = r.failed + excluded.failed,
         cancelled = r.cancelled + excluded.cancelled,
         wait_hist = :"schema".hist_add(r.wait_hist, excluded.wait_hist),
         run_hist = :"schema".hist_add(r.run_hist, excluded.run_hist)
  returning 1
), wm as (
  update :"schema".task_rollup_watermark set upto = $2::timestamptz returning 1
)
select (select count(*) from f)::int as tasks,
       (select count(*) from ins)::int as minutes,
       (select count(*) from wm)::int as moved
