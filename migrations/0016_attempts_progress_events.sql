-- taskrelay 0016: attempt history, progress, trace context and task events.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0016_attempts_progress_events.sql
--
-- * task_attempts: one row per finished attempt, written by the statement
--   that records the outcome (task-finish-batch.sql, the sweeper's lost
--   workers, cancel()), so history costs no extra round trip. The attempt
--   still running is the task row itself (see the task_attempt_history view).
-- * tasks.progress: the last ctx.progress() of the running attempt.
-- * tasks.trace_context: the W3C trace context (traceparent, tracestate) of
--   the code that enqueued the task, for the worker's consumer span.
-- * <schema>.task_events: NOTIFY of state changes, for tr.events and
--   `taskrelay events`. Payload: "<event> <queue> <id>,<id>,...", at most 350
--   ids each. Delivery is what LISTEN/NOTIFY gives: nothing while a listener
--   is disconnected, so readers of state must read the rows, not the events.

create table :"schema".task_attempts (
  task_id     bigint      not null,
  attempt     integer     not null,
  worker_id   text,
  started_at  timestamptz,
  finished_at timestamptz not null default now(),
  -- succeeded, failed, retry (failed, another attempt follows), throttled
  -- (ctx.rateLimited: not counted), lost (its worker died or its lease
  -- expired) or cancelled (while running).
  outcome     text        not null check (outcome in ('succeeded', 'failed', 'retry', 'throttled', 'lost', 'cancelled')),
  error       jsonb,
  primary key (task_id, attempt)
);

-- No foreign key: its check would lock every task row once more on the hot
-- path. Attempts go with their task instead, whoever deletes it (the
-- sweeper's retention, or a DBA).
create function :"schema".task_attempts_follow_delete() returns trigger
language plpgsql
set search_path = :"schema", pg_temp
as $$
begin
  delete from task_attempts a using deleted_tasks d where a.task_id = d.id;
  return null;
end $$;

create trigger tasks_delete_attempts
  after delete on :"schema".tasks
  referencing old table as deleted_tasks
  for each statement execute function :"schema".task_attempts_follow_delete();

alter table :"schema".tasks
  -- {"value": 0..100, "info": any JSON, "at": timestamp} (null: none reported)
  add column progress jsonb,
  -- {"traceparent": "...", "tracestate": "..."} of the enqueuing code (null: no tracing)
  add column trace_context jsonb;

-- Every attempt of every task, the running one included, with its duration.
create view :"schema".task_attempt_history as
select task_id, attempt, worker_id, started_at, finished_at, outcome,
       error ->> 'message' as error, error as error_detail,
       finished_at - started_at as duration
  from :"schema".task_attempts
union all
select id, attempt, worker_id, started_at, null, 'running', null, null, null
  from :"schema".tasks
 where state = 'running';

-- Enqueued events, from every way a task is written (the TypeScript API,
-- SQL enqueue(), workflows): one statement trigger, one NOTIFY per queue
-- and 350 ids.
create function :"schema".task_events_enqueued() returns trigger
language plpgsql
as $$
begin
  perform pg_notify(tg_table_schema || '.task_events', 'enqueued ' || queue || ' ' || ids)
     from (select queue, string_agg(id::text, ',') as ids
             from (select queue, id, (row_number() over (partition by queue)) / 350 as chunk
                     from inserted_tasks) n
            group by queue, chunk) c;
  return null;
end $$;

create trigger tasks_enqueued_events
  after insert on :"schema".tasks
  referencing new table as inserted_tasks
  for each statement execute function :"schema".task_events_enqueued();

-- cancel() as in 0001, and a cancelled running attempt goes into the history.
create or replace function :"schema".cancel(task_id bigint) returns boolean
language plpgsql
set search_path = :"schema", pg_temp
as $$
declare
  was record;
begin
  select state, attempt, worker_id, started_at, queue into was
    from tasks
   where id = task_id and state in ('waiting', 'pending', 'dispatched', 'running')
     for update;
  if not found then
    return false;
  end if;
  -- A running handler may go on until its worker's next heartbeat: the
  -- attempt and its lease are kept in last_error, so retry() does not start a
  -- second run before the first can have stopped (never concurrent).
  update tasks
     set state = 'cancelled', finished_at = now(), lease_expires_at = null, dispatch_token = null,
         last_error = case when state = 'running'
           then jsonb_build_object('message', 'cancelled while running', 'kind', 'cancelled',
                                   'attempt', attempt, 'at', now(), 'leaseExpiresAt', lease_expires_at)
           else last_error end
   where id = task_id;
  if was.state = 'running' then
    insert into task_attempts (task_id, attempt, worker_id, started_at, outcome, error)
    values (task_id, was.attempt, was.worker_id, was.started_at, 'cancelled',
            jsonb_build_object('message', 'cancelled while running', 'kind', 'cancelled'))
    on conflict do nothing;
  end if;
  perform pg_notify(current_schema() || '.task_finished', task_id::text);
  perform pg_notify(current_schema() || '.task_events', 'cancelled ' || was.queue || ' ' || task_id);
  return true;
end $$;
