-- Enqueue many tasks in one statement (the relay wake-up is added by
-- enqueueStatement(): at most one NOTIFY for the whole batch).
-- Rows are inserted in input order (ORDER BY ord); rows whose (name,
-- idempotency key) already exists are skipped, and the caller matches them
-- by name and key. $10: trace contexts (0016), or null when none is traced.
insert into :"schema".tasks (name, queue, payload, priority, max_attempts, run_at, idempotency_key, group_key, trace_context)
select name, queue, payload, priority, max_attempts,
       coalesce(run_at, now() + delay_ms * interval '1 millisecond'),
       idempotency_key, group_key, trace_context
  from unnest($1::text[], $2::text[], $3::jsonb[], $4::smallint[], $5::int[],
              $6::timestamptz[], $7::bigint[], $8::text[], $9::text[], $10::jsonb[])
       with ordinality as input(name, queue, payload, priority, max_attempts, run_at, delay_ms, idempotency_key, group_key, trace_context, ord)
 order by ord
on conflict (name, idempotency_key) where idempotency_key is not null do nothing
returning id, name, idempotency_key
