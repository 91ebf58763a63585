-- Enqueue one task with a dedup window, as a singleton or debounced
-- (enqueue_keyed(), 0015): atomic under concurrent enqueues with one key;
-- outcome says whether this call created the task, found an earlier one,
-- or gave the pending one its payload.
select id, outcome
  from :"schema".enqueue_keyed($1, $2, $3::jsonb, $4, $5, $6::timestamptz, $7::bigint, $8,
                               $9, $10, $11::bigint, $12::bigint)
