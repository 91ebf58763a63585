-- Lease guard (a thread of the worker process): while the worker's event
-- loop is blocked by a handler's synchronous code, its heartbeat timer
-- cannot fire; renew every lease this worker instance holds, so the sweeper
-- does not hand a task whose code is still running to another worker.
-- worker_id is unique per instance, and a lease another worker took over
-- carries that worker's id. Runs only while the loop is blocked; reads the
-- running rows through tasks_running_lease_idx.
update :"schema".tasks
   set lease_expires_at = now() + $2::bigint * interval '1 millisecond'
 where state = 'running'
   and worker_id = $1
