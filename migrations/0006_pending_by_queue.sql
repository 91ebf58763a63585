-- taskrelay 0006: the relay's index of pending tasks leads with the queue.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0006_pending_by_queue.sql
--
-- Why: when a queue's Redis list is full (maxBacklogPerQueue, e.g. its
-- workers are down), the relay leaves that queue's tasks in Postgres and
-- looks for other queues' work. With the index of 0001 ordered by priority
-- first, finding it meant reading past every pending row of the full queue
-- (a 270,000-row backlog: 0.5 s per search), so the relay could only search
-- now and then, and every other queue waited up to seconds. Ordered by queue
-- first, the relay walks the queues with pending work (one index probe to
-- find the next queue name), skips the full ones without reading a row, and
-- reads only the best rows of the others (src/db/sql/relay-dispatch-batch.sql).
-- Queues take turns, each round starting after the queue the last one ended
-- on, so a round reads about one batch of rows however many queues exist,
-- and a deep queue fills at most one batch before the others are served.
-- Within a queue the order is unchanged: priority, then run_at.
--
-- The index holds pending rows only. On a large backlog, building it takes a
-- while and blocks enqueues meanwhile (CREATE INDEX, not CONCURRENTLY, as
-- migrations run in a transaction): migrate in a quiet moment.

drop index :"schema".tasks_pending_idx;
create index tasks_pending_idx on :"schema".tasks (queue, priority desc, run_at, id) where state = 'pending';
