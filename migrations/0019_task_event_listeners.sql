-- taskrelay 0019: task events are sent only while someone subscribes.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0019_task_event_listeners.sql
--
-- 0016 made every enqueue, claim and outcome batch NOTIFY <schema>.task_events.
-- A transaction that notifies takes Postgres' one notification-queue lock at
-- commit, so those commits queue behind each other, and the enqueue trigger
-- collected every inserted row: a third of an enqueue's Postgres CPU, for
-- events nobody may read. Each TaskRelay that has subscribers (tr.events,
-- `taskrelay events`, waitFor's onProgress) keeps a row here fresh; the
-- statements that announce events on the hot path look for one unexpired
-- row first (one index probe of a table of a few rows). Events were already
-- lossy by design (0016): with no subscriber there was nobody to lose them.
create table :"schema".task_event_listeners (
  id         uuid        primary key,
  -- renewed every 20 s; a process that died without saying so stops
  -- counting when this passes
  expires_at timestamptz not null
);
-- The statements ask on the batch connections, where sequential scans are
-- off: without this index their plan cost passed the JIT thresholds, and
-- each execution compiled for 600 ms.
create index task_event_listeners_expires_idx on :"schema".task_event_listeners (expires_at);
-- The same for the live workers a deferral of a task without a handler asks
-- about (task-defer-no-handler.sql, since 0011).
create index workers_expires_idx on :"schema".workers (expires_at);

-- 0016's enqueued events, sent only while someone subscribes.
create or replace function :"schema".task_events_enqueued() returns trigger
language plpgsql
set search_path = :"schema", pg_temp
as $$
begin
  -- The same one-line question as the announcing statements ask (inline, not
  -- a SQL function: PL/pgSQL and prepared statements keep their plans, a SQL
  -- function is planned again in every transaction).
  if not exists (select 1 from task_event_listeners where expires_at > now()) then
    return null;
  end if;
  perform pg_notify(tg_table_schema || '.task_events', 'enqueued ' || queue || ' ' || ids)
     from (select queue, string_agg(id::text, ',') as ids
             from (select queue, id, (row_number() over (partition by queue)) / 350 as chunk
                     from inserted_tasks) n
            group by queue, chunk) c;
  return null;
end $$;
