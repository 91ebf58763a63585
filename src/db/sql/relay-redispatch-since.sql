-- Relay: Redis failed over or lost its data. Tasks dispatched within the
-- last $1 ms (the relay's failover window, counted back from when it lost
-- its connection), or all dispatched tasks when $1 is null (data lost), may
-- be missing from the new primary: put them back to pending. A message that
-- did survive carries the old token and is dropped by the claim. The window
-- is applied with the database clock (dispatched_at is the database's too).
update :"schema".tasks
   set state = 'pending', dispatch_token = null, dispatched_at = null
 where state = 'dispatched'
   and ($1::bigint is null or dispatched_at >= now() - $1::bigint * interval '1 millisecond')
