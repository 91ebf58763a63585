-- taskrelay 0013: flow control. Queue settings (global concurrency, rate
-- limits, groups with their own limits, pause) live in Postgres and are
-- enforced where a task leaves 'pending' (the relay's dispatch and the
-- worker's Postgres lane), for every worker and process at once.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0013_flow_control.sql
--
-- How it holds:
-- * A queue with a row in queues is flow-controlled. Its pending tasks
--   leave only through flow_take() below, which locks the queue's row and
--   then counts, so two relays (or a relay and a worker's Postgres lane)
--   can never both fill the same free slot.
-- * A slot is a task in 'dispatched' or 'running'. The count is read from
--   the task rows themselves (tasks_active_idx), never kept in a counter:
--   a worker that dies holding slots gives them back when the sweeper moves
--   its tasks back to pending (lost worker or expired lease). Nothing leaks.
-- * Rate limits are token buckets in the queue's row (and per group in
--   queue_groups): refilled by the clock, spent by flow_take().
-- * Pausing turns the queue's dispatched tasks back to pending (their Redis
--   messages no longer match and are dropped), so nothing starts after the
--   pause commits; running tasks finish.

create table :"schema".queues (
  name                 text primary key,
  -- At most this many tasks of the queue dispatched or running at once (null: no limit).
  concurrency          integer check (concurrency >= 1),
  -- At most rate_limit starts per rate_per_ms, as a token bucket holding rate_limit tokens.
  rate_limit           integer check (rate_limit >= 1),
  rate_per_ms          bigint check (rate_per_ms >= 1000),
  -- The same limits for each group of the queue (tasks.group_key).
  group_concurrency    integer check (group_concurrency >= 1),
  group_rate_limit     integer check (group_rate_limit >= 1),
  group_rate_per_ms    bigint check (group_rate_per_ms >= 1000),
  paused               boolean not null default false,
  -- The queue-wide bucket: tokens left at refilled_at (null: full).
  tokens               double precision,
  refilled_at          timestamptz,
  -- A handler said the remote side rate-limits (ctx.rateLimited): nothing starts before this.
  throttled_until      timestamptz,
  -- Turns between groups: the next round starts after this group.
  group_cursor         text not null default '',
  -- 'code': the settings a task definition declares, re-synced when workers
  -- start; 'runtime': set by configure(), the CLI or SQL, which code never overrides.
  source               text not null default 'runtime' check (source in ('code', 'runtime')),
  synced_at            timestamptz,
  updated_at           timestamptz not null default now(),
  constraint queues_name_valid check (name ~ '^[A-Za-z0-9_.-]+$' and length(name) <= 100),
  constraint queues_rate_complete check ((rate_limit is null) = (rate_per_ms is null)),
  constraint queues_group_rate_complete check ((group_rate_limit is null) = (group_rate_per_ms is null))
);

-- Per group: pause, its rate bucket and a handler's throttle. Rows appear
-- when a group is paused or rate-limited; the sweeper may delete idle ones.
create table :"schema".queue_groups (
  queue           text not null references :"schema".queues (name) on delete cascade,
  group_key       text not null,
  paused          boolean not null default false,
  tokens          double precision,
  refilled_at     timestamptz,
  throttled_until timestamptz,
  primary key (queue, group_key)
);

alter table :"schema".tasks
  -- '' is "no group": such tasks take their turns as one group of their own.
  add column group_key text not null default '' check (length(group_key) <= 200),
  -- debounce: a later enqueue with this key replaces the pending task's payload.
  add column debounce_key text check (length(debounce_key) between 1 and 500),
  -- singleton: at most one unfinished task per (name, key).
  add column singleton_key text check (length(singleton_key) between 1 and 500),
  -- idempotencyKey with a window: after this time the key no longer dedupes.
  add column idempotency_expires_at timestamptz;

-- Slots in use, per queue and group: what flow_take() counts. Holds only
-- in-flight rows. Its predicate also says group_key >= '' (true of every
-- row): only the statements that count slots say so too, so no other
-- statement can pick it over the indexes made for it (as in 0005: the
-- batch writes keep their primary-key lookups, the sweeper and the
-- Postgres lane tasks_dispatched_idx).
create index tasks_active_idx on :"schema".tasks (queue, group_key)
  where state in ('dispatched', 'running') and group_key >= '';
-- Pending tasks by group, for the turns between groups (grouped rows only).
create index tasks_pending_group_idx on :"schema".tasks (queue, group_key, priority desc, run_at, id)
  where state = 'pending' and group_key <> '';
-- The pending task a debounced enqueue replaces.
create index tasks_debounce_idx on :"schema".tasks (name, debounce_key)
  where debounce_key is not null and state = 'pending';
-- One unfinished task per singleton key, enforced by Postgres itself.
create unique index tasks_singleton_idx on :"schema".tasks (name, singleton_key)
  where singleton_key is not null and state in ('waiting', 'pending', 'dispatched', 'running');

-- Settings changed by hand (SQL, CLI, configure()) are 'runtime' and stay;
-- a worker's start-up sync (which bumps synced_at) keeps 'code'. Every
-- change wakes the relays and idle Postgres-lane workers, so it applies now.
create function :"schema".queues_changed() returns trigger
language plpgsql
set search_path = :"schema", pg_temp
as $$
begin
  if tg_op = 'UPDATE' and new.synced_at is not distinct from old.synced_at
     and (new.concurrency, new.rate_limit, new.rate_per_ms, new.group_concurrency,
          new.group_rate_limit, new.group_rate_per_ms, new.paused)
         is distinct from
         (old.concurrency, old.rate_limit, old.rate_per_ms, old.group_concurrency,
          old.group_rate_limit, old.group_rate_per_ms, old.paused) then
    new.source := 'runtime';
    new.updated_at := now();
  end if;
  -- A new rate starts with a full bucket.
  if tg_op = 'INSERT' or new.rate_limit is distinct from old.rate_limit or new.rate_per_ms is distinct from old.rate_per_ms then
    new.tokens := null;
  end if;
  return new;
end $$;
create trigger queues_changed before insert or update on :"schema".queues
  for each row execute function :"schema".queues_changed();

-- Pause means nothing new starts: dispatched tasks of the queue (or group)
-- go back to pending, so their Redis messages find no match when a worker
-- pops them. Runs in the pausing transaction: once it commits, nothing of
-- the queue can be claimed.
create function :"schema".queue_paused() returns trigger
language plpgsql
set search_path = :"schema", pg_temp
as $$
begin
  if new.paused and (tg_op = 'INSERT' or not old.paused) then
    if tg_table_name = 'queues' then
      update tasks set state = 'pending', dispatch_token = null, dispatched_at = null
       where state = 'dispatched' and dispatched_at is not null and queue = new.name;
    else
      update tasks set state = 'pending', dispatch_token = null, dispatched_at = null
       where state = 'dispatched' and dispatched_at is not null and queue = new.queue and group_key = new.group_key;
    end if;
  end if;
  perform pg_notify(tg_table_schema || '.task_ready', '');
  return null;
end $$;
create trigger queues_paused after insert or update of concurrency, rate_limit, rate_per_ms, group_concurrency,
    group_rate_limit, group_rate_per_ms, paused on :"schema".queues
  for each row execute function :"schema".queue_paused();
create trigger queue_groups_paused after insert or update of paused on :"schema".queue_groups
  for each row execute function :"schema".queue_paused();

-- SQL API: pause and resume a queue, or one group of it.
create function :"schema".pause_queue(queue_name text, group_name text default null) returns boolean
language plpgsql
set search_path = :"schema", pg_temp
as $$
begin
  insert into queues (name, paused) values (queue_name, group_name is null)
  on conflict (name) do update set paused = queues.paused or group_name is null;
  if group_name is not null then
    insert into queue_groups (queue, group_key, paused) values (queue_name, group_name, true)
    on conflict (queue, group_key) do update set paused = true;
  end if;
  return true;
end $$;

create function :"schema".resume_queue(queue_name text, group_name text default null) returns boolean
language plpgsql
set search_path = :"schema", pg_temp
as $$
begin
  if group_name is null then
    update queues set paused = false where name = queue_name;
  else
    update queue_groups set paused = false where queue = queue_name and group_key = group_name;
  end if;
  return found;
end $$;

-- Tokens in a bucket now: what was left at refilled_at plus the refill since,
-- capped at its size (limit). A bucket never filled is full.
-- At `at` (clock_timestamp() by default); flow_take() reads the bucket and
-- writes refilled_at with one time, so no refill is lost between the two.
create function :"schema".bucket_tokens(tokens double precision, refilled_at timestamptz, lim integer, per_ms bigint,
                                        at timestamptz default clock_timestamp())
returns double precision
language sql stable
as $$
  select case when lim is null then null
              when tokens is null or refilled_at is null then lim::double precision
              else least(lim::double precision,
                         tokens + greatest(0, extract(epoch from at - refilled_at) * 1000) * lim / per_ms)
         end
$$;

-- Take up to p_max due pending tasks of the flow-controlled queues (those
-- with a row in queues; p_queues null: all of them, else these; none of
-- p_skip), within each queue's limits, and mark them dispatched with token
-- p_token. Called by the relay (relay-dispatch-batch.sql) and by a worker's
-- Postgres lane, in their own autocommit statement: the row lock on the
-- queue holds until it commits, and in READ COMMITTED every statement here
-- after the lock sees every earlier taker's committed dispatches.
-- ord: the order to hand the rows to workers in (turns between groups).
create function :"schema".flow_take(p_queues text[], p_skip text[], p_max integer, p_token uuid)
returns table (id bigint, queue text, ord bigint)
language plpgsql
set search_path = :"schema", pg_temp
as $$
declare
  q queues%rowtype;
  room integer;
  left_over integer := p_max;
  taken integer;
  tok double precision;
  at timestamptz;
begin
  for q in
    select c.* from queues c
     where (p_queues is null or c.name = any (p_queues))
       and c.name <> all (p_skip)
       and not c.paused
       and exists (select 1 from tasks t where t.state = 'pending' and t.queue = c.name)
     order by c.name
  loop
    exit when left_over <= 0;
    -- One taker per queue at a time; what it counts below includes every
    -- earlier taker's dispatches (a fresh snapshot per statement).
    select * into q from queues c where c.name = q.name for update;
    continue when q.paused or coalesce(q.throttled_until > clock_timestamp(), false);
    room := left_over;
    if q.concurrency is not null then
      room := least(room, q.concurrency - (select count(*) from tasks t
                                            where t.queue = q.name and t.state in ('dispatched', 'running') and t.group_key >= '')::integer);
    end if;
    at := clock_timestamp();
    tok := bucket_tokens(q.tokens, q.refilled_at, q.rate_limit, q.rate_per_ms, at);
    if tok is not null then
      room := least(room, floor(tok)::integer);
    end if;
    continue when room <= 0;
    if exists (select 1 from tasks t where t.state = 'pending' and t.queue = q.name and t.group_key <> '') then
      return query select * from flow_take_groups(q, room, p_token);
    else
      return query
      with picked as (
        select t.id from tasks t
         where t.state = 'pending' and t.queue = q.name and t.run_at <= now()
         order by t.priority desc, t.run_at, t.id
         limit room
           for update skip locked
      )
      update tasks t
         set state = 'dispatched', dispatched_at = now(), dispatch_token = p_token
       where t.id = any (array(select picked.id from picked))
      returning t.id, t.queue, 0::bigint;
    end if;
    get diagnostics taken = row_count;
    left_over := left_over - taken;
    if tok is not null and taken > 0 then
      update queues c set tokens = tok - taken, refilled_at = at where c.name = q.name;
    end if;
  end loop;
end $$;
