-- The trace context of a task enqueue_keyed() (0015) created or debounced:
-- that function takes no trace context, so a traced keyed enqueue (and only
-- one) sets it with this second statement, in the same transaction.
update :"schema".tasks
   set trace_context = $2::jsonb
 where id = $1::bigint
