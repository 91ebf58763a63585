-- `taskrelay workers`, the dashboard: worker processes with their row in
-- workers, live ones (expires_at ahead: still renewing it) first, and with
-- $1 also the silent ones (kept a day after they stop renewing, see 0010).
-- running: the tasks each holds now, one probe of tasks_running_worker_idx
-- (0011) per worker.
select w.id, w.queues, w.tasks, w.started_at, w.last_seen_at, w.expires_at,
       w.expires_at > now() as alive,
       (select count(*)::int
          from :"schema".tasks t
         where t.state = 'running'
           and t.worker_id = w.id) as running
  from :"schema".workers w
 where w.expires_at > now() or $1::boolean
 order by alive desc, w.started_at, w.id
