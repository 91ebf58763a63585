-- Worker: attempts it gives up without an outcome go back to pending,
-- runnable at once: at shutdown, those that did not finish within the grace
-- period; when stuck handlers hold every slot, the prefetched ones that could
-- not start. attempt stays (it fences the aborted handler); max_attempts
-- grows by one so the hand-back costs no attempt. $3 says why, $4 is the kind.
update :"schema".tasks t
   set state = 'pending',
       run_at = now(),
       max_attempts = t.max_attempts + 1,
       lease_expires_at = null,
       dispatch_token = null,
       last_error = jsonb_build_object('message', $3::text, 'kind', $4::text, 'attempt', t.attempt, 'at', now())
  from unnest($1::bigint[], $2::int[]) as h(id, attempt)
 where t.id = h.id
   and t.attempt = h.attempt
   and t.state = 'running'
returning t.id
