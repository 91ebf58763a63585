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
-- Both foreign keys cascade: pruning a finished task drops its edges. The
-- sweeper does not prune a task that still has a waiting dependent
-- (sweeper-prune-finished.sql): without its edge, that dependent would look
-- free to run. The foreign key on
-- depends_on also rejects an id that does not exist, and its KEY SHARE lock
-- conflicts only with deleting the row, never with a state change.

create table :"schema".task_dependencies (
  task_id    bigint not null references :"schema".tasks (id) on delete cascade,
  depends_on bigint not null references :"schema".tasks (id) on delete cascade,
  primary key (task_id, depends_on)
);
-- The finish statement looks up what waits on each succeeded task.
create index task_dependencies_depends_on_idx on :"schema".task_dependencies (depends_on);
-- The sweeper walks waiting tasks by id. finished_at is always null for
-- them; saying so keeps the index away from the finish statement, which
-- must find its few waiting rows by primary key, not walk them all (as 0005).
create index tasks_waiting_idx on :"schema".tasks (id) where state = 'waiting' and finished_at is null;

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
  -- An idempotent repeat returns the first task as it is. The lock (until
  -- the caller's transaction ends) makes a concurrent call with the same key
  -- wait here and then find the first task, rather than get its id back from
  -- enqueue() and add edges to it.
  if idempotency_key is not null then
    perform pg_advisory_xact_lock(hashtextextended('taskrelay.enqueue_after:' || idempotency_key, 0));
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

-- retry() as in 0001, except that a task with dependencies goes back to
-- waiting while any of them has not succeeded (a dependent the sweeper
-- cancelled because a dependency failed is then cancelled again, unless that
-- dependency is retried too and succeeds).
create or replace function :"schema".retry(task_id bigint) returns boolean
language plpgsql
set search_path = :"schema", pg_temp
as $$
declare
  done boolean;
begin
  update tasks t
     set state = case when exists (select 1
                                     from task_dependencies d
                                     join tasks p on p.id = d.depends_on
                                    where d.task_id = t.id
                                      and p.state <> 'succeeded')
                      then 'waiting' else 'pending' end,
         finished_at = null, result = null,
         -- not before a handler cancelled while running has lost its lease
         run_at = greatest(now(), coalesce((last_error ->> 'leaseExpiresAt')::timestamptz, now())),
         dispatch_token = null, dispatched_at = null, lease_expires_at = null,
         max_attempts = greatest(max_attempts, attempt + 1)
   where t.id = task_id and t.state in ('failed', 'cancelled');
  done := found;
  if done then
    perform pg_notify(current_schema() || '.task_ready', '');
  end if;
  return done;
end $$;
