-- taskrelay 0015: flow control at enqueue and in reports: enqueue_keyed()
-- (idempotency windows, singletons, debounce), task_flow_reason() and the
-- queue_status view (0013's tables).
--
-- "create or replace": 0013 first shipped as one file holding this too, so a
-- database that applied it already has these and must upgrade cleanly.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0015_flow_dedup_and_status.sql
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
create or replace function :"schema".enqueue_keyed(
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
create or replace function :"schema".task_flow_reason(task_id bigint) returns text
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
create or replace view :"schema".queue_status as
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
