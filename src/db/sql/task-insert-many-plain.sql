-- Enqueue many tasks without idempotency keys in one statement (the relay
-- wake-up is added by enqueueStatement(): at most one NOTIFY for the batch).
-- No ON CONFLICT: see task-insert-one-plain.sql.
-- Rows are inserted and returned in input order (ORDER BY ord).
-- $9: trace contexts (0016), or null for a batch with none traced: unnest
-- pads a shorter (or null) array with nulls.
insert into :"schema".tasks (name, queue, payload, priority, max_attempts, run_at, group_key, trace_context)
select name, queue, payload, priority, max_attempts,
       coalesce(run_at, now() + delay_ms * interval '1 millisecond'), group_key, trace_context
  from unnest($1::text[], $2::text[], $3::jsonb[], $4::smallint[], $5::int[],
              $6::timestamptz[], $7::bigint[], $8::text[], $9::jsonb[])
       with ordinality as input(name, queue, payload, priority, max_attempts, run_at, delay_ms, group_key, trace_context, ord)
 order by ord
returning id
