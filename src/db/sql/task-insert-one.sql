-- Enqueue one task on the caller's executor. The unique partial index on
-- (name, idempotency_key) turns a repeated key of the same task name into
-- "do nothing"; the caller then reads the existing id
-- (task-find-by-idempotency-key.sql).
-- $6 run_at wins over $7 delay_ms; the delay uses the database clock.
-- $9: the group key ('' for none, 0013); $10 the trace context (null: not traced, 0016).
insert into :"schema".tasks (name, queue, payload, priority, max_attempts, run_at, idempotency_key, group_key, trace_context)
values ($1, $2, $3::jsonb, $4, $5, coalesce($6::timestamptz, now() + $7::bigint * interval '1 millisecond'), $8, $9, $10::jsonb)
on conflict (name, idempotency_key) where idempotency_key is not null do nothing
returning id
