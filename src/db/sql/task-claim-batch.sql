-- Worker: claim the tasks whose Redis messages it popped. One conditional
-- UPDATE for the batch: a row is claimed only if it is still dispatched
-- with the same token, so duplicated or stale messages claim nothing.
-- attempt only ever grows; (id, attempt) fences every later write.
update :"schema".tasks t
   set state = 'running',
       attempt = t.attempt + 1,
       started_at = now(),
       lease_expires_at = now() + $3::bigint * interval '1 millisecond',
       worker_id = $4
  from unnest($1::bigint[], $2::uuid[]) as m(id, token)
 where t.id = m.id
   and t.state = 'dispatched'
   and t.dispatch_token = m.token
-- created_at as epoch milliseconds: a float8 parses far cheaper in the
-- worker than a timestamptz, hundreds of times per batch.
returning t.id, t.name, t.queue, t.payload, t.priority, t.attempt, t.max_attempts,
          (extract(epoch from t.created_at) * 1000)::float8 as created_ms
