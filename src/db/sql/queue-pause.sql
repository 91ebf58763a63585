-- Pause a queue ($2 null) or one group of it (0013 pause_queue()): its
-- dispatched tasks go back to pending in this statement, so nothing starts
-- after it commits.
select :"schema".pause_queue($1, $2)
