-- Which of these queues ($1) have settings (a row in queues, 0013): the
-- Postgres lane takes their tasks through flow_take().
select name from :"schema".queues where name = any ($1::text[])
