-- SQL status queries over taskrelay.task_status (one row per task). Use them
-- from psql, a BI tool or any language; `node examples/status.ts [task id]`
-- runs them. The README shows the same queries; test/readme.test.ts runs both.

-- name: failed-last-hour
-- How many tasks failed in the last hour, per task?
select name, count(*) as failed, max(finished_at) as last_failure
  from taskrelay.task_status
 where state = 'failed' and finished_at > now() - interval '1 hour'
 group by name
 order by failed desc;

-- name: task-history
-- What happened to task 42?
select id, name, state, attempt, max_attempts, created_at, started_at, finished_at,
       run_duration, waited, worker_id, error, result
  from taskrelay.task_status
 where id = 42;

-- name: queue-depth
-- Queue depth per state, with the oldest due task of each.
select queue, state, count(*) as tasks, min(run_at) filter (where run_at <= now()) as oldest_due
  from taskrelay.task_status
 where state in ('waiting', 'pending', 'dispatched', 'running')
 group by queue, state
 order by queue, state;

-- name: waiting-on
-- What is task 42 waiting for (dependsOn)?
select d.depends_on as task_id, s.name, s.state, s.error
  from taskrelay.task_dependencies d
  join taskrelay.task_status s on s.id = d.depends_on
 where d.task_id = 42
 order by d.depends_on;
