-- Relay: which of these Redis messages (id $1[i], token $2[i]) still stand
-- for a dispatch a worker may claim. Any other message is stale for good:
-- each dispatch writes a fresh token, so a task that moved on (claimed,
-- re-dispatched, finished, deleted) never matches its old message again.
-- Answers the messages' positions (1-based), one primary-key probe each.
select m.i::int as i
  from unnest($1::bigint[], $2::uuid[]) with ordinality as m(id, token, i)
  join :"schema".tasks t on t.id = m.id
 where t.state = 'dispatched'
   and t.dispatch_token = m.token
