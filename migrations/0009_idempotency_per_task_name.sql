-- taskrelay 0009: idempotency keys are scoped per task name; the SQL API
-- enforces the payload limit and the delay / run_at range of TypeScript.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0009_idempotency_per_task_name.sql
--
-- Why: the key was unique over every task name, so enqueue(receipt, key k)
-- made a later enqueue(updateStock, key k) silently return the receipt's id,
-- and a user's key could take a scheduler fire's key and suppress the fire.
-- Now the pair (name, idempotency_key) is unique, and keys starting with
-- "schedule:" are reserved for the scheduler's fires
-- (schedule:<schedule>:<fire time>, src/scheduler/fire.ts): enqueue()
-- refuses them here, as TypeScript does. Keys are free again once retention
-- prunes the task that held them.
--
-- Upgrade: statements of older taskrelay versions name the old index in
-- ON CONFLICT and fail with 42P10 after this migration, so roll every
-- process onto this version before (or right after) migrating. Building the
-- index blocks enqueues for a while on a large table (as 0007): migrate in
-- a quiet moment. Unique per key already means unique per (name, key), so
-- existing rows always fit.

drop index :"schema".tasks_idempotency_key_idx;
-- A second enqueue of the same task name with the same key finds the first task.
create unique index tasks_idempotency_key_idx on :"schema".tasks (name, idempotency_key) where idempotency_key is not null;

-- enqueue() as in 0004, plus: the key is scoped to task_name and may not
-- start with "schedule:"; the payload is at most 1 MiB (the TypeScript
-- default, maxPayloadBytes), measured as Postgres prints it (payload::text);
-- delay is at most 3650 days and run_at between 1970-01-01 and 3650 days
-- from now (src/duration.ts MAX_DELAY_MS), so nothing reaches the INSERT that
-- would fail there with a less helpful error.
create or replace function :"schema".enqueue(
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
  defaults task_types%rowtype;
  new_id   bigint;
  bytes    integer;
begin
  if task_name is null or task_name !~ '^[A-Za-z0-9_.:/-]{1,200}$' then
    raise exception 'taskrelay.enqueue: invalid task_name %', coalesce(quote_literal(task_name), 'NULL')
      using errcode = '22023', hint = 'Use 1-200 characters from A-Z a-z 0-9 _ . : / -.';
  end if;
  if payload is null or jsonb_typeof(payload) <> 'object' then
    raise exception 'taskrelay.enqueue: payload must be a JSON object, got %', coalesce(jsonb_typeof(payload), 'NULL')
      using errcode = '22023';
  end if;
  bytes := octet_length(payload::text);
  if bytes > 1048576 then
    raise exception 'taskrelay.enqueue: payload is % bytes, over the limit of 1048576 bytes', bytes
      using errcode = '22023', hint = 'Store large data elsewhere and enqueue a reference to it.';
  end if;
  if run_at is not null and delay is not null then
    raise exception 'taskrelay.enqueue: give run_at or delay, not both' using errcode = '22023';
  end if;
  if delay < interval '0' then
    raise exception 'taskrelay.enqueue: delay must not be negative, got %', delay using errcode = '22023';
  end if;
  -- Compared in seconds: now() + a huge interval would overflow before any check.
  if extract(epoch from delay) > 3650 * 86400 then
    raise exception 'taskrelay.enqueue: delay must be at most 3650 days (10 years), got %', delay using errcode = '22023';
  end if;
  if run_at < '1970-01-01 00:00:00+00' or run_at > now() + interval '3650 days' then
    raise exception 'taskrelay.enqueue: run_at must be between 1970-01-01 and 3650 days (10 years) from now, got %', run_at
      using errcode = '22023';
  end if;
  if priority is not null and priority not between -1000 and 1000 then
    raise exception 'taskrelay.enqueue: priority must be between -1000 and 1000, got %', priority using errcode = '22023';
  end if;
  if max_attempts is not null and max_attempts not between 1 and 1000 then
    raise exception 'taskrelay.enqueue: max_attempts must be between 1 and 1000, got %', max_attempts using errcode = '22023';
  end if;
  if queue is not null and queue !~ '^[A-Za-z0-9_.-]{1,100}$' then
    raise exception 'taskrelay.enqueue: invalid queue %', quote_literal(queue)
      using errcode = '22023', hint = 'Use 1-100 characters from A-Z a-z 0-9 _ . -';
  end if;
  if idempotency_key is not null and length(idempotency_key) not between 1 and 500 then
    raise exception 'taskrelay.enqueue: idempotency_key must be 1-500 characters, got %', length(idempotency_key)
      using errcode = '22023';
  end if;
  if starts_with(idempotency_key, 'schedule:') then
    raise exception 'taskrelay.enqueue: idempotency_key must not start with "schedule:", got %', quote_literal(idempotency_key)
      using errcode = '22023', hint = 'Keys starting with "schedule:" are reserved for the scheduler''s fires; use another prefix.';
  end if;

  select * into defaults from task_types t where t.name = task_name;

  insert into tasks as t (name, queue, payload, priority, max_attempts, run_at, idempotency_key)
  values (
    enqueue.task_name,
    coalesce(enqueue.queue, defaults.queue, 'default'),
    enqueue.payload,
    coalesce(enqueue.priority, defaults.priority, 0),
    coalesce(enqueue.max_attempts, defaults.max_attempts, 3),
    coalesce(enqueue.run_at, now() + coalesce(enqueue.delay, interval '0')),
    enqueue.idempotency_key
  )
  on conflict (name, idempotency_key) where idempotency_key is not null do nothing
  returning t.id into new_id;

  if new_id is null then
    select t.id into new_id from tasks t
     where t.name = enqueue.task_name and t.idempotency_key = enqueue.idempotency_key;
  end if;
  -- The wake-up the trigger used to send (src/db/sql/wake-idle-relays.sql);
  -- delivered at the caller's COMMIT, like every NOTIFY.
  perform pg_notify(current_schema() || '.task_ready', '')
     from relays
   having bool_and(busy_until <= clock_timestamp());
  return new_id;
end $$;

-- enqueue_after() as in 0008, with the key scoped to task_name. The reserved
-- prefix is refused before the lookup, which would otherwise hand back a
-- scheduler fire's task.
create or replace function :"schema".enqueue_after(
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
  if starts_with(idempotency_key, 'schedule:') then
    raise exception 'taskrelay.enqueue_after: idempotency_key must not start with "schedule:", got %', quote_literal(idempotency_key)
      using errcode = '22023', hint = 'Keys starting with "schedule:" are reserved for the scheduler''s fires; use another prefix.';
  end if;
  missing := array(select d from unnest(depends_on) d
                    where d is null or not exists (select 1 from tasks t where t.id = d));
  if cardinality(missing) > 0 then
    raise exception 'taskrelay.enqueue_after: depends_on names no task: %', array_to_string(missing, ', ', 'NULL')
      using errcode = '22023', hint = 'Enqueue the tasks it depends on first, in the same transaction or before.';
  end if;
  -- An idempotent repeat returns the first task as it is. The lock (until
  -- the caller's transaction ends) makes a concurrent call with the same
  -- name and key wait here and then find the first task, rather than get
  -- its id back from enqueue() and add edges to it.
  if idempotency_key is not null then
    perform pg_advisory_xact_lock(hashtextextended('taskrelay.enqueue_after:' || task_name || ':' || idempotency_key, 0));
    select t.id into existing from tasks t
     where t.name = enqueue_after.task_name and t.idempotency_key = enqueue_after.idempotency_key;
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
