-- Sync of defineTask schedules: drop code-declared schedules of the given
-- tasks ($1) that the code no longer declares ($2). Schedules of other tasks
-- belong to other services' schedulers and are left alone; manual ones too.
delete from :"schema".schedules
 where source = 'code'
   and task_name = any($1::text[])
   and not (name = any($2::text[]))
returning name
