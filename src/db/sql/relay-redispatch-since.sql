-- Relay: Redis failed over or lost its data. Tasks dispatched at or after $1
-- may be missing from the new primary: put them back to pending. A message
-- that did survive carries the old token and is dropped by the claim.
update :"schema".tasks
   set state = 'pending', dispatch_token = null, dispatched_at = null
 where state = 'dispatched'
   and dispatched_at >= $1::timestamptz
