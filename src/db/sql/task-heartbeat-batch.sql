-- Worker: extend the leases of all its in-flight attempts in one UPDATE.
-- Ids missing from the result are no longer this worker's (lease taken
-- over, cancelled): their handlers get aborted.
update :"schema".tasks t
   set lease_expires_at = now() + $3::bigint * interval '1 millisecond'
  from unnest($1::bigint[], $2::int[]) as h(id, attempt)
 where t.id = h.id
   and t.attempt = h.attempt
   and t.state = 'running'
returning t.id
