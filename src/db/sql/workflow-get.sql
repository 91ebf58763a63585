-- One workflow's status row (0012's view), with the failed step's error.
select s.id::text as id, s.name, s.state, s.total, s.waiting, s.pending, s.dispatched, s.running,
       s.succeeded, s.failed, s.cancelled, s.created_at, s.finished_at,
       s.failed_task_id::text as failed_task_id,
       (select t.last_error ->> 'message' from :"schema".tasks t where t.id = s.failed_task_id) as failed_error,
       s.result_task_ids::text[] as result_task_ids,
       w.result_is_list
  from :"schema".workflow_status s
  join :"schema".workflows w on w.id = s.id
 where s.id = $1::uuid
