-- opsdesk: the whole database schema (tables, indexes, functions, grants).
--
-- Idempotent: apply it as often as you like (`opsdesk db init`, or paste it into Supabase's SQL
-- editor). It runs unchanged on Supabase (PostgreSQL 15/17, pgvector 0.8) and on the embedded
-- PostgreSQL 18. Every state change the application makes is one function below; Python calls them
-- by name and never builds SQL. Every function returns jsonb, so the direct Postgres transport and
-- Supabase's REST `rpc` see the same value. Errors use our own SQLSTATEs (see app/errors.py):
--   OD404 not found, OD409 conflict, OD410 expired, OD422 invalid input, OD499 stale attempt.
--
-- Contents (each section holds its tables, indexes, functions and triggers; only §2 changes what
-- an earlier release created):
--   §1  Preamble
--   §2  Upgrades from earlier releases
--   §3  Clock and schema version
--   §4  Actions, notes and the audit log
--   §5  Leases
--   §6  The approval queue
--   §7  The executor
--   §8  Reviewing by link
--   §9  Discord notifications
--   §10 Claude
--   §11 HubSpot webhooks
--   §12 Memory
--   §13 Email: Brevo's daily quota and campaign batches
--   §14 The schedule
--   §15 Agent runs and the agents' sources
--   §16 The daily report
--   §17 Outgoing rate limits
--   §18 The demo
--   §19 Buffer's OAuth grant
--   §20 Access

-- ---------------------------------------------------------------------------------------------
-- §1 Preamble
-- One transaction, one applier at a time, and pgvector.
-- ---------------------------------------------------------------------------------------------
begin;

-- Two processes applying the schema at once wait for each other instead of racing.
select pg_advisory_xact_lock(7245190311);
-- pgvector's type wherever the role's own search_path (Supabase keeps extensions in `extensions`)
set local search_path = public, extensions;

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
-- §2 Upgrades from earlier releases
-- The only statements of this file that change what an earlier release created. Every section
-- below describes the current shape: a fresh database gets it there, an older one gets the
-- difference here first. The rules:
-- - Each statement is guarded (`alter table if exists … add column if not exists`, `drop function
--   if exists`, a `do` block that reads the catalogue first), so it does nothing on a fresh
--   database (whose tables do not exist yet) or on one already upgraded: the file stays safe to
--   apply again.
-- - Each says which release needed it. Releases are the versions schema_version() answers (§3):
--   v2 came with 0564c19 (2026-12-02) and c47fede is its last commit, the previous release that
--   tests/migration/schema_previous.sql keeps; v3 (issue 12) and v4 (issue 11) came on 2026-12-06;
--   issue 13 keeps v4.
-- - This section runs first: a function dropped here may come back below with the same arguments
--   and another result, which `create or replace` refuses while the old one exists.
-- - A column added here is in its table's `create table` too, for fresh databases.
-- - tests/test_upgrade.py applies this file over the previous release with rows in it and compares
--   the catalogue with a fresh apply. A statement no supported release needs any more goes when
--   that frozen file is refreshed.
-- ---------------------------------------------------------------------------------------------

-- v2, from v1 (98654d2): the dispatch time of an attempt that may have gone out unanswered
-- (Brevo's 30-minute resend window).
alter table if exists actions add column if not exists uncertain_since timestamptz;
-- v2, from v1 (6761964): decide_action gained p_expected_round.
drop function if exists decide_action(uuid, text, text, text, jsonb, text, text);
-- v2, from v1 (b3cf2c4): requeue_action gained the draft and impact a handler re-read.
drop function if exists requeue_action(uuid, uuid, text, jsonb, double precision, text);
-- v2, from v1 (cc5e4e7): search_memory gained the query vector's model.
drop function if exists search_memory(text, text, jsonb, jsonb, timestamptz, integer, integer, double precision,
                                      double precision, integer, integer, integer, boolean);
-- v2, from v1 (95f59fb, 0564c19): memory.fts holds the kind as the lexeme '#kind=<kind>'. A column
-- without the comment 'fts v2' is rebuilt here, once. Only this block decides: §12 marks the
-- column after it, so a mark there can never stand on a column that was not rebuilt.
do $$
begin
  if to_regclass('public.memory') is not null then
    if col_description(to_regclass('public.memory'),
                       (select attnum from pg_attribute
                         where attrelid = to_regclass('public.memory') and attname = 'fts'))
       is distinct from 'fts v2' then
      alter table memory drop column fts;
      alter table memory add column fts tsvector generated always as (
        setweight(to_tsvector('english', title), 'A')
        || setweight(to_tsvector('english', content), 'B')
        || array_to_tsvector(array['#kind=' || kind])) stored;
    end if;
  end if;
end
$$;
-- v2, from v1 (dde30d6): a run keeps the proposals refused whole; agent_sources_pick replaced
-- agent_sources_handled; submit_agent_actions and close_agent_run gained the run's skips and
-- refusals.
alter table if exists agent_runs add column if not exists refused jsonb not null default '[]';
drop function if exists agent_sources_handled(jsonb);
drop function if exists submit_agent_actions(uuid, jsonb, jsonb, text, text);
drop function if exists close_agent_run(uuid, text, integer, jsonb, text);

-- v3, from v2 (e54d6ce): decide_action gained the decision's channel and an edit's new tier, and
-- the channel is kept on the action. Actions decided before learn it once, when the column is
-- added, from the `api:` and `cli:` prefixes those channels always wrote; every other name was
-- typed on a signed link (the review page or the inbox).
drop function if exists decide_action(uuid, text, text, text, jsonb, text, text, bigint);
do $$
begin
  if to_regclass('public.actions') is not null and not exists (
       select 1 from pg_attribute
        where attrelid = to_regclass('public.actions') and attname = 'decided_via' and not attisdropped) then
    alter table actions add column decided_via text check (decided_via in ('link', 'inbox', 'api', 'cli', 'system'));
    update actions
       set decided_via = case when decided_by like 'api:%' then 'api' when decided_by like 'cli:%' then 'cli'
                              else 'link' end
     where decided_by is not null;
  end if;
end
$$;
-- v3, from v2 (dcec707): record_hubspot_webhook gained the events set aside.
drop function if exists record_hubspot_webhook(text, bigint, integer, jsonb);

-- v4, from v3 (5ed8d7f): memory's vector indexes are made in bounded steps (memory_index_step):
-- the kinds chosen for their own index, the reindex under way, and vectors parked meanwhile.
alter table if exists memory_config add column if not exists indexed_kinds text[];
alter table if exists memory_config add column if not exists reindex_started_at timestamptz;
alter table if exists memory add column if not exists embedding_parked vector;

-- Issue 13 (still v4: no function changed its parameters): a daily report's send follows §5's
-- lease convention, which keeps updated_at.
alter table if exists daily_reports add column if not exists updated_at timestamptz;
-- v5: a rate window ends when it says (Buffer's 15-minute and one-day windows), see §17.
alter table if exists rate_windows add column if not exists window_end timestamptz;

-- v5, from v4 (issue 15): search_memory gained p_vector, the query vector in pgvector's text form.
drop function if exists search_memory(text, text, jsonb, jsonb, timestamptz, integer, integer, double precision,
                                      double precision, integer, integer, integer, boolean, text);
-- (issue 15) memory_snippet gained the hit's tsvector: only a hit the query matches is parsed for marks.
drop function if exists memory_snippet(text, tsquery);
-- v7, from v6 (issue 15): search_memory's p_vector is a real[] (sent in binary), and it answers json.
drop function if exists search_memory(text, text, jsonb, jsonb, timestamptz, integer, integer, double precision,
                                      double precision, integer, integer, integer, boolean, text, text);

-- ---------------------------------------------------------------------------------------------
-- §3 Clock and schema version
-- All timestamps come from the database, never a worker's clock. Tests move time forward by
-- setting the offset instead of sleeping; in production it stays zero.
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

-- Raised whenever a function the application calls changes its parameters or goes away, so an
-- outside database (Supabase) still on an older schema.sql is refused at start-up (app/database.py
-- SCHEMA_VERSION) instead of failing call by call. 2: search_memory's model, decide_action's round,
-- agent_sources_pick, lease renewal. 3: decide_action's channel and re-tiered edits,
-- record_hubspot_webhook's events set aside. 4: memory's index steps (memory_index_step,
-- memory_index_status). 5: the demo (demo_mark, demo_remove), search_memory's query vector in
-- pgvector's text form (p_vector), Buffer's grant (buffer_grant_save, buffer_refresh_begin & co.).
-- 6: the API's decisions in one call (decide_actions). 7: search_memory's query vector as a real[]
-- (p_vector), sent in binary.
create or replace function schema_version() returns jsonb
language sql immutable as $$ select to_jsonb(7) $$;

-- The sha256 of the schema.sql text last applied here. Opening the embedded database applies the
-- file only when this differs: applying takes ACCESS EXCLUSIVE locks (ENABLE ROW LEVEL SECURITY),
-- which a CLI command must not take on the tables of a running service.
create table if not exists schema_applied (
  id         boolean primary key default true check (id),
  sha256     text not null,
  applied_at timestamptz not null
);

create or replace function applied_schema() returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select to_jsonb(s) - 'id' from schema_applied s where s.id
$$;

create or replace function record_schema_applied(p_sha256 text) returns jsonb
language sql set search_path = public, pg_temp as $$
  insert into schema_applied (id, sha256, applied_at) values (true, p_sha256, now())
  on conflict (id) do update set sha256 = excluded.sha256, applied_at = excluded.applied_at
  returning to_jsonb(schema_applied) - 'id'
$$;

-- ---------------------------------------------------------------------------------------------
-- §4 Actions, notes and the audit log
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
  -- How the action left pending, apart from the name typed in `decided_by`: a signed review link,
  -- the inbox link, the API token, the terminal, or opsdesk itself (auto-approval, expiry).
  decided_via      text check (decided_via in ('link', 'inbox', 'api', 'cli', 'system')),
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
  -- The dispatch time of the first attempt that may have reached the outside world without an
  -- answer. Brevo drops a repeated idempotency key for 30 minutes only, so a re-send is safe only
  -- that long.
  uncertain_since  timestamptz,
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
-- The reviewers' feedback an agent reads (recent_feedback, §8).
create index if not exists actions_feedback on actions (agent, kind, updated_at)
  where rejection_reason is not null or modifications is not null or feedback is not null;
-- The agents' dedupe-key prefixes (agent_sources_pick, §15).
create index if not exists actions_dedupe_prefix on actions (dedupe_key text_pattern_ops)
  where dedupe_key is not null;

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
  -- the one way out: drop_archived_audit() (retention, see Memory), for rows past its cutoff only
  if tg_op = 'DELETE'
     and old.at < nullif(current_setting('opsdesk.audit_prune_before', true), '')::timestamptz then
    return old;
  end if;
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

-- Helpers every section below uses.
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
  -- expired is gone (410, as before the sweep), not decided by someone (409): DESIGN.md's contract
  if a.status = 'expired' then
    raise exception 'action % expired at % without a decision', a.id, a.expires_at using errcode = 'OD410',
      detail = jsonb_build_object('status', 'expired', 'expires_at', a.expires_at)::text;
  end if;
  raise exception 'action % is already %: decided by % at %', a.id, a.status,
      coalesce(a.decided_by, 'the system'), coalesce(a.decided_at, a.updated_at)
    using errcode = 'OD409',
          detail = jsonb_build_object('status', a.status, 'decision', a.decision,
                                      'decided_by', a.decided_by,
                                      'decided_at', coalesce(a.decided_at, a.updated_at))::text;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- §5 Leases
-- The one lifecycle of every queue-like table: a worker claims due rows (FOR UPDATE SKIP LOCKED)
-- for a while (the lease) under a fresh attempt token; only the current attempt may act on its
-- row (the lock below: OD404 no row, OD499 superseded), renew its lease or mark that it may have
-- reached the outside world (dispatched); rows whose lease ran out are found, oldest first, by
-- whoever recovers them. Each queue keeps its own functions around this: which rows are due and
-- in what order, what a claim returns, what ending an attempt means, and what a lost lease
-- becomes.
-- The convention: a queue table has status, attempts, attempt_token, claimed_by,
-- lease_expires_at, dispatched_at and updated_at; lease_spec names each queue, its key columns
-- and what its `running` status is called. A key is a JSON object of the key columns: {"id": …},
-- {"campaign_id": …, "batch_no": …}.
-- These are invoker functions (never security definer) that refuse any table lease_spec does not
-- name: called over Supabase's REST API they can do nothing service_role could not do already.
-- Not leases of this kind, on purpose: memory's embedding claims (a hint that saves work twice
-- done; set_memory_embeddings checks the text's hash, so a million-row table needs no attempt
-- columns), job runs (a firing's row is made by its claim, unique per job and time, and its
-- lease doubles as its retry time) and the named maintenance leases at the end of this section.
-- ---------------------------------------------------------------------------------------------
-- The queues. key_match finds the row `t` that a key object names; its %s stands for that object
-- (a parameter, or a column of a list of keys). The key columns' types are written here, so a
-- call reads no catalogue: these functions run on every claim and every finish.
create or replace function lease_spec(
  p_queue regclass, out key_columns text[], out key_match text, out running text, out noun text
)
language plpgsql stable set search_path = public, pg_temp as $$
begin
  -- to_regclass: this section stands before the tables, and a missing table is no queue
  if p_queue = to_regclass('public.actions') then
    key_columns := '{id}'; key_match := 't.id = (%s->>''id'')::uuid';
    running := 'running'; noun := 'action';
  elsif p_queue = to_regclass('public.discord_notifications') then
    key_columns := '{id}'; key_match := 't.id = (%s->>''id'')::bigint';
    running := 'sending'; noun := 'notification';
  elsif p_queue = to_regclass('public.campaign_batches') then
    key_columns := '{campaign_id,batch_no}';
    key_match := 't.campaign_id = (%1$s->>''campaign_id'')::uuid and t.batch_no = (%1$s->>''batch_no'')::integer';
    running := 'sending'; noun := 'campaign batch';
  elsif p_queue = to_regclass('public.daily_reports') then
    key_columns := '{day}'; key_match := 't.day = (%s->>''day'')::date';
    running := 'sending'; noun := 'daily report send';
  else
    raise exception '% is not a lease queue', p_queue using errcode = 'OD422';
  end if;
end
$$;

-- Claims the rows of p_keys (a JSON array of keys the caller chose and locked FOR UPDATE SKIP
-- LOCKED in this transaction, in claim order) for p_worker: running, one more attempt, a fresh
-- token, a lease of p_lease_seconds. p_also sets more of the rows' own columns, the same for each
-- ({"started_at": …}). Returns the claimed rows, in the order given.
create or replace function lease_claim(
  p_queue regclass, p_keys jsonb, p_worker text, p_lease_seconds double precision, p_also jsonb default '{}'
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  s record := lease_spec(p_queue);
  v_also text;
  v_claimed jsonb;
begin
  if nullif(btrim(coalesce(p_worker, '')), '') is null or coalesce(p_lease_seconds, 0) <= 0 then
    raise exception 'a claim needs the worker and a positive lease' using errcode = 'OD422';
  end if;
  if coalesce(p_also, '{}') ?| (s.key_columns || array['status', 'attempts', 'attempt_token', 'claimed_by',
                                                       'lease_expires_at', 'dispatched_at', 'updated_at']) then
    raise exception 'a claim sets the key and lease columns of % itself', p_queue using errcode = 'OD422';
  end if;
  if jsonb_array_length(coalesce(p_keys, '[]')) = 0 then
    return '[]';  -- nothing was due: an idle poll runs no statement
  end if;
  -- (a key of p_also that is not a column of the queue fails the statement: undefined_column). The
  -- keys' count as a literal LIMIT tells the planner how few they are: one index probe per key, not
  -- a scan of the whole table.
  select string_agg(format(', %1$I = x.%1$I', k), '') into v_also from jsonb_object_keys(coalesce(p_also, '{}')) k;
  execute format($sql$
    with claimed as (
      update %1$s t
         set status = %2$L, attempts = t.attempts + 1, attempt_token = gen_random_uuid(), claimed_by = $2,
             lease_expires_at = $3 + make_interval(secs => $4), dispatched_at = null, updated_at = $3%3$s
        from (select * from jsonb_array_elements($1) with ordinality k(key, n) limit %6$s) k%4$s
       where %5$s
      returning t.*, k.n as claim_order)
    select coalesce(jsonb_agg(to_jsonb(c) - 'claim_order' order by c.claim_order), '[]') from claimed c
    $sql$, p_queue, s.running, coalesce(v_also, ''),
    case when v_also is not null then format(', jsonb_populate_record(null::%s, $5) x', p_queue) else '' end,
    format(s.key_match, 'k.key'), jsonb_array_length(p_keys))
    into v_claimed using p_keys, p_worker, db_now(), p_lease_seconds, p_also;
  return v_claimed;
end
$$;

-- A key as messages show it: its values, `/` between them.
create or replace function lease_key_text(p_key_columns text[], p_key jsonb) returns text
language sql immutable as $$
  select string_agg(coalesce(p_key->>k.name, 'null'), '/' order by k.n)
    from unnest(p_key_columns) with ordinality k(name, n)
$$;

-- Only the current attempt may act on its row. p_row is that row, locked by the caller for its
-- transaction (FOR UPDATE), null when there is none: OD404 then, OD499 when the attempt was
-- superseded (another status, or another claim's token). Returns the row. The families lock with
-- a static statement, so this check costs no planning on every finish.
create or replace function lease_current(p_queue regclass, p_key jsonb, p_row anyelement, p_attempt_token uuid)
returns anyelement
language plpgsql set search_path = public, pg_temp as $$
declare
  s record := lease_spec(p_queue);
begin
  if p_row.status is null then
    raise exception 'no % %', s.noun, lease_key_text(s.key_columns, p_key) using errcode = 'OD404';
  end if;
  if p_row.status <> s.running or p_row.attempt_token is distinct from p_attempt_token then
    raise exception 'attempt on % % was superseded (now %)', s.noun, lease_key_text(s.key_columns, p_key),
        p_row.status
      using errcode = 'OD499', detail = jsonb_build_object('status', p_row.status)::text;
  end if;
  return p_row;
end
$$;

-- lease_current for any queue by its key: locks the row and checks the attempt. Returns
-- {"locked": true}.
create or replace function lease_lock(p_queue regclass, p_key jsonb, p_attempt_token uuid) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  s record := lease_spec(p_queue);
begin
  execute format('select lease_current($1, $2, (select t from %s t where %s for update of t), $3)',
                 p_queue, format(s.key_match, '$2'))
    using p_queue, p_key, p_attempt_token;
  return '{"locked": true}';
end
$$;

-- Sets the current attempt's lease_expires_at or dispatched_at to p_at (one guarded UPDATE; when it
-- finds no such attempt, lease_lock says why). Returns p_at.
create or replace function lease_touch(
  p_queue regclass, p_key jsonb, p_attempt_token uuid, p_column text, p_at timestamptz
) returns timestamptz
language plpgsql set search_path = public, pg_temp as $$
declare
  s record := lease_spec(p_queue);
begin
  if p_column is null or p_column not in ('lease_expires_at', 'dispatched_at') then
    raise exception 'an attempt sets only its lease_expires_at or dispatched_at' using errcode = 'OD422';
  end if;
  execute format('update %s t set %I = $3, updated_at = db_now() where %s and t.status = %L and t.attempt_token = $2',
                 p_queue, p_column, format(s.key_match, '$1'), s.running)
    using p_key, p_attempt_token, p_at;
  if not found then
    perform lease_lock(p_queue, p_key, p_attempt_token);
  end if;
  return p_at;
end
$$;

-- A long attempt's heartbeat: its lease runs p_lease_seconds from now, so recovery does not take a
-- live attempt for a dead one.
create or replace function lease_renew(
  p_queue regclass, p_key jsonb, p_attempt_token uuid, p_lease_seconds double precision
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
begin
  if p_lease_seconds is null or p_lease_seconds <= 0 then
    raise exception 'a lease must last some time' using errcode = 'OD422';
  end if;
  return jsonb_build_object('lease_expires_at', lease_touch(p_queue, p_key, p_attempt_token, 'lease_expires_at',
                                                            db_now() + make_interval(secs => p_lease_seconds)));
end
$$;

-- Just before the attempt may reach the outside world: after a crash, recovery knows it may have.
create or replace function lease_dispatched(p_queue regclass, p_key jsonb, p_attempt_token uuid) returns jsonb
language sql set search_path = public, pg_temp as $$
  select jsonb_build_object('dispatched', lease_touch(p_queue, p_key, p_attempt_token, 'dispatched_at', db_now())
                                          is not null)
$$;

-- Running rows whose lease ran out, oldest lease first, at most p_limit, each locked for the
-- caller's transaction (SKIP LOCKED: an attempt finishing right now holds its row, and wins). The
-- caller decides what each becomes.
create or replace function lease_expired(p_queue regclass, p_limit integer) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  s record := lease_spec(p_queue);
  v_rows jsonb;
begin
  execute format('select coalesce(jsonb_agg(to_jsonb(t) order by t.lease_expires_at), ''[]'')
                    from (select * from %s where status = %L and lease_expires_at <= $1
                           order by lease_expires_at limit $2 for update skip locked) t', p_queue, s.running)
    into v_rows using db_now(), p_limit;
  return v_rows;
end
$$;

-- Named leases: one holder at a time for a maintenance job (pruning) across every instance; a
-- crashed holder's lease simply runs out.
create table if not exists maintenance_leases (
  name         text primary key,
  holder       text not null,
  leased_until timestamptz not null
);

create or replace function take_maintenance_lease(p_name text, p_holder text, p_seconds double precision)
returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_taken boolean;
begin
  insert into maintenance_leases as l (name, holder, leased_until)
  values (p_name, p_holder, v_now + make_interval(secs => p_seconds))
  on conflict (name) do update set holder = excluded.holder, leased_until = excluded.leased_until
   where l.leased_until <= v_now or l.holder = excluded.holder
  returning true into v_taken;
  return jsonb_build_object('taken', coalesce(v_taken, false),
                            'holder', (select holder from maintenance_leases where name = p_name));
end
$$;

create or replace function release_maintenance_lease(p_name text, p_holder text) returns jsonb
language sql set search_path = public, pg_temp as $$
  with gone as (delete from maintenance_leases where name = p_name and holder = p_holder returning 1)
  select jsonb_build_object('released', exists (select 1 from gone))
$$;

-- ---------------------------------------------------------------------------------------------
-- §6 The approval queue
-- Submit, decide, cancel, expire, read.
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
                         created_at, updated_at, decided_via)
    values (p_action->>'agent', p_action->>'kind', p_action->>'task_type', p_action->>'summary',
            coalesce(p_action->>'reasoning', ''), coalesce(p_action->'payload', '{}'),
            coalesce(p_action->'impact', '{}'), p_risk_level, coalesce(p_risk_reasons, '[]'),
            coalesce(p_action->'metadata', '{}'), case when p_auto_run then 'approved' else 'pending' end,
            draft_hash(coalesce(p_action->'payload', '{}')), v_key, v_now,
            case when p_auto_run then null else v_now + make_interval(secs => p_ttl_seconds) end,
            case when p_auto_run then v_now end, p_max_attempts, p_request_id, v_now, v_now,
            case when p_auto_run then 'system' end)
    returning * into a;
  exception when unique_violation then
    -- a concurrent submit with the same dedupe key won; answer with its action
    select * into a from actions
     where dedupe_key = v_key and status in ('pending', 'approved', 'running');
    return action_view(a) || '{"duplicate": true}';
  end;

  -- An auto-run action is inserted approved: inserting it pending and updating it in the same
  -- transaction wrote the row twice, and queued a Discord announcement only to cancel it (the
  -- trigger announces pending rows only). The audit still tells both steps: submitted, then
  -- approved by the policy.
  insert into audit_log (action_id, actor, event, from_status, to_status, reason, request_id, details)
  select a.id, s.actor, s.event, s.from_status, s.to_status, s.reason, p_request_id, s.details
    from (values (1, p_actor, 'submitted', null, 'pending', null,
                  jsonb_build_object('risk_level', p_risk_level, 'reasons', p_risk_reasons)),
                 (2, 'policy', 'auto_approved', 'pending', 'approved', 'LOW risk runs without approval', '{}'::jsonb))
         as s(step, actor, event, from_status, to_status, reason, details)
   where s.step = 1 or p_auto_run
   order by s.step;
  return action_view(a) || '{"duplicate": false}';
end
$$;

-- p_expected_round: the expiry (whole unix seconds) of the pending round the decider looked at,
-- as links carry it. An action sent back to pending gets a new one, so a decision read from the
-- earlier round is refused here, under the row lock, not only by a check made before the call.
-- p_channel: how the decision came (link, inbox, api, cli, system), kept apart from the name.
-- p_risk_level, p_risk_reasons, p_estimated_impact: an edit's facts and tier as the policy gives
-- them for the edited draft (app.approval_queue), stored with it; modify only.
create or replace function decide_action(
  p_id uuid, p_decision text, p_actor text, p_reason text, p_modifications jsonb,
  p_expected_hash text, p_request_id text, p_expected_round bigint default null, p_channel text default null,
  p_risk_level text default null, p_risk_reasons jsonb default null, p_estimated_impact jsonb default null
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_reason text := nullif(btrim(coalesce(p_reason, '')), '');
  v_diff jsonb;
  v_retier jsonb;
  a actions;
begin
  if p_decision is null or p_decision not in ('approve', 'reject', 'modify') then
    raise exception 'decision must be approve, reject or modify' using errcode = 'OD422';
  end if;
  if nullif(btrim(coalesce(p_actor, '')), '') is null then
    raise exception 'the decider''s name is required' using errcode = 'OD422';
  end if;
  if p_actor ~ E'[\\x01-\\x1f\\x7f\\u0085\\u2028\\u2029]' then
    raise exception 'the decider''s name must be one line' using errcode = 'OD422';
  end if;
  if p_channel is null or p_channel not in ('link', 'inbox', 'api', 'cli', 'system') then
    raise exception 'a decision needs its channel: link, inbox, api, cli or system' using errcode = 'OD422';
  end if;
  if p_decision = 'reject' and v_reason is null then
    raise exception 'a rejection needs a reason' using errcode = 'OD422';
  end if;
  if p_decision = 'modify' and (p_modifications is null or jsonb_typeof(p_modifications) <> 'object'
                                or p_modifications = '{}') then
    raise exception 'modify needs the edited fields' using errcode = 'OD422';
  end if;
  if p_risk_level is not null and (p_decision <> 'modify' or p_risk_level not in ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')
                                   or jsonb_typeof(p_risk_reasons) is distinct from 'array'
                                   or jsonb_typeof(p_estimated_impact) is distinct from 'object') then
    raise exception 'only an edit is tiered again, with its tier, reasons and facts' using errcode = 'OD422';
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
  if p_expected_round is not null
     and p_expected_round <> coalesce(floor(extract(epoch from a.expires_at))::bigint, 0) then
    raise exception 'action % was reopened after this decision''s page was read', a.id
      using errcode = 'OD409', detail = jsonb_build_object('status', a.status, 'reason', 'reopened')::text;
  end if;

  if p_decision = 'reject' then
    update actions
       set status = 'rejected', decision = 'rejected', decided_by = p_actor, decided_via = p_channel,
           decided_at = v_now, rejection_reason = v_reason, feedback = v_reason, updated_at = v_now
     where id = p_id returning * into a;
  else
    if p_decision = 'modify' then
      select jsonb_object_agg(e.key, jsonb_build_object('from', a.requested_action -> e.key, 'to', e.value))
        into v_diff
        from jsonb_each(p_modifications) e
       where a.requested_action -> e.key is distinct from e.value;
    end if;
    if v_diff is not null and p_risk_level is not null
       and (p_risk_level, p_risk_reasons, p_estimated_impact)
           is distinct from (a.risk_level, a.risk_reasons, a.estimated_impact) then
      v_retier := jsonb_build_object('risk_level', jsonb_build_object('from', a.risk_level, 'to', p_risk_level),
                                     'estimated_impact', p_estimated_impact, 'risk_reasons', p_risk_reasons);
    end if;
    update actions
       set status = 'approved',
           decision = case when v_diff is null then 'approved' else 'modified' end,
           requested_action = case when v_diff is null then requested_action
                                   else requested_action || p_modifications end,
           draft_hash = case when v_diff is null then draft_hash
                             else draft_hash(requested_action || p_modifications) end,
           risk_level = case when v_retier is null then risk_level else p_risk_level end,
           risk_reasons = case when v_retier is null then risk_reasons else p_risk_reasons end,
           estimated_impact = case when v_retier is null then estimated_impact else p_estimated_impact end,
           modifications = v_diff, feedback = v_reason, decided_by = p_actor, decided_via = p_channel,
           decided_at = v_now, run_after = v_now, updated_at = v_now
     where id = p_id returning * into a;
  end if;

  perform write_audit(a.id, p_actor, 'decided', 'pending', a.status, v_reason, p_request_id,
                      jsonb_build_object('decision', a.decision, 'channel', p_channel, 'modifications', v_diff)
                      || case when v_retier is null then '{}' else jsonb_build_object('retiered', v_retier) end);
  return action_view(a);
end
$$;

-- Several API decisions in one call and one commit: the API's group commit (app.approvals.batch).
-- Each is decide_action's own in a subtransaction of its own, so one that is refused (decided
-- already, expired, missing) changes nothing and the others stand; each answer is in its
-- decision's place, {"action": ...} or {"error": {"sqlstate", "message", "detail"}}. Rows are
-- taken in id order, so two batches deciding the same actions wait for each other instead of
-- deadlocking. At most 24: a decision's subtransaction and its memory row's take two of the 64
-- subtransaction ids a transaction keeps in shared memory (PGPROC_MAX_CACHED_SUBXIDS) before
-- every other session's snapshot has to look them up on disk.
create or replace function decide_actions(p_decisions jsonb) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  d record;
  v_answers jsonb[];
  v_state text;
  v_message text;
  v_detail text;
begin
  if jsonb_typeof(p_decisions) is distinct from 'array' or jsonb_array_length(p_decisions) > 24 then
    raise exception 'decide_actions takes an array of up to 24 decisions' using errcode = 'OD422';
  end if;
  v_answers := array_fill(null::jsonb, array[jsonb_array_length(p_decisions)]);
  for d in select e.value as v, e.ordinality as n
             from jsonb_array_elements(p_decisions) with ordinality e
            order by e.value->>'id', e.ordinality
  loop
    begin
      v_answers[d.n] := jsonb_build_object('action', decide_action(
        p_id => (d.v->>'id')::uuid, p_decision => d.v->>'decision', p_actor => d.v->>'actor',
        p_reason => d.v->>'reason', p_modifications => null, p_expected_hash => null,
        p_request_id => d.v->>'request_id', p_channel => d.v->>'channel'));
    exception when others then
      get stacked diagnostics v_state = returned_sqlstate, v_message = message_text, v_detail = pg_exception_detail;
      v_answers[d.n] := jsonb_build_object('error', jsonb_build_object(
        'sqlstate', v_state, 'message', v_message, 'detail', nullif(v_detail, '')));
    end;
  end loop;
  return to_jsonb(v_answers);
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
    update actions a set status = 'expired', decided_via = 'system', updated_at = v_now
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

create or replace function health() returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select jsonb_build_object(
    'now', db_now(),
    'schema_version', schema_version(),
    'pending', (select count(*) from actions where status = 'pending'),
    'unknown', (select count(*) from actions where status = 'unknown'))
$$;

-- ---------------------------------------------------------------------------------------------
-- §7 The executor
-- Claim with SKIP LOCKED and a lease; finish only with the claim's attempt token.
-- ---------------------------------------------------------------------------------------------
-- Approved actions that are due, oldest first, claimed as §5 claims (with their start time), each
-- with a `claimed` audit row.
create or replace function claim_actions(p_worker text, p_lease_seconds double precision, p_limit integer)
returns jsonb
language sql set search_path = public, pg_temp as $$
  with claimed as (
    select lease_claim('actions', coalesce(jsonb_agg(jsonb_build_object('id', due.id)
                                                     order by due.run_after, due.requested_at), '[]'),
                       p_worker, p_lease_seconds, jsonb_build_object('started_at', db_now())) as claimed_rows
      from (select id, run_after, requested_at from actions
             where status = 'approved' and run_after <= db_now()
             order by run_after, requested_at limit p_limit
               for update skip locked) due
  ), audited as (
    insert into audit_log (action_id, actor, event, from_status, to_status, details)
    select (c->>'id')::uuid, p_worker, 'claimed', 'approved', 'running', jsonb_build_object('attempt', c->'attempts')
      from claimed, jsonb_array_elements(claimed.claimed_rows) c
  )
  select claimed_rows from claimed
$$;

-- The current attempt's action, locked (§5: OD404, OD499).
create or replace function locked_attempt(p_id uuid, p_attempt_token uuid) returns actions
language sql set search_path = public, pg_temp as $$
  select lease_current('actions', jsonb_build_object('id', p_id),
                       (select a from actions a where a.id = p_id for update), p_attempt_token)
$$;

create or replace function mark_dispatched(p_id uuid, p_attempt_token uuid) returns jsonb
language sql set search_path = public, pg_temp as $$
  select lease_dispatched('actions', jsonb_build_object('id', p_id), p_attempt_token) || jsonb_build_object('id', p_id)
$$;

-- A long handler's heartbeat before each outside request (§5).
create or replace function renew_action_lease(p_id uuid, p_attempt_token uuid, p_lease_seconds double precision)
returns jsonb
language sql set search_path = public, pg_temp as $$
  select lease_renew('actions', jsonb_build_object('id', p_id), p_attempt_token, p_lease_seconds)
         || jsonb_build_object('id', p_id)
$$;

-- How long ago an earlier attempt may have gone out without an answer (null: none did).
create or replace function uncertain_dispatch(p_id uuid, p_attempt_token uuid) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  a actions := locked_attempt(p_id, p_attempt_token);
begin
  return jsonb_build_object('uncertain_since', a.uncertain_since,
                            'age_seconds', extract(epoch from db_now() - a.uncertain_since));
end
$$;

-- This attempt may have gone out without an answer: keeps the first such attempt's dispatch time.
create or replace function note_uncertain_dispatch(p_id uuid, p_attempt_token uuid) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  a actions := locked_attempt(p_id, p_attempt_token);
begin
  update actions set uncertain_since = coalesce(uncertain_since, dispatched_at, db_now()), updated_at = db_now()
   where id = a.id returning * into a;
  return jsonb_build_object('uncertain_since', a.uncertain_since,
                            'age_seconds', extract(epoch from db_now() - a.uncertain_since));
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
    if p_count_attempt and a.attempts >= a.max_attempts and a.uncertain_since is not null then
      -- an earlier try may have gone out unanswered: giving up must not read as "never happened"
      v_to := 'unknown';
      v_error := format('gave up after %s attempts, and an earlier one may have gone out: %s', a.attempts,
                        p_error);
    elsif p_count_attempt and a.attempts >= a.max_attempts then
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
  for a in select * from jsonb_populate_recordset(null::actions, lease_expired('actions', p_limit)) loop
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
  -- a retry is a fresh run a person asked for: it gets a whole new budget of attempts, or an
  -- action that went unknown on its last attempt would be given up on at its first failure. The
  -- count goes on, so a handler still sees a later attempt and looks for what an earlier one did
  -- (a HubSpot note, a Notion page) before making it again.
  update actions
     set status = case when p_outcome = 'retry' then 'approved' else p_outcome end,
         run_after = case when p_outcome = 'retry' then v_now else run_after end,
         max_attempts = case when p_outcome = 'retry' then attempts + max_attempts else max_attempts end,
         finished_at = case when p_outcome = 'retry' then null else finished_at end,
         attempt_token = null, dispatched_at = null, uncertain_since = null, updated_at = v_now
   where id = p_id returning * into a;
  perform write_audit(a.id, p_actor, 'settled', 'unknown', a.status, p_reason, p_request_id);
  return action_view(a);
end
$$;

-- The executor re-assessed an approved action and its facts now give a higher tier than the one
-- it was approved at: instead of running, it goes back to pending with the new tier, the new
-- reasons, a fresh expiry and no decision (the old one stays in the audit). Only the current
-- attempt may do this, and only before its handler reached the outside world. The claim's
-- attempt is given back: nothing was tried. Links carry the expiry in whole seconds and tell a
-- reopened approval from the earlier round by it, so the new expiry always differs to the second.
-- A handler that re-read facts living outside opsdesk (a deal's current stage) passes the draft
-- and impact those facts give: the person then approves what would really happen, and links to
-- the old draft stop working (its hash changes).
create or replace function requeue_action(
  p_id uuid, p_attempt_token uuid, p_risk_level text, p_risk_reasons jsonb,
  p_ttl_seconds double precision, p_reason text,
  p_requested_action jsonb default null, p_estimated_impact jsonb default null
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  a actions := locked_attempt(p_id, p_attempt_token);
  v_from_tier text := a.risk_level;
  v_expires timestamptz := v_now + make_interval(secs => p_ttl_seconds);
  v_draft jsonb := coalesce(p_requested_action, a.requested_action);
begin
  if p_risk_level is null or p_risk_level not in ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL') then
    raise exception 'risk level must be LOW, MEDIUM, HIGH or CRITICAL' using errcode = 'OD422';
  end if;
  if nullif(btrim(coalesce(p_reason, '')), '') is null or coalesce(p_ttl_seconds, 0) <= 0 then
    raise exception 'sending back needs a reason and a positive ttl' using errcode = 'OD422';
  end if;
  if a.dispatched_at is not null then
    raise exception 'action % may already have reached the outside world; it cannot go back to pending', a.id
      using errcode = 'OD409', detail = jsonb_build_object('status', a.status, 'reason', 'dispatched')::text;
  end if;
  if date_trunc('second', v_expires) = date_trunc('second', a.expires_at) then
    v_expires := v_expires + interval '1 second';
  end if;

  update actions
     set status = 'pending', risk_level = p_risk_level, risk_reasons = coalesce(p_risk_reasons, '[]'),
         decision = null, decided_by = null, decided_at = null,
         attempts = attempts - 1, attempt_token = null, lease_expires_at = null, started_at = null,
         run_after = null, expires_at = v_expires, updated_at = v_now,
         requested_action = v_draft,
         draft_hash = case when p_requested_action is null then draft_hash else draft_hash(v_draft) end,
         estimated_impact = coalesce(p_estimated_impact, estimated_impact)
   where id = a.id returning * into a;
  perform write_audit(a.id, coalesce(a.claimed_by, 'executor'), 'requeued', 'running', 'pending', p_reason, null,
                      jsonb_build_object('from_tier', v_from_tier, 'to_tier', p_risk_level,
                                         'reasons', p_risk_reasons,
                                         'draft_changed', p_requested_action is not null));
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

-- ---------------------------------------------------------------------------------------------
-- §8 Reviewing by link
-- What the review page reads, the approval PIN's tries, the reviewers' feedback for the agents.
-- ---------------------------------------------------------------------------------------------
-- Wrong approval-PIN entries per action, counted here so every instance and every parallel
-- request share one limit.
create table if not exists approval_pin_failures (
  action_id      uuid primary key references actions (id) on delete cascade,
  failures       integer not null default 0,
  last_failed_at timestamptz
);

-- Everything a review page shows, read at one database time (links expire on that clock).
create or replace function approval_review(p_id uuid) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select jsonb_build_object(
    'now', db_now(),
    'action', (select action_view(a) from actions a where a.id = p_id),
    'pin_failures', coalesce((select f.failures from approval_pin_failures f where f.action_id = p_id), 0))
$$;

-- One approval-PIN entry. The caller compares the PIN (it never reaches the database or the
-- audit) and says whether it was right; this counts and limits the tries. The row lock orders
-- parallel tries, and once the limit is reached even the right PIN is refused, so guessing in
-- parallel gains nothing.
create or replace function approval_pin_try(
  p_id uuid, p_correct boolean, p_max_tries integer, p_actor text, p_request_id text
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_failures integer;
begin
  if p_correct is null or p_max_tries is null or p_max_tries < 1 then
    raise exception 'a PIN try needs p_correct and a positive p_max_tries' using errcode = 'OD422';
  end if;
  if not exists (select 1 from actions where id = p_id) then
    raise exception 'no action %', p_id using errcode = 'OD404';
  end if;
  insert into approval_pin_failures (action_id) values (p_id) on conflict (action_id) do nothing;
  select failures into v_failures from approval_pin_failures where action_id = p_id for update;

  if v_failures >= p_max_tries then
    perform write_audit(p_id, p_actor, 'pin_refused', null, null,
                        'approval by link is locked after too many wrong PINs', p_request_id);
    return jsonb_build_object('allowed', false, 'locked', true, 'failures', v_failures, 'remaining', 0);
  end if;
  if p_correct then
    return jsonb_build_object('allowed', true, 'locked', false, 'failures', v_failures,
                              'remaining', p_max_tries - v_failures);
  end if;

  v_failures := v_failures + 1;
  update approval_pin_failures set failures = v_failures, last_failed_at = db_now() where action_id = p_id;
  perform write_audit(p_id, p_actor, 'pin_failed', null, null,
                      format('wrong approval PIN (%s of %s tries)', v_failures, p_max_tries), p_request_id);
  if v_failures >= p_max_tries then
    perform write_audit(p_id, 'policy', 'pin_locked', null, null,
                        'too many wrong PINs: this action can no longer be approved by link', p_request_id);
  end if;
  return jsonb_build_object('allowed', false, 'locked', v_failures >= p_max_tries, 'failures', v_failures,
                            'remaining', p_max_tries - v_failures);
end
$$;

-- What reviewers said about an agent's recent drafts (of one kind, or of every kind when p_kind
-- is null): rejection reasons, edits and notes, newest first, for the agent's next draft.
create or replace function recent_feedback(p_agent text, p_kind text, p_limit integer) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select coalesce(jsonb_agg(to_jsonb(f) order by f.at desc, f.id), '[]')
    from (
      select a.id, a.kind, a.summary, a.status, a.decision, a.decided_by, a.decided_at,
             a.rejection_reason, a.modifications, a.feedback, coalesce(a.decided_at, a.updated_at) as at
        from actions a
       where a.agent = p_agent and (p_kind is null or a.kind = p_kind)
         and (a.rejection_reason is not null or a.modifications is not null or a.feedback is not null)
       order by coalesce(a.decided_at, a.updated_at) desc, a.id
       limit least(greatest(coalesce(p_limit, 20), 1), 200)
    ) f
$$;

-- ---------------------------------------------------------------------------------------------
-- §9 Discord notifications
-- An outbox. A trigger on `actions` queues them in the same transaction
-- as the status change, so a crash or a Discord outage loses none; `NotificationSender`
-- (app/notifications.py) claims them like the executor claims actions (SKIP LOCKED, a lease, an
-- attempt token) and records what Discord answered.
--   announce    the action became pending (again: `episode` counts its stays in pending)
--   reminder    still pending some hours after the announce was posted          (enqueue_reminders)
--   escalation  CRITICAL and close to expiring                                 (enqueue_reminders)
--   outcome     it left pending: edit every message of that episode to show the outcome and
--               drop its buttons
-- A post has no idempotency key at Discord. `dispatched_at` is set just before the POST, so after a
-- crash we know whether it may have gone out; if it may have, the row keeps `maybe_posted` and
-- the next post says it may repeat an earlier one (same `nonce` in both footers). It is never
-- re-posted silently.
-- ---------------------------------------------------------------------------------------------
create table if not exists discord_notifications (
  id               bigint generated always as identity primary key,
  action_id        uuid not null references actions (id) on delete cascade,
  kind             text not null check (kind in ('announce', 'reminder', 'escalation', 'outcome')),
  episode          integer not null check (episode > 0),
  nonce            uuid not null default gen_random_uuid(),   -- shown on the message: copies match
  status           text not null default 'queued'
                     check (status in ('queued', 'sending', 'sent', 'failed', 'cancelled', 'unknown')),
  details          jsonb not null default '{}',               -- an outcome: the decision as made
  run_after        timestamptz not null,
  attempts         integer not null default 0,
  attempt_token    uuid,
  claimed_by       text,
  lease_expires_at timestamptz,
  dispatched_at    timestamptz,                               -- this attempt's POST may have left
  maybe_posted     boolean not null default false,            -- an earlier attempt's POST may have
  last_error       text,
  sent_at          timestamptz,
  created_at       timestamptz not null,
  updated_at       timestamptz not null
);
create unique index if not exists discord_notifications_once on discord_notifications (action_id, kind, episode);
create index if not exists discord_notifications_due on discord_notifications (run_after) where status = 'queued';
create index if not exists discord_notifications_leases on discord_notifications (lease_expires_at)
  where status = 'sending';

-- Every message Discord confirmed, so an outcome knows what to edit (a late answer from a sender
-- that lost its lease is kept too: its message gets edited like the others).
create table if not exists discord_messages (
  message_id      text primary key,
  notification_id bigint not null references discord_notifications (id) on delete cascade,
  action_id       uuid not null,
  episode         integer not null,
  posted_at       timestamptz not null
);
create index if not exists discord_messages_episode on discord_messages (action_id, episode);

create or replace function discord_outcome(a actions) returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'status', a.status, 'decision', a.decision, 'decided_by', a.decided_by, 'via', a.decided_via,
    'at', coalesce(a.decided_at, a.updated_at),
    'reason', coalesce(a.rejection_reason, a.feedback, case when a.status = 'cancelled' then a.last_error end))
$$;

create or replace function enqueue_action_notifications() returns trigger
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_episode integer;
begin
  if tg_op = 'UPDATE' and old.status is not distinct from new.status then
    return null;
  end if;
  if new.status <> 'pending' and (tg_op = 'INSERT' or old.status <> 'pending') then
    return null;
  end if;
  select max(episode) into v_episode from discord_notifications where action_id = new.id and kind = 'announce';

  if new.status = 'pending' then
    insert into discord_notifications (action_id, kind, episode, run_after, created_at, updated_at)
    values (new.id, 'announce', coalesce(v_episode, 0) + 1, v_now, v_now, v_now);
    return null;
  end if;
  if v_episode is null then
    return null;
  end if;
  -- Left pending. What was not posted yet no longer needs posting (an auto-run LOW action ends
  -- here in the transaction that submitted it); what was posted or is being posted gets edited.
  update discord_notifications
     set status = case when maybe_posted then 'unknown' else 'cancelled' end, updated_at = v_now,
         last_error = format('the action became %s before this was posted', new.status)
   where action_id = new.id and episode = v_episode and kind <> 'outcome' and status = 'queued';
  if exists (select 1 from discord_notifications
              where action_id = new.id and episode = v_episode and kind <> 'outcome'
                and status in ('sending', 'sent'))
     or exists (select 1 from discord_messages where action_id = new.id and episode = v_episode) then
    insert into discord_notifications (action_id, kind, episode, details, run_after, created_at, updated_at)
    values (new.id, 'outcome', v_episode, discord_outcome(new), v_now, v_now, v_now)
    on conflict (action_id, kind, episode) do nothing;
  end if;
  return null;
end
$$;
create or replace trigger actions_discord_notifications after insert or update of status on actions
  for each row execute function enqueue_action_notifications();

-- Reminders and escalations, once each per action and episode (the unique index), so the job may
-- run as often and on as many instances as you like. A reminder counts from when the announce
-- was posted (the reviewer cannot act on what they were never shown); an escalation only follows
-- an announce posted before the escalation window (inside it, the announce already pinged).
create or replace function enqueue_reminders(
  p_reminder_after_seconds double precision, p_escalate_before_seconds double precision, p_limit integer
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_remind interval;
  v_escalate interval;
  v_reminders integer;
  v_escalations integer;
begin
  if coalesce(p_reminder_after_seconds, 0) <= 0 or coalesce(p_escalate_before_seconds, -1) < 0
     or coalesce(p_limit, 0) < 1 then
    raise exception 'reminders need a positive delay, a non-negative escalation window and a limit'
      using errcode = 'OD422';
  end if;
  v_remind := make_interval(secs => p_reminder_after_seconds);
  v_escalate := make_interval(secs => p_escalate_before_seconds);
  with announced as (
    select a.id, a.risk_level, a.expires_at, n.episode, n.sent_at
      from actions a
      join discord_notifications n on n.action_id = a.id and n.kind = 'announce' and n.status = 'sent'
     where a.status = 'pending' and a.expires_at > v_now
       and n.episode = (select max(e.episode) from discord_notifications e
                         where e.action_id = a.id and e.kind = 'announce')
  ), wanted as (
    select id, episode, 'reminder' as kind from announced
     where sent_at + v_remind <= v_now
    union all
    select id, episode, 'escalation' from announced
     where risk_level = 'CRITICAL' and expires_at - v_escalate <= v_now and sent_at < expires_at - v_escalate
  ), due as (
    -- The action's row lock orders this against a decision: either the decision's trigger sees
    -- the reminder and withdraws it, or the lock re-reads the decided row and the status test here
    -- (re-checked on the newest row version) leaves it out.
    select w.id, w.episode, w.kind from wanted w
      join actions a on a.id = w.id
     where a.status = 'pending'
       and not exists (select 1 from discord_notifications x
                        where x.action_id = w.id and x.kind = w.kind and x.episode = w.episode)
     order by a.requested_at limit p_limit
       for update of a skip locked
  ), inserted as (
    insert into discord_notifications (action_id, kind, episode, run_after, created_at, updated_at)
    select id, kind, episode, v_now, v_now, v_now from due
    on conflict (action_id, kind, episode) do nothing
    returning kind
  )
  select count(*) filter (where kind = 'reminder'), count(*) filter (where kind = 'escalation')
    into v_reminders, v_escalations from inserted;
  return jsonb_build_object('reminders', v_reminders, 'escalations', v_escalations);
end
$$;

create or replace function recover_notification_leases(p_actor text, p_limit integer) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_to text;
  v_out jsonb := '[]';
  n discord_notifications;
begin
  for n in
    select * from jsonb_populate_recordset(null::discord_notifications, lease_expired('discord_notifications', p_limit))
  loop
    if n.kind = 'outcome' or exists (select 1 from actions where id = n.action_id and status = 'pending') then
      v_to := 'queued';   -- an edit is idempotent; a post for a pending action must still reach it
    elsif n.dispatched_at is not null or n.maybe_posted then
      v_to := 'unknown';  -- decided meanwhile: nothing to announce, but a copy may be out there
    else
      v_to := 'cancelled';
    end if;
    update discord_notifications
       set status = v_to, run_after = v_now, attempt_token = null, lease_expires_at = null,
           dispatched_at = null, maybe_posted = maybe_posted or (kind <> 'outcome' and dispatched_at is not null),
           last_error = 'the sender lost its lease', updated_at = v_now
     where id = n.id;
    if n.kind <> 'outcome' and n.dispatched_at is not null then
      perform write_audit(n.action_id, p_actor, 'notification_uncertain', null, null,
        format('a Discord %s may have been posted before its sender stopped; %s', n.kind,
               case when v_to = 'queued' then 'it will be posted again, marked as a possible repeat'
                    else 'the action is no longer pending, so it is not posted again' end),
        null, jsonb_build_object('notification_id', n.id, 'nonce', n.nonce, 'worker', n.claimed_by));
    end if;
    v_out := v_out || jsonb_build_object('id', n.id, 'status', v_to);
  end loop;
  return jsonb_build_object('recovered', v_out);
end
$$;

-- Due notifications with their action and, for an outcome, the messages to edit. An outcome
-- waits while a post of its episode is in flight, so it cannot miss that post's message.
create or replace function claim_notifications(p_worker text, p_lease_seconds double precision, p_limit integer)
returns jsonb
language sql set search_path = public, pg_temp as $$
  with claimed as (
    select lease_claim('discord_notifications',
                       coalesce(jsonb_agg(jsonb_build_object('id', due.id) order by due.run_after, due.id), '[]'),
                       p_worker, p_lease_seconds) as claimed_rows
      from (select n.id, n.run_after from discord_notifications n
             where n.status = 'queued' and n.run_after <= db_now()
               and (n.kind <> 'outcome' or not exists (
                     select 1 from discord_notifications p
                      where p.action_id = n.action_id and p.episode = n.episode and p.kind <> 'outcome'
                        and p.status = 'sending'))
             order by n.run_after, n.id limit p_limit
               for update of n skip locked) due
  )
  select coalesce(jsonb_agg(c.item || jsonb_build_object(
           'action', (select action_view(a) from actions a where a.id = (c.item->>'action_id')::uuid),
           'messages', coalesce((select jsonb_agg(m.message_id order by m.posted_at, m.message_id)
                                   from discord_messages m
                                  where m.action_id = (c.item->>'action_id')::uuid
                                    and m.episode = (c.item->>'episode')::integer), '[]'))
         order by c.n), '[]')
    from claimed, jsonb_array_elements(claimed.claimed_rows) with ordinality c(item, n)
$$;

-- The current attempt's notification, locked (§5: OD404, OD499).
create or replace function locked_notification(p_id bigint, p_attempt_token uuid) returns discord_notifications
language sql set search_path = public, pg_temp as $$
  select lease_current('discord_notifications', jsonb_build_object('id', p_id),
                       (select n from discord_notifications n where n.id = p_id for update), p_attempt_token)
$$;

create or replace function mark_notification_dispatched(p_id bigint, p_attempt_token uuid) returns jsonb
language sql set search_path = public, pg_temp as $$
  select lease_dispatched('discord_notifications', jsonb_build_object('id', p_id), p_attempt_token)
         || jsonb_build_object('id', p_id)
$$;

-- Discord confirmed a post. The message is kept even when the answer comes from an attempt that
-- lost its lease: it exists, so it must be edited when the action is decided; and if its row is
-- still waiting for a repost, that repost is no longer needed.
create or replace function record_notification_sent(p_id bigint, p_attempt_token uuid, p_message_id text)
returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  n discord_notifications;
  o discord_notifications;
  a actions;
  v_current boolean;
begin
  if p_message_id is null or p_message_id !~ '^\d{1,25}$' then
    raise exception 'not a Discord message id: %', p_message_id using errcode = 'OD422';
  end if;
  select * into n from discord_notifications where id = p_id for update;
  if not found then
    raise exception 'no notification %', p_id using errcode = 'OD404';
  end if;
  if n.kind = 'outcome' then
    raise exception 'an outcome edit is recorded with record_outcome_edited' using errcode = 'OD422';
  end if;
  -- lock the episode's outcome before adding a message, so an edit running now cannot miss it
  select * into o from discord_notifications
   where action_id = n.action_id and kind = 'outcome' and episode = n.episode for update;
  v_current := n.status = 'sending' and n.attempt_token = p_attempt_token;

  insert into discord_messages (message_id, notification_id, action_id, episode, posted_at)
  values (p_message_id, n.id, n.action_id, n.episode, v_now)
  on conflict (message_id) do nothing;
  if v_current or n.status in ('queued', 'cancelled', 'unknown', 'failed') then
    update discord_notifications
       set status = 'sent', sent_at = v_now, attempt_token = null, lease_expires_at = null,
           last_error = null, updated_at = v_now
     where id = n.id returning * into n;
  end if;

  select * into a from actions where id = n.action_id;
  if o.id is not null and o.status in ('sent', 'failed') then
    update discord_notifications
       set status = 'queued', run_after = v_now, attempts = 0, last_error = null, updated_at = v_now
     where id = o.id;
  elsif o.id is null and a.status <> 'pending' then
    insert into discord_notifications (action_id, kind, episode, details, run_after, created_at, updated_at)
    values (n.action_id, 'outcome', n.episode, discord_outcome(a), v_now, v_now, v_now);
  end if;

  perform write_audit(n.action_id, coalesce(n.claimed_by, 'discord'), 'notified', null, null, null, null,
                      jsonb_build_object('notification_id', n.id, 'kind', n.kind, 'message_id', p_message_id,
                                         'possible_repeat', n.maybe_posted, 'late', not v_current));
  return jsonb_build_object('id', n.id, 'status', n.status, 'message_id', p_message_id, 'late', not v_current);
end
$$;

-- An outcome edit finished for `p_message_ids`. If a message of the episode was recorded while it
-- ran, it goes round again (edits are idempotent) instead of leaving that message's buttons live.
create or replace function record_outcome_edited(p_id bigint, p_attempt_token uuid, p_message_ids jsonb)
returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  n discord_notifications := locked_notification(p_id, p_attempt_token);
  v_missed boolean;
begin
  if n.kind <> 'outcome' or jsonb_typeof(coalesce(p_message_ids, 'null')) <> 'array' then
    raise exception 'record_outcome_edited needs an outcome and the list of edited message ids'
      using errcode = 'OD422';
  end if;
  v_missed := exists (select 1 from discord_messages m
                       where m.action_id = n.action_id and m.episode = n.episode
                         and not p_message_ids ? m.message_id);
  update discord_notifications
     set status = case when v_missed then 'queued' else 'sent' end,
         attempts = attempts - case when v_missed then 1 else 0 end,
         run_after = v_now, sent_at = case when v_missed then null else v_now end,
         attempt_token = null, lease_expires_at = null, last_error = null, updated_at = v_now
   where id = n.id returning * into n;
  if not v_missed then
    perform write_audit(n.action_id, coalesce(n.claimed_by, 'discord'), 'notified', null, null, null, null,
                        jsonb_build_object('notification_id', n.id, 'kind', 'outcome', 'edited', p_message_ids));
  end if;
  return jsonb_build_object('id', n.id, 'status', n.status);
end
$$;

-- A failed attempt: back in the queue after `p_retry_in_seconds`, or `failed` once
-- `p_max_attempts` counted attempts are used. A 429 or an open circuit does not count.
create or replace function reschedule_notification(
  p_id bigint, p_attempt_token uuid, p_error text, p_retry_in_seconds double precision,
  p_count_attempt boolean, p_max_attempts integer, p_maybe_posted boolean
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  n discord_notifications := locked_notification(p_id, p_attempt_token);
  v_count boolean := coalesce(p_count_attempt, true);
  v_give_up boolean;
begin
  if coalesce(p_max_attempts, 0) < 1 then
    raise exception 'p_max_attempts must be positive' using errcode = 'OD422';
  end if;
  v_give_up := v_count and n.attempts >= p_max_attempts;
  update discord_notifications
     set status = case when v_give_up then 'failed' else 'queued' end,
         attempts = attempts - case when v_count then 0 else 1 end,
         run_after = v_now + make_interval(secs => greatest(coalesce(p_retry_in_seconds, 0), 0)),
         maybe_posted = maybe_posted or (kind <> 'outcome' and coalesce(p_maybe_posted, false)),
         attempt_token = null, lease_expires_at = null, dispatched_at = null,
         last_error = case when v_give_up then format('gave up after %s attempts: %s', n.attempts, p_error)
                           else p_error end,
         updated_at = v_now
   where id = n.id returning * into n;
  if v_give_up then
    perform write_audit(n.action_id, coalesce(n.claimed_by, 'discord'), 'notification_failed', null, null,
                        n.last_error, null, jsonb_build_object('notification_id', n.id, 'kind', n.kind));
  end if;
  return jsonb_build_object('id', n.id, 'status', n.status, 'attempts', n.attempts, 'run_after', n.run_after);
end
$$;

-- Discord refused this notification itself (a 4xx other than 429): trying again cannot help.
create or replace function fail_notification(p_id bigint, p_attempt_token uuid, p_error text) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  n discord_notifications := locked_notification(p_id, p_attempt_token);
begin
  update discord_notifications
     set status = 'failed', attempt_token = null, lease_expires_at = null, dispatched_at = null,
         last_error = p_error, updated_at = v_now
   where id = n.id returning * into n;
  perform write_audit(n.action_id, coalesce(n.claimed_by, 'discord'), 'notification_failed', null, null,
                      p_error, null, jsonb_build_object('notification_id', n.id, 'kind', n.kind));
  return jsonb_build_object('id', n.id, 'status', n.status);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- §10 Claude
-- Every model call with its tokens and cost, the daily spend cap, and the model the
-- configured id resolves to (kept here so every process uses the same one). Amounts in jsonb
-- answers are strings so they reach Python as exact Decimals on both transports.
-- ---------------------------------------------------------------------------------------------
create table if not exists llm_calls (
  id                          bigint generated always as identity primary key,
  agent                       text not null,
  model                       text not null,
  budget_day                  date not null,            -- calendar day in the budget time zone
  outcome                     text not null
                                check (outcome in ('reserved', 'ok', 'invalid_output', 'error', 'refused')),
  reserved_usd                numeric not null default 0 check (reserved_usd >= 0),  -- held while it runs
  cost_usd                    numeric not null default 0 check (cost_usd >= 0),
  input_tokens                integer not null default 0,
  output_tokens               integer not null default 0,
  cache_creation_input_tokens integer not null default 0,
  cache_read_input_tokens     integer not null default 0,
  latency_ms                  integer,
  error                       text,
  started_at                  timestamptz not null default db_now(),
  finished_at                 timestamptz
);
create index if not exists llm_calls_budget_day on llm_calls (budget_day);

-- A day's spend: finished calls at their cost, running ones at their reservation. A reservation
-- left by a process that died mid-call keeps counting: that call may have been billed.
create or replace function llm_day_spend(p_day date) returns numeric
language sql stable set search_path = public, pg_temp as $$
  select coalesce(sum(case when outcome = 'reserved' then reserved_usd else cost_usd end), 0)
    from llm_calls where budget_day = p_day
$$;

-- Reserve a call's worst-case cost against the day's cap, or refuse it (recorded as `refused`).
-- A transaction-scoped lock per budget day orders every reservation of that day across all
-- processes, so the sum read below always includes every reservation granted before it: two
-- callers can never both fit into the last few cents.
create or replace function llm_reserve(
  p_agent text, p_model text, p_reserve_usd numeric, p_budget_usd numeric, p_time_zone text
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_day date := (db_now() at time zone p_time_zone)::date;
  v_spent numeric;
  v_id bigint;
begin
  if p_reserve_usd is null or p_reserve_usd < 0 or p_budget_usd is null or p_budget_usd < 0 then
    raise exception 'reservation and budget must be non-negative amounts' using errcode = 'OD422';
  end if;
  perform pg_advisory_xact_lock(hashtext('opsdesk.llm_budget'), v_day - date '2000-01-01');
  v_spent := llm_day_spend(v_day);
  if v_spent + p_reserve_usd > p_budget_usd then
    insert into llm_calls (agent, model, budget_day, outcome, error, finished_at)
    values (p_agent, p_model, v_day, 'refused',
            format('daily budget %s USD: %s spent, this call may cost up to %s', p_budget_usd,
                   round(v_spent, 4), round(p_reserve_usd, 4)),
            db_now());
    return jsonb_build_object(
      'granted', false, 'day', v_day, 'spent_usd', v_spent::text, 'budget_usd', p_budget_usd::text,
      'needed_usd', p_reserve_usd::text,
      'resets_in_seconds', extract(epoch from ((v_day + 1)::timestamp at time zone p_time_zone) - db_now()));
  end if;
  insert into llm_calls (agent, model, budget_day, outcome, reserved_usd)
  values (p_agent, p_model, v_day, 'reserved', p_reserve_usd)
  returning id into v_id;
  return jsonb_build_object('granted', true, 'call_id', v_id, 'day', v_day, 'spent_usd', v_spent::text,
                            'budget_usd', p_budget_usd::text);
end
$$;

-- Settle a reservation with what the call really used; its reservation stops counting.
create or replace function llm_settle(
  p_call_id bigint, p_outcome text, p_input_tokens integer, p_output_tokens integer,
  p_cache_creation_input_tokens integer, p_cache_read_input_tokens integer, p_cost_usd numeric,
  p_latency_ms integer, p_error text
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  c llm_calls;
begin
  if p_outcome not in ('ok', 'invalid_output', 'error') then
    raise exception 'outcome must be ok, invalid_output or error' using errcode = 'OD422';
  end if;
  update llm_calls
     set outcome = p_outcome, input_tokens = coalesce(p_input_tokens, 0),
         output_tokens = coalesce(p_output_tokens, 0),
         cache_creation_input_tokens = coalesce(p_cache_creation_input_tokens, 0),
         cache_read_input_tokens = coalesce(p_cache_read_input_tokens, 0),
         cost_usd = coalesce(p_cost_usd, 0), latency_ms = p_latency_ms, error = p_error,
         finished_at = db_now()
   where id = p_call_id and outcome = 'reserved'
  returning * into c;
  if not found then
    if exists (select 1 from llm_calls where id = p_call_id) then
      raise exception 'llm call % is already settled', p_call_id using errcode = 'OD409';
    end if;
    raise exception 'no llm call %', p_call_id using errcode = 'OD404';
  end if;
  return jsonb_build_object('call_id', c.id, 'outcome', c.outcome, 'cost_usd', c.cost_usd::text);
end
$$;

-- The spend of one budget day (today when p_day is null), for the cap, the CLI and the report.
create or replace function llm_spend(p_time_zone text, p_day date) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  with d as (select coalesce(p_day, (db_now() at time zone p_time_zone)::date) as day),
  calls as (select c.* from llm_calls c, d where c.budget_day = d.day)
  select jsonb_build_object(
    'day', (select day from d),
    'spent_usd', llm_day_spend((select day from d))::text,
    'calls', (select count(*) from calls where outcome <> 'refused'),
    'refused', (select count(*) from calls where outcome = 'refused'),
    'failed', (select count(*) from calls where outcome in ('error', 'invalid_output')),
    'input_tokens', (select coalesce(sum(input_tokens), 0) from calls),
    'output_tokens', (select coalesce(sum(output_tokens), 0) from calls),
    'cache_creation_input_tokens', (select coalesce(sum(cache_creation_input_tokens), 0) from calls),
    'cache_read_input_tokens', (select coalesce(sum(cache_read_input_tokens), 0) from calls),
    'by_agent', (select coalesce(jsonb_object_agg(agent, spent), '{}') from (
      select agent, sum(case when outcome = 'reserved' then reserved_usd else cost_usd end)::text as spent
        from calls group by agent) per_agent))
$$;

-- The model the configured id resolved to at the last check of the models list.
create table if not exists llm_model_resolution (
  configured text primary key,
  resolved   text not null,
  fallback   boolean not null,
  reason     text not null default '',
  checked_at timestamptz not null default db_now()
);

-- The stored resolution if it is younger than p_max_age_seconds, else null.
create or replace function llm_model_cached(p_configured text, p_max_age_seconds double precision)
returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select to_jsonb(r) from llm_model_resolution r
   where r.configured = p_configured
     and r.checked_at > db_now() - make_interval(secs => p_max_age_seconds)
$$;

create or replace function llm_model_store(
  p_configured text, p_resolved text, p_fallback boolean, p_reason text
) returns jsonb
language sql set search_path = public, pg_temp as $$
  insert into llm_model_resolution as r (configured, resolved, fallback, reason, checked_at)
  values (p_configured, p_resolved, p_fallback, coalesce(p_reason, ''), db_now())
  on conflict (configured) do update
    set resolved = excluded.resolved, fallback = excluded.fallback, reason = excluded.reason,
        checked_at = excluded.checked_at
  returning to_jsonb(r)
$$;

-- ---------------------------------------------------------------------------------------------
-- §11 HubSpot webhooks
-- The endpoint checks the v3 signature; this records one signed delivery,
-- atomically: refused when its timestamp is outside the window (on the database clock) or when
-- the same signed request came before (a replay), else its events, each once by HubSpot's eventId
-- (HubSpot redelivers a failed delivery with a fresh timestamp and signature).
-- ---------------------------------------------------------------------------------------------
create table if not exists hubspot_webhook_deliveries (
  delivery_hash text primary key,          -- sha256 of signature + timestamp: a replay collides
  signed_at     timestamptz not null,      -- the request's timestamp; kept while it is in the window
  received_at   timestamptz not null default db_now()
);
create index if not exists hubspot_webhook_deliveries_signed on hubspot_webhook_deliveries (signed_at);

create table if not exists hubspot_events (
  event_id          bigint primary key,    -- HubSpot's eventId
  subscription_type text not null,
  object_id         bigint,
  portal_id         bigint,
  occurred_at       timestamptz not null,
  payload           jsonb not null,        -- the event as HubSpot sent it: untrusted input
  received_at       timestamptz not null default db_now()
);
create index if not exists hubspot_events_type_occurred on hubspot_events (subscription_type, occurred_at);

-- Events of a signed delivery that could not be recorded as sent (a NaN, nesting no event has,
-- not HubSpot's shape): kept, clipped, with the reason, for a person; the rest of the delivery is
-- recorded as usual, so one bad event never costs the others (nor a retry of the whole batch).
create table if not exists hubspot_events_set_aside (
  delivery_hash text not null,
  position      integer not null,          -- its index in the delivery's array
  reason        text not null,
  raw           text not null,             -- the event's text as sent, clipped: untrusted input
  received_at   timestamptz not null default db_now(),
  primary key (delivery_hash, position)
);
create index if not exists hubspot_events_set_aside_received on hubspot_events_set_aside (received_at);

create or replace function record_hubspot_webhook(
  p_delivery_hash text, p_signed_at_ms bigint, p_window_seconds integer, p_events jsonb,
  p_set_aside jsonb default '[]'
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_signed_at timestamptz := to_timestamp(p_signed_at_ms / 1000.0);
  v_window interval := make_interval(secs => p_window_seconds);
  v_recorded integer;
begin
  if jsonb_typeof(p_events) is distinct from 'array' then
    raise exception 'HubSpot events must be a JSON array' using errcode = 'OD422';
  end if;
  if v_signed_at < v_now - v_window or v_signed_at > v_now + v_window then
    return jsonb_build_object('accepted', false, 'reason', 'stale', 'now', v_now);
  end if;
  -- a delivery signed before the window is refused as stale anyway: no need to remember it
  delete from hubspot_webhook_deliveries where signed_at < v_now - v_window;
  insert into hubspot_webhook_deliveries (delivery_hash, signed_at) values (p_delivery_hash, v_signed_at)
  on conflict (delivery_hash) do nothing;
  if not found then
    return jsonb_build_object('accepted', false, 'reason', 'replay');
  end if;
  insert into hubspot_events (event_id, subscription_type, object_id, portal_id, occurred_at, payload)
  select (e->>'eventId')::bigint, e->>'subscriptionType', (e->>'objectId')::bigint, (e->>'portalId')::bigint,
         to_timestamp((e->>'occurredAt')::bigint / 1000.0), e
    from jsonb_array_elements(p_events) e
  on conflict (event_id) do nothing;
  get diagnostics v_recorded = row_count;
  insert into hubspot_events_set_aside (delivery_hash, position, reason, raw)
  select p_delivery_hash, (e->>'index')::integer, e->>'reason', e->>'raw'
    from jsonb_array_elements(coalesce(p_set_aside, '[]')) e
  on conflict do nothing;
  return jsonb_build_object('accepted', true,
                            'received', jsonb_array_length(p_events) + jsonb_array_length(coalesce(p_set_aside, '[]')),
                            'recorded', v_recorded);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- §12 Memory
-- What the business knows (knowledge base, sent messages, decisions with the reviewers'
-- reasons and edits, tickets, reports), searchable by full text, by vector and by both fused
-- with reciprocal rank fusion. Python: app/memory.py; embeddings: integrations/embeddings.py.
--
-- One embedding model and dimension per deployment. `memory.embedding` is declared without a
-- dimension so this file stays static and idempotent; configure_memory(), called at start-up with
-- the embeddings provider's model and dimension, records them in memory_config and gives the
-- column that dimension (`vector(N)`). From then on pgvector refuses a vector of any other size on
-- every write, and a provider with another model or size is refused at start-up until `opsdesk
-- memory reindex` (configure_memory with p_reset) starts over.
-- Rows are written without embeddings (triggers cannot call a model); embed_pending in Python
-- claims them (claim_memory_to_embed), embeds and stores the vectors (set_memory_embeddings).
--
-- Every call must fit Supabase's API statement timeout (8 s) at 100,000 rows and more, so no call
-- builds an HNSW graph over many vectors. The indexes are created while the rows they cover have no
-- vector (the build then only reads the table) and grow with each batch of embeddings. An index
-- missing over vectors that exist (an upgrade, a kind added to MEMORY_VECTOR_INDEX_KINDS) is made
-- by memory_index_step in bounded steps: its rows' vectors are parked aside in batches, the index
-- is created, and the vectors go back in batches. Until the shared index exists, search runs full
-- text and says so (bench/README.md measures the longest call).
-- ---------------------------------------------------------------------------------------------
create table if not exists memory_config (
  id                 boolean primary key default true check (id),
  model              text not null,              -- "<provider>/<model>", e.g. local/all-MiniLM-L6-v2
  dimension          integer not null check (dimension between 1 and 2000),  -- HNSW on vector: 2,000 max
  configured_at      timestamptz not null default db_now(),
  -- The kinds with a partial HNSW index of their own (null: none chosen yet), and when the reindex
  -- under way began (null: none; `opsdesk memory reindex` resumes it instead of starting over).
  indexed_kinds      text[],
  reindex_started_at timestamptz
);

create table if not exists memory (
  id                  bigint generated always as identity primary key,
  kind                text not null check (kind ~ '^[a-z][a-z0-9_]{0,39}$'),
  source              text not null check (source ~ '^[a-z][a-z0-9_.-]{0,39}$'),
  source_id           text not null check (length(source_id) between 1 and 500),
  title               text not null default '',
  content             text not null,
  metadata            jsonb not null default '{}',
  occurred_at         timestamptz not null default db_now(),  -- when it happened: `since` and retention
  created_at          timestamptz not null default db_now(),
  updated_at          timestamptz not null default db_now(),
  fts                 tsvector generated always as (
                        setweight(to_tsvector('english', title), 'A')
                        || setweight(to_tsvector('english', content), 'B')
                        || array_to_tsvector(array['#kind=' || kind])) stored,
  embedding           vector,                   -- vector(N) once configure_memory ran
  embedding_model     text,                     -- the model that made `embedding`
  embedded_at         timestamptz,
  embed_claimed_until timestamptz,              -- an embedder holds the row until then
  embedding_parked    vector,                   -- set aside while its index is made (memory_index_step)
  unique (source, source_id)
);
-- The kind is a lexeme of fts too, '#kind=ticket', so a kind filter narrows the GIN scan itself
-- instead of fetching every row with the words. No text reaches it: the parser drops '#', and a
-- prefix query (`kind*`) is letters and digits, so it never starts with one. The comment names the
-- column's version: §2 rebuilds a column without it, before this line marks the current one.
comment on column memory.fts is 'fts v2';
create index if not exists memory_fts on memory using gin (fts);
create index if not exists memory_kind_occurred on memory (kind, occurred_at);
create index if not exists memory_occurred on memory (occurred_at);
create index if not exists memory_to_embed on memory (id) where embedding is null;
create index if not exists memory_parked on memory (id) where embedding_parked is not null;

-- The model, the dimension the column really has, whether the HNSW index exists, and the kinds
-- with a partial HNSW index of their own.
create or replace function memory_settings() returns jsonb
language sql stable set search_path = public, extensions, pg_temp as $$
  select jsonb_build_object(
    'model', (select model from memory_config),
    'dimension', (select dimension from memory_config),
    'column_dimension', (select nullif(a.atttypmod, -1) from pg_attribute a
                          where a.attrelid = 'public.memory'::regclass and a.attname = 'embedding'),
    'index', to_regclass('public.memory_embedding_hnsw') is not null,
    'kind_indexes', coalesce((select jsonb_agg(substr(c.relname, 23) order by c.relname)
                                from pg_index i join pg_class c on c.oid = i.indexrelid
                               where i.indrelid = 'public.memory'::regclass
                                 and c.relname like 'memory\_embedding\_hnsw\_%'), '[]'))
$$;

-- The HNSW index a kind's rows get (null: the shared one over every row).
create or replace function memory_index_name(p_kind text) returns text
language sql immutable as $$
  select 'memory_embedding_hnsw' || coalesce('_' || p_kind, '')
$$;

-- Whether some row the index of p_kind (null: the shared one) would hold has a vector.
create or replace function memory_index_covers_vectors(p_kind text) returns boolean
language sql stable set search_path = public, extensions, pg_temp as $$
  select exists (select 1 from memory where embedding is not null and (p_kind is null or kind = p_kind))
$$;

create or replace function memory_create_index(p_kind text) returns void
language plpgsql set search_path = public, extensions, pg_temp as $$
begin
  execute format('create index if not exists %I on public.memory using hnsw (embedding vector_cosine_ops)%s',
                 memory_index_name(p_kind), case when p_kind is not null then format(' where kind = %L', p_kind) end);
end
$$;

-- The wanted indexes that do not exist yet, as kinds (null: the shared index, always first), and
-- the kind indexes no longer wanted. Kinds never chosen (null) keep the kind indexes there are.
create or replace function memory_index_plan(c memory_config, out missing text[], out unwanted text[])
language sql stable set search_path = public, extensions, pg_temp as $$
  select array(select k from (select null::text as k, 0 as n
                              union all select k, 1 from unnest(coalesce(c.indexed_kinds, '{}')) k) w
                where to_regclass('public.' || memory_index_name(k)) is null
                order by n, k),
         array(select ic.relname::text from pg_index i join pg_class ic on ic.oid = i.indexrelid
                where i.indrelid = 'public.memory'::regclass and ic.relname like 'memory\_embedding\_hnsw\_%'
                  and c.indexed_kinds is not null and not substr(ic.relname, 23) = any (c.indexed_kinds))
$$;

-- Start-up and reindex: cheap whatever the table's size. The first call fixes the model and
-- dimension; a later call with the same ones changes nothing but the kinds; another model or
-- dimension is refused (OD409) unless p_reset, which forgets every vector at once: the vector
-- columns are dropped and added again (no table rewrite, unlike `alter column type`, which also
-- rebuilds every index of the table). p_indexed_kinds (a JSON array; null leaves them as they are)
-- are the kinds that get a partial HNSW index: a search filtered to one of them walks that kind's
-- own graph. In the shared graph a filter far from the query (tickets, for a question about
-- newsletters) runs out of scan budget before it finds enough rows, even with iterative scans;
-- partial indexes are pgvector's advice for filtering on a few values.
-- Indexes whose rows have no vector yet are created here (the build reads the table, no graph);
-- one over existing vectors is left to memory_index_step.
-- Security definer: changing the columns and the indexes needs the table owner, and over
-- Supabase's REST API the caller is service_role.
create or replace function configure_memory(
  p_model text, p_dimension integer, p_reset boolean, p_indexed_kinds jsonb default null
) returns jsonb
language plpgsql security definer set search_path = public, extensions, pg_temp as $$
declare
  c memory_config;
  v_kinds text[];
  v_kind text;
  v_index text;
  v_plan record;
begin
  if nullif(btrim(coalesce(p_model, '')), '') is null or p_dimension is null
     or p_dimension not between 1 and 2000 then
    raise exception 'configure_memory needs a model and a dimension from 1 to 2000'
      using errcode = 'OD422';
  end if;
  if p_indexed_kinds is not null then
    if jsonb_typeof(p_indexed_kinds) <> 'array' then
      raise exception 'p_indexed_kinds must be a JSON array of kinds' using errcode = 'OD422';
    end if;
    v_kinds := array(select distinct k from jsonb_array_elements_text(p_indexed_kinds) k order by 1);
    if exists (select 1 from unnest(v_kinds) k where k !~ '^[a-z][a-z0-9_]{0,39}$') then
      raise exception 'indexed kinds are lower-case names' using errcode = 'OD422';
    end if;
  end if;
  select * into c from memory_config where id;
  if found and (c.model, c.dimension) is distinct from (p_model, p_dimension)
     and not coalesce(p_reset, false) then
    raise exception 'memory is embedded with % (% dimensions), the configured provider gives % (% dimensions)',
        c.model, c.dimension, p_model, p_dimension
      using errcode = 'OD409',
            detail = jsonb_build_object('model', c.model, 'dimension', c.dimension,
                                        'wanted_model', p_model, 'wanted_dimension', p_dimension)::text;
  end if;
  if not coalesce(p_reset, false) and found then
    v_plan := memory_index_plan(c);
    -- start-up never waits: with nothing to change, or while a step holds the lock (an index build
    -- on a server without a timeout may take minutes), it answers as things are
    if (v_kinds is null or v_kinds = c.indexed_kinds) and cardinality(v_plan.missing) = 0
       and cardinality(v_plan.unwanted) = 0 or not pg_try_advisory_xact_lock(7245190312) then
      return memory_settings();
    end if;
  else
    perform pg_advisory_xact_lock(7245190312);
    select * into c from memory_config where id;
  end if;
  if not found or coalesce(p_reset, false) then
    -- dropping `embedding` drops its HNSW indexes and memory_to_embed with it
    alter table public.memory drop column if exists embedding, drop column if exists embedding_model,
      drop column if exists embedded_at, drop column if exists embed_claimed_until,
      drop column if exists embedding_parked;
    execute format('alter table public.memory add column embedding vector(%s), add column embedding_model text, '
                   'add column embedded_at timestamptz, add column embed_claimed_until timestamptz, '
                   'add column embedding_parked vector', p_dimension);
    create index memory_to_embed on public.memory (id) where embedding is null;
    create index memory_parked on public.memory (id) where embedding_parked is not null;
    insert into memory_config (id, model, dimension, configured_at, indexed_kinds, reindex_started_at)
    values (true, p_model, p_dimension, db_now(), c.indexed_kinds,
            case when c.model is not null then db_now() end)
    on conflict (id) do update set model = excluded.model, dimension = excluded.dimension,
                                   configured_at = excluded.configured_at,
                                   reindex_started_at = excluded.reindex_started_at;
  end if;
  if v_kinds is not null then
    update memory_config set indexed_kinds = v_kinds where id;
  end if;
  select * into c from memory_config where id;
  v_plan := memory_index_plan(c);
  foreach v_index in array v_plan.unwanted loop
    execute format('drop index public.%I', v_index);
  end loop;
  foreach v_kind in array v_plan.missing loop
    if not memory_index_covers_vectors(v_kind) then
      perform memory_create_index(v_kind);
    end if;
  end loop;
  return memory_settings();
end
$$;

-- One bounded step towards every wanted HNSW index existing and holding every vector; called until
-- it answers `done` (`opsdesk memory embed`, reindex, and the service's embedding job). A missing
-- index over rows that have vectors: up to p_park_rows of those vectors are parked (`parked`);
-- when none is left the index is created (`created`). Once every index exists, up to p_fill_rows
-- parked vectors go back (`filled`: each goes into the HNSW graphs, the costly part). A session
-- without a statement timeout (the embedded database, a plain server) builds a missing index over
-- its vectors in one statement instead, over twice as fast as parking and filling at 100,000 rows
-- (bench/README.md); Supabase limits every statement (8 s over the API, 2 minutes otherwise).
-- `busy`: another step or configure_memory holds the lock.
create or replace function memory_index_step(p_park_rows integer, p_fill_rows integer)
returns jsonb
language plpgsql security definer set search_path = public, extensions, pg_temp as $$
declare
  c memory_config;
  v_plan record;
  v_kind text;
  v_index text;
  v_rows integer;
begin
  if coalesce(p_park_rows, 0) < 1 or coalesce(p_fill_rows, 0) < 1 then
    raise exception 'a step moves at least one row' using errcode = 'OD422';
  end if;
  if not pg_try_advisory_xact_lock(7245190312) then
    return jsonb_build_object('state', 'busy');
  end if;
  select * into c from memory_config where id;
  if not found then
    return jsonb_build_object('state', 'done');
  end if;
  v_plan := memory_index_plan(c);
  foreach v_index in array v_plan.unwanted loop
    execute format('drop index public.%I', v_index);
  end loop;
  foreach v_kind in array v_plan.missing loop
    v_index := memory_index_name(v_kind);
    if current_setting('statement_timeout') = '0' or not memory_index_covers_vectors(v_kind) then
      perform memory_create_index(v_kind);
      return jsonb_build_object('state', 'created', 'index', v_index);
    end if;
    with batch as (
      select id from memory where embedding is not null and (v_kind is null or kind = v_kind)
       limit p_park_rows for update skip locked)
    update memory m set embedding_parked = m.embedding, embedding = null from batch where m.id = batch.id;
    get diagnostics v_rows = row_count;
    return jsonb_build_object('state', 'parked', 'index', v_index, 'rows', v_rows);
  end loop;
  with batch as (
    select id from memory where embedding_parked is not null order by id limit p_fill_rows for update skip locked)
  update memory m set embedding = m.embedding_parked, embedding_parked = null from batch where m.id = batch.id;
  get diagnostics v_rows = row_count;
  if v_rows > 0 then
    return jsonb_build_object('state', 'filled', 'rows', v_rows);
  end if;
  if c.reindex_started_at is not null
     and not exists (select 1 from memory where embedding is null and embedding_parked is null) then
    update memory_config set reindex_started_at = null where id;
  end if;
  return jsonb_build_object('state', 'done');
end
$$;

-- What search and /healthz say about vectors: whether the shared index exists (without it search
-- is full text only), the indexes still to make, how many vectors are parked, whether a reindex
-- is under way. Cheap: the counts read partial indexes.
create or replace function memory_index_status() returns jsonb
language sql stable set search_path = public, extensions, pg_temp as $$
  select jsonb_build_object(
    'configured', c.model is not null,
    'model', c.model,
    'vector_index', to_regclass('public.memory_embedding_hnsw') is not null,
    'missing_indexes', case when c.model is null then '[]'::jsonb
                            else (select coalesce(jsonb_agg(memory_index_name(k)), '[]')
                                    from unnest((memory_index_plan(c)).missing) k) end,
    'parked', (select count(*) from memory where embedding_parked is not null),
    'reindex_started_at', c.reindex_started_at)
    from (select 1) x left join memory_config c on c.id
$$;

-- Upsert one row by (source, source_id). New words clear the vector (embed_pending makes a new
-- one); a row that did not change is not touched at all. Returns created, updated or unchanged.
create or replace function memory_put(
  p_kind text, p_source text, p_source_id text, p_title text, p_content text, p_metadata jsonb,
  p_occurred_at timestamptz
) returns text
language plpgsql set search_path = public, extensions, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_created boolean;
begin
  insert into memory as m (kind, source, source_id, title, content, metadata, occurred_at,
                           created_at, updated_at)
  values (p_kind, p_source, p_source_id, coalesce(p_title, ''), p_content,
          coalesce(p_metadata, '{}'), coalesce(p_occurred_at, v_now), v_now, v_now)
  on conflict (source, source_id) do update
     set kind = excluded.kind, title = excluded.title, content = excluded.content,
         metadata = excluded.metadata, occurred_at = coalesce(p_occurred_at, m.occurred_at),
         updated_at = v_now,
         embedding = case when (m.title, m.content) = (excluded.title, excluded.content)
                          then m.embedding end,
         embedding_model = case when (m.title, m.content) = (excluded.title, excluded.content)
                                then m.embedding_model end,
         embedded_at = case when (m.title, m.content) = (excluded.title, excluded.content)
                            then m.embedded_at end,
         -- an embedder working on the old text loses its claim (its vector will be refused)
         embed_claimed_until = case when (m.title, m.content) = (excluded.title, excluded.content)
                                    then m.embed_claimed_until end,
         embedding_parked = case when (m.title, m.content) = (excluded.title, excluded.content)
                                 then m.embedding_parked end
   where (m.kind, m.title, m.content, m.metadata, m.occurred_at)
         is distinct from (excluded.kind, excluded.title, excluded.content, excluded.metadata,
                           coalesce(p_occurred_at, m.occurred_at))
  returning (xmax = 0) into v_created;
  if not found then
    return 'unchanged';
  end if;
  return case when v_created then 'created' else 'updated' end;
end
$$;

-- Many rows at once: [{kind, source, source_id, title, content, metadata, occurred_at}, ...].
create or replace function upsert_memories(p_items jsonb) returns jsonb
language plpgsql set search_path = public, extensions, pg_temp as $$
declare
  v_item jsonb;
  v_outcome text;
  v_counts jsonb := '{"created": 0, "updated": 0, "unchanged": 0}';
begin
  if p_items is null or jsonb_typeof(p_items) <> 'array' then
    raise exception 'p_items must be a JSON array of memory rows' using errcode = 'OD422';
  end if;
  for v_item in select value from jsonb_array_elements(p_items) loop
    if coalesce(v_item->>'kind', '') !~ '^[a-z][a-z0-9_]{0,39}$'
       or coalesce(v_item->>'source', '') !~ '^[a-z][a-z0-9_.-]{0,39}$'
       or coalesce(length(v_item->>'source_id'), 0) not between 1 and 500
       or nullif(btrim(coalesce(v_item->>'content', '')), '') is null then
      raise exception 'a memory row needs a kind and a source (lower-case names), a source_id of 1 to 500 characters and some content'
        using errcode = 'OD422',
              detail = jsonb_build_object('source', v_item->>'source', 'source_id', v_item->>'source_id')::text;
    end if;
    v_outcome := memory_put(v_item->>'kind', v_item->>'source', v_item->>'source_id', v_item->>'title',
                            v_item->>'content', v_item->'metadata', (v_item->>'occurred_at')::timestamptz);
    v_counts := jsonb_set(v_counts, array[v_outcome], to_jsonb((v_counts->>v_outcome)::integer + 1));
  end loop;
  return v_counts;
end
$$;

-- A sync saw every row its source still has: forget that source's other rows (pages deleted at
-- the source). Only called after a complete pass, so a failed sync removes nothing.
create or replace function forget_missing_memory(p_source text, p_kept jsonb) returns jsonb
language plpgsql set search_path = public, extensions, pg_temp as $$
declare
  v_removed integer;
begin
  if p_kept is null or jsonb_typeof(p_kept) <> 'array' then
    raise exception 'p_kept must be a JSON array of source ids' using errcode = 'OD422';
  end if;
  delete from memory m
   where m.source = p_source
     and not exists (select 1 from jsonb_array_elements_text(p_kept) k where k = m.source_id);
  get diagnostics v_removed = row_count;
  return jsonb_build_object('removed', v_removed);
end
$$;

-- How many rows a source holds: a sync whose source suddenly lists nothing (a permissions change
-- hides every page) asks before forgetting them all.
create or replace function count_memory_source(p_source text) returns jsonb
language sql stable set search_path = public, extensions, pg_temp as $$
  select jsonb_build_object('rows', count(*)) from memory where source = p_source
$$;

-- Rows waiting for a vector, claimed for p_lease_seconds so parallel embedders (several
-- instances, a reindex beside the service) never embed the same row twice. `hash` identifies the
-- text that was embedded: set_memory_embeddings drops a vector whose row changed meanwhile.
create or replace function claim_memory_to_embed(p_limit integer, p_lease_seconds double precision)
returns jsonb
language plpgsql set search_path = public, extensions, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_rows jsonb;
begin
  if not exists (select 1 from memory_config) then
    return '[]';
  end if;
  with due as (
    select id from memory
     where embedding is null and embedding_parked is null
       and (embed_claimed_until is null or embed_claimed_until <= v_now)
     order by id limit least(greatest(coalesce(p_limit, 64), 1), 1000)
       for update skip locked
  ), claimed as (
    update memory m set embed_claimed_until = v_now + make_interval(secs => p_lease_seconds)
      from due where m.id = due.id
    returning m.id, m.title, m.content, md5(m.title || E'\n' || m.content) as hash
  )
  select coalesce(jsonb_agg(to_jsonb(c) order by c.id), '[]') into v_rows from claimed c;
  return v_rows;
end
$$;

-- Give back claims after a failed embedding call, so the next run does not wait for the lease.
create or replace function release_memory_claims(p_ids jsonb) returns jsonb
language sql set search_path = public, extensions, pg_temp as $$
  with released as (
    update memory m set embed_claimed_until = null
     where m.id in (select (value #>> '{}')::bigint from jsonb_array_elements(coalesce(p_ids, '[]')))
       and m.embedding is null
    returning 1)
  select jsonb_build_object('released', (select count(*) from released))
$$;

-- Store vectors: [{id, hash, embedding: [floats]}]. Only for the configured model and only where
-- the row's text is still the text that was embedded.
create or replace function set_memory_embeddings(p_model text, p_items jsonb) returns jsonb
language plpgsql set search_path = public, extensions, pg_temp as $$
declare
  c memory_config;
  v_now timestamptz := db_now();
  v_stored integer;
begin
  select * into c from memory_config where id;
  if not found or c.model is distinct from p_model then
    raise exception 'memory is configured for %, not %: run `opsdesk memory reindex`',
        coalesce(c.model, 'no model yet'), p_model
      using errcode = 'OD409', detail = jsonb_build_object('model', c.model, 'given', p_model)::text;
  end if;
  if p_items is null or jsonb_typeof(p_items) <> 'array' or exists (
       select 1 from jsonb_array_elements(p_items) i
        where jsonb_typeof(i.value->'embedding') is distinct from 'array'
           or jsonb_array_length(i.value->'embedding') <> c.dimension) then
    raise exception 'every embedding must be an array of % numbers', c.dimension using errcode = 'OD422';
  end if;
  update memory m
     set embedding = (i.value->'embedding')::text::vector, embedding_model = p_model,
         embedded_at = v_now, embed_claimed_until = null, embedding_parked = null
    from jsonb_array_elements(p_items) i
   where m.id = (i.value->>'id')::bigint
     and md5(m.title || E'\n' || m.content) = i.value->>'hash';
  get diagnostics v_stored = row_count;
  return jsonb_build_object('stored', v_stored, 'stale', jsonb_array_length(p_items) - v_stored);
end
$$;

-- Rows, vectors and what is still waiting, per kind (`opsdesk memory status`).
create or replace function memory_stats() returns jsonb
language sql stable set search_path = public, extensions, pg_temp as $$
  select memory_settings() || memory_index_status() || jsonb_build_object(
    'rows', (select count(*) from memory),
    'to_embed', (select count(*) from memory where embedding is null and embedding_parked is null),
    'kinds', coalesce((select jsonb_object_agg(kind, n) from (
                         select kind, count(*) as n from memory group by kind) k), '{}'))
$$;

-- The full-text query: websearch syntax ("quoted phrase", or, -word) with the english config
-- the tsvector is built with. A last word ending in `*` is a prefix (`ship*`, `warrant*`); it is
-- reduced to letters and digits before `:*` is added, so it cannot smuggle in tsquery operators,
-- and the operator written before it keeps its meaning (`refund -ship*`, `refund or ship*`).
-- It is stemmed like the documents (`deliveries*` finds "delivery"); a stop word (`the*`) is kept
-- as typed instead of vanishing.
create or replace function memory_tsquery(p_query text) returns tsquery
language plpgsql immutable set search_path = public, pg_temp as $$
declare
  v_last text := substring(coalesce(p_query, '') from '([[:alnum:]]+)\*\s*$');
  v_rest text;
  v_operator text := 'and';
  v_words tsquery;
  v_prefix tsquery;
begin
  if v_last is null then
    return websearch_to_tsquery('english', coalesce(p_query, ''));
  end if;
  v_rest := regexp_replace(p_query, '[[:alnum:]]+\*\s*$', '');
  if v_rest ~ '(^|\s)-$' then
    v_operator := 'not';
    v_rest := regexp_replace(v_rest, '-$', '');
  elsif v_rest ~* '(^|\s)or\s+$' then
    v_operator := 'or';
    v_rest := regexp_replace(v_rest, 'or\s+$', '', 'i');
  end if;
  v_words := websearch_to_tsquery('english', v_rest);
  v_prefix := to_tsquery('english', v_last || ':*');
  if numnode(v_prefix) = 0 then
    v_prefix := to_tsquery('simple', v_last || ':*');
  end if;
  if v_operator = 'not' then
    v_prefix := !! v_prefix;
  end if;
  if numnode(v_words) = 0 then
    return v_prefix;
  end if;
  return case v_operator when 'or' then v_words || v_prefix else v_words && v_prefix end;
end
$$;

-- HTML-escape before ts_headline, so a snippet is safe to show in a page: only our <mark> tags are
-- markup (tickets and emails are untrusted text).
create or replace function memory_escape_html(p_text text) returns text
language sql immutable as $$
  select replace(replace(replace(p_text, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')
$$;

-- A hit's snippet, its text HTML-escaped. A hit the query matches as full text (p_fts @@ p_tsq)
-- shows the passages with the query's words marked (ts_headline); any other hit, found by its
-- meaning alone, shows its first 15 words, as ts_headline shows a text with no match but without
-- parsing and stemming all of it: about 20 us a hit, as much as a vector search's other work for
-- ten hits (bench/README.md, issue 15). One expression, inlined where it is called (no SET
-- clause), so the vector and the fused statements make the same snippet.
create or replace function memory_snippet(p_content text, p_fts tsvector, p_tsq tsquery) returns text
language sql immutable as $$
  select case
    when p_fts @@ p_tsq then
      ts_headline('english', memory_escape_html(p_content), p_tsq,
                  'StartSel=<mark>, StopSel=</mark>, MaxWords=35, MinWords=15, '
                  'MaxFragments=2, FragmentDelimiter=" … "')
    else memory_escape_html(array_to_string((array_remove(string_to_array(
           translate(left(p_content, 400), E'\n\r\t\f', '    '), ' '), ''))[1:15], ' '))
  end
$$;

-- Search. Modes: fts (websearch syntax, ranked by ts_rank; ts_rank_cd costs three times as
-- much per row), vector (cosine distance to p_embedding, a JSON array of the configured
-- dimension made by p_model), hybrid (both, fused by reciprocal rank: sum of
-- weight / (p_rrf_k + rank) over the methods that found the row). Each method contributes
-- its best p_candidates rows; kind and date filters apply inside each method, before the limit.
--
-- Full text ranks the newest p_fts_rank_limit matches (null: every match); `fts_limited` says
-- there were more. Finding them costs one heap fetch per match through the GIN index (cheap for
-- rare words, slow for a word in every tenth row) or one row read per row walking the time index
-- newest first until enough match (cheap for common words, slow for rare ones). The planner
-- picks badly between the two: it multiplies the words' frequencies, so words that come together
-- ("milk frother") look a hundred times rarer than they are. Instead a pilot reads the newest
-- rows: if enough match there, that is the answer; otherwise the share that matched prices both
-- ways and the cheaper one runs: either way visits a few times sqrt(rank limit x rows) rows at most
-- (bench/README.md measures it).
-- `fts_strategy` says which way ran: newest (the pilot sufficed), scan (read on newest first),
-- index (GIN) or all (no rank limit); null when full text did not run.
-- Without the shared HNSW index (being made: memory_index_step) there is no vector search:
-- hybrid runs as fts and vector returns no rows, both with `vector_index` false.
-- Returns {mode, fts_query, fts_limited, fts_strategy, fts_candidates, vector_candidates,
-- vector_index, results: [{id, kind, source, source_id, title, snippet, score, fts_rank, fts_score,
-- vector_rank, similarity, occurred_at, metadata, content}]} (content null unless asked for), as
-- json: the answer is only read, and building jsonb (its keys sorted, its numbers converted) cost
-- about 0.07 ms of a vector search (bench/README.md, issue 15).
-- The query's vector comes as p_vector, a real[] (the service sends it in binary: float32, what
-- pgvector keeps, with nothing to format or parse), or as p_embedding, a JSON array of numbers:
-- jsonb reads each number as a numeric, which cost a 384-number query more than the index search
-- itself, and pgvector's text form cost a tenth of a vector search (bench/README.md, issue 15).
create or replace function search_memory(
  p_query text, p_mode text, p_embedding jsonb, p_kinds jsonb, p_since timestamptz, p_limit integer,
  p_candidates integer, p_fts_weight double precision, p_vector_weight double precision,
  p_rrf_k integer, p_ef_search integer, p_fts_rank_limit integer, p_include_content boolean,
  p_model text default null, p_vector real[] default null
) returns json
language plpgsql
set search_path = public, extensions, pg_temp
-- plan each statement with its values: the mode and the optional filters then fold away (and a
-- one-kind filter finds its partial HNSW index), instead of a generic plan keeping every branch
set plan_cache_mode = force_custom_plan
-- (pgvector's hnsw.* settings are made in the body: attached here, a non-superuser could create
-- the function only in a session that had already loaded pgvector's library)
-- the GIN bitmap of a word in 40,000 of a million rows does not fit the default 4MB: it turns
-- lossy, and every row of a lossy page is tested again
set work_mem = '32MB'
as $$
declare
  v_mode text := lower(coalesce(p_mode, 'hybrid'));
  v_tsq tsquery := memory_tsquery(p_query);
  v_candidates integer := least(greatest(coalesce(p_candidates, 50), coalesce(p_limit, 10)), 1000);
  v_kinds text[];
  v_kind text;  -- a single kind: its (kind, occurred_at) index and partial HNSW index apply
  v_kind_tsq tsquery;  -- the kinds as fts lexemes: the GIN index filters by kind itself
  v_config memory_config;
  v_vector vector;
  v_want integer := p_fts_rank_limit + 1;  -- one more than are ranked, to know whether there were more
  v_pilot integer := 10 * (p_fts_rank_limit + 1);
  v_strategy text;  -- how full text found its matches: newest, scan, index or all
  v_seen integer;
  v_share double precision;
  v_rows double precision;
  v_newest bigint[];
  v_fts_ids bigint[] := '{}';
  v_fts_scores double precision[] := '{}';
  v_limited boolean := false;
  v_indexscan text := current_setting('enable_indexscan');
  v_seqscan text;
  v_vector_index boolean := to_regclass('public.memory_embedding_hnsw') is not null;
  v_iterative text;
  v_ef_search text;
  v_setting text;  -- what set_config answers, unused: an assignment is not planned on every call
  v_result json;
begin
  if v_mode not in ('fts', 'vector', 'hybrid') then
    raise exception 'mode must be fts, vector or hybrid' using errcode = 'OD422';
  end if;
  if nullif(btrim(coalesce(p_query, '')), '') is null then
    raise exception 'the query is empty' using errcode = 'OD422';
  end if;
  if p_limit is null or p_limit not between 1 and 100 then
    raise exception 'limit must be from 1 to 100' using errcode = 'OD422';
  end if;
  if p_fts_rank_limit is not null and p_fts_rank_limit < 1 then
    raise exception 'the full-text rank limit must be positive' using errcode = 'OD422';
  end if;
  if coalesce(p_rrf_k, 60) < 1 or coalesce(p_fts_weight, 1) < 0 or coalesce(p_vector_weight, 1) < 0 then
    raise exception 'rrf_k must be positive and the weights not negative' using errcode = 'OD422';
  end if;
  if p_kinds is not null and jsonb_typeof(p_kinds) <> 'null' then
    if jsonb_typeof(p_kinds) <> 'array' then
      raise exception 'p_kinds must be a JSON array of kinds' using errcode = 'OD422';
    end if;
    v_kinds := nullif(array(select distinct jsonb_array_elements_text(p_kinds)), '{}');
    if exists (select 1 from unnest(v_kinds) k where k !~ '^[a-z][a-z0-9_]{0,39}$') then
      raise exception 'a kind is a lower-case name' using errcode = 'OD422';
    end if;
    v_kind_tsq := (select string_agg(format('''#kind=%s''', k), ' | ') from unnest(v_kinds) k)::tsquery;
    if cardinality(v_kinds) = 1 then
      v_kind := v_kinds[1];
      v_kinds := null;
    end if;
  end if;
  if v_mode <> 'fts' then
    select * into v_config from memory_config where id;
    if v_config.dimension is null then
      raise exception 'vector search needs embeddings: none are configured' using errcode = 'OD422';
    end if;
    -- vectors of two models are not comparable, even at one dimension: a service started before
    -- `opsdesk memory reindex` moved memory to another model must not rank with its old one
    if p_model is not null and p_model <> v_config.model then
      raise exception 'the query was embedded with %, but memory is embedded with %', p_model, v_config.model
        using errcode = 'OD409',
              detail = jsonb_build_object('query_model', p_model, 'model', v_config.model)::text;
    end if;
    if p_vector is not null then
      begin
        v_vector := p_vector::vector;  -- from here pgvector's library is loaded
      exception when others then
        v_vector := null;
      end;
      if v_vector is null or vector_dims(v_vector) <> v_config.dimension then
        raise exception 'the query vector must be % finite numbers', v_config.dimension
          using errcode = 'OD422';
      end if;
    else
      if p_embedding is null or jsonb_typeof(p_embedding) <> 'array'
         or jsonb_array_length(p_embedding) <> v_config.dimension then
        raise exception 'the query embedding must be an array of % numbers', v_config.dimension
          using errcode = 'OD422';
      end if;
      v_vector := (p_embedding::text)::vector;
    end if;
    if v_mode = 'vector' then
      -- ranked by distance alone, the nearest `limit` are the answer: more candidates only feed
      -- hybrid's fusion, and each costs a heap read and a distance
      v_candidates := p_limit;
    end if;
    if not v_vector_index then
      if v_mode = 'vector' then
        return json_build_object('mode', v_mode, 'fts_query', v_tsq::text, 'fts_limited', false,
                                  'fts_strategy', null, 'fts_candidates', 0, 'vector_candidates', 0,
                                  'vector_index', false, 'results', '[]'::json);
      end if;
      v_mode := 'fts';
    end if;
    -- pgvector 0.8: a filtered HNSW scan goes on until enough rows pass the filter; the relaxed
    -- order is put right by the exact sort below. Both are put back before returning.
    v_iterative := current_setting('hnsw.iterative_scan', true);
    v_ef_search := current_setting('hnsw.ef_search', true);
    perform set_config('hnsw.iterative_scan', 'relaxed_order', true);
    perform set_config('hnsw.ef_search', least(greatest(coalesce(p_ef_search, 40), v_candidates), 1000)::text,
                       true);
  end if;

  if v_mode = 'vector' then
    -- Vector alone: the nearest p_limit rows straight from the index scan are the answer, and only
    -- they get a snippet. The fused statement below answers the same, but planning its full join,
    -- window and unnest on every call cost as much as the index search itself (bench/README.md,
    -- issue 15). Ranks, scores and their order are computed as there.
    -- Without a one-kind filter no partial index can serve, so this statement keeps one generic
    -- plan instead of being planned again on every call. A generic plan does not know the limit
    -- and would price reading 10% of the rows: without seq scans it takes the HNSW index, as the
    -- custom plans of a large table do (the filters are tested as the iterative scan goes).
    if v_kind is null then
      -- (the function's own `set plan_cache_mode` puts it back on return)
      v_setting := set_config('plan_cache_mode', 'force_generic_plan', true);
      v_seqscan := current_setting('enable_seqscan');
      v_setting := set_config('enable_seqscan', 'off', true);
    end if;
    select json_build_object(
      'mode', v_mode, 'fts_query', v_tsq::text, 'fts_limited', false, 'fts_strategy', null,
      'fts_candidates', 0, 'vector_candidates', count(*), 'vector_index', true,
      'results', coalesce(json_agg(
        json_build_object(
          'id', v.id, 'kind', v.kind, 'source', v.source, 'source_id', v.source_id, 'title', v.title,
          'snippet', memory_snippet(v.content, v.fts, v_tsq),
          'score', 1 - v.distance, 'fts_rank', null, 'fts_score', null,
          'vector_rank', v.rank, 'similarity', 1 - v.distance,
          'occurred_at', v.occurred_at, 'metadata', v.metadata,
          'content', case when p_include_content then v.content end)
        order by 1 - v.distance desc, v.id), '[]'))
      into v_result
      from (select n.*, row_number() over (order by n.distance, n.id) as rank
              from (select m.id, m.kind, m.source, m.source_id, m.title, m.content, m.fts, m.occurred_at,
                           m.metadata, m.embedding <=> v_vector as distance
                      from memory m
                     where m.embedding is not null
                       and (v_kind is null or m.kind = v_kind) and (v_kinds is null or m.kind = any (v_kinds))
                       and (p_since is null or m.occurred_at >= p_since)
                     order by m.embedding <=> v_vector
                     limit p_limit) n) v;
    if v_kind is null then
      v_setting := set_config('enable_seqscan', v_seqscan, true);
    end if;
    v_setting := set_config('hnsw.iterative_scan', v_iterative, true);
    v_setting := set_config('hnsw.ef_search', v_ef_search, true);
    return v_result;
  end if;

  if v_mode <> 'vector' and numnode(v_tsq) > 0 then
    if p_fts_rank_limit is null then
      v_newest := null;  -- rank every match
      v_strategy := 'all';
    else
      v_strategy := 'newest';
      -- the pilot: the newest rows, each tested (ts_match_vq is @@ in a form no index serves)
      select coalesce(array_agg(r.id order by r.occurred_at desc, r.id) filter (where r.hit), '{}'), count(*)
        into v_newest, v_seen
        from (select m.id, m.occurred_at, ts_match_vq(m.fts, v_tsq) as hit
                from memory m
               where (v_kind is null or m.kind = v_kind) and (v_kinds is null or m.kind = any (v_kinds))
                 and (p_since is null or m.occurred_at >= p_since)
               order by m.occurred_at desc
               limit v_pilot) r;
      if cardinality(v_newest) >= v_want then
        v_limited := true;
      elsif v_seen = v_pilot then
        -- more rows than the pilot read: price reading on (want / share rows) against fetching
        -- every match through GIN (share x rows), taking half a match for none
        v_share := greatest(cardinality(v_newest), 0.5) / v_seen;
        -- the rows of the kinds asked for: the table's row count times their share in the
        -- statistics (the whole table when they are not among its common kinds)
        v_rows := greatest((select c.reltuples from pg_class c where c.oid = 'public.memory'::regclass)
                           * coalesce((select nullif(sum(m.freq), 0)
                                         from pg_stats s
                                        cross join lateral unnest(s.most_common_vals::text::text[],
                                                                  s.most_common_freqs) as m(kind, freq)
                                        where s.schemaname = 'public' and s.tablename = 'memory'
                                          and s.attname = 'kind' and v_kind_tsq is not null
                                          and m.kind = any (coalesce(v_kinds, array[v_kind]))), 1),
                           v_seen);
        v_newest := null;
        if v_want / v_share < v_share * v_rows then
          v_strategy := 'scan';
          select coalesce(array_agg(r.id order by r.occurred_at desc, r.id), '{}') into v_newest
            from (select s.id, s.occurred_at
                    from (select m.id, m.fts, m.occurred_at
                            from memory m
                           where (v_kind is null or m.kind = v_kind) and (v_kinds is null or m.kind = any (v_kinds))
                             and (p_since is null or m.occurred_at >= p_since)
                           order by m.occurred_at desc
                           limit least(4 * v_want / v_share, 2e9)::integer) s
                   where ts_match_vq(s.fts, v_tsq)
                   order by s.occurred_at desc
                   limit v_want) r;
          if cardinality(v_newest) >= v_want then
            v_limited := true;
          else
            v_newest := null;  -- the matches are older than the share promised: fetch them all
          end if;
        end if;
        if v_newest is null then
          -- bitmap scans only: the GIN index, not a walk down the time index with every row tested
          v_strategy := 'index';
          perform set_config('enable_indexscan', 'off', true);
          select coalesce(array_agg(r.id order by r.occurred_at desc, r.id), '{}') into v_newest
            from (select m.id, m.occurred_at
                    from memory m
                   where m.fts @@ v_tsq and (v_kind_tsq is null or m.fts @@ v_kind_tsq)
                     and (v_kind is null or m.kind = v_kind) and (v_kinds is null or m.kind = any (v_kinds))
                     and (p_since is null or m.occurred_at >= p_since)
                   order by m.occurred_at desc
                   limit v_want) r;
          perform set_config('enable_indexscan', v_indexscan, true);
          v_limited := cardinality(v_newest) >= v_want;
        end if;
      end if;
      v_newest := v_newest[1:p_fts_rank_limit];
    end if;
    select coalesce(array_agg(r.id order by r.score desc, r.id), '{}'),
           coalesce(array_agg(r.score order by r.score desc, r.id), '{}')
      into v_fts_ids, v_fts_scores
      from (select m.id, ts_rank(m.fts, v_tsq, 1) as score
              from memory m
             where (v_newest is not null and m.id = any (v_newest))
                or (v_newest is null and m.fts @@ v_tsq
                    and (v_kind is null or m.kind = v_kind) and (v_kinds is null or m.kind = any (v_kinds))
                    and (p_since is null or m.occurred_at >= p_since))
             order by score desc, m.id
             limit v_candidates) r;
  end if;

  with fts_ranked as (
    select f.id, f.score, f.rank from unnest(v_fts_ids, v_fts_scores) with ordinality as f(id, score, rank)
  ), vec as materialized (
    select m.id, m.embedding <=> v_vector as distance
      from memory m
     where v_mode <> 'fts' and m.embedding is not null
       and (v_kind is null or m.kind = v_kind) and (v_kinds is null or m.kind = any (v_kinds))
       and (p_since is null or m.occurred_at >= p_since)
     order by m.embedding <=> v_vector
     limit v_candidates
  ), vec_ranked as (
    select id, distance, row_number() over (order by distance, id) as rank from vec
  ), fused as (
    select coalesce(f.id, v.id) as id, f.rank as fts_rank, f.score as fts_score,
           v.rank as vector_rank, 1 - v.distance as similarity,
           case v_mode
             when 'fts' then f.score
             when 'vector' then 1 - v.distance
             else coalesce(coalesce(p_fts_weight, 1) / (coalesce(p_rrf_k, 60) + f.rank), 0)
                + coalesce(coalesce(p_vector_weight, 1) / (coalesce(p_rrf_k, 60) + v.rank), 0)
           end as score
      from fts_ranked f full join vec_ranked v on v.id = f.id
     order by score desc, id
     limit p_limit
  )
  select json_build_object(
    'mode', v_mode,
    'fts_query', v_tsq::text,
    'fts_limited', v_limited,
    'fts_strategy', v_strategy,
    'fts_candidates', cardinality(v_fts_ids),
    'vector_candidates', (select count(*) from vec),
    'vector_index', v_vector_index,
    'results', coalesce(json_agg(
      json_build_object(
        'id', m.id, 'kind', m.kind, 'source', m.source, 'source_id', m.source_id, 'title', m.title,
        'snippet', memory_snippet(m.content, m.fts, v_tsq),
        'score', fu.score, 'fts_rank', fu.fts_rank, 'fts_score', fu.fts_score,
        'vector_rank', fu.vector_rank, 'similarity', fu.similarity,
        'occurred_at', m.occurred_at, 'metadata', m.metadata,
        'content', case when p_include_content then m.content end)
      order by fu.score desc, fu.id), '[]'))
    into v_result
    from fused fu join memory m on m.id = fu.id;
  if v_iterative is not null then
    perform set_config('hnsw.iterative_scan', v_iterative, true);
    perform set_config('hnsw.ef_search', v_ef_search, true);
  end if;
  return v_result;
end
$$;

-- What executed actions and decisions put into memory: "what was sent to whom", briefly. Without
-- limits a 40,000-recipient campaign makes a tsvector over its 1 MB limit and the row is lost.
create or replace function memory_clip(p_text text, p_max integer) returns text
language sql immutable as $$
  select case when length(p_text) > p_max then left(p_text, p_max) || ' …' else p_text end
$$;

-- One list item or object: a recipient as "Name <email>", anything else as (clipped) JSON.
create or replace function memory_item_text(p_value jsonb) returns text
language sql immutable as $$
  select case
    when jsonb_typeof(p_value) = 'string' then memory_clip(p_value #>> '{}', 500)
    when jsonb_typeof(p_value) = 'object' and p_value ? 'email'
      then coalesce(nullif(p_value->>'name', '') || ' <' || (p_value->>'email') || '>', p_value->>'email')
    else memory_clip(p_value::text, 500)
  end
$$;

-- One payload field: a list as its first five items and its size; text (an email's html) with
-- its tags stripped and cut at 20,000 characters, enough to search what was said. PL/pgSQL, with
-- each regular expression run only where it can change something: as SQL functions (not inlined:
-- they hold a subquery) these two cost about 60 us of a decision's 500 (bench/README.md, issue 15).
create or replace function memory_value_text(p_value jsonb) returns text
language plpgsql immutable as $$
declare
  v_text text;
  v_length integer;
begin
  case jsonb_typeof(p_value)
    when 'string' then
      v_text := p_value #>> '{}';
      if strpos(v_text, '<') > 0 then
        v_text := regexp_replace(v_text, '<[^>]*>', ' ', 'g');
      end if;
      if strpos(v_text, '  ') > 0 or strpos(v_text, E'\t') > 0 then
        v_text := regexp_replace(v_text, '[ \t]+', ' ', 'g');
      end if;
      return memory_clip(btrim(v_text), 20000);
    when 'array' then
      v_length := jsonb_array_length(p_value);
      return coalesce((select string_agg(memory_item_text(p_value->i), ', ' order by i)
                         from generate_series(0, least(v_length, 5) - 1) i), '')
             || case when v_length > 5 then format(' … and %s more (%s in all)', v_length - 5, v_length)
                     else '' end;
    when 'object' then
      return memory_item_text(p_value);
    else
      return p_value::text;
  end case;
end
$$;

create or replace function memory_payload_text(p_payload jsonb) returns text
language plpgsql immutable as $$
begin
  if jsonb_typeof(p_payload) is distinct from 'object' then
    return null;
  end if;
  return (select string_agg(e.key || ': ' || coalesce(memory_value_text(e.value), ''), E'\n' order by e.key)
            from jsonb_each(p_payload) e);
end
$$;

create or replace function memory_kind_of_action(p_kind text) returns text
language sql immutable as $$
  select case when p_kind like 'email.%' then 'email_sent'
              when p_kind like 'note.%' then 'note'
              else 'action' end
$$;

-- An action that ran (status -> succeeded) and a decision (approved, modified with the edits,
-- rejected with the reason) each become a memory row in the same transaction, keyed by the
-- action id, so a later decision on the same action replaces the earlier one. The vector comes
-- later from embed_pending: a trigger cannot call the embedding model.
create or replace function remember_action() returns trigger
language plpgsql set search_path = public, extensions, pg_temp as $$
declare
  v_ran boolean := new.status = 'succeeded'
                   and (tg_op = 'INSERT' or old.status is distinct from new.status);
  v_decided boolean := new.decision is not null
                       and (tg_op = 'INSERT' or old.decision is distinct from new.decision
                            or old.decided_at is distinct from new.decided_at);
  v_base jsonb := jsonb_build_object('action_id', new.id, 'agent', new.agent, 'action_kind', new.kind);
begin
  if not (v_ran or v_decided) then
    return null;
  end if;
  begin
    if v_ran then
      perform memory_put(memory_kind_of_action(new.kind), 'action', new.id::text, new.summary,
                         memory_clip(concat_ws(E'\n',
                           format('Done by the %s agent (%s): %s', new.agent, new.kind, new.summary),
                           memory_payload_text(new.requested_action)), 100000),
                         v_base || jsonb_build_object('decided_by', new.decided_by),
                         coalesce(new.finished_at, db_now()));
    end if;
    if v_decided then
      perform memory_put('decision', 'decision', new.id::text, new.summary,
                         memory_clip(concat_ws(E'\n',
                           format('Decision: %s by %s on a %s draft by the %s agent: %s', new.decision,
                                  coalesce(new.decided_by, 'someone'), new.kind, new.agent, new.summary),
                           'Reason: ' || new.rejection_reason,
                           case when new.feedback is distinct from new.rejection_reason
                                then 'Feedback: ' || new.feedback end,
                           (select 'Edits:' || string_agg(format(E'\n- %s: %s -> %s', e.key,
                                                                 memory_value_text(e.value->'from'),
                                                                 memory_value_text(e.value->'to')), '' order by e.key)
                              from jsonb_each(coalesce(new.modifications, '{}')) e having count(*) > 0),
                           memory_payload_text(new.requested_action)), 100000),
                         v_base || jsonb_build_object('decision', new.decision, 'decided_by', new.decided_by),
                         coalesce(new.decided_at, db_now()));
    end if;
  exception when others then
    -- memory must never stop the queue or the executor: the action's own change still commits
    raise warning 'memory could not record action %: % (%)', new.id, sqlerrm, sqlstate;
  end;
  return null;
end
$$;
create or replace trigger actions_remember after insert or update of status, decision on actions
  for each row execute function remember_action();

-- Retention. Expired rows are read (oldest ids first), archived to a file by the caller, and only
-- then deleted, each by id and updated_at, so a row changed in between is archived again, never lost.
create or replace function expired_memory(p_kind text, p_days integer, p_limit integer) returns jsonb
language plpgsql stable set search_path = public, extensions, pg_temp as $$
declare
  v_rows jsonb;
begin
  if p_days is null or p_days < 1 then
    raise exception 'retention must be at least one day' using errcode = 'OD422';
  end if;
  select coalesce(jsonb_agg(to_jsonb(r) order by r.id), '[]') into v_rows from (
    select m.id, m.kind, m.source, m.source_id, m.title, m.content, m.metadata, m.occurred_at,
           m.created_at, m.updated_at, m.embedding_model
      from memory m
     where m.kind = p_kind and m.occurred_at < db_now() - make_interval(days => p_days)
     order by m.id limit least(greatest(coalesce(p_limit, 500), 1), 5000)) r;
  return v_rows;
end
$$;

create or replace function drop_archived_memory(p_rows jsonb) returns jsonb
language plpgsql set search_path = public, extensions, pg_temp as $$
declare
  v_deleted integer;
begin
  delete from memory m
   using jsonb_array_elements(coalesce(p_rows, '[]')) r
   where m.id = (r.value->>'id')::bigint and m.updated_at = (r.value->>'updated_at')::timestamptz;
  get diagnostics v_deleted = row_count;
  return jsonb_build_object('deleted', v_deleted);
end
$$;

-- The audit log is append-only (refuse_audit_change). Rows past their retention leave only
-- through drop_archived_audit, after the caller archived exactly the rows expired_audit returned:
-- the same cutoff, ids up to the last one archived.
create or replace function expired_audit(p_days integer, p_limit integer) returns jsonb
language plpgsql stable set search_path = public, pg_temp as $$
declare
  v_cutoff timestamptz := db_now() - make_interval(days => p_days);
begin
  if p_days is null or p_days < 1 then
    raise exception 'retention must be at least one day' using errcode = 'OD422';
  end if;
  return jsonb_build_object('cutoff', v_cutoff, 'rows', coalesce((
    select jsonb_agg(to_jsonb(l) order by l.id) from (
      select * from audit_log where at < v_cutoff
       order by id limit least(greatest(coalesce(p_limit, 500), 1), 5000)) l), '[]'));
end
$$;

-- The only way rows leave audit_log. The trigger lets a DELETE through only while this function
-- has set opsdesk.audit_prune_before (transaction-local) and only for rows older than it.
-- Security definer: on Supabase even service_role has no DELETE on audit_log.
create or replace function drop_archived_audit(p_days integer, p_cutoff timestamptz, p_through_id bigint)
returns jsonb
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  v_deleted integer;
begin
  if p_days is null or p_days < 1 or p_cutoff is null or p_through_id is null
     or p_cutoff > db_now() - make_interval(days => p_days) then
    raise exception 'audit rows leave only past their retention (% days)', p_days using errcode = 'OD422';
  end if;
  perform set_config('opsdesk.audit_prune_before', p_cutoff::text, true);
  delete from audit_log where id <= p_through_id and at < p_cutoff;
  get diagnostics v_deleted = row_count;
  perform set_config('opsdesk.audit_prune_before', '', true);
  return jsonb_build_object('deleted', v_deleted);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- §13 Email: Brevo's daily quota and campaign batches
-- The quota day is the calendar day of db_now() in the quota time zone (BREVO_QUOTA_TIMEZONE,
-- Phoenix by default). The application passes the limit, the transactional reserve and the zone
-- from its settings on every call, so one configuration governs every worker.
-- ---------------------------------------------------------------------------------------------
create table if not exists email_quota_days (
  day           date primary key,
  used          integer not null default 0 check (used >= 0),  -- emails that may have gone out
  closed_at     timestamptz,                                    -- Brevo said 402: nothing more today
  closed_reason text,
  updated_at    timestamptz not null
);

-- One row per reservation key and day; `held` is what it counts in the day's `used`. A retry with
-- the same key finds its row and counts nothing twice; a send rolled back gives `held` back.
create table if not exists email_quota_reservations (
  day        date not null references email_quota_days (day),
  key        text not null,
  purpose    text not null check (purpose in ('transactional', 'campaign')),
  requested  integer not null check (requested > 0),
  held       integer not null check (held >= 0),
  released   integer not null default 0 check (released >= 0),
  created_at timestamptz not null,
  updated_at timestamptz not null,
  primary key (day, key)
);

create table if not exists email_campaigns (
  id         uuid primary key references actions (id),  -- the approved `email.campaign` action
  recipients integer not null,
  planned_at timestamptz not null
);

create table if not exists campaign_batches (
  campaign_id      uuid not null references email_campaigns (id),
  batch_no         integer not null check (batch_no > 0),
  send_on          date not null,                     -- a quota day
  status           text not null check (status in ('pending', 'sending', 'sent', 'unknown', 'failed')),
  not_before       timestamptz,                       -- a retry after a transient failure waits until then
  attempts         integer not null default 0,
  attempt_token    uuid,
  claimed_by       text,
  lease_expires_at timestamptz,
  dispatched_at    timestamptz,                       -- a request of this attempt may have reached Brevo
  quota_day        date,
  quota_key        text,
  last_error       text,
  created_at       timestamptz not null,
  updated_at       timestamptz not null,
  finished_at      timestamptz,
  primary key (campaign_id, batch_no)
);
create index if not exists campaign_batches_due on campaign_batches (send_on) where status = 'pending';
create index if not exists campaign_batches_leases on campaign_batches (lease_expires_at) where status = 'sending';

-- The primary key sends each address at most once per campaign, whatever happens to its batches.
create table if not exists campaign_recipients (
  campaign_id uuid not null references email_campaigns (id),
  email       text not null,
  name        text,
  position    integer not null,
  batch_no    integer,
  status      text not null check (status in ('pending', 'sending', 'sent', 'refused', 'unknown', 'dry_run')),
  message_id  text,
  error_code  text,
  error       text,
  sent_at     timestamptz,
  updated_at  timestamptz not null,
  primary key (campaign_id, email)
);
create index if not exists campaign_recipients_batch on campaign_recipients (campaign_id, batch_no, status);

create or replace function email_quota_day(p_time_zone text) returns date
language sql stable set search_path = public, pg_temp as $$
  select (db_now() at time zone p_time_zone)::date
$$;

create or replace function email_quota_check_limits(p_daily_limit integer, p_reserve integer) returns void
language plpgsql as $$
begin
  if p_daily_limit is null or p_daily_limit < 1 or p_reserve is null or p_reserve < 0
     or p_reserve >= p_daily_limit then
    raise exception 'the daily email limit must be positive and the transactional reserve below it'
      using errcode = 'OD422';
  end if;
end
$$;

-- Grants min(requested, what is left): a transactional email may use the whole day, a campaign
-- all but the reserve. Partial grants let a campaign batch fill what is left today and move the
-- rest to the next day instead of waiting for a day with room for all of it.
create or replace function email_quota_take(
  p_day date, p_key text, p_count integer, p_purpose text, p_daily_limit integer, p_reserve integer,
  p_time_zone text
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_duplicate boolean := false;
  v_take integer;
  d email_quota_days;
  r email_quota_reservations;
begin
  if p_count is null or p_count < 1 then
    raise exception 'reserve at least one email' using errcode = 'OD422';
  end if;
  if p_purpose is null or p_purpose not in ('transactional', 'campaign') then
    raise exception 'purpose must be transactional or campaign' using errcode = 'OD422';
  end if;
  if nullif(btrim(coalesce(p_key, '')), '') is null then
    raise exception 'a reservation needs a key' using errcode = 'OD422';
  end if;
  perform email_quota_check_limits(p_daily_limit, p_reserve);

  insert into email_quota_days (day, updated_at) values (p_day, v_now) on conflict (day) do nothing;
  -- The day's row lock orders every reservation of that day: however many workers ask at once,
  -- each sees what the others took, so together they never pass the limit.
  select * into d from email_quota_days where day = p_day for update;
  select * into r from email_quota_reservations where day = p_day and key = p_key;
  if found and r.held > 0 then
    v_duplicate := true;
  else
    v_take := case when d.closed_at is not null then 0
                   else greatest(0, least(p_count, p_daily_limit - d.used
                                          - case when p_purpose = 'campaign' then p_reserve else 0 end)) end;
    update email_quota_days set used = used + v_take, updated_at = v_now where day = p_day returning * into d;
    insert into email_quota_reservations (day, key, purpose, requested, held, created_at, updated_at)
    values (p_day, p_key, p_purpose, p_count, v_take, v_now, v_now)
    on conflict (day, key) do update
      set requested = excluded.requested, held = excluded.held, updated_at = excluded.updated_at
    returning * into r;
  end if;
  return jsonb_build_object(
    'day', p_day, 'key', p_key, 'purpose', r.purpose, 'requested', r.requested, 'held', r.held,
    'duplicate', v_duplicate, 'used', d.used, 'daily_limit', p_daily_limit, 'reserve', p_reserve,
    'closed', d.closed_at is not null,
    'seconds_to_next_day', extract(epoch from ((p_day + 1)::timestamp at time zone p_time_zone) - v_now));
end
$$;

create or replace function reserve_email_quota(
  p_key text, p_count integer, p_purpose text, p_daily_limit integer, p_reserve integer, p_time_zone text
) returns jsonb
language sql set search_path = public, pg_temp as $$
  select email_quota_take(email_quota_day(p_time_zone), p_key, p_count, p_purpose, p_daily_limit, p_reserve,
                          p_time_zone)
$$;

-- Gives back up to p_count (all when null) of a reservation: the send did not happen.
create or replace function release_email_quota(p_day date, p_key text, p_count integer) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_give integer;
  r email_quota_reservations;
begin
  -- the day first, then the reservation: the order reserving takes, so the two never deadlock
  perform 1 from email_quota_days where day = p_day for update;
  select * into r from email_quota_reservations where day = p_day and key = p_key for update;
  if not found then
    return jsonb_build_object('day', p_day, 'key', p_key, 'released', 0, 'held', 0);
  end if;
  v_give := greatest(0, least(r.held, coalesce(p_count, r.held)));
  update email_quota_reservations set held = held - v_give, released = released + v_give, updated_at = v_now
   where day = p_day and key = p_key;
  update email_quota_days set used = used - v_give, updated_at = v_now where day = p_day;
  return jsonb_build_object('day', p_day, 'key', p_key, 'released', v_give, 'held', r.held - v_give);
end
$$;

-- Brevo answered 402 not_enough_credits: whatever our counter says, nothing more goes out today.
create or replace function close_email_quota_day(p_time_zone text, p_reason text) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_day date := email_quota_day(p_time_zone);
  d email_quota_days;
begin
  insert into email_quota_days (day, updated_at) values (v_day, v_now) on conflict (day) do nothing;
  update email_quota_days
     set closed_at = coalesce(closed_at, v_now), closed_reason = coalesce(closed_reason, p_reason), updated_at = v_now
   where day = v_day returning * into d;
  return jsonb_build_object('day', d.day, 'closed_at', d.closed_at, 'closed_reason', d.closed_reason);
end
$$;

-- What campaigns may still plan on a day: the limit less the reserve, what is used, and what
-- pending batches already hold for that day.
create or replace function campaign_room(p_day date, p_daily_limit integer, p_reserve integer) returns integer
language sql stable set search_path = public, pg_temp as $$
  select case when d.closed_at is not null then 0 else greatest(0,
           p_daily_limit - p_reserve - coalesce(d.used, 0)
           - (select count(*) from campaign_batches b
                join campaign_recipients r on r.campaign_id = b.campaign_id and r.batch_no = b.batch_no
               where b.send_on = p_day and b.status = 'pending' and r.status = 'pending'))::integer end
    from (select p_day as day) want left join email_quota_days d on d.day = want.day
$$;

-- The first day from p_from with campaign room. Days beyond every plan have the full room, and
-- the reserve is below the limit, so the walk ends.
create or replace function campaign_next_day(p_from date, p_daily_limit integer, p_reserve integer) returns date
language plpgsql set search_path = public, pg_temp as $$
declare
  v_day date := p_from;
begin
  while campaign_room(v_day, p_daily_limit, p_reserve) < 1 loop
    v_day := v_day + 1;
  end loop;
  return v_day;
end
$$;

create or replace function campaign_new_batch(p_campaign_id uuid, p_send_on date, p_not_before timestamptz)
returns integer
language plpgsql set search_path = public, pg_temp as $$
declare
  v_no integer;
begin
  select coalesce(max(batch_no), 0) + 1 into v_no from campaign_batches where campaign_id = p_campaign_id;
  insert into campaign_batches (campaign_id, batch_no, send_on, status, not_before, created_at, updated_at)
  values (p_campaign_id, v_no, p_send_on, 'pending', p_not_before, db_now(), db_now());
  return v_no;
end
$$;

-- Campaign batches are created and moved under one lock, so two plans never count on the same room.
create or replace function campaign_plan_lock() returns void
language sql as $$ select pg_advisory_xact_lock(7245190312) $$;

-- Puts the campaign's unassigned recipients into batches of at most p_batch_size, from p_from on,
-- each day filled up to its campaign room.
create or replace function campaign_schedule(
  p_campaign_id uuid, p_from date, p_batch_size integer, p_daily_limit integer, p_reserve integer
) returns void
language plpgsql set search_path = public, pg_temp as $$
declare
  v_day date := p_from;
  v_left integer;
  v_size integer;
  v_no integer;
begin
  select count(*) into v_left from campaign_recipients
   where campaign_id = p_campaign_id and batch_no is null and status = 'pending';
  while v_left > 0 loop
    v_day := campaign_next_day(v_day, p_daily_limit, p_reserve);
    v_size := least(p_batch_size, v_left, campaign_room(v_day, p_daily_limit, p_reserve));
    v_no := campaign_new_batch(p_campaign_id, v_day, null);
    update campaign_recipients set batch_no = v_no, updated_at = db_now()
     where campaign_id = p_campaign_id and email in (
       select email from campaign_recipients
        where campaign_id = p_campaign_id and batch_no is null and status = 'pending'
        order by position limit v_size);
    v_left := v_left - v_size;
  end loop;
end
$$;

create or replace function get_email_campaign(p_campaign_id uuid) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select jsonb_build_object(
    'id', c.id, 'recipients', c.recipients, 'planned_at', c.planned_at,
    'counts', (select coalesce(jsonb_object_agg(s.status, s.n), '{}')
                 from (select status, count(*) as n from campaign_recipients
                        where campaign_id = c.id group by status) s),
    'batches', coalesce((
      select jsonb_agg(jsonb_build_object(
               'batch_no', b.batch_no, 'send_on', b.send_on, 'status', b.status, 'attempts', b.attempts,
               'not_before', b.not_before, 'last_error', b.last_error, 'finished_at', b.finished_at,
               'counts', (select coalesce(jsonb_object_agg(s.status, s.n), '{}')
                            from (select status, count(*) as n from campaign_recipients
                                   where campaign_id = c.id and batch_no = b.batch_no group by status) s))
             order by b.batch_no)
        from campaign_batches b where b.campaign_id = c.id), '[]'))
    from email_campaigns c where c.id = p_campaign_id
$$;

-- Runs once per campaign action: later calls return the plan made the first time.
create or replace function plan_email_campaign(
  p_campaign_id uuid, p_recipients jsonb, p_batch_size integer, p_daily_limit integer, p_reserve integer,
  p_time_zone text
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_count integer;
begin
  perform email_quota_check_limits(p_daily_limit, p_reserve);
  if p_batch_size is null or p_batch_size < 1 then
    raise exception 'the batch size must be positive' using errcode = 'OD422';
  end if;
  if p_recipients is null or jsonb_typeof(p_recipients) <> 'array' or jsonb_array_length(p_recipients) = 0 then
    raise exception 'a campaign needs a list of recipients' using errcode = 'OD422';
  end if;
  if not exists (select 1 from actions where id = p_campaign_id and kind = 'email.campaign') then
    raise exception 'no email.campaign action %', p_campaign_id using errcode = 'OD404';
  end if;
  perform campaign_plan_lock();
  insert into email_campaigns (id, recipients, planned_at) values (p_campaign_id, 0, v_now)
  on conflict (id) do nothing;
  if not found then
    return get_email_campaign(p_campaign_id) || '{"planned_now": false}';
  end if;
  insert into campaign_recipients (campaign_id, email, name, position, status, updated_at)
  select p_campaign_id, lower(btrim(x->>'email')), nullif(btrim(coalesce(x->>'name', '')), ''), t.ord, 'pending', v_now
    from jsonb_array_elements(p_recipients) with ordinality as t(x, ord)
  on conflict (campaign_id, email) do nothing;
  get diagnostics v_count = row_count;
  update email_campaigns set recipients = v_count where id = p_campaign_id;
  perform campaign_schedule(p_campaign_id, email_quota_day(p_time_zone), p_batch_size, p_daily_limit, p_reserve);
  perform write_audit(p_campaign_id, 'campaigns', 'campaign_planned', null, null, null, null,
                      jsonb_build_object('recipients', v_count,
                                         'batches', (select count(*) from campaign_batches where campaign_id = p_campaign_id)));
  return get_email_campaign(p_campaign_id) || '{"planned_now": true}';
end
$$;

-- The daily job's claim: pending batches due on or before today, SKIP LOCKED, with a lease.
create or replace function claim_campaign_batches(
  p_worker text, p_lease_seconds double precision, p_limit integer, p_time_zone text, p_campaign_id uuid
) returns jsonb
language sql set search_path = public, pg_temp as $$
  with claimed as (
    select lease_claim('campaign_batches',
                       coalesce(jsonb_agg(jsonb_build_object('campaign_id', due.campaign_id, 'batch_no', due.batch_no)
                                          order by due.send_on, due.created_at, due.batch_no), '[]'),
                       p_worker, p_lease_seconds) as claimed_rows
      from (select campaign_id, batch_no, send_on, created_at from campaign_batches
             where status = 'pending' and send_on <= email_quota_day(p_time_zone)
               and (not_before is null or not_before <= db_now())
               and (p_campaign_id is null or campaign_id = p_campaign_id)
             order by send_on, created_at, batch_no limit p_limit
               for update skip locked) due
  )
  select coalesce(jsonb_agg(jsonb_build_object(
           'campaign_id', c.item->'campaign_id', 'batch_no', c.item->'batch_no', 'send_on', c.item->'send_on',
           'attempt_token', c.item->'attempt_token', 'attempts', c.item->'attempts',
           'content', (select a.requested_action - 'recipients' from actions a
                        where a.id = (c.item->>'campaign_id')::uuid))
         order by c.n), '[]')
    from claimed, jsonb_array_elements(claimed.claimed_rows) with ordinality c(item, n)
$$;

-- The current attempt's batch, locked (§5: OD404, OD499).
create or replace function campaign_batch_attempt(p_campaign_id uuid, p_batch_no integer, p_attempt_token uuid)
returns campaign_batches
language sql set search_path = public, pg_temp as $$
  select lease_current('campaign_batches', jsonb_build_object('campaign_id', p_campaign_id, 'batch_no', p_batch_no),
                       (select b from campaign_batches b
                         where b.campaign_id = p_campaign_id and b.batch_no = p_batch_no for update),
                       p_attempt_token)
$$;

-- A batch's heartbeat before each request to Brevo (§5).
create or replace function renew_campaign_batch_lease(
  p_campaign_id uuid, p_batch_no integer, p_attempt_token uuid, p_lease_seconds double precision
) returns jsonb
language sql set search_path = public, pg_temp as $$
  select lease_renew('campaign_batches', jsonb_build_object('campaign_id', p_campaign_id, 'batch_no', p_batch_no),
                     p_attempt_token, p_lease_seconds)
         || jsonb_build_object('campaign_id', p_campaign_id, 'batch_no', p_batch_no)
$$;

-- Reserves quota for the batch's pending recipients and returns those it may send now (a dry run
-- counts against nothing). What the day cannot take stays pending for finish_campaign_batch to move.
create or replace function reserve_campaign_batch(
  p_campaign_id uuid, p_batch_no integer, p_attempt_token uuid, p_daily_limit integer, p_reserve integer,
  p_time_zone text, p_dry_run boolean
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  b campaign_batches := campaign_batch_attempt(p_campaign_id, p_batch_no, p_attempt_token);
  v_day date := email_quota_day(p_time_zone);
  v_key text := format('campaign:%s:%s', p_campaign_id, p_batch_no);
  v_pending integer;
  v_granted integer;
  v_quota jsonb;
begin
  select count(*) into v_pending from campaign_recipients
   where campaign_id = b.campaign_id and batch_no = b.batch_no and status = 'pending';
  if p_dry_run or v_pending = 0 then
    v_granted := v_pending;
  else
    v_quota := email_quota_take(v_day, v_key, v_pending, 'campaign', p_daily_limit, p_reserve, p_time_zone);
    v_granted := least((v_quota->>'held')::integer, v_pending);
    update campaign_batches set quota_day = v_day, quota_key = v_key, updated_at = db_now()
     where campaign_id = b.campaign_id and batch_no = b.batch_no;
  end if;
  return jsonb_build_object(
    'pending', v_pending, 'granted', v_granted, 'quota', v_quota,
    'recipients', coalesce((
      select jsonb_agg(jsonb_build_object('email', g.email, 'name', g.name) order by g.position)
        from (select email, name, position from campaign_recipients
               where campaign_id = b.campaign_id and batch_no = b.batch_no and status = 'pending'
               order by position limit v_granted) g), '[]'));
end
$$;

-- Just before a request to Brevo: from here on, a crash leaves these recipients `unknown`.
create or replace function campaign_recipients_sending(
  p_campaign_id uuid, p_batch_no integer, p_attempt_token uuid, p_emails jsonb
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_count integer;
begin
  perform lease_dispatched('campaign_batches', jsonb_build_object('campaign_id', p_campaign_id, 'batch_no', p_batch_no),
                           p_attempt_token);
  update campaign_recipients set status = 'sending', updated_at = db_now()
   where campaign_id = p_campaign_id and batch_no = p_batch_no and status = 'pending'
     and email in (select jsonb_array_elements_text(p_emails));
  get diagnostics v_count = row_count;
  return jsonb_build_object('sending', v_count);
end
$$;

-- Brevo's answer, per recipient: sent (with its message id), refused (with Brevo's code), back to
-- pending (nothing went out: a 402, a 429, no connection), unknown, or dry_run.
create or replace function record_campaign_recipients(
  p_campaign_id uuid, p_batch_no integer, p_attempt_token uuid, p_results jsonb
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  b campaign_batches := campaign_batch_attempt(p_campaign_id, p_batch_no, p_attempt_token);
  v_now timestamptz := db_now();
  v_count integer;
begin
  if exists (select 1 from jsonb_array_elements(p_results) x
              where x->>'status' is null or x->>'status' not in ('sent', 'refused', 'pending', 'unknown', 'dry_run')) then
    raise exception 'a recipient''s outcome is sent, refused, pending, unknown or dry_run' using errcode = 'OD422';
  end if;
  update campaign_recipients r
     set status = x.status, message_id = x.message_id, error_code = x.error_code, error = x.error,
         sent_at = case when x.status in ('sent', 'dry_run') then v_now end, updated_at = v_now
    from jsonb_to_recordset(p_results) as x(email text, status text, message_id text, error_code text, error text)
   where r.campaign_id = b.campaign_id and r.batch_no = b.batch_no and r.email = x.email
     and r.status in ('pending', 'sending');
  get diagnostics v_count = row_count;
  return jsonb_build_object('recorded', v_count);
end
$$;

-- Ends a batch's attempt. Recipients still `sending` (no answer recorded) become unknown; the
-- quota keeps what may have reached Brevo and gives back the rest. Pending recipients wait:
-- p_rest 'next_day' moves them to the next day with campaign room (the day is full or closed),
-- 'later' keeps them on today after p_retry_in_seconds (a transient failure), 'stop' leaves them in
-- the batch, which fails (Brevo refused the request itself: sending it again cannot help). A batch
-- that sent nothing moves as a whole; otherwise the rest becomes a new batch.
create or replace function campaign_batch_close(
  b campaign_batches, p_rest text, p_retry_in_seconds double precision, p_error text,
  p_daily_limit integer, p_reserve integer, p_time_zone text, p_actor text
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_today date := email_quota_day(p_time_zone);
  v_not_before timestamptz;
  v_pending integer;
  v_sent integer;
  v_dry integer;
  v_refused integer;
  v_unknown integer;
  v_held integer;
  v_day date;
  v_no integer;
  v_status text;
  v_moved jsonb;
  v_out jsonb;
  v_stopped_batches integer := 0;
begin
  if p_rest is null or p_rest not in ('next_day', 'later', 'stop') then
    raise exception 'the rest of a batch goes to the next day or later, or stops' using errcode = 'OD422';
  end if;
  perform email_quota_check_limits(p_daily_limit, p_reserve);
  perform campaign_plan_lock();
  update campaign_recipients set status = 'unknown', updated_at = v_now,
         error = coalesce(p_error, 'the request went out but no answer was recorded')
   where campaign_id = b.campaign_id and batch_no = b.batch_no and status = 'sending';
  select count(*) filter (where status = 'pending'), count(*) filter (where status = 'sent'),
         count(*) filter (where status = 'dry_run'), count(*) filter (where status = 'refused'),
         count(*) filter (where status = 'unknown')
    into v_pending, v_sent, v_dry, v_refused, v_unknown
    from campaign_recipients where campaign_id = b.campaign_id and batch_no = b.batch_no;

  if b.quota_key is not null then
    select held into v_held from email_quota_reservations where day = b.quota_day and key = b.quota_key;
    if coalesce(v_held, 0) > v_sent + v_unknown then
      perform release_email_quota(b.quota_day, b.quota_key, v_held - v_sent - v_unknown);
    end if;
  end if;

  v_not_before := case when p_rest = 'later'
                       then v_now + make_interval(secs => greatest(coalesce(p_retry_in_seconds, 0), 0)) end;
  if v_pending > 0 and p_rest <> 'stop' then
    v_day := case when p_rest = 'next_day' then campaign_next_day(v_today + 1, p_daily_limit, p_reserve)
                  else v_today end;
    if v_sent + v_dry + v_refused + v_unknown = 0 then
      update campaign_batches
         set status = 'pending', send_on = case when p_rest = 'next_day' then v_day else send_on end,
             not_before = v_not_before, attempt_token = null, lease_expires_at = null, dispatched_at = null,
             last_error = p_error, updated_at = v_now
       where campaign_id = b.campaign_id and batch_no = b.batch_no;
      v_out := jsonb_build_object('campaign_id', b.campaign_id, 'batch_no', b.batch_no, 'status', 'pending',
                                  'send_on', case when p_rest = 'next_day' then v_day else b.send_on end,
                                  'not_before', v_not_before, 'pending', v_pending);
      perform write_audit(b.campaign_id, p_actor, 'campaign_batch_deferred', null, null, p_error, null, v_out);
      return v_out;
    end if;
    v_no := campaign_new_batch(b.campaign_id, v_day, v_not_before);
    update campaign_recipients set batch_no = v_no, updated_at = v_now
     where campaign_id = b.campaign_id and batch_no = b.batch_no and status = 'pending';
    v_moved := jsonb_build_object('batch_no', v_no, 'send_on', v_day, 'recipients', v_pending);
  end if;

  v_status := case when v_unknown > 0 then 'unknown' when p_rest = 'stop' and v_pending > 0 then 'failed'
                   when v_sent + v_dry > 0 then 'sent' else 'failed' end;
  update campaign_batches
     set status = v_status, lease_expires_at = null, finished_at = v_now, last_error = p_error, updated_at = v_now
   where campaign_id = b.campaign_id and batch_no = b.batch_no;
  if p_rest = 'stop' then
    -- Brevo refused the content itself, and every batch still waiting carries the same content:
    -- they fail too, instead of going out on later days under an action marked failed
    update campaign_batches
       set status = 'failed', finished_at = v_now, last_error = p_error, updated_at = v_now
     where campaign_id = b.campaign_id and status = 'pending';
    get diagnostics v_stopped_batches = row_count;
  end if;
  v_out := jsonb_build_object('campaign_id', b.campaign_id, 'batch_no', b.batch_no, 'status', v_status,
                              'send_on', b.send_on, 'sent', v_sent, 'dry_run', v_dry, 'refused', v_refused,
                              'unknown', v_unknown, 'moved', v_moved,
                              'stopped', case when p_rest = 'stop' then v_pending else 0 end,
                              'stopped_batches', v_stopped_batches, 'error', p_error);
  perform write_audit(b.campaign_id, p_actor, 'campaign_batch_' || v_status, null, null, p_error, null, v_out);
  return v_out;
end
$$;

create or replace function finish_campaign_batch(
  p_campaign_id uuid, p_batch_no integer, p_attempt_token uuid, p_rest text, p_retry_in_seconds double precision,
  p_error text, p_daily_limit integer, p_reserve integer, p_time_zone text
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  b campaign_batches := campaign_batch_attempt(p_campaign_id, p_batch_no, p_attempt_token);
begin
  return campaign_batch_close(b, p_rest, p_retry_in_seconds, p_error, p_daily_limit, p_reserve, p_time_zone,
                              coalesce(b.claimed_by, 'campaigns'));
end
$$;

-- Batches whose worker lost its lease: recipients whose request may have gone out become unknown
-- (never re-sent by a machine), the rest are sent by the next run.
create or replace function recover_campaign_batches(
  p_actor text, p_limit integer, p_daily_limit integer, p_reserve integer, p_time_zone text
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_out jsonb := '[]';
  b campaign_batches;
begin
  for b in
    select * from jsonb_populate_recordset(null::campaign_batches, lease_expired('campaign_batches', p_limit))
  loop
    v_out := v_out || campaign_batch_close(
      b, 'later', 0,
      case when b.dispatched_at is null
           then 'the worker lost its lease before any request; the batch will be sent again'
           else 'the worker lost its lease after a request may have reached Brevo; a person must settle it' end,
      p_daily_limit, p_reserve, p_time_zone, p_actor);
  end loop;
  return jsonb_build_object('recovered', v_out);
end
$$;

-- A person checked Brevo's logs for an `unknown` batch: its unknown recipients were sent, or were
-- not (then they are sent again by the next run).
create or replace function settle_campaign_batch(
  p_campaign_id uuid, p_batch_no integer, p_outcome text, p_actor text, p_reason text,
  p_daily_limit integer, p_reserve integer, p_time_zone text
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  b campaign_batches;
begin
  if p_outcome is null or p_outcome not in ('sent', 'not_sent') then
    raise exception 'settle a batch as sent or not_sent' using errcode = 'OD422';
  end if;
  if nullif(btrim(coalesce(p_reason, '')), '') is null or nullif(btrim(coalesce(p_actor, '')), '') is null then
    raise exception 'settling needs your name and a reason' using errcode = 'OD422';
  end if;
  select * into b from campaign_batches where campaign_id = p_campaign_id and batch_no = p_batch_no for update;
  if not found then
    raise exception 'no batch % of campaign %', p_batch_no, p_campaign_id using errcode = 'OD404';
  end if;
  if b.status <> 'unknown' then
    raise exception 'only unknown batches are settled by hand; batch % is %', p_batch_no, b.status
      using errcode = 'OD409', detail = jsonb_build_object('status', b.status)::text;
  end if;
  update campaign_recipients
     set status = case when p_outcome = 'sent' then 'sent' else 'pending' end,
         error = format('settled as %s by %s: %s', p_outcome, p_actor, p_reason), updated_at = db_now()
   where campaign_id = b.campaign_id and batch_no = b.batch_no and status = 'unknown';
  return campaign_batch_close(b, 'later', 0, format('settled by %s: %s', p_actor, p_reason),
                              p_daily_limit, p_reserve, p_time_zone, p_actor);
end
$$;

-- Today's use of the quota and what is scheduled for the coming days (the daily report reads it).
create or replace function email_quota_outlook(
  p_daily_limit integer, p_reserve integer, p_time_zone text, p_days integer
) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  with today as (select email_quota_day(p_time_zone) as day)
  select jsonb_build_object(
    'today', (select jsonb_build_object(
                       'day', t.day, 'used', coalesce(d.used, 0), 'daily_limit', p_daily_limit,
                       'reserve', p_reserve,
                       'remaining', case when d.closed_at is null
                                         then greatest(0, p_daily_limit - coalesce(d.used, 0)) else 0 end,
                       'campaign_remaining', case when d.closed_at is null
                                                  then greatest(0, p_daily_limit - p_reserve - coalesce(d.used, 0))
                                                  else 0 end,
                       'closed_at', d.closed_at, 'closed_reason', d.closed_reason)
                from today t left join email_quota_days d on d.day = t.day),
    'scheduled', coalesce((
      select jsonb_agg(jsonb_build_object('day', s.send_on, 'batches', s.batches, 'recipients', s.recipients)
                       order by s.send_on)
        from (select b.send_on, count(distinct (b.campaign_id, b.batch_no)) as batches,
                     count(r.email) as recipients
                from campaign_batches b
                join campaign_recipients r on r.campaign_id = b.campaign_id and r.batch_no = b.batch_no
                                          and r.status = 'pending'
               where b.status = 'pending' and b.send_on < (select day from today) + greatest(coalesce(p_days, 7), 1)
               group by b.send_on) s), '[]'),
    'unknown_batches', (select count(*) from campaign_batches where status = 'unknown'))
$$;

-- ---------------------------------------------------------------------------------------------
-- §14 The schedule
-- app/job_schedule.py: every firing of a scheduled job is claimed here, unique per
-- job and scheduled time, so it runs once however many instances run the same schedule. The
-- application computes the firings from the jobs' cron triggers; this table is its memory of
-- what ran. A run that does not finish within its lease is lost (its instance died); a transient
-- failure waits in `retry` until its lease_expires_at. Either may be claimed again by the next
-- claim of the same firing, and is closed as failed once a later firing of its job is claimed.
-- ---------------------------------------------------------------------------------------------
create table if not exists job_runs (
  id               bigint generated always as identity primary key,
  job              text not null,
  scheduled_for    timestamptz not null,
  instance         text not null,
  attempts         integer not null default 1,
  attempt_token    uuid not null,                 -- the current claim; finishing must present it
  outcome          text not null check (outcome in ('running', 'ok', 'skipped', 'retry', 'failed')),
  lease_expires_at timestamptz,                   -- running: lost after it; retry: claimable from it
  note             jsonb not null default '{}',
  error            text,
  started_at       timestamptz not null,
  finished_at      timestamptz,
  unique (job, scheduled_for)
);
create index if not exists job_runs_started on job_runs (started_at);

create or replace function job_run_view(r job_runs) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select (to_jsonb(r) - 'attempt_token') || jsonb_build_object('state',
    case when r.outcome = 'running' and r.lease_expires_at <= db_now() then 'lost' else r.outcome end)
$$;

-- Per job, the latest firing that is settled (finished, running within its lease, or waiting for
-- its retry time); and the schedule's epoch, the first firing it ever claimed on this database
-- (a job that never ran looks for missed firings from there, within its grace).
create or replace function job_schedule_state(p_jobs jsonb) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  with jobs as (select value as job from jsonb_array_elements_text(coalesce(p_jobs, '[]'))),
  per_job as (
    select j.job,
           (select min(r.scheduled_for) from job_runs r where r.job = j.job) as first_run,
           (select max(r.scheduled_for) from job_runs r
             where r.job = j.job
               and not (r.outcome in ('running', 'retry') and r.lease_expires_at <= db_now())) as last_settled
      from jobs j)
  select jsonb_build_object(
    'epoch', (select min(first_run) from per_job),
    'last', coalesce((select jsonb_object_agg(job, last_settled) from per_job where last_settled is not null), '{}'))
$$;

-- Claim one firing. A new firing is inserted; an existing one is taken over only when it is open
-- (lost, or its retry time has come). The unique key makes parallel claims wait for each other:
-- exactly one gets `claimed`.
create or replace function claim_job_run(
  p_job text, p_scheduled_for timestamptz, p_instance text, p_lease_seconds double precision
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  r job_runs;
begin
  if nullif(btrim(coalesce(p_job, '')), '') is null or p_scheduled_for is null
     or nullif(btrim(coalesce(p_instance, '')), '') is null or coalesce(p_lease_seconds, 0) <= 0 then
    raise exception 'a claim needs the job, its scheduled time, the instance and a positive lease'
      using errcode = 'OD422';
  end if;
  insert into job_runs as j (job, scheduled_for, instance, attempt_token, outcome, lease_expires_at, started_at)
  values (p_job, p_scheduled_for, p_instance, gen_random_uuid(), 'running',
          v_now + make_interval(secs => p_lease_seconds), v_now)
  on conflict (job, scheduled_for) do update
     set instance = excluded.instance, attempts = j.attempts + 1, attempt_token = excluded.attempt_token,
         outcome = 'running', lease_expires_at = excluded.lease_expires_at, started_at = excluded.started_at,
         finished_at = null
   where j.outcome in ('running', 'retry') and j.lease_expires_at <= v_now
  returning * into r;
  if not found then
    return jsonb_build_object('claimed', false);
  end if;
  -- earlier firings of this job still open will not be claimed again: a later one ran instead
  update job_runs o
     set outcome = 'failed', finished_at = coalesce(o.finished_at, v_now), lease_expires_at = null,
         error = concat_ws('; ', o.error,
                           case when o.outcome = 'running' then 'lost: its instance stopped before finishing' end,
                           format('superseded by the firing at %s', p_scheduled_for))
   where o.job = p_job and o.scheduled_for < p_scheduled_for and o.outcome in ('running', 'retry')
     and o.lease_expires_at <= v_now;
  return jsonb_build_object('claimed', true, 'id', r.id, 'attempt', r.attempts, 'attempt_token', r.attempt_token);
end
$$;

create or replace function finish_job_run(
  p_id bigint, p_attempt_token uuid, p_outcome text, p_note jsonb, p_error text,
  p_retry_in_seconds double precision
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  r job_runs;
begin
  if p_outcome is null or p_outcome not in ('ok', 'skipped', 'retry', 'failed') then
    raise exception 'a run finishes as ok, skipped, retry or failed' using errcode = 'OD422';
  end if;
  update job_runs
     set outcome = p_outcome, note = coalesce(p_note, '{}'), error = p_error, finished_at = v_now,
         lease_expires_at = case when p_outcome = 'retry'
                                 then v_now + make_interval(secs => greatest(coalesce(p_retry_in_seconds, 0), 0))
                            end
   where id = p_id and attempt_token = p_attempt_token and outcome = 'running'
  returning * into r;
  if not found then
    raise exception 'run % was taken over by another instance after its lease ran out', p_id
      using errcode = 'OD499';
  end if;
  return job_run_view(r);
end
$$;

create or replace function recent_job_runs(p_job text, p_limit integer) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select coalesce(jsonb_agg(job_run_view(r) order by r.started_at desc, r.id desc), '[]')
    from (select * from job_runs where p_job is null or job = p_job
           order by started_at desc, id desc limit greatest(coalesce(p_limit, 30), 1)) r
$$;

-- Retention: finished runs older than p_days go; open ones stay until they are settled.
create or replace function prune_job_runs(p_days integer) returns jsonb
language sql set search_path = public, pg_temp as $$
  with gone as (
    delete from job_runs
     where outcome not in ('running', 'retry') and finished_at < db_now() - make_interval(days => p_days)
    returning 1)
  select jsonb_build_object('deleted', (select count(*) from gone))
$$;

-- ---------------------------------------------------------------------------------------------
-- §15 Agent runs and the agents' sources
-- One row per run of an agent (filled by agents/, counted by the daily report); which sources a
-- run can leave alone (agents/framework.py), and a run's actions submitted together with the end
-- of its agent_runs row.
-- An agent's action carries the dedupe key `<agent>/<source ref>/<input version>/<slot>`, e.g.
-- `support/ticket-4711/20261121T160000Z/reply`: the same input gives the same keys, so a repeated
-- run never opens a second action for it (submit_action answers with the one already open).
-- ---------------------------------------------------------------------------------------------
create table if not exists agent_runs (
  id          uuid primary key default gen_random_uuid(),
  agent       text not null,
  trigger     text not null,                   -- schedule, cli, api ...
  started_at  timestamptz not null,
  finished_at timestamptz,
  proposals   integer not null default 0 check (proposals >= 0),
  tokens      bigint not null default 0 check (tokens >= 0),
  cost_usd    numeric not null default 0 check (cost_usd >= 0),
  outcome     text not null default 'running' check (outcome in ('running', 'ok', 'failed')),
  error       text,
  refused     jsonb not null default '[]'      -- the proposals refused whole: [{ref, reason}]
);
create index if not exists agent_runs_started on agent_runs (started_at);

create or replace function agent_run_view(r agent_runs) returns jsonb
language sql stable as $$ select to_jsonb(r) || jsonb_build_object('cost_usd', r.cost_usd::text) $$;

create or replace function start_agent_run(p_agent text, p_trigger text) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  r agent_runs;
begin
  if nullif(btrim(coalesce(p_agent, '')), '') is null or nullif(btrim(coalesce(p_trigger, '')), '') is null then
    raise exception 'an agent run needs the agent and what triggered it' using errcode = 'OD422';
  end if;
  insert into agent_runs (agent, trigger, started_at) values (p_agent, p_trigger, db_now()) returning * into r;
  return agent_run_view(r);
end
$$;

create or replace function finish_agent_run(
  p_id uuid, p_outcome text, p_proposals integer, p_tokens bigint, p_cost_usd numeric, p_error text
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  r agent_runs;
begin
  if p_outcome is null or p_outcome not in ('ok', 'failed') then
    raise exception 'an agent run finishes as ok or failed' using errcode = 'OD422';
  end if;
  if coalesce(p_proposals, 0) < 0 or coalesce(p_tokens, 0) < 0 or coalesce(p_cost_usd, 0) < 0 then
    raise exception 'proposals, tokens and cost cannot be negative' using errcode = 'OD422';
  end if;
  select * into r from agent_runs where id = p_id for update;
  if not found then
    raise exception 'no agent run %', p_id using errcode = 'OD404';
  end if;
  if r.outcome <> 'running' then
    raise exception 'agent run % already finished as %', p_id, r.outcome using errcode = 'OD409',
      detail = jsonb_build_object('outcome', r.outcome)::text;
  end if;
  update agent_runs
     set outcome = p_outcome, finished_at = db_now(), proposals = coalesce(p_proposals, 0),
         tokens = coalesce(p_tokens, 0), cost_usd = coalesce(p_cost_usd, 0), error = p_error
   where id = p_id returning * into r;
  return agent_run_view(r);
end
$$;

-- A key prefix as a LIKE pattern: the prefix's own characters match only themselves.
create or replace function like_prefix(p_prefix text) returns text
language sql immutable as $$
  select replace(replace(replace(p_prefix, '\', '\\'), '%', '\%'), '_', '\_') || '%'
$$;

-- A source a run put before the model and got nothing for (the model left it out, or its proposal
-- was refused whole), one row per source: the latest skip. The same input is not sent again, and
-- a source skipped before waits behind those never skipped, so sources the model keeps passing
-- over cannot fill every prompt and starve new ones.
create table if not exists agent_skips (
  agent      text not null,
  ref        text not null,
  version    text not null,
  reason     text not null,
  run_id     uuid not null references agent_runs (id) on delete cascade,
  skipped_at timestamptz not null,
  primary key (agent, ref)
);

-- The sources that go before the model this run, at most p_limit. Left alone: those that need no
-- draft now (an action for the same input exists in any state, so a rejected or expired draft is
-- not drafted again until the input changes; an action for an earlier input is still open; the
-- same input was skipped: its skip is one of the source's `skipped_as` versions). Of the rest,
-- those never skipped come first, then those skipped longest ago, each group in the order given.
-- p_sources: [{ref, skipped_as: [version], source_prefix, input_prefix}]. Answers {handled: how
-- many were left alone, picked: [ref]}.
create or replace function agent_sources_pick(p_agent text, p_sources jsonb, p_limit integer) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  with triaged as (
    select g.s->>'ref' as ref, g.n, k.skipped_at,
           coalesce(k.version in (select jsonb_array_elements_text(g.s->'skipped_as')), false)
           or exists (select 1 from actions a where a.dedupe_key like like_prefix(g.s->>'input_prefix'))
           or exists (select 1 from actions a
                       where a.dedupe_key like like_prefix(g.s->>'source_prefix')
                         and a.status in ('pending', 'approved', 'running')) as handled
      from jsonb_array_elements(coalesce(p_sources, '[]')) with ordinality as g(s, n)
      left join agent_skips k on k.agent = p_agent and k.ref = g.s->>'ref')
  select jsonb_build_object(
    'handled', (select count(*) from triaged where handled),
    'picked', coalesce((select jsonb_agg(p.ref order by p.skipped_at nulls first, p.n)
                          from (select * from triaged where not handled
                                 order by skipped_at nulls first, n limit greatest(p_limit, 0)) p), '[]'))
$$;

-- A finishing run's refusals, kept on its row, and its skips. p_skips: [{ref, version, reason}]
-- (a dry run passes none: it writes nothing but its run record); p_refused: [{ref, reason}].
create or replace function record_agent_skips(p_run_id uuid, p_skips jsonb, p_refused jsonb) returns void
language sql set search_path = public, pg_temp as $$
  update agent_runs set refused = coalesce(p_refused, '[]') where id = p_run_id;
  insert into agent_skips as k (agent, ref, version, reason, run_id, skipped_at)
  select r.agent, s->>'ref', s->>'version', s->>'reason', r.id, db_now()
    from agent_runs r cross join jsonb_array_elements(coalesce(p_skips, '[]')) s
   where r.id = p_run_id
  on conflict (agent, ref) do update
    set version = excluded.version, reason = excluded.reason, run_id = excluded.run_id,
        skipped_at = excluded.skipped_at;
$$;

-- Tokens and cost of the given llm_calls rows (a run's own calls, failed ones included).
create or replace function agent_llm_usage(p_call_ids jsonb) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select jsonb_build_object(
    'tokens', coalesce(sum(c.input_tokens + c.output_tokens + c.cache_creation_input_tokens
                           + c.cache_read_input_tokens), 0),
    'cost_usd', coalesce(sum(case when c.outcome = 'reserved' then c.reserved_usd else c.cost_usd end), 0)::text)
    from llm_calls c
   where c.id in (select x::bigint from jsonb_array_elements_text(coalesce(p_call_ids, '[]')) x)
$$;

-- Every action of a run, submitted and the run finished as ok (with its skips and refusals), in
-- one transaction: if any submission (or the run's end) fails, none of the actions exist. p_items
-- are what ApprovalQueue.prepare made: [{action, risk_level, risk_reasons, auto_run, ttl_seconds,
-- max_attempts}]. A key already used in any state is the same input handled before (by an
-- overlapping run, say, whose LOW task already ran): answered with that action, as submit_action
-- answers an open one.
create or replace function submit_agent_actions(
  p_run_id uuid, p_items jsonb, p_call_ids jsonb, p_actor text, p_request_id text, p_skips jsonb,
  p_refused jsonb
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_item jsonb;
  v_results jsonb := '[]';
  v_usage jsonb := agent_llm_usage(p_call_ids);
  a actions;
begin
  if jsonb_typeof(p_items) is distinct from 'array' then
    raise exception 'p_items must be an array of prepared actions' using errcode = 'OD422';
  end if;
  for v_item in select value from jsonb_array_elements(p_items) loop
    select * into a from actions where dedupe_key = v_item->'action'->>'dedupe_key'
     order by created_at desc limit 1;
    if found then
      v_results := v_results || jsonb_build_array(action_view(a) || '{"duplicate": true}');
      continue;
    end if;
    v_results := v_results || jsonb_build_array(submit_action(
      v_item->'action', v_item->>'risk_level', v_item->'risk_reasons', (v_item->>'auto_run')::boolean,
      (v_item->>'ttl_seconds')::double precision, (v_item->>'max_attempts')::integer, p_actor, p_request_id));
  end loop;
  perform record_agent_skips(p_run_id, p_skips, p_refused);
  return jsonb_build_object(
    'run', finish_agent_run(p_run_id, 'ok', jsonb_array_length(p_items), (v_usage->>'tokens')::bigint,
                            (v_usage->>'cost_usd')::numeric, null),
    'results', v_results);
end
$$;

-- A run that submits nothing: failed (with its error), a dry run, or one with nothing to do.
create or replace function close_agent_run(
  p_run_id uuid, p_outcome text, p_proposals integer, p_call_ids jsonb, p_error text, p_skips jsonb,
  p_refused jsonb
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_usage jsonb := agent_llm_usage(p_call_ids);
begin
  perform record_agent_skips(p_run_id, p_skips, p_refused);
  return finish_agent_run(p_run_id, p_outcome, p_proposals, (v_usage->>'tokens')::bigint,
                          (v_usage->>'cost_usd')::numeric, p_error);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- §16 The daily report
-- app/daily_report.py: what happened on one calendar day in CRON_TIMEZONE.
-- Every number is counted here (count(*) filter), never by fetching rows.
-- ---------------------------------------------------------------------------------------------
create table if not exists daily_reports (
  day                date primary key,
  body               jsonb not null,
  chart_png          bytea,
  built_at           timestamptz not null,
  status             text not null default 'built' check (status in ('built', 'sending', 'sent')),
  attempts           integer not null default 0,
  attempt_token      uuid,
  claimed_by         text,
  lease_expires_at   timestamptz,
  dispatched_at      timestamptz,                      -- this attempt's post may have reached Discord
  maybe_posted       boolean not null default false,   -- an earlier attempt's post may have
  last_error         text,
  sent_at            timestamptz,
  discord_message_id text,
  updated_at         timestamptz
);

-- A calendar day in a time zone, as the half-open range of instants [lo, hi).
create or replace function report_window(p_day date, p_time_zone text, out lo timestamptz, out hi timestamptz)
language sql stable as $$
  select p_day::timestamp at time zone p_time_zone, (p_day + 1)::timestamp at time zone p_time_zone
$$;

-- The day's action events per agent and tier (the action's current tier), and their totals.
create or replace function report_action_counts(p_day date, p_time_zone text) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  with w as (select * from report_window(p_day, p_time_zone)),
  counted as (
    select a.agent, a.risk_level as tier,
           count(*) filter (where l.event = 'submitted') as drafted,
           count(*) filter (where l.event = 'auto_approved') as auto_run,
           count(*) filter (where l.event = 'decided' and l.details->>'decision' = 'approved') as approved,
           count(*) filter (where l.event = 'decided' and l.details->>'decision' = 'modified') as modified,
           count(*) filter (where l.event = 'decided' and l.details->>'decision' = 'rejected') as rejected,
           count(*) filter (where l.event = 'expired') as expired,
           count(*) filter (where l.to_status = 'succeeded') as succeeded,
           count(*) filter (where l.to_status = 'failed') as failed,
           count(*) filter (where l.to_status = 'unknown') as unknown,
           grouping(a.agent, a.risk_level) as rollup
      from audit_log l join actions a on a.id = l.action_id cross join w
     where l.at >= w.lo and l.at < w.hi
     group by grouping sets ((a.agent, a.risk_level), ()))
  select jsonb_build_object(
    'totals', (select to_jsonb(c) - 'agent' - 'tier' - 'rollup' from counted c where c.rollup = 3),
    'rows', coalesce((select jsonb_agg(to_jsonb(c) - 'rollup' order by c.agent,
                                       array_position(array['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'], c.tier))
                        from counted c where c.rollup = 0), '[]'))
$$;

create or replace function report_agent_runs(p_day date, p_time_zone text) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  with w as (select * from report_window(p_day, p_time_zone))
  select coalesce(jsonb_agg(jsonb_build_object(
           'agent', s.agent, 'runs', s.runs, 'ok', s.ok, 'failed', s.failed, 'running', s.running,
           'proposals', s.proposals, 'tokens', s.tokens, 'cost_usd', s.cost_usd::text) order by s.agent), '[]')
    from (select r.agent, count(*) as runs, count(*) filter (where r.outcome = 'ok') as ok,
                 count(*) filter (where r.outcome = 'failed') as failed,
                 count(*) filter (where r.outcome = 'running') as running,
                 coalesce(sum(r.proposals), 0) as proposals, coalesce(sum(r.tokens), 0) as tokens,
                 coalesce(sum(r.cost_usd), 0) as cost_usd
            from agent_runs r cross join w
           where r.started_at >= w.lo and r.started_at < w.hi
           group by r.agent) s
$$;

-- Approvals still waiting, oldest first (the Python side signs their review links).
create or replace function report_waiting(p_limit integer) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select jsonb_build_object(
    'total', (select count(*) from actions where status = 'pending'),
    'items', coalesce((select jsonb_agg(jsonb_build_object(
                         'id', a.id, 'agent', a.agent, 'kind', a.kind, 'tier', a.risk_level, 'summary', a.summary,
                         'requested_at', a.requested_at, 'expires_at', a.expires_at, 'draft_hash', a.draft_hash)
                       order by a.requested_at, a.id)
                         from (select * from actions where status = 'pending'
                                order by requested_at, id limit p_limit) a), '[]'))
$$;

-- Failures worth a look on the day: actions that failed or became unknown, Discord notifications
-- and campaign batches that did, agent runs that failed, and scheduled runs that failed or were
-- lost (a scheduled agent run that failed is listed once, as its agent run).
create or replace function report_failures(p_day date, p_time_zone text, p_limit integer) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  with w as (select * from report_window(p_day, p_time_zone)),
  found as (
    select 'action' as source, a.id::text as ref, format('%s: %s', a.agent, a.summary) as title,
           l.to_status as status, coalesce(l.reason, a.last_error) as error, l.at
      from audit_log l join actions a on a.id = l.action_id cross join w
     where l.at >= w.lo and l.at < w.hi and l.to_status in ('failed', 'unknown')
    union all
    select 'notification', n.id::text, format('Discord %s for action %s', n.kind, n.action_id), n.status,
           n.last_error, n.updated_at
      from discord_notifications n cross join w
     where n.status in ('failed', 'unknown') and n.updated_at >= w.lo and n.updated_at < w.hi
    union all
    select 'campaign_batch', format('%s/%s', b.campaign_id, b.batch_no),
           format('campaign %s, batch %s', b.campaign_id, b.batch_no), b.status, b.last_error, b.updated_at
      from campaign_batches b cross join w
     where b.status in ('failed', 'unknown') and b.updated_at >= w.lo and b.updated_at < w.hi
    union all
    select 'agent_run', r.id::text, format('%s agent run (%s)', r.agent, r.trigger), r.outcome, r.error,
           r.finished_at
      from agent_runs r cross join w
     where r.outcome = 'failed' and r.finished_at >= w.lo and r.finished_at < w.hi
    union all
    select 'job', r.id::text,
           format('%s, due %s', r.job, to_char(r.scheduled_for at time zone p_time_zone, 'YYYY-MM-DD HH24:MI')),
           job_run_view(r)->>'state', r.error,
           coalesce(r.finished_at, r.started_at)
      from job_runs r cross join w
     where (r.outcome = 'failed' or (r.outcome = 'running' and r.lease_expires_at <= db_now()))
       and coalesce(r.finished_at, r.started_at) >= w.lo and coalesce(r.finished_at, r.started_at) < w.hi
       and not exists (select 1 from agent_runs a
                        where a.id::text = r.note->'result'->>'run_id' and a.outcome = 'failed'))
  select jsonb_build_object(
    'total', (select count(*) from found),
    'items', coalesce((select jsonb_agg(to_jsonb(f) order by f.at)
                         from (select * from found order by at limit p_limit) f), '[]'))
$$;

-- The last p_days days up to p_day: action outcomes per day, and emails counted per quota day.
create or replace function report_history(p_day date, p_days integer, p_time_zone text) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  with days as (select p_day - n as day from generate_series(0, p_days - 1) n),
  w as (select (select lo from report_window(p_day - (p_days - 1), p_time_zone)) as lo,
               (select hi from report_window(p_day, p_time_zone)) as hi),
  counted as (
    select (l.at at time zone p_time_zone)::date as day,
           count(*) filter (where l.to_status = 'succeeded') as succeeded,
           count(*) filter (where l.to_status = 'failed') as failed,
           count(*) filter (where l.to_status = 'unknown') as unknown,
           count(*) filter (where l.event = 'decided' and l.to_status = 'rejected') as rejected,
           count(*) filter (where l.event = 'expired') as expired
      from audit_log l cross join w
     where l.at >= w.lo and l.at < w.hi and l.action_id is not null
     group by 1)
  select coalesce(jsonb_agg(jsonb_build_object(
           'day', d.day, 'succeeded', coalesce(c.succeeded, 0), 'failed', coalesce(c.failed, 0),
           'unknown', coalesce(c.unknown, 0), 'rejected', coalesce(c.rejected, 0),
           'expired', coalesce(c.expired, 0), 'emails_used', coalesce(q.used, 0)) order by d.day), '[]')
    from days d left join counted c on c.day = d.day left join email_quota_days q on q.day = d.day
$$;

-- Everything the report shows for p_day, which must be over in p_time_zone. The email outlook and
-- the waiting approvals are as of now: the report is read the morning after.
create or replace function daily_report_data(
  p_day date, p_time_zone text, p_history_days integer, p_list_limit integer,
  p_daily_limit integer, p_reserve integer, p_quota_time_zone text
) returns jsonb
language plpgsql stable set search_path = public, pg_temp as $$
declare
  v_today date := (db_now() at time zone p_time_zone)::date;
begin
  if p_day is null or p_day >= v_today then
    raise exception 'the report for % is built once that day is over in % (today is %)',
      coalesce(p_day::text, 'no day'), p_time_zone, v_today using errcode = 'OD422';
  end if;
  if coalesce(p_history_days, 0) not between 1 and 366 or coalesce(p_list_limit, 0) not between 1 and 1000 then
    raise exception 'history days must be 1-366 and the list limit 1-1000' using errcode = 'OD422';
  end if;
  return jsonb_build_object(
    'day', p_day, 'time_zone', p_time_zone, 'generated_at', db_now(),
    'actions', report_action_counts(p_day, p_time_zone),
    'agent_runs', report_agent_runs(p_day, p_time_zone),
    'emails', (select jsonb_build_object('sent', coalesce(d.used, 0), 'closed_reason', d.closed_reason,
                                         'outlook', email_quota_outlook(p_daily_limit, p_reserve, p_quota_time_zone, 7))
                 from (select p_day as day) x left join email_quota_days d on d.day = x.day),
    'waiting', report_waiting(p_list_limit),
    'llm', llm_spend(p_time_zone, p_day),
    'failures', report_failures(p_day, p_time_zone, p_list_limit),
    'history', report_history(p_day, p_history_days, p_time_zone));
end
$$;

create or replace function daily_report_view(d daily_reports, p_with_chart boolean) returns jsonb
language sql stable as $$
  select (to_jsonb(d) - 'chart_png' - 'attempt_token')
         || jsonb_build_object('has_chart', d.chart_png is not null,
                               'chart_base64', case when p_with_chart then encode(d.chart_png, 'base64') end)
$$;

-- The report as memory keeps it: plain lines to search ("the day the support job broke"), without
-- the review links (signed URLs do not belong in memory).
create or replace function report_counts_text(p_counts jsonb) returns text
language sql immutable as $$
  select coalesce(string_agg(format('%s %s', l.label, p_counts->>l.key), ', ' order by l.n)
                    filter (where coalesce((p_counts->>l.key)::integer, 0) > 0), 'nothing')
    from unnest(array['drafted', 'auto_run', 'approved', 'modified', 'rejected', 'expired', 'succeeded', 'failed',
                      'unknown'],
                array['drafted', 'auto-run', 'approved', 'edited', 'rejected', 'expired', 'succeeded', 'failed',
                      'unknown']) with ordinality l(key, label, n)
$$;

create or replace function report_memory_text(p_body jsonb) returns text
language sql immutable as $$
  select concat_ws(E'\n',
    format('Daily report for %s (%s)', p_body->>'day', p_body->>'time_zone'),
    'Actions: ' || report_counts_text(p_body->'totals'),
    (select string_agg(format('- %s, %s: %s', r->>'agent', r->>'tier', report_counts_text(r)), E'\n' order by n)
       from jsonb_array_elements(p_body->'by_agent_and_tier') with ordinality x(r, n)),
    (select 'Agent runs:' || string_agg(format(E'\n- %s: %s run(s), %s ok, %s failed, %s proposal(s), %s tokens, $%s',
                                               r->>'agent', r->>'runs', r->>'ok', r->>'failed', r->>'proposals',
                                               r->>'tokens', r->>'cost_usd'), '' order by n)
       from jsonb_array_elements(p_body->'agent_runs') with ordinality x(r, n)),
    format('Emails sent: %s of %s', e->>'sent', e->>'daily_limit')
      || coalesce(' (closed: ' || (e->>'closed_reason') || ')', ''),
    (select 'Campaign batches ahead: ' || string_agg(format('%s: %s recipient(s) in %s batch(es)', r->>'day',
                                                            r->>'recipients', r->>'batches'), '; ' order by n)
       from jsonb_array_elements(e->'scheduled') with ordinality x(r, n)),
    format('LLM spend: $%s of $%s in %s call(s)', l->>'spent_usd', l->>'budget_usd', l->>'calls')
      || case when (l->>'refused')::integer > 0 then format(', %s refused by the budget', l->>'refused') else '' end,
    format('Waiting for approval: %s', p_body->>'waiting_total')
      || coalesce((select string_agg(format(E'\n- %s %s %s: %s', r->>'tier', r->>'agent', r->>'kind', r->>'summary'),
                                     '' order by n)
                     from jsonb_array_elements(p_body->'waiting') with ordinality x(r, n)), ''),
    format('Failures: %s', p_body->>'failures_total')
      || coalesce((select string_agg(format(E'\n- %s %s: %s', r->>'source', r->>'status', r->>'title')
                                     || coalesce(' — ' || memory_clip(r->>'error', 300), ''), '' order by n)
                     from jsonb_array_elements(p_body->'failures') with ordinality x(r, n)), ''),
    -- the website's numbers only: page paths and referrers are visitors' words, not the business's
    case w->>'state'
      when 'ok' then format('Website: %s visitors (%s the day before, %s a week before), %s visits, %s pageviews, '
                            'bounce rate %s%%, visit duration %s s',
                            w->'numbers'->'totals'->>'visitors', w->'numbers'->'day_before'->>'visitors',
                            w->'numbers'->'week_before'->>'visitors', w->'numbers'->'totals'->>'visits',
                            w->'numbers'->'totals'->>'pageviews', round((w->'numbers'->'totals'->>'bounce_rate')::numeric),
                            w->'numbers'->'totals'->>'visit_duration')
      when 'missing' then 'Website: the numbers are missing from this report'
      when 'not_connected' then 'Website: Plausible is not connected'
    end)
    from (select p_body->'emails' as e, p_body->'llm' as l, p_body->'website' as w) v
$$;

-- Store a built report (the chart as base64: both transports carry text). A report being sent or
-- already sent is kept as it is: what was posted is what stays on record.
create or replace function store_daily_report(p_day date, p_body jsonb, p_chart_base64 text) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  d daily_reports;
begin
  if p_day is null or p_body is null or jsonb_typeof(p_body) <> 'object' then
    raise exception 'a report needs its day and a JSON object body' using errcode = 'OD422';
  end if;
  insert into daily_reports as r (day, body, chart_png, built_at, updated_at)
  values (p_day, p_body, decode(p_chart_base64, 'base64'), db_now(), db_now())
  on conflict (day) do update set body = excluded.body, chart_png = excluded.chart_png, built_at = excluded.built_at,
                                  updated_at = excluded.updated_at
   where r.status = 'built'
  returning * into d;
  if found then
    begin
      -- memory learns the report in the same transaction; rebuilding the day replaces its one row
      perform memory_put('report', 'report', p_day::text, format('Daily report %s', p_day),
                         report_memory_text(p_body), jsonb_build_object('day', p_day),
                         (select lo from report_window(p_day, p_body->>'time_zone')));
    exception when others then
      -- memory must never stop the 9 AM report
      raise warning 'memory could not record the report for %: % (%)', p_day, sqlerrm, sqlstate;
    end;
    return daily_report_view(d, false) || '{"stored": true}';
  end if;
  select * into d from daily_reports where day = p_day;
  return daily_report_view(d, false) || '{"stored": false}';
end
$$;

create or replace function get_daily_report(p_day date, p_with_chart boolean) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select daily_report_view(d, coalesce(p_with_chart, false)) from daily_reports d where d.day = p_day
$$;

-- Posting to Discord, like the notification outbox, with §5's lease: claim (one sender at a time;
-- a lost lease is taken over by the next claim), mark just before the POST, then record the
-- message or give the claim back. A claim after an attempt that may have posted carries
-- `maybe_posted`, so the post says it may repeat one.
create or replace function claim_daily_report_send(p_day date, p_worker text, p_lease_seconds double precision)
returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_claimed jsonb;
  d daily_reports;
begin
  -- claimable: built, or being sent by an attempt whose lease ran out
  select lease_claim('daily_reports', coalesce(jsonb_agg(jsonb_build_object('day', due.day)), '[]'), p_worker,
                     p_lease_seconds,
                     jsonb_build_object('maybe_posted', bool_or(due.maybe_posted or due.dispatched_at is not null)))
    into v_claimed
    from (select day, maybe_posted, dispatched_at from daily_reports
           where day = p_day and (status = 'built' or status = 'sending' and lease_expires_at <= db_now())
             for update) due;
  select * into d from daily_reports where day = p_day;
  if not found then
    raise exception 'no report stored for %', p_day using errcode = 'OD404';
  end if;
  return daily_report_view(d, false)
         || case when v_claimed = '[]' then '{"claimed": false}'
                 else jsonb_build_object('claimed', true, 'attempt_token', d.attempt_token) end;
end
$$;

create or replace function mark_daily_report_dispatched(p_day date, p_attempt_token uuid) returns jsonb
language sql set search_path = public, pg_temp as $$
  select lease_dispatched('daily_reports', jsonb_build_object('day', p_day), p_attempt_token)
         || jsonb_build_object('day', p_day)
$$;

-- Discord confirmed the post. Recorded even from an attempt that lost its lease: the message
-- exists. The first confirmed message is the one kept.
create or replace function record_daily_report_sent(p_day date, p_message_id text) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  d daily_reports;
begin
  update daily_reports
     set status = 'sent', sent_at = db_now(), discord_message_id = p_message_id, attempt_token = null,
         lease_expires_at = null, last_error = null, updated_at = db_now()
   where day = p_day and status <> 'sent'
  returning * into d;
  if found then
    return daily_report_view(d, false) || '{"recorded": true}';
  end if;
  select * into d from daily_reports where day = p_day;
  if not found then
    raise exception 'no report stored for %', p_day using errcode = 'OD404';
  end if;
  return daily_report_view(d, false) || '{"recorded": false}';
end
$$;

create or replace function release_daily_report_send(
  p_day date, p_attempt_token uuid, p_error text, p_maybe_posted boolean
) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  d daily_reports;
begin
  perform lease_lock('daily_reports', jsonb_build_object('day', p_day), p_attempt_token);
  update daily_reports
     set status = 'built', attempt_token = null, lease_expires_at = null, last_error = p_error,
         maybe_posted = maybe_posted or coalesce(p_maybe_posted, false), dispatched_at = null, updated_at = db_now()
   where day = p_day
  returning * into d;
  return daily_report_view(d, false);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- §17 Outgoing rate limits
-- integrations/rate_limit.py: limits shared by every process: a vendor counts the
-- app's calls together, so a per-process limiter would give each process the whole allowance.
-- A bucket has fixed windows of p_window_seconds aligned on the epoch; each call takes one slot.
-- ---------------------------------------------------------------------------------------------
create table if not exists rate_windows (
  bucket       text not null,
  window_start timestamptz not null,
  used         integer not null,
  -- Buffer's windows last 15 minutes and a day: a window is dropped once it has ended, not a minute
  -- after it started (which emptied a day's count whenever a 10-second HubSpot window opened)
  window_end   timestamptz,
  primary key (bucket, window_start)
);

-- Take a slot in the bucket's current window if fewer than p_limit are taken. The upsert is atomic:
-- concurrent callers queue on the row and the `where` sees the latest count. retry_after: seconds
-- until the current window ends (when a refused caller may try again).
create or replace function take_rate_slot(p_bucket text, p_limit integer, p_window_seconds double precision)
returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_start timestamptz;
  v_opened boolean;
  v_granted boolean;
begin
  if p_bucket is null or p_limit is null or p_limit < 1 or p_window_seconds is null or p_window_seconds <= 0 then
    raise exception 'a rate limit needs a bucket, limit >= 1 and window > 0' using errcode = 'OD422';
  end if;
  v_start := to_timestamp(floor(extract(epoch from v_now) / p_window_seconds) * p_window_seconds);
  insert into rate_windows as w (bucket, window_start, used, window_end)
  values (p_bucket, v_start, 1, v_start + make_interval(secs => p_window_seconds))
  on conflict (bucket, window_start) do update set used = w.used + 1 where w.used < p_limit
  returning w.xmax = 0 into v_opened;  -- xmax = 0: this call inserted the row, i.e. opened the window
  v_granted := found;  -- no row returned: the window is full
  if v_opened then  -- once per window and bucket: drop windows long past, so the table stays small
    delete from rate_windows
     where coalesce(window_end, window_start + interval '1 minute') < v_now - interval '1 minute';
  end if;
  return jsonb_build_object(
    'granted', v_granted,
    'retry_after', extract(epoch from v_start + make_interval(secs => p_window_seconds) - v_now)::double precision);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- §18 The demo
-- `opsdesk demo`: example actions submitted through the real queue and policy, and
-- example articles in memory (source 'opsdesk-demo'). Its actions are listed here, so `opsdesk
-- demo --remove` removes exactly them and nothing a person or an agent submitted. The audit log is
-- append-only: a removed demo action's rows stay, closed by a `demo_removed` row.
-- ---------------------------------------------------------------------------------------------
create table if not exists demo_actions (
  action_id uuid primary key references actions (id) on delete cascade,
  added_at  timestamptz not null default db_now()
);

create or replace function demo_mark(p_ids jsonb) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_added integer;
begin
  if p_ids is null or jsonb_typeof(p_ids) <> 'array' then
    raise exception 'p_ids must be a JSON array of action ids' using errcode = 'OD422';
  end if;
  insert into demo_actions (action_id)
  select x::uuid from jsonb_array_elements_text(p_ids) x
  on conflict (action_id) do nothing;
  get diagnostics v_added = row_count;
  return jsonb_build_object('added', v_added, 'actions', (select count(*) from demo_actions));
end
$$;

create or replace function demo_remove(p_actor text) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_actions integer;
  v_notes integer;
  v_memory integer;
  v_articles integer;
begin
  -- one at a time with the executor: a demo action it is running finishes first
  perform 1 from actions a join demo_actions d on d.action_id = a.id for update of a;
  insert into audit_log (action_id, actor, event, from_status, to_status, reason)
  select a.id, p_actor, 'demo_removed', a.status, null, 'demo data removed (opsdesk demo --remove)'
    from actions a join demo_actions d on d.action_id = a.id;
  delete from notes n using demo_actions d where n.action_id = d.action_id;
  get diagnostics v_notes = row_count;
  -- what memory kept of them (remember_action: what ran, and each decision), with the articles
  delete from memory m using demo_actions d
   where m.source in ('action', 'decision') and m.source_id = d.action_id::text;
  get diagnostics v_memory = row_count;
  -- cascades to the demo_actions rows, notifications and PIN tries of these actions
  delete from actions a using demo_actions d where a.id = d.action_id;
  get diagnostics v_actions = row_count;
  delete from memory where source = 'opsdesk-demo';
  get diagnostics v_articles = row_count;
  return jsonb_build_object('actions', v_actions, 'notes', v_notes, 'articles', v_articles,
                            'remembered', v_memory);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- §19 Buffer's OAuth grant
-- integrations/buffer_oauth.py: the business's one connection. The tokens
-- are stored as the app encrypted them (Fernet, BUFFER_TOKEN_KEY): this table never sees a token.
-- Buffer's refresh tokens are single-use and a reused one revokes the grant, so a refresh is
-- serialised here: buffer_refresh_begin locks the row, re-reads it, and gives a lease to one caller
-- only while the access token is about to expire; that caller stores the new pair with
-- buffer_refresh_finish. A lease that ran out unfinished means its refresh went out and its answer
-- never came back: the old token may be spent, so the grant needs reconnecting, never a retry.
-- ---------------------------------------------------------------------------------------------
create table if not exists buffer_grants (
  id                  boolean primary key default true check (id),
  status              text not null check (status in ('connected', 'reconnect_needed')),
  access_token_enc    text not null,
  refresh_token_enc   text,                        -- null: no offline_access, no refresh
  expires_at          timestamptz not null,        -- of the access token, on the database's clock
  scope               text not null default '',
  lease_id            uuid,                        -- the one refresh in flight
  lease_until         timestamptz,
  reason              text,                        -- why it needs reconnecting
  connected_at        timestamptz not null,
  refreshed_at        timestamptz,
  reconnect_since     timestamptz,
  updated_at          timestamptz not null
);

create or replace function buffer_grant_view(g buffer_grants) returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select case when g.id is null then null else jsonb_build_object(
    'status', g.status, 'access_token_enc', g.access_token_enc,
    'seconds_left', extract(epoch from g.expires_at - db_now())::double precision,
    'reason', g.reason, 'scope', g.scope, 'connected_at', g.connected_at, 'refreshed_at', g.refreshed_at,
    'reconnect_since', g.reconnect_since) end
$$;

-- A new connection (`opsdesk buffer connect`): replaces whatever was there, dead or alive.
create or replace function buffer_grant_save(p_access_token_enc text, p_refresh_token_enc text,
                                             p_expires_in double precision, p_scope text) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  g buffer_grants;
begin
  if p_access_token_enc is null or p_expires_in is null or p_expires_in < 0 then
    raise exception 'a grant needs an access token and its lifetime' using errcode = 'OD422';
  end if;
  insert into buffer_grants as b (id, status, access_token_enc, refresh_token_enc, expires_at, scope,
                                  connected_at, updated_at)
  values (true, 'connected', p_access_token_enc, p_refresh_token_enc, v_now + make_interval(secs => p_expires_in),
          coalesce(p_scope, ''), v_now, v_now)
  on conflict (id) do update
     set status = 'connected', access_token_enc = excluded.access_token_enc,
         refresh_token_enc = excluded.refresh_token_enc, expires_at = excluded.expires_at, scope = excluded.scope,
         lease_id = null, lease_until = null, reason = null, connected_at = v_now, refreshed_at = null,
         reconnect_since = null, updated_at = v_now
  returning * into g;
  return buffer_grant_view(g);
end
$$;

create or replace function buffer_grant_current() returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select buffer_grant_view(g) from buffer_grants g where g.id
$$;

-- The grant without its tokens: the report, `opsdesk buffer status`, `config check`.
create or replace function buffer_grant_status() returns jsonb
language sql stable set search_path = public, pg_temp as $$
  select buffer_grant_view(g) - 'access_token_enc' from buffer_grants g where g.id
$$;

create or replace function buffer_refresh_begin(p_margin_seconds double precision, p_lease_seconds double precision)
returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  g buffer_grants;
  v_lease uuid := gen_random_uuid();
  v_marked jsonb;
begin
  if p_margin_seconds is null or p_margin_seconds < 0 or p_lease_seconds is null or p_lease_seconds <= 0 then
    raise exception 'a refresh needs a margin >= 0 and a lease > 0' using errcode = 'OD422';
  end if;
  select * into g from buffer_grants where id for update;  -- every refresher queues here
  if not found then
    return jsonb_build_object('state', 'reconnect_needed', 'reason', 'Buffer is not connected');
  end if;
  if g.status <> 'connected' then
    return jsonb_build_object('state', 'reconnect_needed', 'reason', g.reason);
  end if;
  if g.lease_id is not null and g.lease_until > v_now then
    return jsonb_build_object('state', 'busy', 'retry_after', extract(epoch from g.lease_until - v_now)::double precision);
  end if;
  if g.lease_id is not null then
    v_marked := buffer_grant_reconnect('a token refresh did not finish: its answer was lost, and Buffer may have '
                                       || 'rotated the token', g.lease_id);
    return jsonb_build_object('state', 'reconnect_needed', 'reason', (select reason from buffer_grants where id),
                              'newly', v_marked->'newly');
  end if;
  if g.expires_at - make_interval(secs => p_margin_seconds) > v_now then
    return jsonb_build_object('state', 'fresh', 'grant', buffer_grant_view(g));
  end if;
  update buffer_grants set lease_id = v_lease, lease_until = v_now + make_interval(secs => p_lease_seconds),
                           updated_at = v_now
   where id;
  return jsonb_build_object('state', 'refresh', 'lease', v_lease, 'refresh_token_enc', g.refresh_token_enc);
end
$$;

-- The refresh's answer, stored with the lease ended, in one statement. A lease that is no longer
-- this caller's (it ran out, and the grant was marked) refuses the pair: OD409.
create or replace function buffer_refresh_finish(p_lease uuid, p_access_token_enc text, p_refresh_token_enc text,
                                                 p_expires_in double precision, p_scope text) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  g buffer_grants;
begin
  update buffer_grants
     set access_token_enc = p_access_token_enc, refresh_token_enc = p_refresh_token_enc,
         expires_at = v_now + make_interval(secs => greatest(coalesce(p_expires_in, 0), 0)),
         scope = coalesce(nullif(p_scope, ''), scope), lease_id = null, lease_until = null,
         refreshed_at = v_now, updated_at = v_now
   where id and lease_id = p_lease and status = 'connected'
  returning * into g;
  if not found then
    raise exception 'this refresh no longer holds the Buffer grant''s lease' using errcode = 'OD409';
  end if;
  return buffer_grant_view(g);
end
$$;

-- The refresh never reached Buffer: the old refresh token is unspent; the next caller may refresh.
create or replace function buffer_refresh_abandon(p_lease uuid) returns jsonb
language sql set search_path = public, pg_temp as $$
  update buffer_grants set lease_id = null, lease_until = null, updated_at = db_now()
   where id and lease_id = p_lease
  returning jsonb_build_object('abandoned', true)
$$;

-- The grant is dead. `newly`: this call marked it (the owner is told once, on Discord).
create or replace function buffer_grant_reconnect(p_reason text, p_lease uuid) returns jsonb
language plpgsql set search_path = public, pg_temp as $$
declare
  v_now timestamptz := db_now();
  v_newly boolean;
begin
  update buffer_grants
     set reason = case when status = 'connected' then left(coalesce(p_reason, 'Buffer refused the connection'), 500)
                       else reason end,
         reconnect_since = coalesce(reconnect_since, v_now),
         status = 'reconnect_needed',
         lease_id = case when p_lease is null or lease_id = p_lease then null else lease_id end,
         lease_until = case when p_lease is null or lease_id = p_lease then null else lease_until end,
         updated_at = v_now
   where id
  returning reconnect_since = v_now into v_newly;
  return jsonb_build_object('newly', coalesce(v_newly, false));
end
$$;

-- ---------------------------------------------------------------------------------------------
-- §20 Access
-- Row Level Security on every table with no policy: Supabase's anon and authenticated
-- roles (a leaked publishable key) read nothing. Functions run for service_role only. Guarded so
-- the same file runs where those roles do not exist (the embedded server, plain Postgres).
-- ---------------------------------------------------------------------------------------------
do $$
declare
  v_table text;
  v_sequence text;
  v_fn regprocedure;
  v_supabase boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
  foreach v_table in array array['clock_offset', 'schema_applied', 'actions', 'audit_log', 'notes', 'approval_pin_failures',
                                        'discord_notifications', 'discord_messages',
                                        'llm_calls', 'llm_model_resolution',
                                        'hubspot_webhook_deliveries', 'hubspot_events', 'hubspot_events_set_aside',
                                        'memory_config', 'memory', 'maintenance_leases',
                                        'email_quota_days', 'email_quota_reservations', 'email_campaigns',
                                        'campaign_batches', 'campaign_recipients',
                                        'job_runs', 'agent_runs', 'agent_skips', 'daily_reports',
                                        'rate_windows', 'demo_actions', 'buffer_grants'] loop
    execute format('alter table public.%I enable row level security', v_table);
    if v_supabase then
      execute format('revoke all on table public.%I from anon, authenticated', v_table);
      execute format('grant select, insert, update, delete on table public.%I to service_role', v_table);
      -- Supabase's default privileges grant new sequences to anon and authenticated too
      for v_sequence in
        select s.oid::regclass::text from pg_depend d join pg_class s on s.oid = d.objid
         where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
           and d.refobjid = format('public.%I', v_table)::regclass and s.relkind = 'S'
      loop
        execute format('revoke all on sequence %s from anon, authenticated', v_sequence);
      end loop;
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
    -- the clock offset is a test hook that moves db_now() for everything: only the owner moves it
    revoke insert, update, delete, truncate on table public.clock_offset from service_role;
  end if;
end
$$;

notify pgrst, 'reload schema';

commit;
