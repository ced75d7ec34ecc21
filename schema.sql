-- opsdesk: the whole database schema (tables, indexes, functions, grants).
--
-- Idempotent: apply it as often as you like (`opsdesk db init`, or paste it into Supabase's SQL
-- editor). It runs unchanged on Supabase (PostgreSQL 15/17, pgvector 0.8) and on the embedded
-- PostgreSQL 18. Every state change the application makes is one function below; Python calls them
-- by name and never builds SQL. Every function returns jsonb, so the direct Postgres transport and
-- Supabase's REST `rpc` see the same value. Errors use our own SQLSTATEs (see app/errors.py):
--   OD404 not found, OD409 conflict, OD410 expired, OD422 invalid input, OD499 stale attempt.

begin;

-- Two processes applying the schema at once wait for each other instead of racing.
select pg_advisory_xact_lock(7245190311);

do $$
begin
  if exists (select 1 from pg_namespace where nspname = 'extensions') then
    create extension if not exists vector with schema extensions;  -- Supabase keeps them there
  else
    create extension if not exists vector;
  end if;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- The clock. All timestamps come from the database, never a worker's clock. Tests move time
-- forward by setting the offset instead of sleeping; in production it stays zero.
-- ---------------------------------------------------------------------------------------------
create table if not exists clock_offset (
  id boolean primary key default true check (id),
  offset_interval interval not null default '0'
);
insert into clock_offset (id) values (true) on conflict (id) do nothing;

create or replace function db_now() returns timestamptz
language sql stable set search_path = public, pg_temp as $$
  select now() + coalesce((select offset_interval from clock_offset where id), interval '0')
$$;

create or replace function schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(1) $$;

-- ---------------------------------------------------------------------------------------------
-- Actions: what an agent (or an outside caller) wants done, its risk, its decision, its run.
-- ---------------------------------------------------------------------------------------------
create table if not exists actions (
  id               uuid primary key default gen_random_uuid(),
  agent            text not null,
  kind             text not null,
  task_type        text,
  summary          text not null,
  reasoning        text not null default '',
  requested_action jsonb not null,                 -- the payload the handler will act on
  estimated_impact jsonb not null,                 -- recipients, cost_usd, public, reversible
  risk_level       text not null check (risk_level in ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
  risk_reasons     jsonb not null default '[]',
  metadata         jsonb not null default '{}',    -- model id, confidence, input/output snapshot
  status           text not null check (status in ('pending', 'approved', 'rejected', 'expired',
                     'running', 'succeeded', 'failed', 'unknown', 'cancelled')),
  draft_hash       text not null,                  -- sha256 of requested_action; links bind to it
  dedupe_key       text,                           -- same input -> at most one open action
  decided_by       text,
  decision         text check (decision in ('approved', 'rejected', 'modified')),
  feedback         text,
  modifications    jsonb,                          -- {field: {"from": old, "to": new}}
  rejection_reason text,
  requested_at     timestamptz not null,
  expires_at       timestamptz,
  decided_at       timestamptz,
  run_after        timestamptz,
  attempts         integer not null default 0,
  max_attempts     integer not null default 5 check (max_attempts > 0),
  attempt_token    uuid,                           -- the current claim; finishing must present it
  claimed_by       text,
  lease_expires_at timestamptz,
  dispatched_at    timestamptz,                    -- the attempt may have reached the outside world
  started_at       timestamptz,
  finished_at      timestamptz,
  result           jsonb,
  last_error       text,
  request_id       text,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now()
);
create index if not exists actions_status_requested on actions (status, requested_at);
create index if not exists actions_runnable on actions (run_after) where status = 'approved';
create index if not exists actions_leases on actions (lease_expires_at) where status = 'running';
create index if not exists actions_expiring on actions (expires_at) where status = 'pending';
create unique index if not exists actions_open_dedupe on actions (dedupe_key)
  where dedupe_key is not null and status in ('pending', 'approved', 'running');

-- The audit trail: one row per transition. Append-only, enforced by the database itself.
create table if not exists audit_log (
  id          bigint generated always as identity primary key,
  action_id   uuid,
  at          timestamptz not null default db_now(),
  actor       text not null,
  event       text not null,
  from_status text,
  to_status   text,
  reason      text,
  request_id  text,
  details     jsonb not null default '{}'
);
create index if not exists audit_log_action on audit_log (action_id, id);
create index if not exists audit_log_at on audit_log (at);

create or replace function refuse_audit_change() returns trigger
language plpgsql as $$
begin
  raise exception 'audit_log is append-only: % refused', tg_op using errcode = '42501';
end
$$;
create or replace trigger audit_log_no_update before update or delete on audit_log
  for each row execute function refuse_audit_change();
create or replace trigger audit_log_no_truncate before truncate on audit_log
  for each statement execute function refuse_audit_change();

-- Notes written by the built-in `note.record` handler; one per action, so a re-run adds nothing.
create table if not exists notes (
  id         bigint generated always as identity primary key,
  action_id  uuid not null unique,
  body       text not null,
  metadata   jsonb not null default '{}',
  created_at timestamptz not null default db_now()
);

-- ---------------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------------
create or replace function action_view(a actions) returns jsonb
language sql stable as $$ select to_jsonb(a) - 'attempt_token' $$;

create or replace function draft_hash(p_draft jsonb) returns text
language sql immutable as $$ select encode(sha256(convert_to(p_draft::text, 'UTF8')), 'hex') $$;

create or replace function write_audit(
  p_action_id uuid, p_actor text, p_event text, p_from text, p_to text,
  p_reason text, p_request_id text, p_details jsonb default '{}'
) returns void
language sql set search_path = public, pg_temp as $$
  insert into audit_log (action_id, actor, event, from_status, to_status, reason, request_id, details)
  values (p_action_id, p_actor, p_event, p_from, p_to, p_reason, p_request_id, coalesce(p_details, '{}'))
$$;

create or replace function raise_decided(a actions) returns void
language plpgsql as $$
begin
  raise exception 'action % is already %: decided by % at %', a.id, a.status,
      coalesce(a.decided_by, 'the system'), coalesce(a.decided_at, a.updated_at)
    using errcode = 'OD409',
          detail = jsonb_build_object('status', a.status, 'decision', a.decision,
                                      'decided_by', a.decided_by,
                                      'decided_at', coalesce(a.decided_at, a.updated_at))::text;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- The approval queue
-- ---------------------------------------------------------------------------------------------
create or replace function submit_action(
  p_action jsonb, p_risk_level text, p_risk_reasons jsonb, p_auto_run boolean,
  p_ttl_seconds double precision, p_max_attempts integer, p_actor text, p_request_id text
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_key text := nullif(p_action->>'dedupe_key', '');
  a actions;
begin
  if v_key is not null then
    select * into a from actions
     where dedupe_key = v_key and status in ('pending', 'approved', 'running');
    if found then
      return action_view(a) || '{"duplicate": true}';
    end if;
  end if;

  begin
    insert into actions (agent, kind, task_type, summary, reasoning, requested_action,
                         estimated_impact, risk_level, risk_reasons, metadata, status, draft_hash,
                         dedupe_key, requested_at, expires_at, run_after, max_attempts, request_id,
                         created_at, updated_at)
    values (p_action->>'agent', p_action->>'kind', p_action->>'task_type', p_action->>'summary',
            coalesce(p_action->>'reasoning', ''), coalesce(p_action->'payload', '{}'),
            coalesce(p_action->'impact', '{}'), p_risk_level, coalesce(p_risk_reasons, '[]'),
            coalesce(p_action->'metadata', '{}'), 'pending',
            draft_hash(coalesce(p_action->'payload', '{}')), v_key, v_now,
            case when p_auto_run then null else v_now + make_interval(secs => p_ttl_seconds) end,
            null, p_max_attempts, p_request_id, v_now, v_now)
    returning * into a;
  exception when unique_violation then
    -- a concurrent submit with the same dedupe key won; answer with its action
    select * into a from actions
     where dedupe_key = v_key and status in ('pending', 'approved', 'running');
    return action_view(a) || '{"duplicate": true}';
  end;

  perform write_audit(a.id, p_actor, 'submitted', null, 'pending', null, p_request_id,
                      jsonb_build_object('risk_level', p_risk_level, 'reasons', p_risk_reasons));
  if p_auto_run then
    update actions set status = 'approved', run_after = v_now, updated_at = v_now
     where id = a.id returning * into a;
    perform write_audit(a.id, 'policy', 'auto_approved', 'pending', 'approved',
                        'LOW risk runs without approval', p_request_id);
  end if;
  return action_view(a) || '{"duplicate": false}';
end
$$;

create or replace function decide_action(
  p_id uuid, p_decision text, p_actor text, p_reason text, p_modifications jsonb,
  p_expected_hash text, p_request_id text
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_reason text := nullif(btrim(coalesce(p_reason, '')), '');
  v_diff jsonb;
  a actions;
begin
  if p_decision is null or p_decision not in ('approve', 'reject', 'modify') then
    raise exception 'decision must be approve, reject or modify' using errcode = 'OD422';
  end if;
  if nullif(btrim(coalesce(p_actor, '')), '') is null then
    raise exception 'the decider''s name is required' using errcode = 'OD422';
  end if;
  if p_decision = 'reject' and v_reason is null then
    raise exception 'a rejection needs a reason' using errcode = 'OD422';
  end if;
  if p_decision = 'modify' and (p_modifications is null or jsonb_typeof(p_modifications) <> 'object'
                                or p_modifications = '{}') then
    raise exception 'modify needs the edited fields' using errcode = 'OD422';
  end if;

  select * into a from actions where id = p_id for update;
  if not found then
    raise exception 'no action %', p_id using errcode = 'OD404';
  end if;
  if a.status <> 'pending' then
    perform raise_decided(a);
  end if;
  if a.expires_at <= v_now then
    raise exception 'action % expired at %', a.id, a.expires_at using errcode = 'OD410',
      detail = jsonb_build_object('status', 'expired', 'expires_at', a.expires_at)::text;
  end if;
  if p_expected_hash is not null and p_expected_hash <> a.draft_hash then
    raise exception 'the draft of action % changed after this link was issued', a.id
      using errcode = 'OD409', detail = jsonb_build_object('status', a.status, 'reason', 'draft_changed')::text;
  end if;

  if p_decision = 'reject' then
    update actions
       set status = 'rejected', decision = 'rejected', decided_by = p_actor, decided_at = v_now,
           rejection_reason = v_reason, feedback = v_reason, updated_at = v_now
     where id = p_id returning * into a;
  else
    if p_decision = 'modify' then
      select jsonb_object_agg(e.key, jsonb_build_object('from', a.requested_action -> e.key, 'to', e.value))
        into v_diff
        from jsonb_each(p_modifications) e
       where a.requested_action -> e.key is distinct from e.value;
    end if;
    update actions
       set status = 'approved',
           decision = case when v_diff is null then 'approved' else 'modified' end,
           requested_action = case when v_diff is null then requested_action
                                   else requested_action || p_modifications end,
           draft_hash = case when v_diff is null then draft_hash
                             else draft_hash(requested_action || p_modifications) end,
           modifications = v_diff, feedback = v_reason, decided_by = p_actor, decided_at = v_now,
           run_after = v_now, updated_at = v_now
     where id = p_id returning * into a;
  end if;

  perform write_audit(a.id, p_actor, 'decided', 'pending', a.status, v_reason, p_request_id,
                      jsonb_build_object('decision', a.decision, 'modifications', v_diff));
  return action_view(a);
end
$$;

create or replace function cancel_action(p_id uuid, p_actor text, p_reason text, p_request_id text)
returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_from text;
  a actions;
begin
  if nullif(btrim(coalesce(p_reason, '')), '') is null then
    raise exception 'a cancellation needs a reason' using errcode = 'OD422';
  end if;
  select * into a from actions where id = p_id for update;
  if not found then
    raise exception 'no action %', p_id using errcode = 'OD404';
  end if;
  if a.status not in ('pending', 'approved') then
    perform raise_decided(a);
  end if;
  v_from := a.status;
  update actions set status = 'cancelled', updated_at = v_now, last_error = p_reason
   where id = p_id returning * into a;
  perform write_audit(a.id, p_actor, 'cancelled', v_from, 'cancelled', p_reason, p_request_id);
  return action_view(a);
end
$$;

create or replace function expire_pending(p_actor text, p_limit integer) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_ids jsonb;
begin
  with due as (
    select id from actions
     where status = 'pending' and expires_at <= v_now
     order by expires_at limit p_limit
       for update skip locked
  ), expired as (
    update actions a set status = 'expired', updated_at = v_now
      from due where a.id = due.id
    returning a.id
  ), audited as (
    insert into audit_log (action_id, actor, event, from_status, to_status, reason)
    select id, p_actor, 'expired', 'pending', 'expired', 'approval time ran out' from expired
  )
  select coalesce(jsonb_agg(id), '[]') into v_ids from expired;
  return jsonb_build_object('expired', v_ids);
end
$$;

create or replace function get_action(p_id uuid) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select action_view(a) || jsonb_build_object('audit', coalesce((
           select jsonb_agg(to_jsonb(l) order by l.id) from audit_log l where l.action_id = a.id), '[]'))
    from actions a where a.id = p_id
$$;

create or replace function list_actions(
  p_status text, p_risk_level text, p_agent text, p_limit integer, p_offset integer
) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  with matching as (
    select * from actions a
     where (p_status is null or a.status = p_status)
       and (p_risk_level is null or a.risk_level = p_risk_level)
       and (p_agent is null or a.agent = p_agent)
  ), page as (
    select * from matching m
     order by case when p_status = 'pending' then m.requested_at end asc,
              m.requested_at desc, m.id
     limit p_limit offset p_offset
  )
  select jsonb_build_object(
    'items', coalesce((select jsonb_agg(action_view(p) order by
                         case when p_status = 'pending' then p.requested_at end asc,
                         p.requested_at desc, p.id) from page p), '[]'),
    'total', (select count(*) from matching),
    'limit', p_limit, 'offset', p_offset)
$$;

-- ---------------------------------------------------------------------------------------------
-- The executor: claim with SKIP LOCKED and a lease; finish only with the claim's attempt token.
-- ---------------------------------------------------------------------------------------------
create or replace function claim_actions(p_worker text, p_lease_seconds double precision, p_limit integer)
returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_claimed jsonb;
begin
  with due as (
    select id from actions
     where status = 'approved' and run_after <= v_now
     order by run_after, requested_at limit p_limit
       for update skip locked
  ), claimed as (
    update actions a
       set status = 'running', attempts = a.attempts + 1, attempt_token = gen_random_uuid(),
           claimed_by = p_worker, lease_expires_at = v_now + make_interval(secs => p_lease_seconds),
           started_at = v_now, dispatched_at = null, updated_at = v_now
      from due where a.id = due.id
    returning a.*
  ), audited as (
    insert into audit_log (action_id, actor, event, from_status, to_status, details)
    select c.id, p_worker, 'claimed', 'approved', 'running', jsonb_build_object('attempt', c.attempts)
      from claimed c
  )
  select coalesce(jsonb_agg(to_jsonb(c) order by c.run_after), '[]') into v_claimed from claimed c;
  return v_claimed;
end
$$;

create or replace function locked_attempt(p_id uuid, p_attempt_token uuid) returns actions
language plpgsql set search_path = public, pg_temp as $$
declare
  a actions;
begin
  select * into a from actions where id = p_id for update;
  if not found then
    raise exception 'no action %', p_id using errcode = 'OD404';
  end if;
  if a.status <> 'running' or a.attempt_token is distinct from p_attempt_token then
    raise exception 'attempt on action % was superseded (now %)', p_id, a.status using errcode = 'OD499',
      detail = jsonb_build_object('status', a.status)::text;
  end if;
  return a;
end
$$;

create or replace function mark_dispatched(p_id uuid, p_attempt_token uuid) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  a actions := locked_attempt(p_id, p_attempt_token);
begin
  update actions set dispatched_at = db_now(), updated_at = db_now() where id = a.id;
  return jsonb_build_object('id', a.id, 'dispatched', true);
end
$$;

create or replace function finish_action(
  p_id uuid, p_attempt_token uuid, p_outcome text, p_result jsonb, p_error text,
  p_retry_in_seconds double precision, p_count_attempt boolean
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  a actions := locked_attempt(p_id, p_attempt_token);
  v_to text;
  v_event text := 'finished';
  v_error text := p_error;
begin
  if p_outcome not in ('succeeded', 'failed', 'unknown', 'retry') then
    raise exception 'outcome must be succeeded, failed, unknown or retry' using errcode = 'OD422';
  end if;
  if p_outcome = 'retry' then
    if p_count_attempt and a.attempts >= a.max_attempts then
      v_to := 'failed';
      v_error := format('gave up after %s attempts: %s', a.attempts, p_error);
    else
      v_to := 'approved';
      v_event := 'retry_scheduled';
    end if;
  else
    v_to := p_outcome;
  end if;

  update actions
     set status = v_to,
         attempts = attempts - case when p_outcome = 'retry' and not p_count_attempt then 1 else 0 end,
         run_after = case when v_to = 'approved'
                          then v_now + make_interval(secs => greatest(coalesce(p_retry_in_seconds, 0), 0))
                          else run_after end,
         attempt_token = case when v_to = 'approved' then null else attempt_token end,
         lease_expires_at = null,
         dispatched_at = case when v_to = 'approved' then null else dispatched_at end,
         finished_at = case when v_to = 'approved' then null else v_now end,
         result = coalesce(p_result, result),
         last_error = v_error,
         updated_at = v_now
   where id = a.id returning * into a;

  perform write_audit(a.id, coalesce(a.claimed_by, 'executor'), v_event, 'running', v_to, v_error, null,
                      jsonb_build_object('attempt', a.attempts, 'result', p_result,
                                         'counted', coalesce(p_count_attempt, true)));
  return action_view(a);
end
$$;

create or replace function recover_expired_leases(p_actor text, p_limit integer) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_to text;
  v_reason text;
  v_out jsonb := '[]';
  a actions;
begin
  -- SKIP LOCKED: an attempt that is finishing right now holds the row lock, so it wins the race.
  for a in
    select * from actions
     where status = 'running' and lease_expires_at <= v_now
     order by lease_expires_at limit p_limit
       for update skip locked
  loop
    if a.dispatched_at is not null then
      v_to := 'unknown';
      v_reason := 'the worker lost its lease after the outside call started; a person must settle it';
    elsif a.attempts >= a.max_attempts then
      v_to := 'failed';
      v_reason := format('the worker lost its lease on the last attempt (%s)', a.attempts);
    else
      v_to := 'approved';
      v_reason := 'the worker lost its lease before any outside call; will run again';
    end if;
    update actions
       set status = v_to, attempt_token = case when v_to = 'approved' then null else attempt_token end,
           lease_expires_at = null, run_after = case when v_to = 'approved' then v_now else run_after end,
           finished_at = case when v_to = 'approved' then null else v_now end,
           last_error = v_reason, updated_at = v_now
     where id = a.id;
    perform write_audit(a.id, p_actor, 'lease_expired', 'running', v_to, v_reason, null,
                        jsonb_build_object('worker', a.claimed_by, 'attempt', a.attempts));
    v_out := v_out || jsonb_build_object('id', a.id, 'status', v_to);
  end loop;
  return jsonb_build_object('recovered', v_out);
end
$$;

create or replace function settle_action(
  p_id uuid, p_outcome text, p_actor text, p_reason text, p_request_id text
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  a actions;
begin
  if p_outcome not in ('succeeded', 'failed', 'retry') then
    raise exception 'settle as succeeded, failed or retry' using errcode = 'OD422';
  end if;
  if nullif(btrim(coalesce(p_reason, '')), '') is null then
    raise exception 'settling needs a reason' using errcode = 'OD422';
  end if;
  select * into a from actions where id = p_id for update;
  if not found then
    raise exception 'no action %', p_id using errcode = 'OD404';
  end if;
  if a.status <> 'unknown' then
    raise exception 'only unknown actions are settled by hand; % is %', a.id, a.status
      using errcode = 'OD409', detail = jsonb_build_object('status', a.status)::text;
  end if;
  update actions
     set status = case when p_outcome = 'retry' then 'approved' else p_outcome end,
         run_after = case when p_outcome = 'retry' then v_now else run_after end,
         attempt_token = null, dispatched_at = null, updated_at = v_now
   where id = p_id returning * into a;
  perform write_audit(a.id, p_actor, 'settled', 'unknown', a.status, p_reason, p_request_id);
  return action_view(a);
end
$$;

-- The built-in `note.record` handler's write: one note per action, whatever the number of runs.
create or replace function record_note(p_action_id uuid, p_body text, p_metadata jsonb) returns jsonb
language sql set search_path = public, pg_temp as $$
  with ins as (
    insert into notes (action_id, body, metadata) values (p_action_id, p_body, coalesce(p_metadata, '{}'))
    on conflict (action_id) do nothing
    returning id
  )
  select jsonb_build_object(
    'note_id', coalesce((select id from ins), (select id from notes where action_id = p_action_id)),
    'created', exists (select 1 from ins))
$$;

create or replace function health() returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select jsonb_build_object(
    'now', db_now(),
    'schema_version', schema_version(),
    'pending', (select count(*) from actions where status = 'pending'),
    'unknown', (select count(*) from actions where status = 'unknown'))
$$;

-- ---------------------------------------------------------------------------------------------
-- Access. Row Level Security on every table with no policy: Supabase's anon and authenticated
-- roles (a leaked publishable key) read nothing. Functions run for service_role only. Guarded so
-- the same file runs where those roles do not exist (the embedded server, plain Postgres).
-- ---------------------------------------------------------------------------------------------
do $$
declare
  v_table text;
  v_fn regprocedure;
  v_supabase boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
  foreach v_table in array array['clock_offset', 'actions', 'audit_log', 'notes'] loop
    execute format('alter table public.%I enable row level security', v_table);
    if v_supabase then
      execute format('revoke all on table public.%I from anon, authenticated', v_table);
      execute format('grant select, insert, update, delete on table public.%I to service_role', v_table);
    end if;
  end loop;

  -- The functions this file just (re)defined are exactly those whose catalogue row this
  -- transaction wrote; that leaves any other function in the schema alone.
  for v_fn in
    select p.oid::regprocedure from pg_proc p
     where p.pronamespace = 'public'::regnamespace
       and p.xmin::text = (pg_current_xact_id()::text::bigint % 4294967296)::text
  loop
    execute format('revoke all on function %s from public', v_fn);
    if v_supabase then
      execute format('revoke all on function %s from anon, authenticated', v_fn);
      execute format('grant execute on function %s to service_role', v_fn);
    end if;
  end loop;

  if v_supabase then
    revoke update, delete, truncate on table public.audit_log from service_role;
  end if;
end
$$;

notify pgrst, 'reload schema';

commit;
