-- taskrelay 0003: skip the enqueue NOTIFY while a relay is busy.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0003_relay_wakeups.sql
--
-- Why: a transaction that ran NOTIFY takes a database-wide lock at commit and
-- holds it through its WAL flush, so concurrent notifying commits are
-- serialised and lose group commit (measured: 16 producers, one enqueue per
-- transaction, ~4x slower with a NOTIFY per statement). A relay that
-- dispatched something in the last moments polls continuously anyway, so
-- the NOTIFY is only needed when every registered relay is idle.

create table :"schema".relays (
  relay_id   text primary key,
  -- while in the future, this relay polls on its own: inserts need not wake it
  busy_until timestamptz not null default '-infinity',
  seen_at    timestamptz not null default now()
);

create or replace function :"schema".notify_tasks_inserted() returns trigger
language plpgsql
set search_path = :"schema", pg_temp
as $$
begin
  -- No relay registered: nobody to wake (a relay runs a round when it starts).
  -- clock_timestamp(), not now(): now() is the start of the caller's transaction.
  if exists (select 1 from relays)
     and not exists (select 1 from relays where busy_until > clock_timestamp()) then
    perform pg_notify(tg_table_schema || '.task_ready', '');
  end if;
  return null;
end $$;
