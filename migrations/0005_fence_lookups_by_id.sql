-- taskrelay 0005: the worker's batch writes look their rows up by primary
-- key, whatever the statistics say.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0005_fence_lookups_by_id.sql
--
-- Why: the claim, finish, heartbeat and hand-back statements join an array
-- of ids to tasks and fence each row with state = 'dispatched' or 'running'.
-- That condition let Postgres use the partial index of those states, and
-- with statistics taken before a burst ("almost nothing is running") the
-- planner costs a scan of it at one row. A prepared statement's generic
-- plan (after five calls) then nested-loops the whole batch against every
-- running row: a finish of 500 outcomes took 73-140 ms instead of 5 ms,
-- and a heartbeat of 500 leases 63 ms (bench/tools/pg-drain-cost.ts).
--
-- The indexes below hold the same rows as before (a running row always has
-- a lease, a dispatched row always a dispatched_at), but their predicates now
-- also say so. The sweeper's and relay's queries name lease_expires_at or
-- dispatched_at and still use them; the batch writes, which don't, can no
-- longer, so the only cheap plan left to them is one primary-key lookup per
-- array element. Both indexes hold only in-flight rows: rebuilding them is
-- quick even on a large table.

drop index :"schema".tasks_running_lease_idx;
-- Sweeper: expired leases.
create index tasks_running_lease_idx on :"schema".tasks (lease_expires_at)
  where state = 'running' and lease_expires_at is not null;

drop index :"schema".tasks_dispatched_idx;
-- Sweeper dispatch timeout and the relay's re-dispatch after a failover.
create index tasks_dispatched_idx on :"schema".tasks (queue, dispatched_at)
  where state = 'dispatched' and dispatched_at is not null;
