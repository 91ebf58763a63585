-- Worker shutdown: attempts that did not finish within the grace period go
-- back to pending, runnable at once. attempt stays (it fences the aborted
-- handler); max_attempts grows by one so the hand-back costs no attempt.
update :"schema".tasks t
   set state = 'pending',
       run_at = now(),
       max_attempts = t.max_attempts + 1,
       lease_expires_at = null,
       dispatch_token = null,
       last_error = jsonb_build_object(
         'message', 'worker shut down before the task finished; handed back',
         'kind', 'shutdown', 'attempt', t.attempt, 'at', now())
  from unnest($1::bigint[], $2::int[]) as h(id, attempt)
 where t.id = h.id
   and t.attempt = h.attempt
   and t.state = 'running'
returning t.id
