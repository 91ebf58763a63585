-- Relay: the Redis push of a round failed; put its tasks back to pending at
-- once instead of waiting for the sweeper. Fenced by the round's token, so a
-- task already re-dispatched or claimed is not touched.
update :"schema".tasks
   set state = 'pending', dispatch_token = null, dispatched_at = null
 where id = any ($1::bigint[])
   and state = 'dispatched'
   and dispatch_token = $2::uuid
