-- taskrelay 0008: task dependencies. A task enqueued with dependsOn waits
-- (state 'waiting') until every task it depends on has succeeded, then
-- becomes pending. If one of them fails or is cancelled, it is cancelled
-- and never runs.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0008_task_dependencies.sql
--
-- The worker's finish statement promotes the dependents of what just
-- succeeded (task-finish-batch.sql); the sweeper settles the rest: tasks
-- whose last dependencies finished in two batches at once, and dependents of
-- failed or cancelled tasks (sweeper-settle-waiting.sql).
--
-- Both foreign keys cascade: pruning a finished task drops its edges (its
-- dependents were settled long before retention ends). The foreign key on
-- depends_on also rejects an id that does not exist, and its KEY SHARE lock
-- conflicts only with deleting the row, never with a state change.

create table :"schema".task_dependencies (
  task_id    bigint not null references :"schema".tasks (id) on delete cascade,
  depends_on bigint not null references :"schema".tasks (id) on delete cascade,
  primary key (task_id, depends_on)
);
-- The finish statement looks up what waits on each succeeded task.
create index task_dependencies_depends_on_idx on :"schema".task_dependencies (depends_on);
-- The sweeper walks waiting tasks by id.
create index tasks_waiting_idx on :"schema".tasks (id) where state = 'waiting';
