-- Rollups: drop the minutes older than the tasks' retention (the sweeper's
-- retentionMs, as sweeper-prune-finished.sql), a bounded batch per pass; a
-- range of the primary key, which starts with minute.
delete from :"schema".task_rollups r
 using (select minute, queue
          from :"schema".task_rollups
         where minute < now() - $1::bigint * interval '1 millisecond' - interval '1 minute'
         limit $2) old
 where r.minute = old.minute and r.queue = old.queue
