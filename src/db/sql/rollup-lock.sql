-- Rollups: lock the watermark row (a second sweeper waits here until the
-- first commits, then reads the moved watermark) and choose how far this
-- pass goes. finished_at is the finishing transaction's now(), so a
-- transaction still open may yet commit rows finished before the present:
-- the horizon stays before the start of every open transaction of this
-- database that we can see (other roles' show no xact_start without
-- pg_read_all_stats), but lags at most a minute behind, so one session left
-- idle in a transaction cannot stall rollups. Two seconds of slack cover a
-- transaction that began but has not yet reported its start. $1: the
-- longest range one pass may cover, in ms (catching up after downtime).
-- Times as text: microseconds matter for the half-open ranges.
select w.upto::text as lo,
       greatest(w.upto, least(w.upto + $1::bigint * interval '1 millisecond',
                              now() - interval '2 seconds',
                              greatest(now() - interval '1 minute', coalesce(a.oldest, 'infinity'))))::text as hi,
       w.upto + $1::bigint * interval '1 millisecond' < least(now() - interval '2 seconds',
                                                            greatest(now() - interval '1 minute', coalesce(a.oldest, 'infinity'))) as behind
  from :"schema".task_rollup_watermark w,
       (select min(xact_start) as oldest
          from pg_stat_activity
         where datname = current_database()
           and pid <> pg_backend_pid()
           and backend_type = 'client backend'
           and xact_start is not null) a
   for update of w
