-- Relay start: one row per relay process (see 0003); rows of relays gone
-- for a day are removed.
with gone as (
  delete from :"schema".relays where seen_at < now() - interval '1 day'
)
insert into :"schema".relays (relay_id) values ($1)
on conflict (relay_id) do update set seen_at = now()
