-- Worker: write the latest ctx.progress() of many running attempts in one
-- statement, fenced by (id, attempt, state = 'running') like outcomes. Rows
-- another statement holds (an outcome being written, a heartbeat) are
-- skipped, never waited for: the worker tries them again next time, and no
-- two of its batches can wait on each other. Announced as 'progress' on
-- <schema>.task_events (0016).
with reported as (
  select *
    from unnest($1::bigint[], $2::int[], $3::float8[], $4::jsonb[]) as r(id, attempt, value, info)
), locked as (
  select t.id
    from :"schema".tasks t
    join reported r on r.id = t.id and r.attempt = t.attempt
   where t.state = 'running'
   order by t.id
     for update of t skip locked
), written as (
  update :"schema".tasks t
     set progress = jsonb_build_object('value', r.value, 'info', r.info, 'at', now())
    from reported r
   where t.id = r.id
     and t.id in (select id from locked)
  returning t.id, t.queue
), events as (
  select pg_notify(:'schema' || '.task_events', 'progress ' || queue || ' ' || string_agg(id::text, ','))
    from (select id, queue, (row_number() over ()) / 350 as chunk from written) w
   group by queue, chunk
)
select w.id from written w
 where (select count(*) from events) >= 0
