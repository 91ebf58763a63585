-- Milliseconds until the earliest delayed task falls due, or until a
-- rate-limited or throttled queue (or group) with due tasks may start one
-- again (null: none), read by an idle relay so it wakes then rather than at
-- its next poll. The first is one probe of tasks_delayed_idx (0007), which
-- holds only pending rows whose run_at is later than their created_at; the
-- second reads the queues with settings (0013), a handful of rows.
with delayed as (
  select (extract(epoch from min(run_at) - now()) * 1000)::float8 as in_ms
    from :"schema".tasks
   where state = 'pending'
     and run_at > created_at
     and run_at > now()
), held_back as (
  select c.name,
         greatest(coalesce(extract(epoch from c.throttled_until - clock_timestamp()) * 1000, 0),
                  coalesce((1 - :"schema".bucket_tokens(c.tokens, c.refilled_at, c.rate_limit, c.rate_per_ms))
                           * c.rate_per_ms / c.rate_limit, 0)) as in_ms
    from :"schema".queues c
   where not c.paused
     and exists (select 1 from :"schema".tasks t where t.state = 'pending' and t.queue = c.name)
), groups_held_back as (
  select greatest(coalesce(extract(epoch from g.throttled_until - clock_timestamp()) * 1000, 0),
                  coalesce((1 - :"schema".bucket_tokens(g.tokens, g.refilled_at, c.group_rate_limit, c.group_rate_per_ms))
                           * c.group_rate_per_ms / c.group_rate_limit, 0)) as in_ms
    from :"schema".queue_groups g
    join :"schema".queues c on c.name = g.queue
   where not g.paused and not c.paused
     and (g.throttled_until > clock_timestamp() or g.tokens < 1)
)
select least((select in_ms from delayed),
             (select min(in_ms) from held_back where in_ms > 0),
             (select min(in_ms) from groups_held_back where in_ms > 0))::float8 as due_in_ms
