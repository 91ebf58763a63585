-- Enqueue one task that has no idempotency key (the common case): a plain
-- INSERT. ON CONFLICT would make every row a speculative insertion, one more
-- WAL record per row for nothing (task-insert-one.sql handles keys).
-- $6 run_at wins over $7 delay_ms; the delay uses the database clock.
-- $8: the group key ('' for none, 0013); $9 the enqueuing code's trace context (null: not traced, 0016).
insert into :"schema".tasks (name, queue, payload, priority, max_attempts, run_at, group_key, trace_context)
values ($1, $2, $3::jsonb, $4, $5, coalesce($6::timestamptz, now() + $7::bigint * interval '1 millisecond'), $8, $9::jsonb)
returning id
