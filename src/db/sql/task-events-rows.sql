-- tr.events: the rows behind one task_events notification (at most 350 ids),
-- read once for every subscriber that asked for details or filters by task
-- name or workflow. By primary key; a row the sweeper's retention deleted
-- meanwhile is simply missing. The row as it is now: it may have moved past
-- the event already (a 'started' read after the task succeeded).
select id::text as id, name, state, attempt, max_attempts, workflow_id::text as workflow_id, progress, last_error
  from :"schema".tasks
 where id = any($1::bigint[])
