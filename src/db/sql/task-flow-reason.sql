-- A task's group, and why it is not running yet if it is due and held back
-- by its queue's settings (task_flow_reason(), 0015; null: nothing holds it).
select nullif(group_key, '') as group_key, :"schema".task_flow_reason(id) as reason
  from :"schema".tasks
 where id = $1::bigint
