-- 35_webhooks.sql: WHOOP webhooks -- the queue of received events and the
-- function that receives one.
--
-- WHOOP posts an event (a workout, sleep or recovery updated or deleted)
-- to the app's registered URL.  The receiver that ships with the extension
-- (whoop-webhookd, outside the server) passes each request's signature
-- headers and raw body to whoop.receive_webhook(), which checks the
-- signature with the app's client secret and queues the event durably,
-- once per trace_id, before the receiver answers 2XX.  whoop.apply_webhooks()
-- applies the queue later (a pg_cron job of its own, and a step of
-- whoop.run_pipeline()): it fetches the records the events name by id,
-- tombstones deleted ones, and retries failed fetches with backoff until a
-- bound, after which an event is a dead letter until whoop.requeue_webhooks().

--upgrade 1.0--1.1 begin
create table whoop.webhook_events (
    id          bigint generated always as identity primary key,
    server_name name not null,
    trace_id    text not null,
    user_id     bigint not null,
    event_type  text not null
                check (event_type in ('workout.updated', 'workout.deleted',
                                      'sleep.updated', 'sleep.deleted',
                                      'recovery.updated', 'recovery.deleted')),
    record_id   uuid not null,
    signed_at   timestamptz not null,
    received_at timestamptz not null default pg_catalog.now(),
    status      text not null default 'queued' check (status in ('queued', 'applied', 'dead')),
    attempts    integer not null default 0,
    next_attempt_at timestamptz,
    applied_at  timestamptz,
    outcome     text check (outcome in ('upserted', 'unchanged', 'not found', 'tombstoned',
                                        'not stored', 'superseded')),
    last_error  text,
    run_id      bigint,
    unique (server_name, trace_id)
);
-- the applier's scan: due events of one account, oldest first
create index on whoop.webhook_events (server_name, user_id, id) where status = 'queued';
-- whoop.webhook_status reads these three instead of every event: the events
-- not applied, those applied lately (also the retention's oldest first) and
-- the newest arrival
create index on whoop.webhook_events (server_name, status) where status <> 'applied';
create index on whoop.webhook_events (server_name, applied_at) where status = 'applied';
create index on whoop.webhook_events (server_name, received_at);

-- the events are data, not schema: a dump keeps them
select pg_catalog.pg_extension_config_dump('whoop.webhook_events', '');
select pg_catalog.pg_extension_config_dump('whoop.webhook_events_id_seq', '');

comment on table whoop.webhook_events is
    'WHOOP webhook events received and verified by whoop.receive_webhook(), one row per delivery trace_id and server; whoop.apply_webhooks() deletes applied ones after the server option webhook_retention (30 days)';
comment on column whoop.webhook_events.id is
    'arrival order';
comment on column whoop.webhook_events.server_name is
    'the whoop_fdw server (WHOOP app) the event was posted for';
comment on column whoop.webhook_events.trace_id is
    'WHOOP''s id of the delivery; a retried or duplicated delivery has the same one and is stored once';
comment on column whoop.webhook_events.user_id is
    'the WHOOP member whose record changed';
comment on column whoop.webhook_events.event_type is
    'what happened: <workout|sleep|recovery>.<updated|deleted> (creates arrive as updated)';
comment on column whoop.webhook_events.record_id is
    'the record''s id; for recovery.* the id of the sleep the recovery belongs to';
comment on column whoop.webhook_events.signed_at is
    'the X-WHOOP-Signature-Timestamp the signature covers (WHOOP''s send time)';
comment on column whoop.webhook_events.received_at is
    'when the event was queued';
comment on column whoop.webhook_events.status is
    '''queued'': received, not applied yet (or waiting for a retry, see next_attempt_at); ''applied'': its effect is in the raw layer (see outcome); ''dead'': gave up after too many failed attempts, or the account is gone (see last_error; whoop.requeue_webhooks() queues it again)';
comment on column whoop.webhook_events.attempts is
    'failed attempts to apply the event so far (whoop.requeue_webhooks() sets it back to 0)';
comment on column whoop.webhook_events.next_attempt_at is
    'after a failed attempt: the event is not tried again before this time (backoff: 30 s doubling per attempt, at most 1 hour); NULL = due now';
comment on column whoop.webhook_events.applied_at is
    'when whoop.apply_webhooks() applied the event (applied_at - received_at is its lag)';
comment on column whoop.webhook_events.outcome is
    'what applying did: upserted (fetched and written), unchanged (fetched, nothing newer; or a tombstone that stays one), not found (the by-id fetch answered 404: the record is gone), tombstoned (deleted_at set, or set already), not stored (a deletion of a record never stored: nothing to do), superseded (an update followed by a deletion of the same record in one batch: the deletion won)';
comment on column whoop.webhook_events.last_error is
    'the error of the last failed attempt, followed by its HINT when it has one (kept after a later success)';
comment on column whoop.webhook_events.run_id is
    'the whoop.run_pipeline() run whose webhooks step last tried the event; NULL when whoop.apply_webhooks() was called alone (e.g. by its pg_cron job)';

-- A sleep's recovery is scored minutes after the sleep and announced by an
-- event of its own.  WHOOP drops a few events for good, and a dropped
-- recovery.updated would leave the day's recovery unscored until the
-- reconciling sync, hours later.  So when the applier stores a sleep just
-- scored whose recovery it has not seen scored, it notes a follow-up here,
-- due after the server option recovery_follow_up; the recovery's own event
-- cancels it, and a follow-up that comes due first fetches the recovery
-- (whoop.apply_webhooks()).  It costs a request only where the event is
-- missing or late.  State, not data: a dump does not keep it (what a lost
-- follow-up would have fetched, the reconciling sync fetches).
create table whoop_internal.recovery_follow_ups (
    server_name name not null,
    user_id     bigint not null,
    sleep_id    uuid not null,
    due_at      timestamptz not null,
    attempts    integer not null default 0,
    primary key (server_name, user_id, sleep_id)
);
create index on whoop_internal.recovery_follow_ups (due_at);

comment on table whoop_internal.recovery_follow_ups is
    'recoveries whose recovery.updated the applier awaits after storing their sleep scored: whoop.apply_webhooks() fetches each once due_at has passed without the event (the server option recovery_follow_up after the sleep), tries again after 2 and 4 times that while the recovery stays unscored, then leaves it to the reconciling sync';
comment on column whoop_internal.recovery_follow_ups.server_name is
    'the whoop_fdw server (WHOOP app) of the account';
comment on column whoop_internal.recovery_follow_ups.user_id is
    'the WHOOP member';
comment on column whoop_internal.recovery_follow_ups.sleep_id is
    'the sleep (the name recovery events carry); its cycle leads to the recovery';
comment on column whoop_internal.recovery_follow_ups.due_at is
    'when the applier fetches the recovery unless its event has come';
comment on column whoop_internal.recovery_follow_ups.attempts is
    'fetches so far that found the recovery still unscored or failed';

create function whoop.receive_webhook(server name, signature text, "timestamp" text, body bytea)
returns text
language c
security definer
set search_path = pg_catalog, pg_temp
as 'MODULE_PATHNAME', 'whoop_receive_webhook';

comment on function whoop.receive_webhook(name, text, text, bytea) is
    'checks a WHOOP webhook (X-WHOOP-Signature, X-WHOOP-Signature-Timestamp, raw body) and queues its event in whoop.webhook_events; returns queued or duplicate; refusals raise errors with their own SQLSTATE';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
-- An event of an account that is gone (disconnected, or its server dropped)
-- can never be applied: there is no token to fetch with.  It becomes a dead
-- letter at once, saying why, rather than waiting for retries that cannot
-- succeed (or lingering unseen: the applier takes only events of accounts
-- that exist).
create function whoop_internal.bury_webhook_events()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    update whoop.webhook_events e
       set status = 'dead', next_attempt_at = null,
           last_error = format('the WHOOP account %s of server "%s" was disconnected or its server dropped; '
                               'link it again and call whoop.requeue_webhooks() to apply the event',
                               old.user_id, old.server_name)
     where e.server_name = old.server_name and e.user_id = old.user_id and e.status = 'queued';
    delete from whoop_internal.recovery_follow_ups f
     where f.server_name = old.server_name and f.user_id = old.user_id;
    return null;
end
$$;

comment on function whoop_internal.bury_webhook_events() is
    'trigger function: the queued webhook events of an account that is deleted (disconnected, or its server dropped) become dead letters, and its recovery follow-ups go';

create trigger account_bury_webhook_events
    after delete on whoop_internal.account
    for each row execute function whoop_internal.bury_webhook_events();

comment on trigger account_bury_webhook_events on whoop_internal.account is
    'the queued webhook events of an account that is gone become dead letters';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
-- A dropped server's applied events go with it: whoop.apply_webhooks()
-- deletes applied events after their server's webhook_retention, and a
-- server that is gone has no options to read, so they would stay forever.
-- Its events not applied stay, as dead letters (the trigger above buries
-- them when the server's accounts go) for an operator to read.  SECURITY
-- DEFINER because the role dropping its own server may not delete events.
create function whoop_internal.forget_dropped_server_events()
returns event_trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    delete from whoop.webhook_events e
     where e.status = 'applied'
       and e.server_name = any (array(select d.object_name
                                      from pg_event_trigger_dropped_objects() d
                                      where d.object_type = 'server'));
end
$$;

comment on function whoop_internal.forget_dropped_server_events() is
    'event trigger function: deletes the applied webhook events of dropped servers';

create event trigger whoop_forget_dropped_server_events
    on sql_drop
    when tag in ('DROP SERVER', 'DROP OWNED')
    execute function whoop_internal.forget_dropped_server_events();

comment on event trigger whoop_forget_dropped_server_events is
    'whoop_fdw: a dropped server''s applied webhook events are deleted with it';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
-- One by-id fetch of an endpoint's records written into the raw layer in
-- the same statement, as whoop.sync() writes a listing: the FDW sends one GET
-- per id, and a 404 yields no row.  Returns the keys fetched and the keys
-- written (as text: uuids of sleeps and workouts, cycle ids of recoveries).
-- The written ones are the rows whose _extracted_at is this transaction's
-- now(): the upsert stamps every row it writes so, and nothing else writes
-- these rows in the applier's transaction.
create function whoop_internal.fetch_records_by_id(
    server name, user_id bigint, endpoint text, ids uuid[], cycle_ids bigint[],
    out fetched text[], out written text[])
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    key text := case endpoint when 'recovery' then 'cycle_id' else 'id' end;
begin
    execute format($q$
        with fetched as materialized (
                 select * from %s where user_id = $1 and %I = any(%s)),
             written as (%s)
        select coalesce(array_agg(f.%I::text), '{}'),
               (select count(*) from written)
        from fetched f
        $q$, whoop_internal.sync_source(server, endpoint), key,
        case endpoint when 'recovery' then '$3' else '$2' end,
        whoop_internal.raw_upsert(endpoint), key)
    into fetched
    using user_id, ids, cycle_ids;
    -- (the keys compared as their type, not as text, so that the primary
    -- key finds them instead of a scan of every member's rows)
    execute format('select coalesce(array_agg(r.%I::text), ''{}'') from whoop.%I r '
                   'where r.%I = any($1::%s[]) and r._extracted_at = now()',
                   key, 'raw_' || endpoint, key,
                   case endpoint when 'recovery' then 'bigint' else 'uuid' end)
    into written
    using fetched;
end
$$;

comment on function whoop_internal.fetch_records_by_id(name, bigint, text, uuid[], bigint[]) is
    'fetches one account''s sleeps or workouts by id (ids), or recoveries by cycle id (cycle_ids), and upserts them into the raw layer in one statement; returns the keys fetched (a 404 is missing) and the keys written';

-- A role that may apply events but not keep follow-ups (the owner grants
-- SELECT, INSERT, UPDATE, DELETE on whoop_internal.recovery_follow_ups)
-- applies without them.
create function whoop_internal.may_follow_up()
returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$
    select bool_and(has_table_privilege('whoop_internal.recovery_follow_ups', p))
    from unnest(array['select', 'insert', 'update', 'delete']) p
$$;

comment on function whoop_internal.may_follow_up() is
    'whether the current role may keep recovery follow-ups (SELECT, INSERT, UPDATE and DELETE on whoop_internal.recovery_follow_ups); without, whoop.apply_webhooks() applies events without them';

-- Applies one account's events in the caller's transaction: either all of
-- their effects and status changes commit, or none do.  Deletions first,
-- and they win over updates of the same record in the batch (WHOOP never
-- reuses an id); every record is fetched at most once however many events
-- name it.
create function whoop_internal.apply_webhook_events(server name, user_id bigint, event_ids bigint[],
                                                    run_id bigint)
returns integer
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
    del_workout uuid[];
    del_sleep uuid[];
    del_recovery uuid[];
    upd_workout uuid[];
    upd_sleep uuid[];
    upd_recovery uuid[];
    mark_cycles boolean;
    missing uuid[];
    cycles bigint[];
    fetched text[];
    written text[];
    outcomes jsonb := '{}';
    applied integer;
    follow_up boolean := whoop_internal.may_follow_up();
begin
    select coalesce(array_agg(distinct e.record_id) filter (where e.event_type = 'workout.deleted'), '{}'),
           coalesce(array_agg(distinct e.record_id) filter (where e.event_type = 'sleep.deleted'), '{}'),
           coalesce(array_agg(distinct e.record_id) filter (where e.event_type = 'recovery.deleted'), '{}'),
           coalesce(array_agg(distinct e.record_id) filter (where e.event_type = 'workout.updated'), '{}'),
           coalesce(array_agg(distinct e.record_id) filter (where e.event_type = 'sleep.updated'), '{}'),
           coalesce(array_agg(distinct e.record_id) filter (where e.event_type = 'recovery.updated'), '{}')
      into del_workout, del_sleep, del_recovery, upd_workout, upd_sleep, upd_recovery
    from whoop.webhook_events e
    where e.id = any (event_ids);

    -- Deletions: tombstones, no request.  A deleted sleep takes its
    -- recovery with it.
    select outcomes || coalesce(jsonb_object_agg('workout.deleted:' || d,
                                                  case when w.id is null then 'not stored' else 'tombstoned' end), '{}')
      into outcomes
    from unnest(del_workout) d
    left join whoop.raw_workout w on w.id = d and w.user_id = apply_webhook_events.user_id;
    update whoop.raw_workout w set deleted_at = now()
     where w.id = any (del_workout) and w.user_id = apply_webhook_events.user_id and w.deleted_at is null;

    select outcomes || coalesce(jsonb_object_agg('sleep.deleted:' || d,
                                                  case when s.id is null then 'not stored' else 'tombstoned' end), '{}')
      into outcomes
    from unnest(del_sleep) d
    left join whoop.raw_sleep s on s.id = d and s.user_id = apply_webhook_events.user_id;
    update whoop.raw_sleep s set deleted_at = now()
     where s.id = any (del_sleep) and s.user_id = apply_webhook_events.user_id and s.deleted_at is null;

    select outcomes || coalesce(jsonb_object_agg('recovery.deleted:' || d,
                                                  case when exists (select from whoop.raw_recovery v
                                                                    where v.sleep_id = d
                                                                      and v.user_id = apply_webhook_events.user_id)
                                                       then 'tombstoned' else 'not stored' end), '{}')
      into outcomes
    from unnest(del_recovery) d;
    update whoop.raw_recovery v set deleted_at = now()
     where v.sleep_id = any (del_recovery || del_sleep) and v.user_id = apply_webhook_events.user_id
       and v.deleted_at is null;
    if follow_up then
        delete from whoop_internal.recovery_follow_ups f
         where f.server_name = server and f.user_id = apply_webhook_events.user_id
           and f.sleep_id = any (del_recovery || del_sleep);
    end if;

    -- Updates of records deleted in the same batch fetch nothing.
    select outcomes || coalesce(jsonb_object_agg(k || ':' || d, 'superseded'), '{}')
      into outcomes
    from (select 'workout.updated' k, d from unnest(upd_workout) d where d = any (del_workout)
          union all
          select 'sleep.updated', d from unnest(upd_sleep) d where d = any (del_sleep)
          union all
          select 'recovery.updated', d from unnest(upd_recovery) d where d = any (del_recovery || del_sleep)) x;
    upd_workout := array(select unnest(upd_workout) except select unnest(del_workout));
    upd_sleep := array(select unnest(upd_sleep) except select unnest(del_sleep));
    upd_recovery := array(select unnest(upd_recovery) except select unnest(del_recovery || del_sleep));

    -- Updates: one GET per record; a tombstone stays one (the upsert
    -- never writes over it), a 404 is 'not found' (the .deleted event, or
    -- the sync's reconciliation, makes the tombstone).
    if cardinality(upd_workout) > 0 then
        select f.fetched, f.written into fetched, written
        from whoop_internal.fetch_records_by_id(server, user_id, 'workout', upd_workout, null) f;
        select outcomes || jsonb_object_agg('workout.updated:' || d,
                                            case when d::text = any (written) then 'upserted'
                                                 when d::text = any (fetched) then 'unchanged'
                                                 else 'not found' end)
          into outcomes
        from unnest(upd_workout) d;
    end if;
    if cardinality(upd_sleep) > 0 then
        select f.fetched, f.written into fetched, written
        from whoop_internal.fetch_records_by_id(server, user_id, 'sleep', upd_sleep, null) f;
        select outcomes || jsonb_object_agg('sleep.updated:' || d,
                                            case when d::text = any (written) then 'upserted'
                                                 when d::text = any (fetched) then 'unchanged'
                                                 else 'not found' end)
          into outcomes
        from unnest(upd_sleep) d;

        -- A main sleep scored within the hour whose recovery is not stored
        -- scored: its recovery.updated is due within minutes.  Should it
        -- not come, whoop.apply_webhooks() fetches the recovery after the
        -- server's recovery_follow_up (whoop_internal.recovery_follow_ups).
        -- Older sleeps are the reconciling sync's.
        if follow_up then
            insert into whoop_internal.recovery_follow_ups as f (server_name, user_id, sleep_id, due_at)
            select server, s.user_id, s.id, now() + (whoop_internal.sync_settings(server)).recovery_follow_up
            from whoop.raw_sleep s
            left join whoop.raw_recovery v on v.cycle_id = s.cycle_id
            where s.id = any (upd_sleep) and s.user_id = apply_webhook_events.user_id
              and s.score_state = 'SCORED' and not s.nap and s.deleted_at is null
              and s.cycle_id is not null and s.updated_at > now() - interval '1 hour'
              and (v.cycle_id is null or v.score_state = 'PENDING_SCORE')
            on conflict (server_name, user_id, sleep_id) do nothing;
        end if;
    end if;

    -- A recovery is named by its sleep: the sleep's cycle (the sleep
    -- fetched first when it is not stored) leads to GET /v2/cycle/{id}/recovery.
    if cardinality(upd_recovery) > 0 then
        missing := array(select d from unnest(upd_recovery) d
                         where not exists (select from whoop.raw_sleep s where s.id = d));
        if cardinality(missing) > 0 then
            perform whoop_internal.fetch_records_by_id(server, user_id, 'sleep', missing, null);
        end if;
        cycles := array(select distinct s.cycle_id from whoop.raw_sleep s
                        where s.id = any (upd_recovery) and s.user_id = apply_webhook_events.user_id
                          and s.cycle_id is not null);
        fetched := '{}';
        written := '{}';
        if cardinality(cycles) > 0 then
            select f.fetched, f.written into fetched, written
            from whoop_internal.fetch_records_by_id(server, user_id, 'recovery', null, cycles) f;
        end if;
        -- A recovery is scored after its sleep: a sleep still stored
        -- unscored beside a scored recovery missed its own event (WHOOP
        -- drops a few), and is fetched now rather than at the reconciling
        -- sync.
        missing := array(select s.id from whoop.raw_sleep s
                         join whoop.raw_recovery v on v.cycle_id = s.cycle_id
                         where s.id = any (upd_recovery) and s.user_id = apply_webhook_events.user_id
                           and s.score_state = 'PENDING_SCORE' and s.deleted_at is null
                           and v.score_state <> 'PENDING_SCORE' and v.deleted_at is null);
        if cardinality(missing) > 0 then
            perform whoop_internal.fetch_records_by_id(server, user_id, 'sleep', missing, null);
        end if;
        -- the event the follow-ups waited for has come
        if follow_up then
            delete from whoop_internal.recovery_follow_ups f
             where f.server_name = server and f.user_id = apply_webhook_events.user_id
               and f.sleep_id = any (upd_recovery)
               and not exists (select from whoop.raw_sleep s
                               join whoop.raw_recovery v on v.cycle_id = s.cycle_id
                               where s.id = f.sleep_id and v.score_state = 'PENDING_SCORE');
        end if;
        select outcomes || jsonb_object_agg('recovery.updated:' || d,
                                            case when s.cycle_id::text = any (written) then 'upserted'
                                                 when s.cycle_id::text = any (fetched) then 'unchanged'
                                                 else 'not found' end)
          into outcomes
        from unnest(upd_recovery) d
        left join whoop.raw_sleep s on s.id = d and s.user_id = apply_webhook_events.user_id;
    end if;

    -- A sleep or workout changes the strain and sleep figures of its
    -- cycle, which has no event of its own: the next sync fetches the
    -- member's cycles.  Not for a workout that has only appeared,
    -- unscored: it has no strain yet, and its scoring follows within
    -- minutes with an event of its own.  (A sleep that has only appeared
    -- does: it ends one cycle and begins the next.)
    mark_cycles := cardinality(del_workout) > 0 or cardinality(upd_sleep) > 0
                   or cardinality(del_sleep) > 0
                   or exists (select from whoop.raw_workout w
                              where w.id = any (upd_workout) and w.user_id = apply_webhook_events.user_id
                                and w.score_state <> 'PENDING_SCORE');
    if mark_cycles then
        insert into whoop.sync_state as s (server_name, user_id, endpoint, pending_since)
        values (server, user_id, 'cycle', now())
        on conflict (server_name, user_id, endpoint)
        do update set pending_since = coalesce(s.pending_since, excluded.pending_since);
    end if;

    update whoop.webhook_events e
       set status = 'applied', applied_at = clock_timestamp(), next_attempt_at = null,
           outcome = outcomes ->> (e.event_type || ':' || e.record_id),
           run_id = apply_webhook_events.run_id
     where e.id = any (event_ids);
    get diagnostics applied = row_count;
    return applied;
end
$$;

comment on function whoop_internal.apply_webhook_events(name, bigint, bigint[], bigint) is
    'applies the given webhook events of one account in the caller''s transaction (fetches by id, upserts, tombstones, marks the member''s cycles pending; fetches a sleep stored unscored beside its scored recovery; notes or cancels recovery follow-ups) and marks them applied with their outcome; raises when a fetch fails';

-- Counts a try of an account's follow-ups (a fetch that found the recovery
-- unscored, or failed): due again after twice the last wait, and ended
-- after the third, when the reconciling sync is as near as another try.
create function whoop_internal.postpone_follow_ups(server name, user_id bigint, sleep_ids uuid[])
returns void
language sql
set search_path = pg_catalog, pg_temp
as $$
    delete from whoop_internal.recovery_follow_ups f
     where f.server_name = server and f.user_id = postpone_follow_ups.user_id
       and f.sleep_id = any (sleep_ids) and f.attempts + 1 >= 3;
    update whoop_internal.recovery_follow_ups f
       set attempts = f.attempts + 1,
           due_at = now() + (whoop_internal.sync_settings(server)).recovery_follow_up * power(2, f.attempts + 1)
     where f.server_name = server and f.user_id = postpone_follow_ups.user_id
       and f.sleep_id = any (sleep_ids);
$$;

comment on function whoop_internal.postpone_follow_ups(name, bigint, uuid[]) is
    'counts a try of one account''s recovery follow-ups: makes them due after twice their last wait (recovery_follow_up, then 2 and 4 times it), and ends them after the third try';

-- Fetches the recoveries of one account's due follow-ups in the caller's
-- transaction.  A follow-up ends when its recovery is stored scored (or
-- unscorable) or its sleep is gone; otherwise the try counts.
create function whoop_internal.follow_up_recoveries(server name, user_id bigint, sleep_ids uuid[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
    cycles bigint[];
begin
    cycles := array(select distinct s.cycle_id from whoop.raw_sleep s
                    where s.id = any (sleep_ids) and s.user_id = follow_up_recoveries.user_id
                      and s.cycle_id is not null and s.deleted_at is null);
    if cardinality(cycles) > 0 then
        perform whoop_internal.fetch_records_by_id(server, user_id, 'recovery', null, cycles);
    end if;
    delete from whoop_internal.recovery_follow_ups f
     where f.server_name = server and f.user_id = follow_up_recoveries.user_id
       and f.sleep_id = any (sleep_ids)
       and not exists (select from whoop.raw_sleep s
                       left join whoop.raw_recovery v on v.cycle_id = s.cycle_id
                       where s.id = f.sleep_id and s.deleted_at is null and s.cycle_id is not null
                         and (v.cycle_id is null or v.score_state = 'PENDING_SCORE'));
    perform whoop_internal.postpone_follow_ups(server, user_id, sleep_ids);
end
$$;

comment on function whoop_internal.follow_up_recoveries(name, bigint, uuid[]) is
    'fetches the recoveries of one account''s due follow-ups (whoop_internal.recovery_follow_ups) in the caller''s transaction; ends those whose recovery is now stored scored or whose sleep is gone, and postpones the rest (whoop_internal.postpone_follow_ups); raises when a fetch fails';
--upgrade 1.0--1.1 end

-- No SET clause (search_path) here: a procedure with one cannot COMMIT.
-- Every name below is schema-qualified or from pg_catalog.
--
-- Each account's batch of events is one transaction: its effects and its
-- status changes commit together, so a crash at any point loses no event
-- and applies none twice (and applying again is harmless: upserts keep the
-- newer version, tombstones stay).  FOR UPDATE SKIP LOCKED keeps two
-- appliers (the pg_cron job and a pipeline) off each other's events.
--upgrade 1.0--1.1 begin
create procedure whoop.apply_webhooks(server name default null, max_events integer default 1000,
                                      run_id bigint default null)
language plpgsql
as $$
declare
    max_attempts constant integer := 8;
    prune_batch constant integer := 10000;
    target record;
    retention record;
    ids bigint[];
    tried bigint[] := '{}';
    applied integer := 0;
    failed integer := 0;
    died integer := 0;
    n integer;
    message text;
    hint text;
    dead_letters text[] := '{}';
    deferred integer := 0;
    batch_applied boolean;
    poll_cycles boolean;
    cycles_deferred boolean := false;
    poll record;
    polls_failed text[] := '{}';
    sleeps uuid[];
    followed_accounts text[] := '{}';
    follow_ups_deferred boolean := false;
    follow_ups_failed text[] := '{}';
begin
    perform whoop_internal.assert_outside_transaction_block('whoop.apply_webhooks()');
    if max_events is null or max_events < 1 then
        raise exception 'max_events must be a positive number, not %', coalesce(max_events::text, 'NULL')
            using errcode = 'invalid_parameter_value',
                  hint = 'Leave it out to apply up to 1000 events per call.';
    end if;
    if server is not null and not exists (
            select from pg_foreign_server s
            join pg_foreign_data_wrapper w on w.oid = s.srvfdw
            where s.srvname = server and w.fdwname = 'whoop_fdw') then
        raise exception 'server "%" does not exist or does not use whoop_fdw', server
            using errcode = 'undefined_object',
                  hint = 'Name a server of the whoop_fdw wrapper, or pass NULL for all of them.';
    end if;

    -- The foreign tables the fetches read are imported on first use (one
    -- session at a time: sync_source serialises imports); they are made
    -- here and committed before any fetch, so no account's batch holds the
    -- import lock.
    perform whoop_internal.sync_source(s.server_name, ep.endpoint)
    from (select distinct e.server_name
          from whoop.webhook_events e
          where e.status = 'queued'
            and (apply_webhooks.server is null or e.server_name = apply_webhooks.server)
            and exists (select from whoop.accounts a
                        where a.server_name = e.server_name and a.user_id = e.user_id)) s,
         (values ('sleep'), ('workout'), ('recovery')) ep (endpoint);
    commit;

    loop
        exit when cardinality(tried) >= max_events;
        -- the account of the oldest due event this role may apply
        select e.server_name, e.user_id into target
        from whoop.webhook_events e
        where e.status = 'queued'
          and (e.next_attempt_at is null or e.next_attempt_at <= now())
          and (apply_webhooks.server is null or e.server_name = apply_webhooks.server)
          and e.id <> all (tried)
          and exists (select from whoop.accounts a
                      where a.server_name = e.server_name and a.user_id = e.user_id)
        order by e.id
        limit 1
        for update of e skip locked;
        exit when not found;

        select array_agg(x.id order by x.id) into ids
        from (select e.id
              from whoop.webhook_events e
              where e.server_name = target.server_name and e.user_id = target.user_id
                and e.status = 'queued'
                and (e.next_attempt_at is null or e.next_attempt_at <= now())
                and e.id <> all (tried)
              order by e.id
              limit max_events - cardinality(tried)
              for update of e skip locked) x;
        tried := tried || ids;

        -- the request budget keeps the day longest for webhook applies
        perform pg_catalog.set_config('whoop_fdw.request_class', 'webhook', true);
        batch_applied := false;
        begin
            applied := applied
                       + whoop_internal.apply_webhook_events(target.server_name, target.user_id, ids,
                                                             apply_webhooks.run_id);
            batch_applied := true;
        exception when sqlstate '53400' then
            -- the day's request budget is used up: nothing was fetched; the
            -- events stay queued, not counted as attempts, and so do the
            -- rest (they would be refused too)
            deferred := deferred + cardinality(ids);
        when others then
            get stacked diagnostics message = message_text, hint = pg_exception_hint;
            -- the hint says what to do (e.g. link the account again)
            if hint <> '' then
                message := message || ' HINT: ' || hint;
            end if;
            update whoop.webhook_events e
               set attempts = e.attempts + 1,
                   status = case when e.attempts + 1 >= max_attempts then 'dead' else 'queued' end,
                   next_attempt_at = case when e.attempts + 1 >= max_attempts then null
                                          else now() + least(interval '1 hour',
                                                             interval '30 seconds' * power(2, e.attempts)) end,
                   last_error = message,
                   run_id = apply_webhooks.run_id
             where e.id = any (ids);
            failed := failed + cardinality(ids);
            select count(*) into n from whoop.webhook_events e where e.id = any (ids) and e.status = 'dead';
            if n > 0 then
                died := died + n;
                dead_letters := dead_letters || format('%s/%s: %s events: %s', target.server_name,
                                                       target.user_id, n, message);
            end if;
        end;
        commit;
        exit when deferred > 0;

        -- The cycles a sleep or workout event marked are polled now, while
        -- the member's token is fresh from the fetches: one request, where
        -- the next sync would most likely refresh the token first, and the
        -- day's strain is minutes old instead of hours.  Not while the
        -- member's first load is still to come (whoop.sync() makes it), nor
        -- when a sync or another applier is fetching them (locked), nor
        -- after the budget deferred one: the mark stays for the sync.
        continue when not batch_applied or cycles_deferred;
        select s.poll_cycles_on_event into poll_cycles
        from whoop_internal.sync_settings(target.server_name) s;
        continue when not poll_cycles;
        perform from whoop.sync_state s
        where s.server_name = target.server_name and s.user_id = target.user_id
          and s.endpoint = 'cycle' and s.pending_since is not null and s.history_from is not null
        for update skip locked;
        if found then
            poll := whoop_internal.sync_step(target.server_name, target.user_id, 'cycle', false,
                                             apply_webhooks.run_id);
            cycles_deferred := poll.status = 'deferred';
            if poll.status = 'failed' then
                polls_failed := polls_failed || format('%s/%s: %s', target.server_name,
                                                       target.user_id, poll.error);
            end if;
        end if;
        commit;
    end loop;

    -- Recoveries whose event has not come within recovery_follow_up of
    -- their sleep's scoring: fetched here, one account per transaction, as
    -- request class webhook, after the events (which may still cancel
    -- them) and not once the budget has deferred anything.
    loop
        exit when deferred > 0 or follow_ups_deferred or not whoop_internal.may_follow_up();
        select f.server_name, f.user_id into target
        from whoop_internal.recovery_follow_ups f
        where f.due_at <= now()
          and (apply_webhooks.server is null or f.server_name = apply_webhooks.server)
          and (f.server_name || '/' || f.user_id) <> all (followed_accounts)
          and exists (select from whoop.accounts a
                      where a.server_name = f.server_name and a.user_id = f.user_id)
        order by f.due_at
        limit 1
        for update of f skip locked;
        exit when not found;
        followed_accounts := followed_accounts || (target.server_name || '/' || target.user_id);

        select array_agg(x.sleep_id) into sleeps
        from (select f.sleep_id
              from whoop_internal.recovery_follow_ups f
              where f.server_name = target.server_name and f.user_id = target.user_id
                and f.due_at <= now()
              for update of f skip locked) x;
        continue when sleeps is null;

        perform pg_catalog.set_config('whoop_fdw.request_class', 'webhook', true);
        begin
            perform whoop_internal.follow_up_recoveries(target.server_name, target.user_id, sleeps);
        exception when sqlstate '53400' then
            -- the budget is used up: the follow-ups wait, as the events do
            follow_ups_deferred := true;
        when others then
            get stacked diagnostics message = message_text;
            follow_ups_failed := follow_ups_failed || format('%s/%s: %s', target.server_name,
                                                             target.user_id, message);
            -- a try, as when the recovery is found unscored
            perform whoop_internal.postpone_follow_ups(target.server_name, target.user_id, sleeps);
        end;
        commit;
    end loop;

    -- Applied events older than their server's webhook_retention go, oldest
    -- first and at most prune_batch per server and call: a backlog (the
    -- first calls after an upgrade, a shortened retention) spreads over the
    -- calls instead of holding one up.  Queued and dead events stay.  A
    -- role that may apply but not delete events leaves them to the owner.
    if pg_catalog.has_table_privilege('whoop.webhook_events', 'delete') then
        for retention in
            select s.srvname as server_name, st.webhook_retention
            from pg_foreign_server s
            join pg_foreign_data_wrapper w on w.oid = s.srvfdw and w.fdwname = 'whoop_fdw'
            cross join lateral whoop_internal.sync_settings(s.srvname) st
            where apply_webhooks.server is null or s.srvname = apply_webhooks.server
        loop
            delete from whoop.webhook_events e
            where e.id in (select x.id
                           from whoop.webhook_events x
                           where x.server_name = retention.server_name and x.status = 'applied'
                             and x.applied_at < now() - retention.webhook_retention
                           order by x.applied_at
                           limit prune_batch
                           for update skip locked);
        end loop;
        commit;
    end if;

    if deferred > 0 then
        raise notice 'whoop.apply_webhooks: the day''s request budget is used up; % events stay queued', deferred
            using hint = 'They are applied once the budget refills; see whoop.request_budget.';
    end if;
    if died > 0 then
        raise warning 'whoop.apply_webhooks: % webhook events failed % times and are dead letters',
                      died, max_attempts
            using detail = array_to_string(dead_letters, E'\n'),
                  hint = 'Fix the cause, then SELECT whoop.requeue_webhooks(); see whoop.webhook_status and whoop.webhook_events (status = ''dead'').';
    elsif failed > 0 then
        raise notice 'whoop.apply_webhooks: % events applied, % failed and will be retried', applied, failed
            using hint = 'See whoop.webhook_events.last_error and next_attempt_at.';
    end if;
    if cardinality(follow_ups_failed) > 0 then
        raise notice 'whoop.apply_webhooks: fetching the awaited recoveries of % members failed',
                     cardinality(follow_ups_failed)
            using detail = array_to_string(follow_ups_failed, E'\n'),
                  hint = 'They are tried again later, at most 3 times; the reconciling sync fetches them too. See whoop.sync_log.';
    end if;
    if cardinality(polls_failed) > 0 then
        raise notice 'whoop.apply_webhooks: polling the cycles of % members failed', cardinality(polls_failed)
            using detail = array_to_string(polls_failed, E'\n'),
                  hint = 'Their cycles stay marked; the next whoop.sync() polls them. See whoop.sync_log.';
    end if;
end
$$;

comment on procedure whoop.apply_webhooks(name, integer, bigint) is
    'applies queued, due webhook events (of the accounts this role may use; oldest first, at most max_events): fetches updated records by id and upserts them, tombstones deleted ones, marks the member''s cycles and, with the server option poll_cycles_on_event (default true), polls them at once (request class cycle; deferred or failed: the mark stays for the next sync); one transaction per account; then fetches the recoveries whose recovery.updated has not come within the server option recovery_follow_up (default 5 minutes) of their sleep''s scoring (whoop_internal.recovery_follow_ups); then deletes applied events older than the server option webhook_retention (default 30 days; at most 10000 per server and call, when the role may delete events); a failed fetch is retried with backoff and after 8 failed attempts the event is a dead letter (WARNING); fetches run as request class webhook, and one the request budget refuses leaves its events queued without counting an attempt. run_id: the pipeline run calling it. Call it outside a transaction block';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
create function whoop.requeue_webhooks(server name default null)
returns bigint
language sql
set search_path = pg_catalog, pg_temp
as $$
    with requeued as (
        update whoop.webhook_events e
           set status = 'queued', attempts = 0, next_attempt_at = null
         where e.status = 'dead'
           and (requeue_webhooks.server is null or e.server_name = requeue_webhooks.server)
           and exists (select from whoop.accounts a
                       where a.server_name = e.server_name and a.user_id = e.user_id)
        returning 1)
    select count(*) from requeued
$$;

comment on function whoop.requeue_webhooks(name) is
    'queues the dead-letter webhook events (of the accounts this role may use, on one server or all) again with their attempts reset, once the cause is fixed; returns how many';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
create view whoop.webhook_status as
-- Reads the events not applied and those applied in the last day, through
-- their indexes, not the whole table: a day's events are what the figures
-- need, and the table holds webhook_retention's worth (30 days by default).
with servers (server_name) as (
    -- the wrapper's servers that have events (one index probe each), and
    -- the servers of events not applied: a dropped server's are dead
    select s.srvname
    from pg_catalog.pg_foreign_server s
    join pg_catalog.pg_foreign_data_wrapper w on w.oid = s.srvfdw and w.fdwname = 'whoop_fdw'
    where exists (select from whoop.webhook_events e where e.server_name = s.srvname)
    union
    select e.server_name from whoop.webhook_events e where e.status <> 'applied'
)
select s.server_name,
       p.queued,
       p.due,
       p.retrying,
       p.dead,
       a.applied_last_hour,
       a.applied_last_day,
       p.oldest_queued_age,
       a.lag_median_last_hour,
       a.lag_p99_last_hour,
       a.lag_median_last_day,
       a.lag_p99_last_day,
       (select coalesce(jsonb_object_agg(o.outcome, o.n), '{}')
        from (select x.outcome, count(*) as n
              from whoop.webhook_events x
              where x.server_name = s.server_name and x.status = 'applied'
                and x.applied_at >= now() - interval '1 day'
              group by x.outcome) o) as outcomes_last_day,
       (select max(x.received_at) from whoop.webhook_events x
        where x.server_name = s.server_name) as last_received_at,
       f.follow_ups,
       f.follow_ups_due
from servers s
cross join lateral (
    select count(*) filter (where e.status = 'queued') as queued,
           count(*) filter (where e.status = 'queued'
                              and (e.next_attempt_at is null or e.next_attempt_at <= now())) as due,
           count(*) filter (where e.status = 'queued' and e.next_attempt_at > now()) as retrying,
           count(*) filter (where e.status = 'dead') as dead,
           now() - min(e.received_at) filter (where e.status = 'queued') as oldest_queued_age
    from whoop.webhook_events e
    where e.server_name = s.server_name and e.status <> 'applied'
) p
cross join lateral (
    select count(*) filter (where e.applied_at >= now() - interval '1 hour') as applied_last_hour,
           count(*) as applied_last_day,
           percentile_cont(0.5) within group (order by e.applied_at - e.received_at)
               filter (where e.applied_at >= now() - interval '1 hour') as lag_median_last_hour,
           percentile_cont(0.99) within group (order by e.applied_at - e.received_at)
               filter (where e.applied_at >= now() - interval '1 hour') as lag_p99_last_hour,
           percentile_cont(0.5) within group (order by e.applied_at - e.received_at) as lag_median_last_day,
           percentile_cont(0.99) within group (order by e.applied_at - e.received_at) as lag_p99_last_day
    from whoop.webhook_events e
    where e.server_name = s.server_name and e.status = 'applied'
      and e.applied_at >= now() - interval '1 day'
) a
cross join lateral (
    select count(*) as follow_ups,
           count(*) filter (where u.due_at <= now()) as follow_ups_due
    from whoop_internal.recovery_follow_ups u
    where u.server_name = s.server_name
) f;

comment on view whoop.webhook_status is
    'the webhook queue per server: queued events (due now, waiting for a retry), dead letters, events applied in the last hour and day, the oldest queued event''s age, lag (applied_at - received_at: median and 99th percentile), outcomes, and the recovery follow-ups awaited and due';
comment on column whoop.webhook_status.queued is 'events not applied yet (due and retrying)';
comment on column whoop.webhook_status.due is 'queued events whoop.apply_webhooks() would take now';
comment on column whoop.webhook_status.retrying is 'queued events that failed and wait for next_attempt_at';
comment on column whoop.webhook_status.dead is 'dead letters: see whoop.webhook_events.last_error, then whoop.requeue_webhooks()';
comment on column whoop.webhook_status.applied_last_hour is 'events applied in the last hour';
comment on column whoop.webhook_status.applied_last_day is 'events applied in the last 24 hours';
comment on column whoop.webhook_status.oldest_queued_age is 'how long the oldest queued event has waited (NULL: none queued)';
comment on column whoop.webhook_status.lag_median_last_hour is 'median of applied_at - received_at over the events applied in the last hour';
comment on column whoop.webhook_status.lag_p99_last_hour is '99th percentile of applied_at - received_at over the last hour';
comment on column whoop.webhook_status.lag_median_last_day is 'median of applied_at - received_at over the last 24 hours';
comment on column whoop.webhook_status.lag_p99_last_day is '99th percentile of applied_at - received_at over the last 24 hours';
comment on column whoop.webhook_status.outcomes_last_day is 'events applied in the last 24 hours per outcome, e.g. {"upserted": 12, "not found": 1}';
comment on column whoop.webhook_status.follow_ups is
    'recoveries awaited after their sleep was stored scored (whoop_internal.recovery_follow_ups): the applier fetches each once due unless its recovery.updated comes first';
comment on column whoop.webhook_status.follow_ups_due is
    'of those, the ones due now: their event is late or was dropped, and the next whoop.apply_webhooks() fetches them';
comment on column whoop.webhook_status.last_received_at is 'when the newest event arrived (a long silence may mean WHOOP stopped delivering)';
--upgrade 1.0--1.1 end
