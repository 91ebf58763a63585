-- The tasks of a workflow (tasks_workflow_idx, 0012), each with the ids it
-- depends on in position order: enough to draw the workflow as a tree.
select t.id::text as id, t.name, t.queue, t.state, t.attempt, t.max_attempts, t.input,
       t.started_at, t.finished_at, t.last_error ->> 'message' as error,
       coalesce(array(select d.depends_on::text
                        from :"schema".task_dependencies d
                       where d.task_id = t.id
                       order by d.position, d.depends_on), '{}') as depends_on
  from :"schema".tasks t
 where t.workflow_id = $1::uuid
 order by t.id
