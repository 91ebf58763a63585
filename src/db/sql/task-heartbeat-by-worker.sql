-- Lease guard (a thread of the worker process): while the worker's event
-- loop is blocked by a handler's synchronous code, its heartbeat timer
-- cannot fire; renew every lease this worker instance holds, and its row in
-- workers ($3 ms more, as WorkerPresence would), so the sweeper does not
-- hand a task whose code is still running to another worker.
-- Fenced by instance, not by attempt: worker_id carries a random suffix per
-- Worker instance, a claim by anyone else overwrites it, and only running
-- rows match, so it renews exactly the attempts this instance holds. Rows
-- another statement has locked (a finish batch recording their outcome, a
-- heartbeat in flight) are skipped: they need no renewal from here, and
-- waiting on them in another order could deadlock. Runs only while the loop
-- is blocked; finds the rows among the running ones (tasks_running_lease_idx).
with presence as (
  update :"schema".workers
     set last_seen_at = now(), expires_at = now() + $3::bigint * interval '1 millisecond'
   where id = $1
)
update :"schema".tasks t
   set lease_expires_at = now() + $2::bigint * interval '1 millisecond'
  from (select id
          from :"schema".tasks
         where state = 'running'
           and worker_id = $1
           for no key update skip locked) as held
 where t.id = held.id
