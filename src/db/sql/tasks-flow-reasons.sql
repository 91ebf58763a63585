-- Why each of these pending tasks ($1, one page of a list) does not run yet
-- (task_flow_reason(), 0015); only the ones something holds back.
select r.id, r.reason
  from (select id, :"schema".task_flow_reason(id) as reason from unnest($1::bigint[]) as id) r
 where r.reason is not null
