-- taskrelay 0014: flow control, turns between groups: flow_take_groups(),
-- which flow_take() (0013) calls for a queue whose pending tasks carry
-- group keys.
--
-- "create or replace": 0013 first shipped as one file holding this too, so a
-- database that applied it already has these and must upgrade cleanly.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0014_flow_groups.sql
-- flow_take() for a queue whose pending tasks carry group keys: groups take
-- turns. Up to max(room, 256) groups with pending tasks, starting after the group the
-- last round ended on (group_cursor); each gets an equal share of the room
-- per turn, within its own limits (group_concurrency, group rate, pause,
-- throttle), so a deep group can delay another group's task by one turn at
-- most. Tasks with no group key take their turns as one more group.
create or replace function :"schema".flow_take_groups(q :"schema".queues, room integer, p_token uuid)
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
