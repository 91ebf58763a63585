-- taskrelay 0010: running workers say which queues they serve.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0010_workers.sql
--
-- Why: a task on a queue no worker listens on was dispatched and then sat in
-- Redis with no sign of why. Each worker process keeps one row here while it
-- runs (src/worker/worker.ts: written at start, renewed every heartbeatMs,
-- deleted at stop), so `taskrelay status` and `taskrelay stats` can say that
-- no running worker serves a queue. A row whose expires_at has passed
-- belongs to a worker that died without saying so; it no longer counts, and
-- a worker start deletes it a day later (workers-prune.sql). A worker that
-- claims a task it has no handler for reads it too: a task some running
-- worker of its queue can run is handed back at once (task-defer-no-handler.sql).
create table :"schema".workers (
  id           text primary key,
  queues       text[] not null,
  tasks        text[] not null,
  started_at   timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  expires_at   timestamptz not null
);
