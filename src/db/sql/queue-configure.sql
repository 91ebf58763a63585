-- Set a queue's flow settings (0013). $2 holds only the settings given, by
-- column name; a key given as null clears that setting, a key left out keeps
-- it. The queues_changed trigger marks the row 'runtime' (code no longer
-- overrides it) and wakes relays, so the change applies within a round.
insert into :"schema".queues as q (name, concurrency, rate_limit, rate_per_ms,
                                   group_concurrency, group_rate_limit, group_rate_per_ms)
values ($1,
        ($2::jsonb ->> 'concurrency')::integer,
        ($2::jsonb ->> 'rate_limit')::integer,
        ($2::jsonb ->> 'rate_per_ms')::bigint,
        ($2::jsonb ->> 'group_concurrency')::integer,
        ($2::jsonb ->> 'group_rate_limit')::integer,
        ($2::jsonb ->> 'group_rate_per_ms')::bigint)
on conflict (name) do update
   set concurrency       = case when $2::jsonb ? 'concurrency' then excluded.concurrency else q.concurrency end,
       rate_limit        = case when $2::jsonb ? 'rate_limit' then excluded.rate_limit else q.rate_limit end,
       rate_per_ms       = case when $2::jsonb ? 'rate_per_ms' then excluded.rate_per_ms else q.rate_per_ms end,
       group_concurrency = case when $2::jsonb ? 'group_concurrency' then excluded.group_concurrency else q.group_concurrency end,
       group_rate_limit  = case when $2::jsonb ? 'group_rate_limit' then excluded.group_rate_limit else q.group_rate_limit end,
       group_rate_per_ms = case when $2::jsonb ? 'group_rate_per_ms' then excluded.group_rate_per_ms else q.group_rate_per_ms end,
       source            = 'runtime',
       updated_at        = now()
