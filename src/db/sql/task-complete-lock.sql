-- Handler: ctx.complete(trx, result), inside the application's own
-- transaction. Lock the task's row and read whether this attempt still owns
-- it: running, the same attempt, this worker, and a lease not yet expired.
-- The lock holds until the caller's transaction ends, so neither the
-- sweeper nor a cancel can move the row in between; task-finish-batch.sql
-- then writes the outcome in the same transaction, fenced by (id, attempt).
select state, attempt, worker_id, lease_expires_at > now() as leased
  from :"schema".tasks
 where id = $1
   for update
