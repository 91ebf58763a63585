-- Worker start, then every heartbeatMs: this worker serves these queues
-- with these tasks until expires_at (see 0010). Read only by status and
-- stats, never on the task path. Rows of workers gone for a day are removed.
with gone as (
  delete from :"schema".workers where expires_at < now() - interval '1 day'
)
insert into :"schema".workers (id, queues, tasks, expires_at)
values ($1, $2::text[], $3::text[], now() + $4 * interval '1 millisecond')
on conflict (id) do update
   set queues = excluded.queues, tasks = excluded.tasks,
       last_seen_at = now(), expires_at = excluded.expires_at
