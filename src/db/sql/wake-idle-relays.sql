-- Wake an idle relay after an enqueue (migration 0004). NOTIFY only when at
-- least one relay is registered (bool_and over no rows is null) and none is
-- busy: a busy relay polls on its own, and a notifying commit takes a
-- database-wide lock through its WAL flush (see 0003). The NOTIFY is
-- delivered when the enqueue's transaction commits, never on rollback.
-- enqueueStatement() folds it into every enqueue statement, where it runs
-- once per statement. The enqueue() SQL function (0004) repeats it inline:
-- calling it as a SQL function from the INSERT measured slower than the
-- trigger it replaced (bench/RESULTS.md, section 4).
select pg_notify(:'schema' || '.task_ready', '')
  from :"schema".relays
having bool_and(busy_until <= clock_timestamp())
