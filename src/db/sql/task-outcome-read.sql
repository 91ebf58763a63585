-- Worker: after a handler that called ctx.complete(trx, …) returned, did its
-- transaction commit this attempt's outcome? A plain read: it never waits for
-- a transaction the handler may have left open.
select state, attempt
  from :"schema".tasks
 where id = $1
