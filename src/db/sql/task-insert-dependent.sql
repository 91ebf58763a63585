-- Enqueue tasks that depend on others (dependsOn), one row per input, in
-- one statement. Ids are drawn from the table's sequence first, so the
-- dependency edges can name the new rows. A row starts 'waiting' while any
-- task it depends on has not succeeded, 'pending' otherwise (all done
-- already); a dependency that failed or was cancelled leaves it waiting,
-- and the sweeper cancels it. Rows whose (name, idempotency key) already
-- exists are skipped with their edges, and the caller matches them by name
-- and key.
-- $9: each row's dependencies as an array literal of ids, '{1,2}'; $10 group keys;
-- $11 trace contexts (0016), or null when none is traced.
with input as materialized (
  select nextval(pg_get_serial_sequence(format('%I.tasks', :'schema'), 'id')) as id,
         name, queue, payload, priority, max_attempts,
         coalesce(run_at, now() + delay_ms * interval '1 millisecond') as run_at,
         idempotency_key, depends_on::bigint[] as depends_on, group_key, trace_context, ord
    from unnest($1::text[], $2::text[], $3::jsonb[], $4::smallint[], $5::int[],
                $6::timestamptz[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::jsonb[])
         with ordinality as i(name, queue, payload, priority, max_attempts, run_at, delay_ms, idempotency_key, depends_on, group_key, trace_context, ord)
), inserted as (
  insert into :"schema".tasks (id, name, queue, payload, priority, max_attempts, run_at, idempotency_key, group_key, trace_context, state)
  select i.id, i.name, i.queue, i.payload, i.priority, i.max_attempts, i.run_at, i.idempotency_key, i.group_key, i.trace_context,
         case when exists (select 1
                             from :"schema".tasks p
                            where p.id = any(i.depends_on)
                              and p.state <> 'succeeded')
              then 'waiting' else 'pending' end
    from input i
   order by i.ord
  on conflict (name, idempotency_key) where idempotency_key is not null do nothing
  returning id, name, idempotency_key, state
), edges as (
  insert into :"schema".task_dependencies (task_id, depends_on)
  select distinct ins.id, dep
    from inserted ins
    join input i on i.id = ins.id
   cross join unnest(i.depends_on) as dep
), woken as (
  -- Rows whose dependencies had all succeeded are due now: wake a relay.
  select pg_notify(:'schema' || '.task_ready', '') from inserted where state = 'pending' having count(*) > 0
)
select ins.id, ins.name, ins.idempotency_key, ins.state, (select count(*) from woken) as woken
  from inserted ins
  join input i on i.id = ins.id
 order by i.ord
