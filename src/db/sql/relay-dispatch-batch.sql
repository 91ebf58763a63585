-- Relay: claim up to :batch_size due pending tasks and mark them dispatched
-- with this round's token ($1) in one autocommit statement. Queues take
-- turns: the walk starts after the queue the previous round ended on ($6),
-- so a deep queue fills a batch and the next round serves the others; within
-- a queue, the best first (priority, then run_at).
-- :batch_size is the relay's batchSize, written into the text (withIntegers):
-- with the limits known, the cached generic plan is as good as a fresh one,
-- so the statement is not re-planned on every round (0.5 ms each).
-- Queues whose Redis backlog is full ($2) are left in Postgres, so priority
-- order is decided here and not lost in a long Redis list; thanks to
-- tasks_pending_idx leading with queue (0006), they cost one index probe,
-- not a read past their backlog.
-- SKIP LOCKED lets several relays claim side by side without waiting.
-- Queues with settings (a row in queues, 0013: limits, groups, pause) are
-- left to flow_take(), which dispatches their tasks within those settings;
-- its rows come back with their turn order (ord) between groups.
-- The commit happens BEFORE the Redis push on purpose: a worker can only
-- claim a committed dispatch, and a crash between commit and push is
-- repaired by the sweeper's dispatch timeout (or the relay's own revert).
-- When the round found at least $5 rows (the relay is under load), the
-- relay ($4) advertises that it keeps polling for $3 ms, so enqueues skip
-- their NOTIFY meanwhile (0003, wake-idle-relays.sql). At low rates every
-- enqueue still wakes it at once, which is what keeps latency low.
with recursive after_cursor as (
  -- The queues with pending tasks, in name order after $6 (the queue this
  -- relay served last), one index probe each: a "skip scan".
  select min(queue) as queue
    from :"schema".tasks
   where state = 'pending'
     and queue > $6
  union all
  select (select min(t.queue)
            from :"schema".tasks t
           where t.state = 'pending'
             and t.queue > q.queue)
    from after_cursor q
   where q.queue is not null
), up_to_cursor as (
  -- ... then from the first queue again, up to and including $6.
  select min(queue) as queue
    from :"schema".tasks
   where state = 'pending'
  union all
  select (select min(t.queue)
            from :"schema".tasks t
           where t.state = 'pending'
             and t.queue > q.queue)
    from up_to_cursor q
   where q.queue <= $6
), rotation as (
  select r.queue, r.lap
    from (select queue, 1 as lap from after_cursor where queue is not null
          union all
          select queue, 2 as lap from up_to_cursor where queue <= $6) r
   where r.queue <> all ($2::text[])
     and not exists (select 1 from :"schema".queues c where c.name = r.queue)
), due as (
  -- Each queue's best due rows, queue after queue, until the batch is full.
  -- Nothing is sorted across queues, so the walk stops as soon as it has
  -- enough: a round reads about :batch_size rows however many queues exist.
  -- Rows are locked as they are read, and SKIP LOCKED moves on to the next
  -- ones, so relays running side by side take different rows.
  select c.id, q.queue, q.lap
    from rotation q
   cross join lateral (
     select t.id
       from :"schema".tasks t
      where t.state = 'pending'
        and t.queue = q.queue
        and t.run_at <= now()
      order by t.priority desc, t.run_at, t.id
      limit :batch_size
        for update skip locked
   ) c
   limit :batch_size
), moved as (
  -- = any (array(...)), not a join: looked up by primary key whatever the
  -- planner guesses (a join let it scan the whole table for a large batch).
  update :"schema".tasks t
     set state = 'dispatched',
         dispatched_at = now(),
         dispatch_token = $1::uuid
   where t.id = any (array(select id from due))
  returning t.id, t.queue, t.priority, t.run_at
), flowed as (
  select f.id, f.queue, f.ord
    from :"schema".flow_take(null, $2::text[], :batch_size, $1::uuid) f
), busy as (
  update :"schema".relays
     set busy_until = clock_timestamp() + $3::bigint * interval '1 millisecond', seen_at = now()
   where relay_id = $4
     and (select count(*) from moved) + (select count(*) from flowed) >= $5
)
-- RETURNING order is unspecified: hand the rows back best first, the order
-- they are pushed in, each with the queue the walk ended on (the next $6).
select id, queue,
       coalesce((select d.queue from due d order by d.lap desc, d.queue desc limit 1), $6) as last_queue
  from (select m.id, m.queue, m.priority, m.run_at, 0::bigint as ord from moved m
        union all
        select f.id, f.queue, 0, null, f.ord from flowed f) r
 order by ord, priority desc, run_at, id
