-- Sweeper: dispatched tasks no worker claimed within the dispatch timeout
-- (message lost with a Redis failover or restart, relay died before its
-- push, worker died after its pop) go back to pending. No attempt is used:
-- the handler never started. Relays are woken to send them again.
with stale as (
  select id
    from :"schema".tasks
   where state = 'dispatched'
     and dispatched_at < now() - $1::bigint * interval '1 millisecond'
   order by dispatched_at
   limit $2
     for update skip locked
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
