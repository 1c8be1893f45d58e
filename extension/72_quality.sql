-- 72_quality.sql: data quality checks and their history.

--upgrade 1.0--1.1: alter view whoop.user_local_today set schema whoop_internal;

create table whoop.quality_log (
    id            bigint generated always as identity primary key,
    run_id        bigint not null,
    checked_at    timestamptz not null default now(),
    check_name    text not null,
    object_name   text not null,
    failing_rows  bigint not null,
    status        text not null check (status in ('pass', 'warn', 'fail')),
    detail        text
);
create index on whoop.quality_log (run_id);
--upgrade 1.0--1.1 begin
-- history travels with pg_dump, like the run ids it is keyed by
select pg_catalog.pg_extension_config_dump('whoop.quality_log', '');
select pg_catalog.pg_extension_config_dump('whoop.quality_log_id_seq', '');
--upgrade 1.0--1.1 end

comment on table whoop.quality_log is 'history of whoop.check_quality(): one row per check per call';
--upgrade 1.0--1.1 begin
comment on column whoop.quality_log.run_id is 'the pipeline run, or the stand-alone check call (ids from whoop_internal.run_id_seq)';
--upgrade 1.0--1.1 end
comment on column whoop.quality_log.failing_rows is
    'rows that break the rule (for sync_freshness: account endpoints not synced for over 2 days)';
comment on column whoop.quality_log.status is 'pass, warn or fail';

-- The member's local today: the current UTC time at the timezone_offset of
-- the member's latest cycle.
create view whoop_internal.user_local_today as
select distinct on (c.user_id)
    c.user_id,
    c.timezone_offset,
    whoop_internal.local_time(now(), c.timezone_offset)::date as local_today
from whoop.raw_cycle c
order by c.user_id, c.start desc;

comment on view whoop_internal.user_local_today is
    'each member''s current local date, at the timezone_offset of their latest cycle (used by the no_future_days check)';
comment on column whoop_internal.user_local_today.local_today is 'the member''s current date at that offset';

--upgrade 1.0--1.1 begin
-- The row-level rules as data: whoop.check_quality() counts, for each rule,
-- the rows of its relation that match its failing condition.  The
-- extension's own rules are marked builtin; rules you add are kept by
-- pg_dump, the builtin ones come with the extension.
create table whoop.quality_rules (
    rule_order  integer primary key,
    check_name  text not null,
    object_name text not null,
    failing     text not null,
    rule        text not null,
    severity    text not null default 'fail' check (severity in ('warn', 'fail')),
    builtin     boolean not null default false
);
select pg_catalog.pg_extension_config_dump('whoop.quality_rules', 'where not builtin');

comment on table whoop.quality_rules is
    'row-level quality rules that whoop.check_quality() runs, in rule_order; add your own (builtin = false) and pg_dump keeps them';
comment on column whoop.quality_rules.rule_order is 'position among the row-level checks (unique)';
comment on column whoop.quality_rules.check_name is 'name of the check, as in whoop.quality_log.check_name';
comment on column whoop.quality_rules.object_name is 'the relation checked, schema-qualified; its rows are seen as t';
comment on column whoop.quality_rules.failing is 'SQL condition over t that is true for a row breaking the rule';
comment on column whoop.quality_rules.rule is 'what the rule demands, in words (whoop.quality_log.detail)';
comment on column whoop.quality_rules.severity is 'status when rows break the rule: fail, or warn for a rule that only flags';
comment on column whoop.quality_rules.builtin is 'true for the rules the extension ships (replaced by upgrades, not dumped)';

insert into whoop.quality_rules (rule_order, check_name, object_name, failing, rule, severity, builtin)
select c.*, true
from (values
        (10, 'recovery_score_range', 'whoop.fact_daily_recovery',
         'recovery_score not between 0 and 100', 'recovery_score within 0-100', 'fail'),
        (11, 'strain_range', 'whoop.fact_daily_strain',
         'day_strain not between 0 and 21 or max_workout_strain not between 0 and 21',
         'day_strain and max_workout_strain within 0-21', 'fail'),
        (12, 'heart_rate_range', 'whoop.fact_daily_recovery',
         'resting_heart_rate not between 25 and 250', 'resting_heart_rate within 25-250 bpm', 'fail'),
        (13, 'heart_rate_range', 'whoop.fact_daily_strain',
         'average_heart_rate not between 25 and 250 or max_heart_rate not between 25 and 250',
         'average_heart_rate and max_heart_rate within 25-250 bpm', 'fail'),
        (14, 'zone_minutes_per_day', 'whoop.fact_daily_strain',
         'zone_0_minutes + zone_1_minutes + zone_2_minutes + zone_3_minutes + zone_4_minutes + zone_5_minutes > 1440'
         || ' or least(zone_0_minutes, zone_1_minutes, zone_2_minutes, zone_3_minutes, zone_4_minutes, zone_5_minutes) < 0',
         'heart-rate zone minutes of a day sum to at most 1440 and none is negative', 'fail'),
        (15, 'hours_asleep_range', 'whoop.fact_daily_recovery',
         'hours_asleep not between 0 and 24', 'hours_asleep within 0-24', 'fail'),
        (20, 'references_dim_user', 'whoop.fact_daily_recovery',
         'not exists (select from whoop.dim_user u where u.user_sk = t.user_sk and u.user_id = t.user_id)',
         'user_sk names a whoop.dim_user version of the same member', 'fail'),
        (21, 'references_dim_user', 'whoop.fact_daily_strain',
         'not exists (select from whoop.dim_user u where u.user_sk = t.user_sk and u.user_id = t.user_id)',
         'user_sk names a whoop.dim_user version of the same member', 'fail'),
        (22, 'references_dim_date', 'whoop.fact_daily_recovery',
         'not exists (select from whoop.dim_date d where d.date_sk = t.date_sk and d.day = t.day)',
         'date_sk names the whoop.dim_date row of the day', 'fail'),
        (23, 'references_dim_date', 'whoop.fact_daily_strain',
         'not exists (select from whoop.dim_date d where d.date_sk = t.date_sk and d.day = t.day)',
         'date_sk names the whoop.dim_date row of the day', 'fail'),
        -- A cycle that began tonight has no main sleep yet, so the
        -- fallback labels it tomorrow until that sleep ends: allowed
        -- for the ongoing cycle only, and only one day ahead.
        (30, 'no_future_days', 'whoop.fact_daily_recovery',
         'exists (select from whoop_internal.user_local_today l where l.user_id = t.user_id and t.day > l.local_today)',
         'no day after the member''s local today', 'fail'),
        (31, 'no_future_days', 'whoop.fact_daily_strain',
         'exists (select from whoop_internal.user_local_today l where l.user_id = t.user_id and t.day > l.local_today + case when t.cycle_complete then 0 else 1 end)',
         'no day after the member''s local today (the ongoing cycle may be labelled tomorrow)', 'fail'),
        (40, 'accepted_score_state', 'whoop.raw_cycle',
         'score_state not in (''SCORED'', ''PENDING_SCORE'', ''UNSCORABLE'')',
         'score_state is SCORED, PENDING_SCORE or UNSCORABLE', 'fail'),
        (41, 'accepted_score_state', 'whoop.raw_recovery',
         'score_state not in (''SCORED'', ''PENDING_SCORE'', ''UNSCORABLE'')',
         'score_state is SCORED, PENDING_SCORE or UNSCORABLE', 'fail'),
        (42, 'accepted_score_state', 'whoop.raw_sleep',
         'score_state not in (''SCORED'', ''PENDING_SCORE'', ''UNSCORABLE'')',
         'score_state is SCORED, PENDING_SCORE or UNSCORABLE', 'fail'),
        (43, 'accepted_score_state', 'whoop.raw_workout',
         'score_state not in (''SCORED'', ''PENDING_SCORE'', ''UNSCORABLE'')',
         'score_state is SCORED, PENDING_SCORE or UNSCORABLE', 'fail'),
        (50, 'timezone_offset_format', 'whoop.raw_cycle',
         'whoop_internal.utc_offset(timezone_offset) is null', 'timezone_offset parses (else local times are taken as UTC)', 'warn'),
        (51, 'timezone_offset_format', 'whoop.raw_sleep',
         'whoop_internal.utc_offset(timezone_offset) is null', 'timezone_offset parses (else local times are taken as UTC)', 'warn'),
        (52, 'timezone_offset_format', 'whoop.raw_workout',
         'whoop_internal.utc_offset(timezone_offset) is null', 'timezone_offset parses (else local times are taken as UTC)', 'warn')
) as c;
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
create or replace function whoop.check_quality(run_id bigint default null)
returns table (check_name text, object_name text, failing_rows bigint, status text, detail text)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_run bigint := coalesce(check_quality.run_id, nextval('whoop_internal.run_id_seq'));
    v_ids bigint[] := '{}';
    v_id bigint;
    v_n bigint;
    v_total bigint;
    v_very bigint;
    v_never bigint;
    v_oldest timestamptz;
    v_check record;
    v_idx record;
    v_cols text;
    v_nullcond text;
    v_state text;
    v_msg text;
begin
    -- Unique grain and NOT NULL keys: every unique index of every
    -- materialized view and maintained object that users read (facts,
    -- metrics and dimensions; a maintained object's rows table).  The
    -- intermediates in whoop_internal are left out: their keys are primary
    -- keys, and nobody reads them but the definitions.
    for v_idx in
        select p.view_oid, p.view_name, p.populated as relispopulated, i.indexrelid,
               array_agg(quote_ident(a.attname) order by k.ord) as cols
        from whoop.refresh_plan p
        join pg_class vc on vc.oid = p.view_oid and vc.relnamespace = 'whoop'::regnamespace
        join pg_index i on i.indrelid = p.stored_in and i.indisunique
        cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
        join pg_attribute a on a.attrelid = p.stored_in and a.attnum = k.attnum
        group by p.view_oid, p.view_name, p.populated, i.indexrelid, p.refresh_order
        order by p.refresh_order, i.indexrelid
    loop
        v_cols := array_to_string(v_idx.cols, ', ');
        if not v_idx.relispopulated then
            insert into whoop.quality_log (run_id, check_name, object_name, failing_rows, status, detail)
            values (v_run, 'unique_grain', v_idx.view_name, 0, 'fail',
                    'not populated yet: run whoop.refresh()')
            returning id into v_id;
            v_ids := v_ids || v_id;
            continue;
        end if;
        execute format('select coalesce(sum(n - 1), 0) from (select count(*) as n from %s group by %s having count(*) > 1) d',
                       v_idx.view_oid, v_cols) into v_n;
        insert into whoop.quality_log (run_id, check_name, object_name, failing_rows, status, detail)
        values (v_run, 'unique_grain', v_idx.view_name, v_n,
                case when v_n = 0 then 'pass' else 'fail' end, 'key (' || v_cols || ')')
        returning id into v_id;
        v_ids := v_ids || v_id;
        select string_agg(x || ' is null', ' or ') into v_nullcond from unnest(v_idx.cols) x;
        execute format('select count(*) from %s where %s', v_idx.view_oid, v_nullcond) into v_n;
        insert into whoop.quality_log (run_id, check_name, object_name, failing_rows, status, detail)
        values (v_run, 'not_null_keys', v_idx.view_name, v_n,
                case when v_n = 0 then 'pass' else 'fail' end, 'key (' || v_cols || ')')
        returning id into v_id;
        v_ids := v_ids || v_id;
    end loop;

    -- Row-level rules (whoop.quality_rules): each counts the rows that
    -- break it.
    for v_check in
        select r.check_name, r.object_name, r.failing, r.rule, r.severity
        from whoop.quality_rules r
        order by r.rule_order
    loop
        begin
            if exists (select from whoop.refresh_plan p
                       where p.view_oid = v_check.object_name::regclass and not p.populated) then
                v_n := null;
                v_msg := 'not populated yet: run whoop.refresh()';
            else
                execute format('select count(*) from %s t where %s', v_check.object_name, v_check.failing)
                    into v_n;
                v_msg := null;
            end if;
        exception when others then
            get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text;
            v_n := null;
            v_msg := 'check failed to run: ' || v_state || ': ' || v_msg;
        end;
        insert into whoop.quality_log (run_id, check_name, object_name, failing_rows, status, detail)
        values (v_run, v_check.check_name, v_check.object_name, coalesce(v_n, 0),
                case when v_n is null then 'fail'
                     when v_n = 0 then 'pass'
                     else v_check.severity end,
                coalesce(v_msg, v_check.rule))
        returning id into v_id;
        v_ids := v_ids || v_id;
    end loop;

    -- Freshness of the last successful sync of every account endpoint.  An
    -- endpoint that never succeeded counts as stale, and says so.
    select count(*),
           count(*) filter (where s.last_success_at is null or s.last_success_at < now() - interval '2 days'),
           count(*) filter (where s.last_success_at is null or s.last_success_at < now() - interval '7 days'),
           count(*) filter (where s.last_success_at is null),
           min(s.last_success_at)
      into v_total, v_n, v_very, v_never, v_oldest
    from whoop.sync_state s;
    insert into whoop.quality_log (run_id, check_name, object_name, failing_rows, status, detail)
    values (v_run, 'sync_freshness', 'whoop.sync_state', v_n,
            case when v_total = 0 then 'warn'
                 when v_very > 0 then 'fail'
                 when v_n > 0 then 'warn'
                 else 'pass' end,
            case when v_total = 0 then 'no sync recorded yet'
                 when v_n = 0 then format('all %s account endpoints synced within 2 days; oldest last success: %s',
                                          v_total, v_oldest)
                 else format('%s of %s account endpoints not synced within 2 days: %s never synced, %s last synced over 7 days ago, %s over 2 days ago',
                             v_n, v_total, v_never, v_very - v_never, v_n - v_very) end)
    returning id into v_id;
    v_ids := v_ids || v_id;

    return query
        select q.check_name, q.object_name, q.failing_rows, q.status, q.detail
        from whoop.quality_log q
        where q.id = any (v_ids)
        order by q.id;
end;
$$;

comment on function whoop.check_quality(bigint) is
    'data quality checks (unique grain and NOT NULL keys of every materialized view, value ranges, references to the dimensions, no future days, accepted score states, sync freshness: warn > 2 days, fail > 7); returns one row per check and keeps them in whoop.quality_log';
--upgrade 1.0--1.1 end
