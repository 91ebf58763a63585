-- Which of these queues ($1) are paused, whole (group_key null) or by
-- group (0013): a worker hands back the tasks of these it claimed ahead
-- (prefetch) instead of starting them. A handful of rows.
select name as queue, null::text as group_key
  from :"schema".queues
 where paused and name = any ($1::text[])
union all
select queue, group_key
  from :"schema".queue_groups
 where paused and queue = any ($1::text[])
