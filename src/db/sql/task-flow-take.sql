-- Worker, Postgres lane: take up to $2 due tasks of its queues that have
-- settings ($1, 0013: limits, groups, pause), within those settings, and mark
-- them dispatched with the claim's token ($3). The claim that follows
-- (task-claim-due.sql, $8) makes them running. Its own autocommit statement:
-- flow_take() holds each queue's row lock until it commits.
select f.id from :"schema".flow_take($1::text[], '{}'::text[], $2, $3::uuid) f
