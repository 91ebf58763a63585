-- taskrelay 0012: workflows. A workflow is a set of tasks enqueued together
-- (chains, groups, chords; src/workflow/), with an id every task of it
-- carries, results that flow from a step to the steps after it, and, when a
-- step fails, compensations of the completed steps and an error callback.
--
-- :"schema" is replaced by the configured schema when the migrator runs;
-- with psql use:  psql -v schema=taskrelay -f 0012_workflows.sql
--
-- Ordering is task_dependencies (0008): a step waits for the steps before
-- it. What is new is input: a step enqueued with input 'result' gets its
-- predecessor's result as its payload, one with 'results' the array of its
-- predecessors' results in their order (task_dependencies.position). The
-- payload is filled in when the step is claimed (task-claim-*.sql), when
-- every predecessor has succeeded and committed its result.

create table :"schema".workflows (
  id                 uuid primary key,
  name               text not null,
  created_at         timestamptz not null default now(),
  -- Set by the sweeper once no task of it is unfinished (and a failure was
  -- handled): the sweeper's passes read only workflows still open.
  finished_at        timestamptz,
  cancelled_at       timestamptz,
  -- The sweeper's once-only guard for compensations and the error callback.
  failure_handled_at timestamptz,
  -- The error callback (Celery's link_error): {"name", "payload", "queue", "priority", "maxAttempts"}.
  on_error           jsonb,
  -- The steps whose results are the workflow's: the last step or callback
  -- (one id), or the members of a final group (their results as a list).
  result_task_ids    bigint[] not null default '{}',
  result_is_list     boolean not null default false
);
create index workflows_open_idx on :"schema".workflows (id) where finished_at is null;

alter table :"schema".tasks
  add column workflow_id  uuid references :"schema".workflows (id) on delete set null,
  add column input        text check (input in ('result', 'results')),
  -- A compensating task for this step, run if a later step of its workflow
  -- fails after this one succeeded: {"name", "payload", "queue", "priority", "maxAttempts"}.
  add column compensation jsonb;
-- Tasks of a workflow: status, cancel, the sweeper's settling. Only
-- workflow rows are in it.
create index tasks_workflow_idx on :"schema".tasks (workflow_id) where workflow_id is not null;

alter table :"schema".task_dependencies add column position integer;

-- A step's payload from its predecessors' results: 'result', the result of
-- the one it depends on; 'results', the array of all their results, in
-- position order.
create function :"schema".task_input(task_id bigint, input_kind text) returns jsonb
language sql stable
set search_path = :"schema", pg_temp
as $$
  select case task_input.input_kind
           when 'result' then (array_agg(coalesce(p.result, 'null'::jsonb) order by d.position, d.depends_on))[1]
           else coalesce(jsonb_agg(coalesce(p.result, 'null'::jsonb) order by d.position, d.depends_on), '[]'::jsonb)
         end
    from task_dependencies d
    join tasks p on p.id = d.depends_on
   where d.task_id = task_input.task_id
$$;

-- One row per workflow: its state, counts per state, times, and the step
-- that failed.
create view :"schema".workflow_status as
select w.id,
       w.name,
       case when w.cancelled_at is not null then 'cancelled'
            when c.failed > 0 then 'failed'
            when c.unfinished > 0 then 'running'
            when c.cancelled > 0 then 'cancelled'
            else 'succeeded' end as state,
       c.total, c.waiting, c.pending, c.dispatched, c.running, c.succeeded, c.failed, c.cancelled,
       w.created_at,
       -- Closed by the sweeper; until then, done when nothing is left to run
       -- and a failure's compensations were enqueued.
       coalesce(w.finished_at,
                case when c.unfinished = 0 and (c.failed = 0 or w.failure_handled_at is not null)
                     then c.last_finished end) as finished_at,
       c.failed_task_id,
       w.result_task_ids
  from :"schema".workflows w
 cross join lateral (
   select count(*)::int as total,
          (count(*) filter (where t.state = 'waiting'))::int as waiting,
          (count(*) filter (where t.state = 'pending'))::int as pending,
          (count(*) filter (where t.state = 'dispatched'))::int as dispatched,
          (count(*) filter (where t.state = 'running'))::int as running,
          (count(*) filter (where t.state = 'succeeded'))::int as succeeded,
          (count(*) filter (where t.state = 'failed'))::int as failed,
          (count(*) filter (where t.state = 'cancelled'))::int as cancelled,
          (count(*) filter (where t.state in ('waiting', 'pending', 'dispatched', 'running')))::int as unfinished,
          max(t.finished_at) as last_finished,
          (array_agg(t.id order by t.finished_at) filter (where t.state = 'failed'))[1] as failed_task_id
     from :"schema".tasks t
    where t.workflow_id = w.id
 ) c;

-- Cancel every unfinished task of a workflow; returns how many.
create function :"schema".cancel_workflow(workflow_id uuid) returns integer
language plpgsql
set search_path = :"schema", pg_temp
as $$
declare
  n integer := 0;
  t bigint;
begin
  update workflows w set cancelled_at = coalesce(w.cancelled_at, now()) where w.id = cancel_workflow.workflow_id;
  for t in select id from tasks
            where tasks.workflow_id = cancel_workflow.workflow_id
              and state in ('waiting', 'pending', 'dispatched', 'running')
            order by id
  loop
    if cancel(t) then n := n + 1; end if;
  end loop;
  return n;
end $$;

-- A step of the workflow failed: once (failure_handled_at), enqueue the
-- compensations of its succeeded steps as a chain, the latest finished
-- first (the saga pattern), and the error callback, whose payload gets
-- workflowId, failedTaskId and error added. Returns how many tasks it
-- enqueued; 0 when already handled or nothing failed.
create function :"schema".workflow_compensate(workflow_id uuid) returns integer
language plpgsql
set search_path = :"schema", pg_temp
as $$
declare
  failed_id  bigint;
  failed_err jsonb;
  cb         jsonb;
  step       record;
  previous   bigint := null;
  new_id     bigint;
  n          integer := 0;
begin
  update workflows w
     set failure_handled_at = now()
   where w.id = workflow_compensate.workflow_id
     and w.failure_handled_at is null
     and w.cancelled_at is null
  returning w.on_error into cb;
  if not found then
    return 0;
  end if;
  select t.id, t.last_error into failed_id, failed_err
    from tasks t
   where t.workflow_id = workflow_compensate.workflow_id and t.state = 'failed'
   order by t.finished_at
   limit 1;
  if failed_id is null then
    update workflows w set failure_handled_at = null where w.id = workflow_compensate.workflow_id;
    return 0;
  end if;
  for step in select t.compensation as c
                from tasks t
               where t.workflow_id = workflow_compensate.workflow_id
                 and t.state = 'succeeded'
                 and t.compensation is not null
               order by t.finished_at desc, t.id desc
  loop
    if previous is null then
      new_id := enqueue(step.c ->> 'name', coalesce(step.c -> 'payload', '{}'::jsonb), step.c ->> 'queue',
                        (step.c ->> 'priority')::int, null, null, (step.c ->> 'maxAttempts')::int);
    else
      new_id := enqueue_after(array[previous], step.c ->> 'name', coalesce(step.c -> 'payload', '{}'::jsonb), step.c ->> 'queue',
                              (step.c ->> 'priority')::int, null, null, (step.c ->> 'maxAttempts')::int);
    end if;
    update tasks set workflow_id = workflow_compensate.workflow_id where id = new_id;
    previous := new_id;
    n := n + 1;
  end loop;
  if cb is not null then
    new_id := enqueue(cb ->> 'name',
                      coalesce(cb -> 'payload', '{}'::jsonb)
                        || jsonb_build_object('workflowId', workflow_compensate.workflow_id, 'failedTaskId', failed_id::text,
                                              'error', failed_err -> 'message'),
                      cb ->> 'queue', (cb ->> 'priority')::int, null, null, (cb ->> 'maxAttempts')::int);
    update tasks set workflow_id = workflow_compensate.workflow_id where id = new_id;
    n := n + 1;
  end if;
  return n;
end $$;

-- retry() as in 0008, and what the task's failure cancelled comes back:
-- dependents cancelled as dependency_failed, transitively, wait again.
create or replace function :"schema".retry(task_id bigint) returns boolean
language plpgsql
set search_path = :"schema", pg_temp
as $$
declare
  done boolean;
begin
  update tasks t
     set state = case when exists (select 1
                                     from task_dependencies d
                                     join tasks p on p.id = d.depends_on
                                    where d.task_id = t.id
                                      and p.state <> 'succeeded')
                      then 'waiting' else 'pending' end,
         finished_at = null, result = null,
         run_at = greatest(now(), coalesce((last_error ->> 'leaseExpiresAt')::timestamptz, now())),
         dispatch_token = null, dispatched_at = null, lease_expires_at = null,
         max_attempts = greatest(max_attempts, attempt + 1)
   where t.id = task_id and t.state in ('failed', 'cancelled');
  done := found;
  if done then
    with recursive revived as (
      select d.task_id as id
        from task_dependencies d
       where d.depends_on = retry.task_id
      union
      select d.task_id
        from task_dependencies d
        join revived r on d.depends_on = r.id
    )
    update tasks t
       set state = 'waiting', finished_at = null, last_error = null
      from revived r
     where t.id = r.id
       and t.state = 'cancelled'
       and t.last_error ->> 'kind' = 'dependency_failed';
    perform pg_notify(current_schema() || '.task_ready', '');
  end if;
  return done;
end $$;

-- task_status (0001) with the workflow a task belongs to, as its last column.
create or replace view :"schema".task_status as
select
  id,
  name,
  queue,
  state,
  attempt,
  max_attempts,
  priority,
  created_at,
  run_at,
  started_at,
  finished_at,
  finished_at - started_at        as run_duration,
  coalesce(started_at, now()) - created_at as waited,
  worker_id,
  last_error ->> 'message'        as error,
  result,
  payload,
  idempotency_key,
  workflow_id
from :"schema".tasks;

-- The SQL API's simple workflows: a chain of steps, where a step is
-- {"task", "payload"?, "queue"?, "priority"?, "maxAttempts"?, "compensate"?}
-- or {"group": [steps]}. A step without "payload" is fed its predecessor's
-- result (after a group, the list of the members' results). "compensate" and
-- on_error are {"task", "payload"?}. Call it inside your transaction:
--   select taskrelay.enqueue_workflow('[{"task": "image.resize", "payload": {"id": 7}}, {"task": "image.publish"}]');
-- Returns the workflow's id. Bad input raises SQLSTATE 22023 with a hint.
create function :"schema".workflow_stored_step(step jsonb) returns jsonb
language sql immutable
as $$
  select case when step is null then null
              else jsonb_strip_nulls(jsonb_build_object('name', step ->> 'task', 'payload', coalesce(step -> 'payload', '{}'::jsonb),
                                                        'queue', step ->> 'queue', 'priority', step -> 'priority',
                                                        'maxAttempts', step -> 'maxAttempts')) end
$$;

create function :"schema".workflow_add_step(workflow_id uuid, step jsonb, after bigint[], after_group boolean) returns bigint
language plpgsql
set search_path = :"schema", pg_temp
as $$
declare
  fed    boolean := not (step ? 'payload');
  new_id bigint;
begin
  if jsonb_typeof(step) <> 'object' or coalesce(step ->> 'task', '') = '' then
    raise exception 'taskrelay.enqueue_workflow: each step needs a "task" name, got %', step
      using errcode = '22023', hint = 'A step is {"task": "name", "payload": {...}} or {"group": [steps]}.';
  end if;
  if fed and cardinality(after) = 0 then
    raise exception 'taskrelay.enqueue_workflow: step "%" takes its predecessor''s result, but nothing comes before it', step ->> 'task'
      using errcode = '22023', hint = 'Give the first step a "payload".';
  end if;
  new_id := enqueue(step ->> 'task', case when fed then '{}'::jsonb else step -> 'payload' end, step ->> 'queue',
                    (step ->> 'priority')::int, null, null, (step ->> 'maxAttempts')::int);
  update tasks t
     set workflow_id = workflow_add_step.workflow_id,
         input = case when not fed then null when after_group then 'results' else 'result' end,
         compensation = workflow_stored_step(step -> 'compensate'),
         state = case when cardinality(after) > 0 then 'waiting' else t.state end
   where t.id = new_id;
  insert into task_dependencies (task_id, depends_on, position)
  select new_id, d, o from unnest(after) with ordinality as u(d, o);
  return new_id;
end $$;

create function :"schema".enqueue_workflow(steps jsonb, name text default null, on_error jsonb default null) returns uuid
language plpgsql
set search_path = :"schema", pg_temp
as $$
declare
  wf         uuid := gen_random_uuid();
  el         jsonb;
  member     jsonb;
  ids        bigint[];
  after      bigint[] := '{}';
  after_group boolean := false;
  n          integer := 0;
begin
  if jsonb_typeof(steps) is distinct from 'array' or jsonb_array_length(steps) = 0 then
    raise exception 'taskrelay.enqueue_workflow: steps must be a non-empty JSON array, got %', coalesce(steps::text, 'NULL')
      using errcode = '22023', hint = 'Pass a chain: [{"task": "a", "payload": {...}}, {"task": "b"}].';
  end if;
  insert into workflows (id, name, on_error)
  values (wf, coalesce(enqueue_workflow.name, steps -> 0 ->> 'task', 'workflow'), workflow_stored_step(on_error));
  for el in select value from jsonb_array_elements(steps) loop
    if el ? 'group' then
      if jsonb_typeof(el -> 'group') is distinct from 'array' or jsonb_array_length(el -> 'group') = 0 then
        raise exception 'taskrelay.enqueue_workflow: an empty group' using errcode = '22023', hint = 'Give a group at least one step.';
      end if;
      ids := '{}';
      for member in select value from jsonb_array_elements(el -> 'group') loop
        ids := ids || workflow_add_step(wf, member, after, after_group);
        n := n + 1;
      end loop;
      after := ids;
      after_group := true;
    else
      after := array[workflow_add_step(wf, el, after, after_group)];
      after_group := false;
      n := n + 1;
    end if;
  end loop;
  if n > 10000 then
    raise exception 'taskrelay.enqueue_workflow: % steps; a workflow holds at most 10000', n using errcode = '22023';
  end if;
  update workflows w set result_task_ids = after, result_is_list = after_group where w.id = wf;
  return wf;
end $$;
