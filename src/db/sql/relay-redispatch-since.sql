-- Relay: Redis failed over or lost its data. Tasks dispatched between $1
-- and $2 ms ago may be missing from the new primary: put them back to
-- pending. After a failover that is the relay's failover window up to the
-- moment it lost its connection (what was dispatched since went to the new
-- primary, or was reverted); after a data loss, every task dispatched before
-- the epoch marker was set ($1 null: no lower bound). A message that did
-- survive carries the old token and is dropped by the claim. The bounds are
-- applied with the database clock (dispatched_at is the database's too), so
-- host clock skew does not matter.
update :"schema".tasks
   set state = 'pending', dispatch_token = null, dispatched_at = null
 where state = 'dispatched'
   and dispatched_at is not null -- always true; lets tasks_dispatched_idx serve (0005)
   and ($1::bigint is null or dispatched_at >= now() - $1::bigint * interval '1 millisecond')
   and ($2::bigint is null or dispatched_at <= now() - $2::bigint * interval '1 millisecond')
