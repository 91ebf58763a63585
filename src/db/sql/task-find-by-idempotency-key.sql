-- Ids of existing tasks for idempotency keys whose insert was skipped.
select id, idempotency_key from :"schema".tasks where idempotency_key = any($1::text[])
