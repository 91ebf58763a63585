-- Worker: tasks it claimed but has no handler for go back to pending
-- without using an attempt (max_attempts grows by one, as in a hand-back).
-- In a rolling deploy a newer worker on the same queue registers the task;
-- until one claims it the task waits, visibly: last_error says why and how
-- often it was deferred. While a running worker of its queue registers the
-- task (the workers table), it comes back after 0.2 s, however often it landed on old
-- workers; otherwise the first 8 deferrals wait 0.5 s, then each twice as
-- long, up to 60 s, so a task nobody can run costs one claim a minute.
update :"schema".tasks t
   set state = 'pending',
       run_at = now() + case when d.served then 200
                             else least(60000, 500 * 2 ^ least(greatest(d.deferrals - 8, 0), 7)) end * interval '1 millisecond',
       max_attempts = t.max_attempts + 1,
       lease_expires_at = null,
       dispatch_token = null,
       last_error = jsonb_build_object(
         'message', format('no running worker of queue %s has a handler for task %s yet; waiting for one (deferred %s times)',
                           t.queue, t.name, d.deferrals),
         'kind', 'no_handler', 'deferrals', d.deferrals, 'workerId', $3::text, 'attempt', t.attempt, 'at', now())
  from (select h.id, h.attempt,
               coalesce(case when p.last_error->>'kind' = 'no_handler' then (p.last_error->>'deferrals')::int end, 0) + 1 as deferrals,
               exists (select 1 from :"schema".workers w
                        where w.expires_at > now() and p.name = any(w.tasks) and p.queue = any(w.queues)) as served
          from unnest($1::bigint[], $2::int[]) as h(id, attempt)
          join :"schema".tasks p on p.id = h.id) as d
 where t.id = d.id
   and t.attempt = d.attempt
   and t.state = 'running'
returning t.id
