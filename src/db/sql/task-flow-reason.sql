-- Why a pending task is not running yet (task_flow_reason(), 0013), or null.
select :"schema".task_flow_reason($1::bigint) as reason
