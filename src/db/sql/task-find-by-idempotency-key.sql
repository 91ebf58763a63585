-- Ids of existing tasks for (name, idempotency key) pairs whose insert was
-- skipped: a key is unique per task name (migration 0009).
select t.id, t.name, t.idempotency_key
  from :"schema".tasks t
  join unnest($1::text[], $2::text[]) as k(name, idempotency_key)
    on t.name = k.name and t.idempotency_key = k.idempotency_key
 where t.idempotency_key is not null
