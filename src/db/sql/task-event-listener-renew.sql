-- tr.events: this TaskRelay has subscribers (0019). Registers or renews its
-- row for $2 ms, and drops rows of listeners that expired long ago (a
-- process that died without unregistering).
with pruned as (
  delete from :"schema".task_event_listeners
   where expires_at < now() - interval '1 hour'
)
insert into :"schema".task_event_listeners (id, expires_at)
values ($1::uuid, now() + $2::bigint * interval '1 millisecond')
on conflict (id) do update
   set expires_at = excluded.expires_at
