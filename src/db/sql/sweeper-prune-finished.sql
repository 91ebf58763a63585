-- Sweeper: delete finished tasks older than the retention, one small batch
-- per statement so pruning never holds many locks or bloats one transaction.
-- A task that an unfinished task depends on stays until that one finishes:
-- deleting it would drop the edge (0008) and free a waiting dependent to
-- run, and a workflow step (0012) reads its predecessors' results when it
-- is claimed.
with old as (
  select f.id
    from :"schema".tasks f
   where f.state in ('succeeded', 'failed', 'cancelled')
     and f.finished_at < now() - $1::bigint * interval '1 millisecond'
     and not exists (select 1
                       from :"schema".task_dependencies d
                       join :"schema".tasks w on w.id = d.task_id
                      where d.depends_on = f.id
                        and w.state in ('waiting', 'pending', 'dispatched', 'running'))
   limit $2
     for update skip locked
)
delete from :"schema".tasks t
 using old
 where t.id = old.id
