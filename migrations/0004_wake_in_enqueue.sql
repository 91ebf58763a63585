-- taskrelay 0004: the relay wake-up moves from a statement trigger into the
-- enqueue statements themselves.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0004_wake_in_enqueue.sql
--
-- Why: the AFTER INSERT trigger of 0001/0003 cost every enqueue a PL/pgSQL
-- call (with its search_path save and restore) and two lookups in relays,
-- even when it sent nothing: ~25 % of the commits/s at 16 clients (pgbench,
-- bench/tools/enqueue-probe.ts). The same check written into the INSERT as a
-- CTE costs next to nothing. The rule is unchanged: NOTIFY once per enqueue
-- statement when at least one relay is registered and none is busy.
--
-- Who wakes the relay now: taskrelay's enqueue statements
-- (src/db/sql/wake-idle-relays.sql), enqueue() below, retry() and the
-- sweeper (as before). A row INSERTed into tasks any other way is picked up
-- by the relay's safety-net poll (pollIntervalMs, 1 s by default).

drop trigger tasks_notify_inserted on :"schema".tasks;
drop function :"schema".notify_tasks_inserted();

-- enqueue() as in 0001, plus the wake-up at the end.
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
begin
  if task_name is null or task_name !~ '^[A-Za-z0-9_.:/-]{1,200}$' then
    raise exception 'taskrelay.enqueue: invalid task_name %', coalesce(quote_literal(task_name), 'NULL')
      using errcode = '22023', hint = 'Use 1-200 characters from A-Z a-z 0-9 _ . : / -.';
  end if;
  if payload is null or jsonb_typeof(payload) <> 'object' then
    raise exception 'taskrelay.enqueue: payload must be a JSON object, got %', coalesce(jsonb_typeof(payload), 'NULL')
      using errcode = '22023';
  end if;
  if run_at is not null and delay is not null then
    raise exception 'taskrelay.enqueue: give run_at or delay, not both' using errcode = '22023';
  end if;
  if delay < interval '0' then
    raise exception 'taskrelay.enqueue: delay must not be negative, got %', delay using errcode = '22023';
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
  on conflict (idempotency_key) where idempotency_key is not null do nothing
  returning t.id into new_id;

  if new_id is null then
    select t.id into new_id from tasks t where t.idempotency_key = enqueue.idempotency_key;
  end if;
  -- The wake-up the trigger used to send (src/db/sql/wake-idle-relays.sql);
  -- delivered at the caller's COMMIT, like every NOTIFY.
  perform pg_notify(current_schema() || '.task_ready', '')
     from relays
   having bool_and(busy_until <= clock_timestamp());
  return new_id;
end $$;
