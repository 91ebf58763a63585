-- Sweeper: dispatched tasks that no worker claimed and whose message is
-- presumed lost (with a Redis failover or restart, a relay that died before
-- its push, a worker that died after its pop) go back to pending. No attempt
-- is used: the handler never started. Relays are woken to send them again.
--
-- Lost, not merely waiting: a queue's Redis list is FIFO, so its workers
-- reach messages in dispatch order. While a queue's workers keep starting
-- tasks, the latest dispatch among those started within the timeout says how
-- far they have read; a task is lost once they have read messages
-- dispatched more than the dispatch timeout ($1) after it. A deep backlog on
-- slow workers (5,000 messages at 20 tasks/s wait 250 s) is then left to
-- drain instead of being re-dispatched over and over. A queue where nothing
-- started within the timeout (idle workers, or only long tasks running)
-- gives no such evidence, and the timeout alone decides, as before.
with read_up_to as (
  select queue, max(dispatched_at) as dispatched_at
    from :"schema".tasks
   where state = 'running'
     and lease_expires_at is not null
     and started_at > now() - $1::bigint * interval '1 millisecond'
   group by queue
), stale as (
  select t.id
    from :"schema".tasks t
    left join read_up_to r on r.queue = t.queue
   where t.state = 'dispatched'
     and t.dispatched_at < now() - $1::bigint * interval '1 millisecond'
     and (r.dispatched_at is null
          or t.dispatched_at < r.dispatched_at - $1::bigint * interval '1 millisecond')
   order by t.dispatched_at
   limit $2
     for update of t skip locked
), moved as (
  update :"schema".tasks t
     set state = 'pending', dispatch_token = null, dispatched_at = null
    from stale
   where t.id = stale.id
  returning t.id
), woken as (
  select pg_notify(:'schema' || '.task_ready', '') from moved having count(*) > 0
)
select count(*)::int as count, (select count(*) from woken) as woken from moved
