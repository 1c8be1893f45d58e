-- 30_sync.sql: incremental sync from the foreign tables into the raw layer.
--
-- Per server, account and endpoint a high-water mark (the largest updated_at
-- seen) says where the next sync starts; it reaches back update_window
-- because WHOOP re-scores records for days after they happened.

create table whoop.sync_state (
    server_name     name not null,
    user_id         bigint not null,
    endpoint        text not null,
    high_water_mark timestamptz,
    last_success_at timestamptz,
    last_attempt_at timestamptz,
    last_error      text,
    primary key (server_name, user_id, endpoint),
    pending_since   timestamptz,
    history_from    timestamptz
);
--upgrade 1.0--1.1: alter table whoop.sync_state add column pending_since timestamptz;
--upgrade 1.0--1.1: alter table whoop.sync_state add column history_from timestamptz;
--upgrade 1.0--1.1: update whoop.sync_state set history_from = '-infinity' where endpoint in ('cycle', 'recovery', 'sleep', 'workout') and last_success_at is not null;

create table whoop.sync_log (
    id              bigint generated always as identity primary key,
    run_id          bigint,
    server_name     name not null,
    user_id         bigint not null,
    endpoint        text not null,
    started_at      timestamptz not null,
    finished_at     timestamptz not null,
    status          text not null check (status in ('ok', 'failed', 'deferred')),
    full_resync     boolean not null default false,
    fetch_from      timestamptz,
    rows_seen       integer,
    rows_inserted   integer,
    rows_updated    integer,
    requests        integer,
    high_water_mark_before timestamptz,
    high_water_mark_after  timestamptz,
    error           text,
    rows_deleted    integer,
    deletions_refused integer,
    chunk_from      timestamptz,
    chunk_to        timestamptz
);
create index on whoop.sync_log (run_id);
--upgrade 1.0--1.1: alter table whoop.sync_log add column rows_deleted integer;
--upgrade 1.0--1.1: alter table whoop.sync_log add column deletions_refused integer;
--upgrade 1.0--1.1: alter table whoop.sync_log add column chunk_from timestamptz;
--upgrade 1.0--1.1: alter table whoop.sync_log add column chunk_to timestamptz;
--upgrade 1.0--1.1 begin
-- the latest row of an account endpoint (whoop.account_freshness)
create index sync_log_account_endpoint_idx on whoop.sync_log (server_name, user_id, endpoint, id);
--upgrade 1.0--1.1 end
--upgrade 1.0--1.1: alter table whoop.sync_log drop constraint sync_log_status_check, add constraint sync_log_status_check check (status in ('ok', 'failed', 'deferred'));

-- the marks must travel with the raw rows they describe
select pg_catalog.pg_extension_config_dump('whoop.sync_state', '');
select pg_catalog.pg_extension_config_dump('whoop.sync_log', '');
select pg_catalog.pg_extension_config_dump('whoop.sync_log_id_seq', '');

--upgrade 1.0--1.1 begin
-- A member's sync marks go with the member: once an account is disconnected
-- (or its server dropped), the marks of a member nobody syncs any more would
-- fail the sync_freshness check of every later pipeline.
create function whoop_internal.forget_sync_state()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    delete from whoop.sync_state s
     where s.server_name = old.server_name and s.user_id = old.user_id;
    return null;
end
$$;

comment on function whoop_internal.forget_sync_state() is
    'trigger function: deletes the sync marks of an account that is deleted (disconnected, or its server dropped)';

create trigger account_forget_sync_state
    after delete on whoop_internal.account
    for each row execute function whoop_internal.forget_sync_state();

comment on trigger account_forget_sync_state on whoop_internal.account is
    'the sync marks of an account go with the account';
--upgrade 1.0--1.1 end

comment on table whoop.sync_state is
    'per server, account and endpoint: the high-water mark of the incremental sync and the last outcome';
comment on column whoop.sync_state.high_water_mark is
    'largest updated_at synced so far; the next sync fetches from this mark minus the update window';
comment on column whoop.sync_state.last_success_at is 'when this endpoint last synced without error';
--upgrade 1.0--1.1 begin
comment on column whoop.sync_state.pending_since is
    'set when a webhook event says this endpoint of the member changed (a sleep or workout event marks the member''s cycles, which a sync then fetches even within cycle_poll_interval); the next successful sync of the endpoint clears it';
comment on column whoop.sync_state.history_from is
    'cycle, recovery, sleep, workout: every record starting at or after this time (a recovery: created at or after it) is loaded; NULL: not started (the first sync loads the newest backfill_first_days), -infinity: all history loaded; older history follows in chunks of backfill_chunk_days, newest first';
--upgrade 1.0--1.1 end
comment on table whoop.sync_log is 'one row per account and endpoint per whoop.sync() call';
comment on column whoop.sync_log.run_id is 'the whoop.run_pipeline() run that called the sync, if any';
comment on column whoop.sync_log.fetch_from is 'the updated_at bound the fetch used (NULL = everything)';
comment on column whoop.sync_log.requests is 'HTTP requests the fetch made to WHOOP';
comment on column whoop.sync_log.error is 'the error of a failed fetch, followed by its HINT (what to do: e.g. link the account again) when it has one';
--upgrade 1.0--1.1 begin
comment on column whoop.sync_log.rows_deleted is
    'sleeps or workouts tombstoned because WHOOP no longer lists them in the reconciled window (a sleep''s recovery goes with it, not counted); NULL for the endpoints that are not reconciled';
comment on column whoop.sync_log.deletions_refused is
    'records that vanished from the listing but were not tombstoned, because more than the server option max_sync_deletions vanished at once (0: none refused); the endpoint still counts as ok: its rows were upserted and its mark advanced';
comment on column whoop.sync_log.chunk_from is
    'a history load: the records starting at or after this time (a recovery: created at or after it) were listed; NULL for an incremental or full sync';
comment on column whoop.sync_log.chunk_to is
    'a history chunk: the records starting before this time were listed (NULL with chunk_from set: a member''s first load of the newest backfill_first_days)';
--upgrade 1.0--1.1 end

create schema whoop_source;
comment on schema whoop_source is
    'foreign tables whoop.sync() reads WHOOP through, one set per server (<server>__cycle, ...); created on demand';

--upgrade 1.0--1.1: alter function whoop._sync_source(name, text) rename to sync_source;
--upgrade 1.0--1.1: alter function whoop.sync_source(name, text) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop._sync_endpoint(name, bigint, text, timestamptz) rename to sync_endpoint;
--upgrade 1.0--1.1: alter function whoop.sync_endpoint(name, bigint, text, timestamptz) set schema whoop_internal;

--upgrade 1.0--1.1 begin
create or replace function whoop_internal.sync_source(server name, endpoint text)
returns regclass
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    server_oid oid;
    server_window text;
    prefix text;
    table_name text;
begin
    select s.oid, (select o.option_value
                   from pg_options_to_table(s.srvoptions) o
                   where o.option_name = 'update_window')
      into server_oid, server_window
      from pg_foreign_server s
      join pg_foreign_data_wrapper w on w.oid = s.srvfdw
     where s.srvname = server and w.fdwname = 'whoop_fdw';
    if server_oid is null then
        raise exception 'server "%" does not exist or does not use whoop_fdw', server
            using errcode = 'undefined_object',
                  hint = 'Create one with CREATE SERVER ... FOREIGN DATA WRAPPER whoop_fdw.';
    end if;

    -- long server names would be truncated into colliding table names
    prefix := case when length(server) <= 40 then server || '__'
                   else 'server_' || server_oid || '__' end;
    table_name := prefix || endpoint;
    if to_regclass(format('whoop_source.%I', table_name)) is null then
        -- two sessions importing the same table at once would collide in
        -- the catalog (duplicate type name): one at a time, and look again
        -- once the lock is ours (the other may have made it meanwhile)
        perform pg_advisory_xact_lock(hashtext('whoop_internal.sync_source'));
    end if;
    if to_regclass(format('whoop_source.%I', table_name)) is null then
        begin
            execute format('import foreign schema whoop limit to (%I) from server %I '
                           'into whoop_source options (table_prefix %L%s)',
                           table_name, server, prefix,
                           case when server_window is null
                                then ', update_window ''14 days''' else '' end);
        exception when unique_violation or duplicate_object or duplicate_table then
            null;               -- made by the session we waited for
        end;
    end if;
    return format('whoop_source.%I', table_name)::regclass;
end
$$;
--upgrade 1.0--1.1 end

comment on function whoop_internal.sync_source(name, text) is
    'the foreign table whoop.sync() reads an endpoint of a server through, imported on first use with the update window (server option update_window, else 14 days)';

--upgrade 1.0--1.1 begin
-- The statement that writes one endpoint's fetched records (a CTE named
-- fetched, with the foreign table's columns) into the raw layer; whoop.sync()
-- and whoop.apply_webhooks() both use it, so a record is written the same
-- way whoever fetched it.  A row changes only for a newer updated_at, and a
-- tombstone is never replaced: a late fetch must not bring back a record
-- WHOOP deleted.  A recovery tombstone gives way only to another recovery
-- (another sleep) of the same cycle.
create function whoop_internal.raw_upsert(endpoint text)
returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $f$
    select case endpoint
        when 'cycle' then $q$
            insert into whoop.raw_cycle as r
                (id, user_id, start, "end", timezone_offset, score_state,
                 created_at, updated_at, record, _extracted_at)
            select id, user_id, start, "end", timezone_offset, score_state,
                   created_at, updated_at, raw, now()
            from fetched
            on conflict (id) do update set
                user_id = excluded.user_id, start = excluded.start, "end" = excluded."end",
                timezone_offset = excluded.timezone_offset, score_state = excluded.score_state,
                created_at = excluded.created_at, updated_at = excluded.updated_at,
                record = excluded.record, _extracted_at = excluded._extracted_at
            where excluded.updated_at > r.updated_at
            returning xmax = 0 as inserted $q$
        when 'recovery' then $q$
            insert into whoop.raw_recovery as r
                (cycle_id, sleep_id, user_id, score_state, created_at, updated_at,
                 record, _extracted_at)
            select cycle_id, sleep_id, user_id, score_state, created_at, updated_at, raw, now()
            from fetched
            on conflict (cycle_id) do update set
                sleep_id = excluded.sleep_id, user_id = excluded.user_id,
                score_state = excluded.score_state, created_at = excluded.created_at,
                updated_at = excluded.updated_at, record = excluded.record,
                _extracted_at = excluded._extracted_at, deleted_at = null
            where case when r.deleted_at is null then excluded.updated_at > r.updated_at
                       else excluded.sleep_id is distinct from r.sleep_id end
            returning xmax = 0 as inserted $q$
        when 'sleep' then $q$
            insert into whoop.raw_sleep as r
                (id, cycle_id, user_id, start, "end", timezone_offset, nap, score_state,
                 created_at, updated_at, record, _extracted_at)
            select id, cycle_id, user_id, start, "end", timezone_offset, nap, score_state,
                   created_at, updated_at, raw, now()
            from fetched
            on conflict (id) do update set
                cycle_id = excluded.cycle_id, user_id = excluded.user_id,
                start = excluded.start, "end" = excluded."end",
                timezone_offset = excluded.timezone_offset, nap = excluded.nap,
                score_state = excluded.score_state, created_at = excluded.created_at,
                updated_at = excluded.updated_at, record = excluded.record,
                _extracted_at = excluded._extracted_at
            where excluded.updated_at > r.updated_at and r.deleted_at is null
            returning xmax = 0 as inserted $q$
        when 'workout' then $q$
            insert into whoop.raw_workout as r
                (id, user_id, start, "end", timezone_offset, sport_name, score_state,
                 created_at, updated_at, record, _extracted_at)
            select id, user_id, start, "end", timezone_offset, sport_name, score_state,
                   created_at, updated_at, raw, now()
            from fetched
            on conflict (id) do update set
                user_id = excluded.user_id, start = excluded.start, "end" = excluded."end",
                timezone_offset = excluded.timezone_offset, sport_name = excluded.sport_name,
                score_state = excluded.score_state, created_at = excluded.created_at,
                updated_at = excluded.updated_at, record = excluded.record,
                _extracted_at = excluded._extracted_at
            where excluded.updated_at > r.updated_at and r.deleted_at is null
            returning xmax = 0 as inserted $q$
        -- snapshots: a new row only when the values differ from the latest one
        when 'profile' then $q$
            insert into whoop.raw_profile as r
                (user_id, observed_at, email, first_name, last_name, record)
            select f.user_id, now(), f.email, f.first_name, f.last_name, f.raw
            from fetched f
            where f.raw is distinct from
                  (select p.record from whoop.raw_profile p
                   where p.user_id = f.user_id order by p.observed_at desc limit 1)
            returning true as inserted $q$
        when 'body_measurement' then $q$
            insert into whoop.raw_body_measurement as r
                (user_id, observed_at, height_meter, weight_kilogram, max_heart_rate, record)
            select f.user_id, now(), f.height_meter, f.weight_kilogram, f.max_heart_rate,
                   f.raw || jsonb_build_object('user_id', f.user_id)
            from fetched f
            where f.raw || jsonb_build_object('user_id', f.user_id) is distinct from
                  (select b.record from whoop.raw_body_measurement b
                   where b.user_id = f.user_id order by b.observed_at desc limit 1)
            returning true as inserted $q$
        end
$f$;

comment on function whoop_internal.raw_upsert(text) is
    'the INSERT ... ON CONFLICT that writes the records of CTE "fetched" into an endpoint''s raw table: only newer updated_at, never over a tombstone; returns inserted per written row';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
create function whoop_internal.sync_settings(server name,
    out max_sync_deletions integer, out cycle_poll_interval interval,
    out profile_poll_interval interval, out backfill_first_days integer,
    out backfill_chunk_days integer, out backfill_max_chunks_per_sync integer,
    out reconcile_interval interval, out poll_cycles_on_event boolean,
    out webhook_retention interval, out recovery_follow_up interval)
language c stable strict
as 'MODULE_PATHNAME', 'whoop_sync_settings';

comment on function whoop_internal.sync_settings(name) is
    'the server options whoop.sync() follows, defaults applied: max_sync_deletions (10), cycle_poll_interval (NULL: every sync), profile_poll_interval (1 day), backfill_first_days (60), backfill_chunk_days (180), backfill_max_chunks_per_sync (NULL: no limit), reconcile_interval (NULL: every sync), poll_cycles_on_event (true: whoop.apply_webhooks() polls the cycles a sleep or workout event marked), webhook_retention (30 days: how long whoop.apply_webhooks() keeps applied events), recovery_follow_up (5 minutes: how long whoop.apply_webhooks() waits for the recovery.updated of a sleep it saw scored before it fetches the recovery itself)';

create function whoop_internal.update_window(source regclass)
returns interval
language c stable strict
as 'MODULE_PATHNAME', 'whoop_table_update_window_sql';

comment on function whoop_internal.update_window(regclass) is
    'the update window of a whoop_fdw foreign table (its option, else its server''s; NULL when neither has one), exactly as the pushdown applies it';
--upgrade 1.0--1.1 end

-- 1.0's sync_endpoint returned fewer columns
--upgrade 1.0--1.1: drop function whoop_internal.sync_endpoint(name, bigint, text, timestamptz);

--upgrade 1.0--1.1 begin
-- Sleeps and workouts are reconciled: WHOOP deletes them (a deleted record
-- is gone from the lists and 404 by id), and a webhook that says so may
-- never arrive.  The fetch lists every record that starts in the update
-- window -- the request the updated_at bound made before, so it costs
-- nothing -- and a stored record of the member starting in that window that
-- the listing lacks was deleted: it gets a tombstone, and a sleep's
-- recovery with it.  All of it is one statement: a failed fetch writes
-- nothing, and a record another session (the webhook applier) stores while
-- the listing runs is invisible to the statement, so not tombstoned.  A
-- listing that lacks more than max_sync_deletions records is not trusted
-- (a WHOOP outage answering short pages must not empty the history):
-- nothing is tombstoned and deletions_refused says how many were lacking.
-- A history load (chunk_from given) lists the records starting in
-- [chunk_from, chunk_to) -- a recovery, which has no start, those created
-- then -- and reconciles only that range: a record outside what a partial
-- history has listed is never tombstoned.
create function whoop_internal.sync_endpoint(
    server name, user_id bigint, endpoint text, fetch_from timestamptz,
    chunk_from timestamptz default null, chunk_to timestamptz default null,
    out rows_seen integer, out rows_inserted integer,
    out rows_updated integer, out max_updated_at timestamptz,
    out rows_deleted integer, out deletions_refused integer)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    source regclass := whoop_internal.sync_source(server, endpoint);
    reconciled boolean := endpoint in ('sleep', 'workout');
    listed_from timestamptz;
    max_deletions integer;
    fetched text;
    tombstone text := '';
begin
    if chunk_from is not null then
        listed_from := chunk_from;
        fetched := format('select * from %s where user_id = $1 and %I >= $2 %s', source,
                          case when endpoint = 'recovery' then 'created_at' else 'start' end,
                          case when chunk_to is null then ''
                               when endpoint = 'recovery' then 'and created_at < $4'
                               else 'and start < $4' end);
    end if;
    if reconciled then
        max_deletions := (whoop_internal.sync_settings(server)).max_sync_deletions;
        if chunk_from is null then
            -- Without an update window (a server option dropped after the
            -- import) nothing bounds the listing: the updated_at bound fetched
            -- everything then too, so everything is reconciled.
            listed_from := fetch_from - whoop_internal.update_window(source);
            -- the records WHOOP has: one account, starting in the window
            fetched := format('select * from %s where user_id = $1 %s', source,
                              case when listed_from is null then ''
                                   else 'and start >= $2' end);
        end if;
        tombstone := format($q$,
             vanished as materialized (
                 select r.id from whoop.%1$I r
                 where r.user_id = $1 and r.deleted_at is null
                   and ($2::timestamptz is null or r.start >= $2)
                   and ($4::timestamptz is null or r.start < $4)
                   and not exists (select from fetched f where f.id = r.id)),
             tombstoned as (
                 update whoop.%1$I r set deleted_at = now()
                 from vanished v
                 where r.id = v.id and (select count(*) from vanished) <= $3
                 returning r.id)$q$, 'raw_' || endpoint);
        if endpoint = 'sleep' then
            tombstone := tombstone || $q$,
             recovery_tombstoned as (
                 update whoop.raw_recovery c set deleted_at = now()
                 where c.sleep_id in (select t.id from tombstoned t)
                   and c.deleted_at is null)$q$;
        end if;
    elsif chunk_from is null then
        -- the records the fetch brings: one account, changed since fetch_from
        fetched := format('select * from %s where user_id = $1 %s', source,
                          case when fetch_from is null then ''
                               else 'and updated_at >= $2' end);
        listed_from := fetch_from;
    end if;

    execute format($q$
        with fetched as materialized (%s),
             written as (%s)%s
        select (select count(*) from fetched)::integer,
               (select count(*) from written where inserted)::integer,
               (select count(*) from written where not inserted)::integer,
               %s, %s
        $q$, fetched, whoop_internal.raw_upsert(endpoint), tombstone,
        case when endpoint in ('profile', 'body_measurement') then 'null::timestamptz'
             else '(select max(updated_at) from fetched)' end,
        case when reconciled
             then '(select count(*) from tombstoned)::integer,
                   (select case when count(*) > $3 then count(*) else 0 end from vanished)::integer'
             else 'null::integer, null::integer' end)
    into rows_seen, rows_inserted, rows_updated, max_updated_at, rows_deleted, deletions_refused
    using user_id, listed_from, max_deletions, chunk_to;
end
$$;

comment on function whoop_internal.sync_endpoint(name, bigint, text, timestamptz, timestamptz, timestamptz) is
    'fetches one endpoint of one account changed since fetch_from (NULL: everything) -- or, given chunk_from, the records starting in [chunk_from, chunk_to) (recoveries: created then) -- and upserts it into the raw layer; sleeps and workouts: lists the whole update window before fetch_from (or the chunk) and tombstones stored records of that range it lacks (a sleep''s recovery too), none when more than max_sync_deletions would go; one statement, so a failure writes nothing';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
-- Backfill.  A member's history is loaded newest first: the first sync of
-- a cycle, recovery, sleep or workout endpoint lists only the newest
-- backfill_first_days (enough for every metric's baseline), and then, after
-- every account's incremental work, older history follows in chunks of
-- backfill_chunk_days, round-robin over the accounts, one committed step
-- per chunk, as long as the request budget lets it (SQLSTATE 53400 ends the
-- backfill for the run).  sync_state.history_from says how far each
-- endpoint has got.  Where the history ends: WHOOP has a cycle for every
-- day a member wore the strap (the gaps of a member who put it aside are
-- days, not months), so a chunk without any cycle, below a cycle already
-- loaded, is taken for the time before the member's first day -- the
-- cycles' history is complete (a member with no cycle at all is looked
-- for back to 2015, when WHOOP's first strap shipped); every
-- sleep, recovery and workout lies in a cycle, so once the cycles are
-- complete an endpoint whose history reaches a day before the first cycle
-- is complete too, without a request.  Until then no other endpoint goes
-- further back than the cycles have got, so every history ends.
create function whoop_internal.sync_history_step(
    server name, user_id bigint, endpoint text, run_id bigint default null,
    out outcome text, out error text)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    settings record := whoop_internal.sync_settings(server);
    started timestamptz := clock_timestamp();
    state record;
    lo timestamptz;
    hi timestamptz;
    first_cycle timestamptz;
    cycles_from timestamptz;
    stats_before record;
    stats_after record;
    result record;
    hint text;
    failure_sqlstate text;
begin
    insert into whoop.sync_state as s (server_name, user_id, endpoint)
    values (server, sync_history_step.user_id, sync_history_step.endpoint)
    on conflict do nothing;
    select s.high_water_mark, s.history_from into state
    from whoop.sync_state s
    where s.server_name = server and s.user_id = sync_history_step.user_id
      and s.endpoint = sync_history_step.endpoint
    for update;
    if state.history_from = '-infinity' then
        outcome := 'complete';
        return;
    end if;
    if state.history_from is null then
        lo := started - make_interval(days => settings.backfill_first_days);
    else
        hi := state.history_from;
        lo := hi - make_interval(days => settings.backfill_chunk_days);
        if endpoint <> 'cycle' then
            select c.history_from into cycles_from
            from whoop.sync_state c
            where c.server_name = server and c.user_id = sync_history_step.user_id
              and c.endpoint = 'cycle';
            if cycles_from = '-infinity' then
                select min(c.start) into first_cycle
                from whoop.raw_cycle c where c.user_id = sync_history_step.user_id;
                if first_cycle is null or hi <= first_cycle - interval '1 day' then
                    update whoop.sync_state s set history_from = '-infinity'
                     where s.server_name = server and s.user_id = sync_history_step.user_id
                       and s.endpoint = sync_history_step.endpoint;
                    outcome := 'complete';
                    return;
                end if;
            elsif cycles_from is null or hi <= cycles_from then
                -- the cycles say where the history ends: never further back
                -- than they have got
                outcome := 'waiting';
                return;
            else
                lo := greatest(lo, cycles_from);
            end if;
        end if;
    end if;

    select * into stats_before from whoop.fetch_stats();
    begin
        perform set_config('whoop_fdw.request_class', 'backfill', true);
        select * into result
        from whoop_internal.sync_endpoint(server, sync_history_step.user_id,
                                          sync_history_step.endpoint, null, lo, hi);
        select * into stats_after from whoop.fetch_stats();
        -- the mark is the largest updated_at seen, as for any fetch; a
        -- first load is also the endpoint's sync (its freshness), a chunk
        -- is not
        update whoop.sync_state s
           set history_from = case when hi is not null and s.endpoint = 'cycle'
                                        and result.rows_seen = 0
                                        and (exists (select from whoop.raw_cycle c
                                                     where c.user_id = sync_history_step.user_id)
                                             or lo < timestamptz '2015-01-01 00:00+00')
                                   then '-infinity'
                                   else lo end,
               high_water_mark = greatest(s.high_water_mark, result.max_updated_at),
               last_success_at = case when hi is null then clock_timestamp()
                                      else s.last_success_at end,
               last_attempt_at = case when hi is null then clock_timestamp()
                                      else s.last_attempt_at end,
               last_error = case when hi is null then null else s.last_error end,
               pending_since = case when hi is null and s.pending_since <= started then null
                                    else s.pending_since end
         where s.server_name = server and s.user_id = sync_history_step.user_id
           and s.endpoint = sync_history_step.endpoint;
        insert into whoop.sync_log (run_id, server_name, user_id, endpoint, started_at,
                                    finished_at, status, rows_seen, rows_inserted,
                                    rows_updated, requests, high_water_mark_before,
                                    high_water_mark_after, rows_deleted, deletions_refused,
                                    chunk_from, chunk_to)
        select run_id, server, sync_history_step.user_id, sync_history_step.endpoint,
               started, clock_timestamp(), 'ok', result.rows_seen, result.rows_inserted,
               result.rows_updated, stats_after.requests - stats_before.requests,
               state.high_water_mark, s.high_water_mark, result.rows_deleted,
               result.deletions_refused, lo, hi
        from whoop.sync_state s
        where s.server_name = server and s.user_id = sync_history_step.user_id
          and s.endpoint = sync_history_step.endpoint;
        outcome := 'fetched';
    exception
        when others then
            get stacked diagnostics error = message_text, hint = pg_exception_hint,
                                    failure_sqlstate = returned_sqlstate;
            -- 53400: the day's budget is kept for other requests; keep what
            -- is loaded, the next run resumes
            outcome := case when failure_sqlstate = '53400' then 'deferred' else 'failed' end;
            if hint <> '' and outcome = 'failed' then
                error := error || ' HINT: ' || hint;
            end if;
            select * into stats_after from whoop.fetch_stats();
            if hi is null and outcome = 'failed' then
                update whoop.sync_state s
                   set last_attempt_at = clock_timestamp(), last_error = error
                 where s.server_name = server and s.user_id = sync_history_step.user_id
                   and s.endpoint = sync_history_step.endpoint;
            end if;
            insert into whoop.sync_log (run_id, server_name, user_id, endpoint, started_at,
                                        finished_at, status, requests,
                                        high_water_mark_before, high_water_mark_after, error,
                                        chunk_from, chunk_to)
            values (run_id, server, sync_history_step.user_id, sync_history_step.endpoint,
                    started, clock_timestamp(), outcome,
                    stats_after.requests - stats_before.requests,
                    state.high_water_mark, state.high_water_mark, error, lo, hi);
    end;
end
$$;

comment on function whoop_internal.sync_history_step(name, bigint, text, bigint) is
    'one step of an account endpoint''s history, for the caller to commit: the first load (the newest backfill_first_days, which also sets the mark) or the next older chunk of backfill_chunk_days (sleeps, recoveries, workouts never below the cycles'' history_from); logged in whoop.sync_log with its chunk_from/chunk_to; returns fetched, complete (nothing older: marked without a request), waiting (for the cycles'' history to go further back), failed (with the error; history_from stays) or deferred (SQLSTATE 53400 from the request budget; logged as deferred, history_from stays)';

-- Phase 2 of whoop.sync(): the older history of every account whose
-- history is loading, round-robin -- each round one chunk per incomplete
-- endpoint of each account, the accounts with the least history first --
-- until every history is complete, a server's backfill_max_chunks_per_sync
-- is spent, or the request budget defers the rest (53400).  A failed chunk
-- is not retried in the same call.  No SET clause: it commits.
create procedure whoop_internal.sync_history(server name default null,
                                             user_id bigint default null,
                                             endpoint text default null,
                                             run_id bigint default null)
language plpgsql
as $$
declare
    target record;
    step record;
    fetched jsonb := '{}';
    skipped text[] := '{}';
    failed text[] := '{}';
    progress boolean;
    deferred boolean := false;
begin
    loop
        progress := false;
        for target in
            select s.server_name, s.user_id, s.endpoint,
                   format('%s/%s/%s', s.server_name, s.user_id, s.endpoint) as name,
                   (whoop_internal.sync_settings(s.server_name)).backfill_max_chunks_per_sync
                       as max_chunks
            from whoop.sync_state s
            join whoop.accounts a on a.server_name = s.server_name and a.user_id = s.user_id
            where s.endpoint in ('cycle', 'recovery', 'sleep', 'workout')
              and s.history_from > '-infinity'
              and (sync_history.server is null or s.server_name = sync_history.server)
              and (sync_history.user_id is null or s.user_id = sync_history.user_id)
              and (sync_history.endpoint is null or s.endpoint = sync_history.endpoint)
            order by max(s.history_from) over (partition by s.server_name, s.user_id) desc,
                     s.server_name, s.user_id,
                     pg_catalog.array_position(array['cycle', 'sleep', 'recovery', 'workout'],
                                               s.endpoint)
        loop
            continue when target.name = any (skipped);
            continue when target.max_chunks is not null
                and coalesce((fetched ->> target.server_name)::integer, 0) >= target.max_chunks;
            step := whoop_internal.sync_history_step(target.server_name, target.user_id,
                                                     target.endpoint, run_id);
            commit;
            if step.outcome = 'deferred' then
                raise notice 'whoop.sync: the request budget defers the rest of the history to a later run'
                    using detail = format('Next: %s.', target.name);
                deferred := true;
                exit;
            elsif step.outcome = 'failed' then
                skipped := skipped || target.name;
                failed := failed || format('%s: %s', target.name, step.error);
            elsif step.outcome = 'waiting' then
                null;       -- for the cycles, on a later round or run
            else
                progress := true;
                if step.outcome = 'fetched' then
                    fetched := fetched || jsonb_build_object(target.server_name,
                        coalesce((fetched ->> target.server_name)::integer, 0) + 1);
                end if;
            end if;
        end loop;
        exit when deferred or not progress;
    end loop;
    if cardinality(failed) > 0 then
        raise warning 'whoop.sync: % history chunks failed', cardinality(failed)
            using detail = array_to_string(failed, E'\n'),
                  hint = 'A failed chunk keeps the history loaded so far (sync_state.history_from); the next sync resumes there. See whoop.sync_log.';
    end if;
end
$$;

comment on procedure whoop_internal.sync_history(name, bigint, text, bigint) is
    'whoop.sync()''s second phase: older history in chunks, round-robin over the accounts (least history first), one commit per chunk, until complete, backfill_max_chunks_per_sync chunk fetches per server, or SQLSTATE 53400 from the request budget';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
-- A member's new cycle and its recovery are there once the member is up and
-- WHOOP has scored the night, so a member whose cycles are polled seldom
-- (cycle_poll_interval) is polled also once a day at that time: the usual
-- wake time, the median local end of the member's last 28 main sleeps, plus
-- an hour for the scoring, at the offset of the latest sleep.  plpgsql, so
-- that it may name the staging layer's utc_offset() created after it.
create function whoop_internal.wake_poll_after(user_id bigint, after timestamptz)
returns timestamptz
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
    usual_wake time;
    tz interval;
    at_local timestamp;
    poll_local timestamp;
begin
    select percentile_disc(0.5) within group (order by w.local_end::time),
           (array_agg(w.tz order by w."end" desc))[1]
      into usual_wake, tz
    from (select s."end", coalesce(whoop_internal.utc_offset(s.timezone_offset), interval '0') as tz,
                 (s."end" at time zone 'UTC')
                     + coalesce(whoop_internal.utc_offset(s.timezone_offset), interval '0') as local_end
          from whoop.raw_sleep s
          where s.user_id = wake_poll_after.user_id and not s.nap and s.deleted_at is null
          order by s."end" desc
          limit 28) w;
    if usual_wake is null or after is null then
        return null;
    end if;
    at_local := (after at time zone 'UTC') + tz;
    poll_local := at_local::date + usual_wake + interval '1 hour';
    if poll_local <= at_local then
        poll_local := poll_local + interval '1 day';
    end if;
    return (poll_local - tz) at time zone 'UTC';
end
$$;

comment on function whoop_internal.wake_poll_after(bigint, timestamptz) is
    'the first moment after AFTER at which whoop.sync() polls the member''s cycles although cycle_poll_interval has not passed: an hour after the usual wake time (median local end of the last 28 main sleeps) at the latest sleep''s offset; NULL without sleeps';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
create function whoop_internal.assert_outside_transaction_block(caller text)
returns void
language c
as 'MODULE_PATHNAME', 'whoop_assert_outside_transaction_block';

comment on function whoop_internal.assert_outside_transaction_block(text) is
    'raises SQLSTATE 25001 with a hint when called inside a transaction block: for procedures that commit, such as whoop.run_pipeline()';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
-- One incremental (or full) fetch of an account endpoint into the raw layer,
-- for the caller to commit: whoop.sync() for each account endpoint it
-- polls, whoop.apply_webhooks() for the cycles an event marked.
create function whoop_internal.sync_step(
    server name, user_id bigint, endpoint text, full boolean default false,
    run_id bigint default null,
    out status text, out error text, out deletions_refused bigint)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    started timestamptz := clock_timestamp();
    stats_before record;
    stats_after record;
    mark timestamptz;
    loaded_from timestamptz;
    fetch_from timestamptz;
    result record;
    hint text;
    failure_sqlstate text;
begin
    deletions_refused := 0;
    select * into stats_before from whoop.fetch_stats();
    insert into whoop.sync_state as s (server_name, user_id, endpoint)
    values (server, sync_step.user_id, sync_step.endpoint)
    on conflict do nothing;
    begin
        select s.high_water_mark, s.history_from into mark, loaded_from
        from whoop.sync_state s
        where s.server_name = server and s.user_id = sync_step.user_id
          and s.endpoint = sync_step.endpoint
        for update;
        -- an hour of slack for clock skew at WHOOP; the upsert ignores repeats.
        -- A history that is still loading and has shown no record yet:
        -- what may have changed in it started after history_from less
        -- the update window; older records are the chunks' part.
        fetch_from := case when sync_step.full then null
                           else coalesce(mark - interval '1 hour',
                                         nullif(loaded_from, '-infinity')) end;
        -- the request class the day's budget judges the fetch by (a first
        -- load is whoop_internal.sync_history_step()'s)
        perform set_config('whoop_fdw.request_class',
            case when sync_step.full then 'backfill'
                 when endpoint in ('sleep', 'workout') then 'reconcile'
                 else 'cycle' end, true);

        select * into result
        from whoop_internal.sync_endpoint(server, sync_step.user_id, endpoint, fetch_from);

        select * into stats_after from whoop.fetch_stats();
        update whoop.sync_state s
           set high_water_mark = greatest(s.high_water_mark, result.max_updated_at),
               -- full => true has listed all history
               history_from = case when sync_step.full and s.endpoint not in ('profile', 'body_measurement')
                                   then '-infinity' else s.history_from end,
               last_success_at = clock_timestamp(),
               last_attempt_at = clock_timestamp(),
               last_error = null,
               -- a webhook's mark set after this fetch began stays
               pending_since = case when s.pending_since <= started then null
                                    else s.pending_since end
         where s.server_name = server and s.user_id = sync_step.user_id
           and s.endpoint = sync_step.endpoint;
        insert into whoop.sync_log (run_id, server_name, user_id, endpoint, started_at,
                                    finished_at, status, full_resync, fetch_from,
                                    rows_seen, rows_inserted, rows_updated, requests,
                                    high_water_mark_before, high_water_mark_after,
                                    rows_deleted, deletions_refused)
        values (run_id, server, sync_step.user_id, endpoint, started,
                clock_timestamp(), 'ok', sync_step.full, fetch_from,
                result.rows_seen, result.rows_inserted, result.rows_updated,
                stats_after.requests - stats_before.requests,
                mark, greatest(mark, result.max_updated_at),
                result.rows_deleted, result.deletions_refused);
        status := 'ok';
        deletions_refused := result.deletions_refused;
    exception when others then
        get stacked diagnostics error = message_text, hint = pg_exception_hint,
                                failure_sqlstate = returned_sqlstate;
        -- 53400: the request budget kept the day for higher-priority
        -- requests; nothing was fetched or spent, the marks stay, and the
        -- next sync tries again
        status := case when failure_sqlstate = '53400' then 'deferred' else 'failed' end;
        -- the hint says what to do (e.g. link the account again)
        if hint <> '' and status = 'failed' then
            error := error || ' HINT: ' || hint;
        end if;
        select * into stats_after from whoop.fetch_stats();
        if status = 'failed' then
            update whoop.sync_state s
               set last_attempt_at = clock_timestamp(), last_error = error
             where s.server_name = server and s.user_id = sync_step.user_id
               and s.endpoint = sync_step.endpoint;
        end if;
        insert into whoop.sync_log (run_id, server_name, user_id, endpoint, started_at,
                                    finished_at, status, full_resync, fetch_from,
                                    requests, high_water_mark_before,
                                    high_water_mark_after, error)
        values (run_id, server, sync_step.user_id, endpoint, started,
                clock_timestamp(), status, sync_step.full, fetch_from,
                stats_after.requests - stats_before.requests, mark, mark, error);
    end;
end
$$;

comment on function whoop_internal.sync_step(name, bigint, text, boolean, bigint) is
    'one fetch of an account endpoint into the raw layer for the caller to commit: incremental from the high-water mark less an hour (full => true: all history, request class backfill), tombstoning vanished sleeps and workouts up to max_sync_deletions; updates sync_state (clearing a webhook mark set before it began) and logs in whoop.sync_log; returns ok, deferred (SQLSTATE 53400 from the request budget) or failed with the error, and how many deletions max_sync_deletions refused';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
create or replace procedure whoop.sync(server name default null, user_id bigint default null,
                            endpoint text default null, full boolean default false,
                            run_id bigint default null)
language plpgsql
as $$
declare
    all_endpoints constant text[] :=
        array['profile', 'body_measurement', 'cycle', 'recovery', 'sleep', 'workout'];
    target record;
    settings record;
    state record;
    ep text;
    step record;
    failures integer := 0;
    attempts integer := 0;
    failed text[] := '{}';
    refusals text[] := '{}';
    deferred text[] := '{}';
    synced_any boolean := false;
    history record;
    backfill_deferred boolean := false;
begin
    perform whoop_internal.assert_outside_transaction_block('whoop.sync()');
    if sync.full is null then
        raise exception 'full must be true or false, not NULL'
            using errcode = 'null_value_not_allowed',
                  hint = 'Pass full => true to refetch all history, or leave it out for an incremental sync.';
    end if;
    if endpoint is not null and endpoint <> all (all_endpoints) then
        raise exception 'unknown WHOOP endpoint "%"', endpoint
            using errcode = 'invalid_parameter_value',
                  hint = 'Endpoints are: ' || array_to_string(all_endpoints, ', ') || '.';
    end if;
    if server is not null and not exists (
            select from pg_foreign_server s
            join pg_foreign_data_wrapper w on w.oid = s.srvfdw
            where s.srvname = server and w.fdwname = 'whoop_fdw') then
        raise exception 'server "%" does not exist or does not use whoop_fdw', server
            using errcode = 'undefined_object';
    end if;

    -- Phase 1: the members synced before first, then the new ones.
    for target in
        select a.server_name, a.user_id
        from whoop.accounts a
        where (sync.server is null or a.server_name = sync.server)
          and (sync.user_id is null or a.user_id = sync.user_id)
        order by not exists (select from whoop.sync_state s
                             where s.server_name = a.server_name and s.user_id = a.user_id
                               and s.last_success_at is not null),
                 a.server_name, a.user_id
    loop
        synced_any := true;
        settings := whoop_internal.sync_settings(target.server_name);
        foreach ep in array all_endpoints loop
            continue when sync.endpoint is not null and ep <> sync.endpoint;
            -- A plain incremental sync polls what rarely changes less often:
            -- the profile and body measurement, and (when the server says so)
            -- the cycles of a member no webhook has marked.  full => true and
            -- an explicit endpoint always fetch.
            if not sync.full and sync.endpoint is null then
                select s.last_success_at, s.pending_since into state
                from whoop.sync_state s
                where s.server_name = target.server_name and s.user_id = target.user_id
                  and s.endpoint = ep;
                continue when ep in ('profile', 'body_measurement')
                    and state.last_success_at > clock_timestamp() - settings.profile_poll_interval;
                -- With webhooks the listings of sleeps, workouts and
                -- recoveries only catch what an event missed: reconcile_interval
                -- spaces them out.
                continue when ep in ('sleep', 'workout', 'recovery')
                    and state.last_success_at > clock_timestamp() - settings.reconcile_interval;
                continue when ep = 'cycle' and state.pending_since is null
                    and state.last_success_at > clock_timestamp() - settings.cycle_poll_interval
                    and not coalesce(whoop_internal.wake_poll_after(target.user_id,
                                         state.last_success_at) <= clock_timestamp(), false);
            end if;
            -- A member's first sync of a dated endpoint loads only the newest
            -- days; whoop_internal.sync_history() loads the rest below.
            if not sync.full and ep not in ('profile', 'body_measurement') and not exists (
                    select from whoop.sync_state s
                    where s.server_name = target.server_name and s.user_id = target.user_id
                      and s.endpoint = ep and s.history_from is not null) then
                continue when backfill_deferred;
                attempts := attempts + 1;
                history := whoop_internal.sync_history_step(target.server_name, target.user_id,
                                                            ep, run_id);
                commit;
                backfill_deferred := history.outcome = 'deferred';
                if history.outcome = 'failed' then
                    failures := failures + 1;
                    failed := failed || format('%s/%s/%s: %s', target.server_name,
                                               target.user_id, ep, history.error);
                end if;
                continue;
            end if;
            attempts := attempts + 1;
            step := whoop_internal.sync_step(target.server_name, target.user_id, ep, sync.full,
                                             run_id);
            if step.status = 'deferred' then
                deferred := deferred || format('%s/%s/%s', target.server_name, target.user_id, ep);
            elsif step.status = 'failed' then
                failures := failures + 1;
                failed := failed || format('%s/%s/%s: %s', target.server_name,
                                           target.user_id, ep, step.error);
            end if;
            if step.deletions_refused > 0 then
                refusals := refusals || format('%s/%s/%s: %s records vanished, max_sync_deletions is %s',
                                               target.server_name, target.user_id, ep,
                                               step.deletions_refused,
                                               settings.max_sync_deletions);
            end if;
            commit;
        end loop;
    end loop;

    -- Phase 2: older history, after every account's incremental work.
    if not sync.full and not backfill_deferred then
        call whoop_internal.sync_history(sync.server, sync.user_id, sync.endpoint, sync.run_id);
    end if;

    if not synced_any then
        raise notice 'whoop.sync: no account to sync%',
            case when sync.server is null then '' else format(' on server "%s"', sync.server) end
            || case when sync.user_id is null then '' else format(' with user_id %s', sync.user_id) end
            using detail = format('Role "%s" may use no linked WHOOP account that matches.', current_user),
                  hint = 'Link one with whoop.connect_account() or whoop.add_account(); whoop.accounts lists the accounts this role may use.';
    end if;
    if cardinality(deferred) > 0 then
        raise notice 'whoop.sync: deferred % account endpoints to keep the day''s request budget for higher-priority requests',
            cardinality(deferred)
            using detail = 'Deferred: ' || array_to_string(deferred, ', ') || '.',
                  hint = 'They keep their rows and high-water marks; a later sync fetches them when the day''s budget allows. See whoop.request_budget and whoop.sync_log (status = ''deferred'').';
    end if;
    if cardinality(refusals) > 0 then
        raise warning 'whoop.sync: tombstoned none of the records that vanished from % account endpoints',
            cardinality(refusals)
            using detail = 'More records vanished from WHOOP''s listing at once than the server option max_sync_deletions allows, which looks more like a short listing than deletions:'
                           || E'\n' || array_to_string(refusals, E'\n'),
                  hint = 'If WHOOP really deleted them, raise max_sync_deletions (ALTER SERVER ... OPTIONS (ADD max_sync_deletions ''100''), or SET if the server has it) and sync again. See whoop.sync_log.deletions_refused.';
    end if;
    if failures > 0 then
        raise warning 'whoop.sync: % of % account endpoints failed', failures, attempts
            using detail = array_to_string(failed, E'\n'),
                  hint = 'Failed endpoints keep their rows and high-water marks; the next sync retries them. See whoop.sync_log.';
    end if;
end
$$;

comment on procedure whoop.sync(name, bigint, text, boolean, bigint) is
    'incremental sync of every (or the given) server, account and endpoint into the raw layer, committing per endpoint, tombstoning the sleeps and workouts WHOOP deleted; fetches are classed for the request budget (backfill: full, a first load and history chunks; reconcile: sleep and workout; cycle: the rest) and those the day''s reserve keeps back are deferred (sync_log status deferred, one NOTICE); profile and body measurement at most every profile_poll_interval, cycles every cycle_poll_interval unless a webhook marked them or the member''s usual wake time has come (whoop_internal.wake_poll_after), recoveries, sleeps and workouts every reconcile_interval when set; a member''s first sync loads the newest backfill_first_days, then (after every account''s incremental work) older history in chunks (whoop_internal.sync_history); full => true refetches and reconciles all history';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
-- What is fresh, what is pending and why, per account and endpoint: the
-- accounts of whoop.accounts (those the current role may use), so a role
-- sees only its own.
create view whoop.account_freshness
with (security_barrier)
as
select a.server_name,
       a.user_id,
       e.endpoint,
       s.last_success_at,
       now() - s.last_success_at as age,
       s.pending_since,
       s.history_from,
       case when e.endpoint in ('cycle', 'recovery', 'sleep', 'workout')
            then coalesce(s.history_from = '-infinity', false) end as history_complete,
       case when s.last_success_at is null or s.pending_since is not null then now()
            when e.endpoint in ('profile', 'body_measurement')
                then s.last_success_at + g.profile_poll_interval
            when e.endpoint = 'cycle' and g.cycle_poll_interval is not null
                then least(s.last_success_at + g.cycle_poll_interval,
                           whoop_internal.wake_poll_after(a.user_id, s.last_success_at))
            when e.endpoint = 'cycle' then s.last_success_at
            when g.reconcile_interval is not null then s.last_success_at + g.reconcile_interval
            else s.last_success_at end as next_poll_due,
       case when l.status = 'failed' then 'last sync failed: ' || l.error
            when l.status = 'deferred' then 'deferred by the request budget'
            when s.last_success_at is null then 'never synced'
            when s.pending_since is not null then 'webhook change waiting for the next sync'
            when s.history_from > '-infinity'
                then format('history loading (from %s)', s.history_from)
            else 'fresh' end as why
from whoop.accounts a
cross join lateral whoop_internal.sync_settings(a.server_name) g
cross join unnest(array['profile', 'body_measurement', 'cycle', 'recovery', 'sleep',
                        'workout']) as e(endpoint)
left join whoop.sync_state s
       on s.server_name = a.server_name and s.user_id = a.user_id and s.endpoint = e.endpoint
left join lateral (
    select l.status, l.error
    from whoop.sync_log l
    where l.server_name = a.server_name and l.user_id = a.user_id and l.endpoint = e.endpoint
    order by l.id desc
    limit 1) l on true;

comment on view whoop.account_freshness is
    'per account (those of whoop.accounts: the current role''s) and endpoint: the last successful sync and its age, a webhook''s pending mark, how far the history is loaded, when the next plain sync fetches it, and why it is not fresh: never synced / webhook change waiting for the next sync / history loading (from ...) / last sync failed: <error> / deferred by the request budget / fresh';
comment on column whoop.account_freshness.age is 'how long ago the endpoint last synced without error';
comment on column whoop.account_freshness.history_from is
    'every record starting at or after this time is loaded (NULL: not started, -infinity: all); NULL for profile and body measurement, which have no history to load';
comment on column whoop.account_freshness.history_complete is
    'the endpoint''s whole history is loaded; NULL for profile and body measurement';
comment on column whoop.account_freshness.next_poll_due is
    'when a plain whoop.sync() fetches the endpoint next (profile_poll_interval; cycle_poll_interval, or earlier an hour after the member''s usual wake time; reconcile_interval for recoveries, sleeps and workouts, else every sync): a sync at or after this time does; now() when never synced or a webhook marked it';
comment on column whoop.account_freshness.why is
    'the state in words, the first that applies: last sync failed: <error> (the latest fetch of the endpoint, incremental or history chunk), deferred by the request budget, never synced, webhook change waiting for the next sync, history loading (from <history_from>), fresh';
--upgrade 1.0--1.1 end
