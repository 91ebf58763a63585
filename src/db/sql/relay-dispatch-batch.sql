-- Relay: claim up to $1 due pending tasks, best first, and mark them
-- dispatched with this round's token ($2) in one autocommit statement.
-- SKIP LOCKED lets several relays claim side by side without waiting.
-- Queues whose Redis backlog is full ($3) are left in Postgres, so priority
-- order is decided here and not lost in a long Redis list.
-- The commit happens BEFORE the Redis push on purpose: a worker can only
-- claim a committed dispatch, and a crash between commit and push is
-- repaired by the sweeper's dispatch timeout (or the relay's own revert).
-- When the round found at least $6 rows (the relay is under load), the
-- relay ($5) advertises that it keeps polling for $4 ms, so enqueues skip
-- their NOTIFY meanwhile (0003, wake-idle-relays.sql). At low rates every
-- enqueue still wakes it at once, which is what keeps latency low.
with due as (
  select id
    from :"schema".tasks
   where state = 'pending'
     and run_at <= now()
     and queue <> all ($3::text[])
   order by priority desc, run_at, id
   limit $1
     for update skip locked
), moved as (
  update :"schema".tasks t
     set state = 'dispatched',
         dispatched_at = now(),
         dispatch_token = $2::uuid
    from due
   where t.id = due.id
  returning t.id, t.queue, t.priority, t.run_at
), busy as (
  update :"schema".relays
     set busy_until = clock_timestamp() + $4::bigint * interval '1 millisecond', seen_at = now()
   where relay_id = $5
     and (select count(*) from moved) >= $6
)
-- RETURNING order is unspecified: hand the rows back best first, the order
-- they are pushed in.
select id, queue from moved order by priority desc, run_at, id
