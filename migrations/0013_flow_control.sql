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

-- flow_take() for a queue whose pending tasks carry group keys: groups take
-- turns. Up to max(room, 256) groups with pending tasks, starting after the group the
-- last round ended on (group_cursor); each gets an equal share of the room
-- per turn, within its own limits (group_concurrency, group rate, pause,
-- throttle), so a deep group can delay another group's task by one turn at
-- most. Tasks with no group key take their turns as one more group.
create function :"schema".flow_take_groups(q :"schema".queues, room integer, p_token uuid)
returns table (id bigint, queue text, ord bigint)
language plpgsql
set search_path = :"schema", pg_temp
as $$
declare
  groups text[];
  allow integer[];
  group_tokens double precision[];
  at timestamptz := clock_timestamp();
  spent integer[];
  n integer;
  i integer;
  k integer;
  got integer;
  share integer;
  eligible integer;
  turn integer := 0;
  left_over integer := room;
  -- Groups looked at per round: more than the room, as some may be at their limits.
  window_size integer := greatest(room, 256);
  last_served text;
begin
  -- The groups in turn order: after the cursor, then from the start (a skip
  -- scan over tasks_pending_group_idx, one probe per group).
  groups := array(
    with recursive after_cursor as (
      select min(t.group_key) as g from tasks t
       where t.state = 'pending' and t.queue = q.name and t.group_key <> '' and t.group_key > q.group_cursor
      union all
      select (select min(t.group_key) from tasks t
               where t.state = 'pending' and t.queue = q.name and t.group_key <> '' and t.group_key > a.g)
        from after_cursor a where a.g is not null
    )
    select g from after_cursor where g is not null limit window_size);
  if cardinality(groups) < window_size then
    groups := groups || array(
      with recursive from_start as (
        select min(t.group_key) as g from tasks t
         where t.state = 'pending' and t.queue = q.name and t.group_key <> ''
        union all
        select (select min(t.group_key) from tasks t
                 where t.state = 'pending' and t.queue = q.name and t.group_key <> '' and t.group_key > f.g)
          from from_start f where f.g is not null and f.g <= q.group_cursor
      )
      select g from from_start where g is not null and g <= q.group_cursor and g <> all (groups)
       limit window_size - cardinality(groups));
  end if;
  -- Ungrouped tasks: one more group, looked for among the queue's first
  -- 1000 pending tasks only (give every task of a grouped queue a key).
  if exists (select 1 from (select t.group_key from tasks t
                             where t.state = 'pending' and t.queue = q.name and t.run_at <= now()
                             order by t.priority desc, t.run_at, t.id limit 1000) s
              where s.group_key = '') then
    groups := array[''] || groups;
  end if;
  n := cardinality(groups);
  if n = 0 then return; end if;

  if q.group_rate_limit is not null then
    insert into queue_groups (queue, group_key) select q.name, g from unnest(groups) g where g <> ''
    on conflict do nothing;
  end if;
  -- What each group may take now: its free slots and its tokens; none if paused or throttled.
  select array_agg(case when coalesce(qg.paused, false) or coalesce(qg.throttled_until > clock_timestamp(), false) then 0
                        else least(left_over,
                                   coalesce(q.group_concurrency - coalesce(a.active, 0), left_over),
                                   coalesce(floor(bucket_tokens(qg.tokens, qg.refilled_at, q.group_rate_limit, q.group_rate_per_ms, at))::integer, left_over))
                   end order by u.pos),
         array_agg(bucket_tokens(qg.tokens, qg.refilled_at, q.group_rate_limit, q.group_rate_per_ms, at) order by u.pos)
    into allow, group_tokens
    from unnest(groups) with ordinality as u(g, pos)
    left join lateral (select g2.* from queue_groups g2 where g2.queue = q.name and g2.group_key = u.g
                         for update) qg on true
    left join lateral (select count(*)::integer as active from tasks t
                        where t.queue = q.name and t.group_key = u.g and t.state in ('dispatched', 'running') and t.group_key >= '') a
      on q.group_concurrency is not null;
  spent := array_fill(0, array[n]);

  loop
    select count(*) into eligible from unnest(allow) x where x > 0;
    exit when eligible = 0 or left_over <= 0;
    share := greatest(1, left_over / eligible);
    for i in 1 .. n loop
      continue when allow[i] <= 0;
      k := least(share, allow[i], left_over);
      return query
      with picked as (
        select t.id from tasks t
         where t.state = 'pending' and t.queue = q.name and t.group_key = groups[i] and t.run_at <= now()
         order by t.priority desc, t.run_at, t.id
         limit k
           for update skip locked
      ), moved as (
        update tasks t
           set state = 'dispatched', dispatched_at = now(), dispatch_token = p_token
         where t.id = any (array(select picked.id from picked))
        returning t.id, t.queue, t.priority, t.run_at
      )
      select m.id, m.queue,
             ((turn * share + row_number() over (order by m.priority desc, m.run_at, m.id) - 1) * 100000 + i)::bigint
        from moved m;
      get diagnostics got = row_count;
      spent[i] := spent[i] + got;
      left_over := left_over - got;
      -- A group that gave less than asked has nothing more due now.
      allow[i] := case when got < k then 0 else allow[i] - got end;
      if got > 0 and groups[i] <> '' then last_served := groups[i]; end if;
      exit when left_over <= 0;
    end loop;
    turn := turn + 1;
  end loop;

  -- The next round starts after the last group served (or looked at, when
  -- none could take anything: the window moves on to the others).
  last_served := coalesce(last_served, groups[n]);
  if last_served <> '' and last_served is distinct from q.group_cursor then
    update queues c set group_cursor = last_served where c.name = q.name;
  end if;
  if q.group_rate_limit is not null then
    update queue_groups g
       set tokens = u.tok - u.used, refilled_at = at
      from unnest(groups, group_tokens, spent) as u(gk, tok, used)
     where g.queue = q.name and g.group_key = u.gk and u.used > 0;
  end if;
end $$;

-- Enqueue with a dedup window, as a singleton or debounced: one function,
-- atomic under concurrent enqueues with the same key. The advisory lock
-- (held until the caller's transaction ends) makes the second caller wait
-- for the first to commit or roll back; it then sees the first's task (a
-- fresh snapshot per statement, READ COMMITTED) and is told which it got:
--   'created'   a new task;
--   'existing'  idempotency (within the window) or singleton: an earlier
--               task, unchanged (this payload was not used);
--   'debounced' the key's pending, never started task now carries this
--               payload and runs p_window_ms from now, but no later than
--               p_max_wait_ms after it was first enqueued.
-- p_kind: 'idempotency' (p_window_ms: how long the key dedupes), 'singleton'
-- (at most one unfinished task per name and key; tasks_singleton_idx holds
-- it under any isolation level) or 'debounce'.
create function :"schema".enqueue_keyed(
  p_name text, p_queue text, p_payload jsonb, p_priority integer, p_max_attempts integer,
  p_run_at timestamptz, p_delay_ms bigint, p_group_key text,
  p_kind text, p_key text, p_window_ms bigint, p_max_wait_ms bigint
) returns table (id bigint, outcome text)
language plpgsql
set search_path = :"schema", pg_temp
as $$
declare
  found_id bigint;
  expires timestamptz;
  run_time timestamptz := coalesce(p_run_at, now() + p_delay_ms * interval '1 millisecond');
begin
  if p_kind not in ('idempotency', 'singleton', 'debounce') or p_key is null then
    raise exception 'taskrelay.enqueue_keyed: kind must be idempotency, singleton or debounce, with a key; got % %', p_kind, p_key
      using errcode = '22023';
  end if;
  perform pg_advisory_xact_lock(hashtextextended(p_kind || E'\x1f' || p_name || E'\x1f' || p_key, 13));
  if p_kind = 'idempotency' then
    select t.id, t.idempotency_expires_at into found_id, expires
      from tasks t where t.name = p_name and t.idempotency_key = p_key;
    if found_id is not null and (expires is null or expires > now()) then
      return query select found_id, 'existing'::text;
      return;
    end if;
    -- The window passed: the old task keeps its row, the key is free again.
    update tasks t set idempotency_key = null where t.id = found_id;
    return query
    insert into tasks (name, queue, payload, priority, max_attempts, run_at, group_key, idempotency_key, idempotency_expires_at)
    values (p_name, p_queue, p_payload, p_priority, p_max_attempts, run_time, p_group_key, p_key,
            now() + p_window_ms * interval '1 millisecond')
    returning tasks.id, 'created'::text;
  elsif p_kind = 'singleton' then
    select t.id into found_id from tasks t
     where t.name = p_name and t.singleton_key = p_key
       and t.state in ('waiting', 'pending', 'dispatched', 'running');
    if found_id is not null then
      return query select found_id, 'existing'::text;
      return;
    end if;
    return query
    insert into tasks (name, queue, payload, priority, max_attempts, run_at, group_key, singleton_key)
    values (p_name, p_queue, p_payload, p_priority, p_max_attempts, run_time, p_group_key, p_key)
    returning tasks.id, 'created'::text;
  else
    return query
    update tasks t
       set payload = p_payload,
           run_at = least(now() + p_window_ms * interval '1 millisecond',
                          coalesce(t.created_at + p_max_wait_ms * interval '1 millisecond', 'infinity'))
     where t.id = (select t2.id from tasks t2
                    where t2.name = p_name and t2.debounce_key = p_key
                      and t2.state = 'pending' and t2.attempt = 0
                    order by t2.id desc limit 1)
       and t.state = 'pending'
    returning t.id, 'debounced'::text;
    if found then return; end if;
    return query
    insert into tasks (name, queue, payload, priority, max_attempts, run_at, group_key, debounce_key)
    values (p_name, p_queue, p_payload, p_priority, p_max_attempts,
            now() + p_window_ms * interval '1 millisecond', p_group_key, p_key)
    returning tasks.id, 'created'::text;
  end if;
end $$;

-- Why a pending task is not running yet, in words, or null when nothing
-- holds it back (it is on its way, or waits for a relay or worker). Read by `taskrelay status`, the admin
-- API and the dashboard; costs a few index probes.
create function :"schema".task_flow_reason(task_id bigint) returns text
language plpgsql stable
set search_path = :"schema", pg_temp
as $$
declare
  t tasks%rowtype;
  q queues%rowtype;
  g queue_groups%rowtype;
  active integer;
  tok double precision;
  gname text;
begin
  select * into t from tasks where id = task_id;
  if not found or t.state <> 'pending' then return null; end if;
  if t.run_at > now() then
    return format('delayed until %s', to_char(t.run_at, 'YYYY-MM-DD HH24:MI:SS TZ'));
  end if;
  select * into q from queues where name = t.queue;
  if not found then return null; end if;
  gname := format('group %s of queue %s', t.group_key, t.queue);
  if q.paused then return format('queue %s is paused', q.name); end if;
  if t.group_key <> '' then
    select * into g from queue_groups where queue = t.queue and group_key = t.group_key;
    if found and g.paused then return format('%s is paused', gname); end if;
    if found and g.throttled_until > clock_timestamp() then
      return format('%s rate-limited by its handler until %s', gname, to_char(g.throttled_until, 'HH24:MI:SS'));
    end if;
  end if;
  if q.throttled_until > clock_timestamp() then
    return format('queue %s rate-limited by its handler until %s', q.name, to_char(q.throttled_until, 'HH24:MI:SS'));
  end if;
  if q.concurrency is not null then
    select count(*) into active from tasks a where a.queue = t.queue and a.state in ('dispatched', 'running') and a.group_key >= '';
    if active >= q.concurrency then return format('queue %s at its limit of %s', q.name, q.concurrency); end if;
  end if;
  tok := bucket_tokens(q.tokens, q.refilled_at, q.rate_limit, q.rate_per_ms);
  if tok < 1 then
    return format('queue %s rate-limited (%s per %s ms) until %s', q.name, q.rate_limit, q.rate_per_ms,
                  to_char(clock_timestamp() + (1 - tok) * q.rate_per_ms / q.rate_limit * interval '1 millisecond', 'HH24:MI:SS.MS'));
  end if;
  if q.group_concurrency is not null then
    select count(*) into active from tasks a
     where a.queue = t.queue and a.group_key = t.group_key and a.state in ('dispatched', 'running') and a.group_key >= '';
    if active >= q.group_concurrency then return format('%s at its limit of %s', gname, q.group_concurrency); end if;
  end if;
  if q.group_rate_limit is not null and t.group_key <> '' then
    select * into g from queue_groups where queue = t.queue and group_key = t.group_key;
    tok := bucket_tokens(g.tokens, g.refilled_at, q.group_rate_limit, q.group_rate_per_ms);
    if tok < 1 then
      return format('%s rate-limited (%s per %s ms) until %s', gname, q.group_rate_limit, q.group_rate_per_ms,
                    to_char(clock_timestamp() + (1 - tok) * q.group_rate_per_ms / q.group_rate_limit * interval '1 millisecond', 'HH24:MI:SS.MS'));
    end if;
  end if;
  return null;
end $$;

-- Every queue with tasks or settings: its settings, pause state and what is
-- in it now. For `taskrelay queues list`, stats and the dashboard; counts
-- only unfinished tasks (the partial indexes), never history.
create view :"schema".queue_status as
with names as (
  select name as queue from :"schema".queues
  union
  select queue from :"schema".task_types
), counts as (
  select t.queue,
         count(*) filter (where t.state = 'pending' and t.run_at <= now()) as due,
         count(*) filter (where t.state = 'pending' and t.run_at > now()) as delayed,
         count(*) filter (where t.state = 'dispatched') as dispatched,
         count(*) filter (where t.state = 'running') as running
    from :"schema".tasks t
   where t.state in ('pending', 'dispatched', 'running')
   group by t.queue
)
select n.queue,
       coalesce(q.paused, false) as paused,
       q.concurrency, q.rate_limit, q.rate_per_ms,
       q.group_concurrency, q.group_rate_limit, q.group_rate_per_ms,
       (select array_agg(g.group_key order by g.group_key) from :"schema".queue_groups g
         where g.queue = n.queue and g.paused) as paused_groups,
       case when q.throttled_until > now() then q.throttled_until end as throttled_until,
       :"schema".bucket_tokens(q.tokens, q.refilled_at, q.rate_limit, q.rate_per_ms) as tokens,
       coalesce(q.source, 'none') as source,
       coalesce(c.due, 0) as due, coalesce(c.delayed, 0) as delayed,
       coalesce(c.dispatched, 0) as dispatched, coalesce(c.running, 0) as running
  from (select queue from names union select queue from counts) n
  left join :"schema".queues q on q.name = n.queue
  left join counts c on c.queue = n.queue;
