-- Enqueue a workflow (src/workflow/plan.ts): its row in workflows and every
-- task of it, in one statement, inside the caller's transaction. Ids are
-- drawn from the tasks sequence first, so edges can name the new rows; $9
-- holds each row's dependencies as indexes (0-based) into these inputs, in
-- the order their results are listed (task_dependencies.position). A row
-- with dependencies starts 'waiting'; the others 'pending'.
-- $1 workflow id, $2 name, $3 onError step, $4 result row indexes, $5 whether the result is a list.
with input as materialized (
  select nextval(pg_get_serial_sequence(format('%I.tasks', :'schema'), 'id')) as id,
         name, queue, payload, priority, max_attempts, delay_ms, depends_on::int[] as depends_on,
         input, compensation, ord
    from unnest($6::text[], $7::text[], $8::jsonb[], $10::smallint[], $11::int[], $12::bigint[], $9::text[],
                $13::text[], $14::jsonb[])
         with ordinality as i(name, queue, payload, priority, max_attempts, delay_ms, depends_on, input, compensation, ord)
), workflow as (
  insert into :"schema".workflows (id, name, on_error, result_task_ids, result_is_list)
  select $1::uuid, $2, $3::jsonb,
         array(select i.id from unnest($4::int[]) with ordinality r(idx, pos) join input i on i.ord = r.idx + 1 order by r.pos),
         $5
  -- addTo (a handler growing its own workflow): the row exists; it is kept as it is.
  on conflict (id) do nothing
), inserted as (
  insert into :"schema".tasks (id, name, queue, payload, priority, max_attempts, run_at, state, workflow_id, input, compensation)
  select i.id, i.name, i.queue, i.payload, i.priority, i.max_attempts,
         now() + i.delay_ms * interval '1 millisecond',
         case when cardinality(i.depends_on) > 0 then 'waiting' else 'pending' end,
         $1::uuid, i.input, i.compensation
    from input i
   order by i.ord
  returning id, state
), edges as (
  insert into :"schema".task_dependencies (task_id, depends_on, position)
  select i.id, p.id, e.pos
    from input i
   cross join unnest(i.depends_on) with ordinality as e(idx, pos)
    join input p on p.ord = e.idx + 1
), woken as (
  select pg_notify(:'schema' || '.task_ready', '') from inserted where state = 'pending' having count(*) > 0
)
select i.id::text as id, (select count(*) from woken) as woken
  from input i
  join inserted ins on ins.id = i.id
 order by i.ord
