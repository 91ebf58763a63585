-- One task's attempts, oldest first, the running one included (the
-- task_attempt_history view of 0016; both of its parts by primary key).
select attempt, worker_id, started_at, finished_at, outcome, error_detail as error,
       (extract(epoch from duration) * 1000)::float8 as duration_ms
  from :"schema".task_attempt_history
 where task_id = $1
 order by attempt
