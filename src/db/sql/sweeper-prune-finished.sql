-- Sweeper: delete finished tasks older than the retention, one small batch
-- per statement so pruning never holds many locks or bloats one transaction.
with old as (
  select id
    from :"schema".tasks
   where state in ('succeeded', 'failed', 'cancelled')
     and finished_at < now() - $1::bigint * interval '1 millisecond'
   limit $2
     for update skip locked
)
delete from :"schema".tasks t
 using old
 where t.id = old.id
