-- Milliseconds until the earliest delayed task falls due (null: none), read
-- by an idle relay so it wakes then rather than at its next poll. One probe
-- of tasks_delayed_idx (0007), which holds only pending rows whose run_at is
-- later than their created_at.
select (extract(epoch from min(run_at) - now()) * 1000)::float8 as due_in_ms
  from :"schema".tasks
 where state = 'pending'
   and run_at > created_at
   and run_at > now()
