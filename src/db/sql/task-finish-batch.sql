-- Worker: record the outcomes of many attempts in one statement (group
-- commit). Each outcome is fenced by (id, attempt, state = 'running'): an
-- attempt whose lease was taken over, or a cancelled task, matches nothing.
-- state is 'succeeded', 'failed', 'pending' (retry after delay_ms) or
-- 'throttled': the handler said the remote side rate-limits (ctx.rateLimited);
-- the task goes back to pending after delay_ms without spending an attempt
-- (max_attempts grows with attempt), and its group (or queue) starts
-- nothing before then (0013).
-- Finished ids are announced on <schema>.task_finished for waitFor(),
-- comma-separated, in one or more notifications; retries on task_ready.
-- An attempt that does not finish its task (retry, throttled) gets its row
-- in task_attempts; one that does is read from the task row itself (0018),
-- so the common case writes nothing more. Each outcome's event goes to
-- <schema>.task_events (0016), in this same statement: no round trip more.
with outcome as (
  select *
    from unnest($1::bigint[], $2::int[], $3::text[], $4::jsonb[], $5::jsonb[], $6::bigint[])
      as o(id, attempt, state, result, error, delay_ms)
), done as (
  update :"schema".tasks t
     set state = case when o.state = 'throttled' then 'pending' else o.state end,
         result = o.result,
         last_error = coalesce(o.error, t.last_error),
         finished_at = case when o.state in ('pending', 'throttled') then null else now() end,
         run_at = case when o.state in ('pending', 'throttled') then now() + o.delay_ms * interval '1 millisecond' else t.run_at end,
         max_attempts = case when o.state = 'throttled' then t.max_attempts + 1 else t.max_attempts end,
         lease_expires_at = null,
         dispatch_token = null
    from outcome o
   where t.id = o.id
     and t.attempt = o.attempt
     and t.state = 'running'
  returning t.id, t.state, t.queue, t.group_key, t.worker_id, t.started_at
),
-- begin retries: only in batches with a retry or a throttle (finishStatement()
-- leaves this part out of the others: each CTE costs every execution a share)
history as (
  insert into :"schema".task_attempts (task_id, attempt, worker_id, started_at, outcome, error)
  select d.id, o.attempt, d.worker_id, d.started_at,
         case o.state when 'pending' then 'retry' else o.state end, o.error
    from done d
    join outcome o on o.id = d.id
   where o.state in ('pending', 'throttled')
), throttled as (
  select d.queue, d.group_key, max(now() + o.delay_ms * interval '1 millisecond') as until
    from done d
    join outcome o on o.id = d.id
   where o.state = 'throttled'
   group by d.queue, d.group_key
), throttled_queues as (
  -- A queue (with no group) slowed by its handler; the row makes it flow-controlled.
  -- (Inserted for a group's throttle too: queue_groups rows need their queue.)
  insert into :"schema".queues as c (name, throttled_until)
  select queue, max(until) filter (where group_key = '') from throttled group by queue
  on conflict (name) do update
     set throttled_until = greatest(c.throttled_until, excluded.throttled_until)
), throttled_groups as (
  insert into :"schema".queue_groups as g (queue, group_key, throttled_until)
  select queue, group_key, until from throttled where group_key <> ''
  on conflict (queue, group_key) do update
     set throttled_until = greatest(g.throttled_until, excluded.throttled_until)
),
-- end retries
events as (
  select pg_notify(:'schema' || '.task_events', event || ' ' || queue || ' ' || string_agg(id::text, ','))
    from (select d.id, d.queue,
                 case o.state when 'succeeded' then 'succeeded' when 'failed' then 'failed' else 'retried' end as event,
                 (row_number() over ()) / 350 as chunk
            from done d
            join outcome o on o.id = d.id) e
   where exists (select 1 from :"schema".task_event_listeners l where l.expires_at > now()) -- only while someone subscribes (0019)
   group by event, queue, chunk
), slots_freed as (
  -- A task of a queue with settings left its slot: wake the relays, which
  -- may dispatch the next one (it waited for that slot). Payload '0' (due
  -- now), not '' (an enqueue): idle workers do not rush to claim on it.
  select pg_notify(:'schema' || '.task_ready', '0')
   where exists (select 1 from :"schema".queues c where c.name = any (array(select distinct queue from done)))
), unblocked as (
  -- Tasks waiting on what just succeeded (dependsOn) whose other
  -- dependencies have all succeeded become pending. Rows finished by this
  -- statement still read as running here (one snapshot), hence the
  -- exception for them. Two batches finishing a task's last dependencies at
  -- once each see the other's as unfinished: the sweeper settles that one.
  -- Driven from the succeeded ids through task_dependencies_depends_on_idx,
  -- then each waiting row by primary key: tasks_waiting_idx does not fit
  -- here (its predicate also says finished_at is null), so a generic plan
  -- cannot choose to walk every waiting task for each batch.
  update :"schema".tasks w
     set state = 'pending'
    from (select distinct d.task_id
            from done
            join :"schema".task_dependencies d on d.depends_on = done.id
           where done.state = 'succeeded') as c
   where w.id = c.task_id
     and w.state = 'waiting'
     and not exists (select 1
                       from :"schema".task_dependencies d
                       join :"schema".tasks p on p.id = d.depends_on
                      where d.task_id = w.id
                        and p.state <> 'succeeded'
                        and p.id not in (select id from done where state = 'succeeded'))
  returning w.id
), unblocked_due as (
  select pg_notify(:'schema' || '.task_ready', '') from unblocked having count(*) > 0
), announced as (
  -- At most 350 ids per notification: a payload must stay under 8000 bytes
  -- (350 ids of 19 digits and their commas make 7000).
  select pg_notify(:'schema' || '.task_finished', string_agg(id::text, ','))
    from (select id, (row_number() over ()) / 350 as chunk
            from done
           where state <> 'pending') finished
   group by chunk
), retry_due as (
  -- Retries go back to pending with a delay: tell the relays in how many ms
  -- the first one is due (the payload), so it does not wait for their poll.
  select pg_notify(:'schema' || '.task_ready', min(o.delay_ms)::text)
    from done d
    join outcome o on o.id = d.id
   where d.state = 'pending'
  having count(*) > 0
)
select id, state,
       (select count(*) from announced) + (select count(*) from retry_due) + (select count(*) from unblocked_due)
         + (select count(*) from slots_freed) + (select count(*) from events) as notified
  from done
