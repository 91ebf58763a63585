-- taskrelay 0018: the attempt that finished a task is read from its row.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0018_final_attempt_in_task_row.sql
--
-- 0016 inserted a task_attempts row for every attempt from the worker's
-- outcome batch: a heap and an index insert per task on the hot path (9 % of
-- that statement, up to 15 % of end-to-end throughput in bench S4 and S6).
-- A succeeded or failed task's row already holds its last attempt (attempt,
-- worker_id, started_at, finished_at, last_error), so task_attempts now keeps
-- only attempts that did not finish their task: retry, throttled, lost, and
-- cancelled while running. The task_attempt_history view reads a finished
-- task's last attempt from the row, unless task_attempts has it (a worker
-- lost on the last attempt, or rows written before this migration).
create or replace view :"schema".task_attempt_history as
select task_id, attempt, worker_id, started_at, finished_at, outcome,
       error ->> 'message' as error, error as error_detail,
       finished_at - started_at as duration
  from :"schema".task_attempts
union all
select t.id, t.attempt, t.worker_id, t.started_at, t.finished_at, t.state,
       case when t.state = 'failed' then t.last_error ->> 'message' end,
       case when t.state = 'failed' then t.last_error end,
       t.finished_at - t.started_at
  from :"schema".tasks t
 where t.state in ('succeeded', 'failed')
   and t.attempt > 0
   and not exists (select 1
                     from :"schema".task_attempts a
                    where a.task_id = t.id
                      and a.attempt = t.attempt)
union all
select id, attempt, worker_id, started_at, null, 'running', null, null, null
  from :"schema".tasks
 where state = 'running';

-- retry() as in 0012, but a failed task's last attempt goes into
-- task_attempts first: once it runs again, its row no longer holds it.
create or replace function :"schema".retry(task_id bigint) returns boolean
language plpgsql
set search_path = :"schema", pg_temp
as $$
declare
  done boolean;
begin
  insert into task_attempts (task_id, attempt, worker_id, started_at, finished_at, outcome, error)
  select t.id, t.attempt, t.worker_id, t.started_at, coalesce(t.finished_at, now()), 'failed', t.last_error
    from tasks t
   where t.id = retry.task_id
     and t.state = 'failed'
     and t.attempt > 0
  on conflict do nothing;
  update tasks t
     set state = case when exists (select 1
                                     from task_dependencies d
                                     join tasks p on p.id = d.depends_on
                                    where d.task_id = t.id
                                      and p.state <> 'succeeded')
                      then 'waiting' else 'pending' end,
         finished_at = null, result = null,
         run_at = greatest(now(), coalesce((last_error ->> 'leaseExpiresAt')::timestamptz, now())),
         dispatch_token = null, dispatched_at = null, lease_expires_at = null,
         max_attempts = greatest(max_attempts, attempt + 1)
   where t.id = task_id and t.state in ('failed', 'cancelled');
  done := found;
  if done then
    with recursive revived as (
      select d.task_id as id
        from task_dependencies d
       where d.depends_on = retry.task_id
      union
      select d.task_id
        from task_dependencies d
        join revived r on d.depends_on = r.id
    )
    update tasks t
       set state = 'waiting', finished_at = null, last_error = null
      from revived r
     where t.id = r.id
       and t.state = 'cancelled'
       and t.last_error ->> 'kind' = 'dependency_failed';
    perform pg_notify(current_schema() || '.task_ready', '');
  end if;
  return done;
end $$;
