-- Worker start: rows of workers gone for a day (they died without
-- unregistering) are removed. Once per start, not on every renewal.
delete from :"schema".workers where expires_at < now() - interval '1 day'
