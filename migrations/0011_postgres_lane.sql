-- taskrelay 0011: the Postgres lane and dead workers noticed in seconds.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0011_postgres_lane.sql
--
-- Why: a worker process renews its row in workers every presenceMs (about
-- a second) and the row's expires_at lies lostAfterMs ahead. When it
-- passes, the worker died (SIGKILL, a lost machine) or is cut off from
-- Postgres; the sweeper then retries the running tasks it held at once,
-- instead of waiting for each task's lease (sweeper-reclaim-lost.sql). This
-- index finds a worker's running tasks by its id: one probe per dead worker.
-- Its predicate names worker_id (every running row has one), as 0005 did for
-- the other in-flight indexes: the worker's batch writes, which do not, can
-- never pick it over their primary-key lookups.
create index tasks_running_worker_idx on :"schema".tasks (worker_id)
  where state = 'running' and worker_id is not null;
