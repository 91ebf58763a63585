-- Worker start, then every heartbeatMs: this worker serves these queues
-- with these tasks (only those on the queues it serves) until expires_at
-- (see 0010). Read by status and stats, and by a worker deferring a task it
-- has no handler for.
insert into :"schema".workers (id, queues, tasks, expires_at)
values ($1, $2::text[], $3::text[], now() + $4 * interval '1 millisecond')
on conflict (id) do update
   set queues = excluded.queues, tasks = excluded.tasks,
       last_seen_at = now(), expires_at = excluded.expires_at
