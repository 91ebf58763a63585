-- taskrelay 0003: skip the enqueue NOTIFY while a relay is busy.
--
-- Why: a transaction that ran NOTIFY takes a database-wide lock at commit and
-- holds it through its WAL flush, so concurrent notifying commits are
-- serialised and lose group commit (measured: 16 producers, one enqueue per
-- transaction, ~4x slower with a NOTIFY per statement). A relay that
-- dispatched something in the last moments polls continuously anyway, so
-- the NOTIFY is only needed when every relay is idle.

create table :"schema".relays (
  relay_id   text primary key,
  -- while in the future, this relay polls on its own: inserts need not wake it
  busy_until timestamptz not null default '-infinity',
  seen_at    timestamptz not null default now()
);

create or replace function :"schema".notify_tasks_inserted() returns trigger
language plpgsql as $$
begin
  -- clock_timestamp(), not now(): now() is the start of the caller's transaction.
  -- No relay registered: nobody to wake (a relay runs a round when it starts).
  if exists (select 1 from :"schema".relays)
     and not exists (select 1 from :"schema".relays where busy_until > clock_timestamp()) then
    perform pg_notify(tg_table_schema || '.task_ready', '');
  end if;
  return null;
end $$;
