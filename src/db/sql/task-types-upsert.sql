-- Worker start: publish each registered task's defaults, so the SQL
-- enqueue() function routes by the same queue/priority/attempts as TypeScript.
insert into :"schema".task_types (name, queue, priority, max_attempts, updated_at)
select * , now() from unnest($1::text[], $2::text[], $3::smallint[], $4::int[])
on conflict (name) do update
   set queue = excluded.queue, priority = excluded.priority,
       max_attempts = excluded.max_attempts, updated_at = excluded.updated_at
 where (task_types.queue, task_types.priority, task_types.max_attempts)
       is distinct from (excluded.queue, excluded.priority, excluded.max_attempts)
