-- A worker starting: the queue settings its tasks declare (defineTask's
-- queueSettings), one JSON object per queue in $1, become the queues' rows,
-- unless settings were changed at run time (source 'runtime': configure(),
-- the CLI or SQL), which code never overrides. Returns the queues skipped.
with declared as (
  select d.name, d.concurrency, d.rate_limit, d.rate_per_ms, d.group_concurrency, d.group_rate_limit, d.group_rate_per_ms
    from jsonb_to_recordset($1::jsonb) as d(name text, concurrency integer, rate_limit integer, rate_per_ms bigint,
                                            group_concurrency integer, group_rate_limit integer, group_rate_per_ms bigint)
), synced as (
  insert into :"schema".queues as q (name, concurrency, rate_limit, rate_per_ms, group_concurrency,
                                     group_rate_limit, group_rate_per_ms, source, synced_at)
  select name, concurrency, rate_limit, rate_per_ms, group_concurrency, group_rate_limit, group_rate_per_ms, 'code', now()
    from declared
  on conflict (name) do update
     set concurrency = excluded.concurrency, rate_limit = excluded.rate_limit, rate_per_ms = excluded.rate_per_ms,
         group_concurrency = excluded.group_concurrency, group_rate_limit = excluded.group_rate_limit,
         group_rate_per_ms = excluded.group_rate_per_ms, synced_at = now()
   where q.source = 'code'
  returning name
)
select d.name from declared d where d.name not in (select name from synced)
