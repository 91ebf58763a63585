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

-- The SQL API's dependsOn: enqueue() (0004) for a task that waits until every
-- task in depends_on has succeeded. Call it in the same transaction as the
-- tasks it depends on, or after they committed.
create function :"schema".enqueue_after(
  depends_on      bigint[],
  task_name       text,
  payload         jsonb       default '{}'::jsonb,
  queue           text        default null,
  priority        integer     default null,
  run_at          timestamptz default null,
  delay           interval    default null,
  max_attempts    integer     default null,
  idempotency_key text        default null
) returns bigint
language plpgsql
set search_path = :"schema", pg_temp
as $$
#variable_conflict use_column
declare
  missing  bigint[];
  existing bigint;
  new_id   bigint;
begin
  if depends_on is null or cardinality(depends_on) not between 1 and 1000 then
    raise exception 'taskrelay.enqueue_after: depends_on must hold 1-1000 task ids, got %', coalesce(cardinality(depends_on)::text, 'NULL')
      using errcode = '22023', hint = 'Without dependencies, call enqueue().';
  end if;
  missing := array(select d from unnest(depends_on) d
                    where d is null or not exists (select 1 from tasks t where t.id = d));
  if cardinality(missing) > 0 then
    raise exception 'taskrelay.enqueue_after: depends_on names no task: %', array_to_string(missing, ', ', 'NULL')
      using errcode = '22023', hint = 'Enqueue the tasks it depends on first, in the same transaction or before.';
  end if;
  -- An idempotent repeat returns the first task as it is.
  if idempotency_key is not null then
    select t.id into existing from tasks t where t.idempotency_key = enqueue_after.idempotency_key;
    if existing is not null then
      return existing;
    end if;
  end if;

  new_id := enqueue(task_name, payload, queue, priority, run_at, delay, max_attempts, idempotency_key);
  insert into task_dependencies (task_id, depends_on)
  select distinct new_id, d from unnest(enqueue_after.depends_on) d
  on conflict do nothing;
  -- Not visible to relays before the caller commits: waiting from the start.
  update tasks t
     set state = 'waiting'
   where t.id = new_id
     and t.state = 'pending'
     and exists (select 1 from tasks p
                  where p.id = any(enqueue_after.depends_on)
                    and p.state <> 'succeeded');
  return new_id;
end $$;
