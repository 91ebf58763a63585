-- Wake an idle relay after an enqueue (migration 0004). NOTIFY only when at
-- least one relay is registered (bool_and over no rows is null) and none is
-- busy: a busy relay polls on its own, and a notifying commit takes a
-- database-wide lock through its WAL flush (see 0003). The NOTIFY is
-- delivered when the enqueue's transaction commits, never on rollback.
-- enqueueStatement() runs this once per enqueue statement; after a COPY,
-- wakeStatement() runs it on its own.
select pg_notify(:'schema' || '.task_ready', '')
  from :"schema".relays
having bool_and(busy_until <= clock_timestamp())
