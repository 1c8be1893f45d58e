-- 70_operations.sql: running the warehouse -- lineage, refresh, quality
-- checks, the pipeline and its schedule.

-- One sequence numbers pipeline runs and stand-alone refresh and check
-- batches alike, so run_log, refresh_log, quality_log and sync_log rows of
-- one run share an id.
create sequence whoop.run_id_seq;

comment on sequence whoop.run_id_seq is
    'run ids of whoop.run_pipeline() and of stand-alone whoop.refresh() / whoop.check_quality() calls';

------------------------------------------------------------------------------
-- Lineage, from the catalog.

create view whoop.lineage as
with recursive members as (
    select c.oid, c.relkind
    from pg_catalog.pg_depend e
    join pg_catalog.pg_extension x on x.oid = e.refobjid and x.extname = 'whoop_fdw'
    join pg_catalog.pg_class c on c.oid = e.objid
    where e.classid = 'pg_catalog.pg_class'::regclass
      and e.refclassid = 'pg_catalog.pg_extension'::regclass
      and e.deptype = 'e'
      and c.relkind in ('v', 'm')
),
direct as (
    select distinct m.oid as view_oid, d.refclassid, d.refobjid
    from members m
    join pg_catalog.pg_rewrite rw on rw.ev_class = m.oid
    join pg_catalog.pg_depend d
      on d.classid = 'pg_catalog.pg_rewrite'::regclass and d.objid = rw.oid and d.deptype = 'n'
    where d.refclassid in ('pg_catalog.pg_class'::regclass, 'pg_catalog.pg_proc'::regclass)
      and not (d.refclassid = 'pg_catalog.pg_class'::regclass and d.refobjid = m.oid)
),
walk (view_oid, refclassid, refobjid, depth) as (
    select view_oid, refclassid, refobjid, 1 from direct
    union
    select w.view_oid, d.refclassid, d.refobjid, w.depth + 1
    from walk w
    join direct d on w.refclassid = 'pg_catalog.pg_class'::regclass and d.view_oid = w.refobjid
),
shortest as (
    select view_oid, refclassid, refobjid, min(depth) as depth
    from walk
    group by view_oid, refclassid, refobjid
)
select
    format('%I.%I', vn.nspname, v.relname) as object,
    case v.relkind when 'm' then 'materialized view' else 'view' end as object_type,
    case when r.oid is not null then format('%I.%I', rn.nspname, r.relname)
         else format('%I.%I(%s)', pn.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid))
    end as depends_on,
    case
        when r.relkind = 'r' then 'table'
        when r.relkind = 'p' then 'table'
        when r.relkind = 'v' then 'view'
        when r.relkind = 'm' then 'materialized view'
        when r.relkind = 'f' then 'foreign table'
        when r.relkind is not null then 'relation'
        when p.prokind = 'a' then 'aggregate'
        when p.prokind = 'w' then 'window function'
        else 'function'
    end as depends_on_type,
    s.depth,
    s.view_oid::regclass as object_oid,
    case when s.refclassid = 'pg_catalog.pg_class'::regclass then s.refobjid::regclass end as depends_on_oid
from shortest s
join pg_catalog.pg_class v on v.oid = s.view_oid
join pg_catalog.pg_namespace vn on vn.oid = v.relnamespace
left join pg_catalog.pg_class r on s.refclassid = 'pg_catalog.pg_class'::regclass and r.oid = s.refobjid
left join pg_catalog.pg_namespace rn on rn.oid = r.relnamespace
left join pg_catalog.pg_proc p on s.refclassid = 'pg_catalog.pg_proc'::regclass and p.oid = s.refobjid
left join pg_catalog.pg_namespace pn on pn.oid = p.pronamespace;

comment on view whoop.lineage is
    'what every view and materialized view of the extension reads, directly (depth 1) or through other views (depth > 1), from pg_depend/pg_rewrite';
comment on column whoop.lineage.object is 'the view or materialized view';
comment on column whoop.lineage.object_type is 'view or materialized view';
comment on column whoop.lineage.depends_on_type is 'table, view, materialized view, foreign table, function or aggregate';
comment on column whoop.lineage.depends_on is 'a table, view, materialized view or function it reads (system objects are not listed)';
comment on column whoop.lineage.depth is '1 = named in the view''s own query; n = reached through n - 1 views in between (shortest path)';
comment on column whoop.lineage.object_oid is 'the object as a regclass (for joins with the catalog)';
comment on column whoop.lineage.depends_on_oid is 'the relation depended on as a regclass; NULL for functions';

------------------------------------------------------------------------------
-- Refresh.

create table whoop.refresh_log (
    id            bigint generated always as identity primary key,
    run_id        bigint not null,
    view_name     text not null,
    refresh_order integer not null,
    mode          text check (mode in ('concurrently', 'complete')),
    status        text not null check (status in ('ok', 'failed', 'skipped')),
    started_at    timestamptz not null,
    finished_at   timestamptz not null,
    duration      interval generated always as (finished_at - started_at) stored,
    row_count     bigint,
    error         text
);
create index on whoop.refresh_log (run_id);

comment on table whoop.refresh_log is 'one row per materialized view per whoop.refresh() call';
comment on column whoop.refresh_log.run_id is 'the pipeline run, or the stand-alone refresh call (whoop.run_id_seq)';
comment on column whoop.refresh_log.refresh_order is 'position in the dependency order of that refresh (1 = first)';
comment on column whoop.refresh_log.mode is
    'concurrently (readers keep the old rows until commit) or complete (first population: the view had no rows to keep); NULL when skipped';
comment on column whoop.refresh_log.status is 'ok, failed (see error), or skipped because a view it depends on failed or was skipped';
comment on column whoop.refresh_log.row_count is 'rows in the view after the refresh';
comment on column whoop.refresh_log.error is 'SQLSTATE and message of the failure, or why it was skipped';

-- The extension's materialized views in refresh order.  A view depends on
-- another when the other one is among the relations it reads, directly or
-- through plain views (whoop.lineage).  If A depends on B, A's set of
-- upstream views strictly contains B's, so ordering by the size of that set
-- is a topological order; the name breaks ties.
create view whoop.refresh_plan as
select
    row_number() over (order by cardinality(coalesce(u.upstream, '{}')), n.nspname, m.relname)::integer
        as refresh_order,
    m.oid::regclass as view_oid,
    format('%I.%I', n.nspname, m.relname) as view_name,
    coalesce(u.upstream, '{}') as upstream
from pg_catalog.pg_class m
join pg_catalog.pg_namespace n on n.oid = m.relnamespace
join pg_catalog.pg_depend e
  on e.classid = 'pg_catalog.pg_class'::regclass and e.objid = m.oid
 and e.refclassid = 'pg_catalog.pg_extension'::regclass and e.deptype = 'e'
join pg_catalog.pg_extension x on x.oid = e.refobjid and x.extname = 'whoop_fdw'
left join lateral (
    select array_agg(distinct l.depends_on_oid order by l.depends_on_oid) as upstream
    from whoop.lineage l
    join pg_catalog.pg_class uc on uc.oid = l.depends_on_oid
    where l.object_oid = m.oid and uc.relkind = 'm'
) u on true
where m.relkind = 'm';

comment on view whoop.refresh_plan is
    'the extension''s materialized views in the order whoop.refresh() refreshes them, derived from the catalog';
comment on column whoop.refresh_plan.upstream is 'materialized views this one reads, directly or through views';
comment on column whoop.refresh_plan.refresh_order is 'position in the refresh order (1 = first)';
comment on column whoop.refresh_plan.view_oid is 'the materialized view as a regclass';

create function whoop.refresh(run_id bigint default null)
returns table (view_name text, refresh_order integer, mode text, status text,
               duration interval, row_count bigint, error text)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_run bigint := coalesce(refresh.run_id, nextval('whoop.run_id_seq'));
    v_plan record;
    v_broken regclass[] := '{}';
    v_mode text;
    v_status text;
    v_rows bigint;
    v_error text;
    v_start timestamptz;
    v_state text;
    v_msg text;
    v_work_mem text := current_setting('work_mem');
begin
    -- The facts sort a few rows per member and day: give the sorts room
    -- (at least 64MB, for this refresh only) rather than spill to disk.
    if pg_size_bytes(v_work_mem) < 64 * 1024 * 1024 then
        perform set_config('work_mem', '64MB', true);
    end if;
    for v_plan in select * from whoop.refresh_plan p order by p.refresh_order loop
        v_start := clock_timestamp();
        v_rows := null;
        v_error := null;
        v_mode := null;
        if v_plan.upstream && v_broken then
            v_status := 'skipped';
            v_error := 'skipped: depends on '
                       || (select string_agg(b::text, ', ' order by b::text)
                           from unnest(v_broken) b where b = any (v_plan.upstream))
                       || ', which failed or was skipped';
            v_broken := v_broken || v_plan.view_oid;
        else
            begin
                -- CONCURRENTLY needs a populated view with a unique index on
                -- plain columns (every view here has one); the first
                -- population cannot be concurrent, but then there is nothing
                -- for readers to see yet (they get an error until the commit).
                if (select c.relispopulated from pg_class c where c.oid = v_plan.view_oid)
                   and exists (select from pg_index i
                               where i.indrelid = v_plan.view_oid and i.indisunique and i.indisvalid
                                 and i.indpred is null and i.indexprs is null) then
                    v_mode := 'concurrently';
                    execute format('refresh materialized view concurrently %s', v_plan.view_oid);
                else
                    v_mode := 'complete';
                    execute format('refresh materialized view %s', v_plan.view_oid);
                end if;
                execute format('select count(*) from %s', v_plan.view_oid) into v_rows;
                v_status := 'ok';
            exception when others then
                get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text;
                v_status := 'failed';
                v_error := v_state || ': ' || v_msg;
                v_broken := v_broken || v_plan.view_oid;
            end;
        end if;
        insert into whoop.refresh_log
            (run_id, view_name, refresh_order, mode, status, started_at, finished_at, row_count, error)
        values (v_run, v_plan.view_name, v_plan.refresh_order, v_mode, v_status, v_start,
                clock_timestamp(), v_rows, v_error);
        if v_status = 'failed' then
            raise warning 'whoop.refresh: % failed: %', v_plan.view_name, v_error;
        end if;
    end loop;

    perform set_config('work_mem', v_work_mem, true);
    return query
        select l.view_name, l.refresh_order, l.mode, l.status, l.duration, l.row_count, l.error
        from whoop.refresh_log l
        where l.run_id = v_run
        order by l.refresh_order, l.id;
end;
$$;

comment on function whoop.refresh(bigint) is
    'refreshes every materialized view of the extension in dependency order (from the catalog), CONCURRENTLY when populated; logs each in whoop.refresh_log; a failure is logged (WARNING) and the views depending on it are skipped, the rest refreshed. One transaction: readers see all new contents at commit';

------------------------------------------------------------------------------
-- Quality checks.

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

comment on table whoop.quality_log is 'history of whoop.check_quality(): one row per check per call';
comment on column whoop.quality_log.run_id is 'the pipeline run, or the stand-alone check call (whoop.run_id_seq)';
comment on column whoop.quality_log.failing_rows is
    'rows that break the rule (for sync_freshness: account endpoints not synced for over 2 days)';
comment on column whoop.quality_log.status is 'pass, warn or fail';

-- The member's local today: the current UTC time at the timezone_offset of
-- the member's latest cycle.
create view whoop.user_local_today as
select distinct on (c.user_id)
    c.user_id,
    c.timezone_offset,
    whoop.local_time(now(), c.timezone_offset)::date as local_today
from whoop.raw_cycle c
order by c.user_id, c.start desc;

comment on view whoop.user_local_today is
    'each member''s current local date, at the timezone_offset of their latest cycle (used by the no_future_days check)';
comment on column whoop.user_local_today.local_today is 'the member''s current date at that offset';

create function whoop.check_quality(run_id bigint default null)
returns table (check_name text, object_name text, failing_rows bigint, status text, detail text)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_run bigint := coalesce(check_quality.run_id, nextval('whoop.run_id_seq'));
    v_ids bigint[] := '{}';
    v_id bigint;
    v_n bigint;
    v_total bigint;
    v_very bigint;
    v_oldest timestamptz;
    v_check record;
    v_idx record;
    v_cols text;
    v_nullcond text;
    v_state text;
    v_msg text;
begin
    -- Unique grain and NOT NULL keys: every unique index of every
    -- materialized view of the extension (facts, metrics and dimensions).
    for v_idx in
        select p.view_oid, p.view_name, c.relispopulated, i.indexrelid,
               array_agg(quote_ident(a.attname) order by k.ord) as cols
        from whoop.refresh_plan p
        join pg_class c on c.oid = p.view_oid
        join pg_index i on i.indrelid = p.view_oid and i.indisunique
        cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
        join pg_attribute a on a.attrelid = p.view_oid and a.attnum = k.attnum
        group by p.view_oid, p.view_name, c.relispopulated, i.indexrelid, p.refresh_order
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

    -- Row-level rules on the facts and the raw layer: each counts the rows
    -- that break it.
    for v_check in
        select * from (values
            (10, 'recovery_score_range', 'whoop.fact_daily_recovery',
             'recovery_score not between 0 and 100', 'recovery_score within 0-100'),
            (11, 'strain_range', 'whoop.fact_daily_strain',
             'day_strain not between 0 and 21 or max_workout_strain not between 0 and 21',
             'day_strain and max_workout_strain within 0-21'),
            (12, 'heart_rate_range', 'whoop.fact_daily_recovery',
             'resting_heart_rate not between 25 and 250', 'resting_heart_rate within 25-250 bpm'),
            (13, 'heart_rate_range', 'whoop.fact_daily_strain',
             'average_heart_rate not between 25 and 250 or max_heart_rate not between 25 and 250',
             'average_heart_rate and max_heart_rate within 25-250 bpm'),
            (14, 'zone_minutes_per_day', 'whoop.fact_daily_strain',
             'zone_0_minutes + zone_1_minutes + zone_2_minutes + zone_3_minutes + zone_4_minutes + zone_5_minutes > 1440'
             || ' or least(zone_0_minutes, zone_1_minutes, zone_2_minutes, zone_3_minutes, zone_4_minutes, zone_5_minutes) < 0',
             'heart-rate zone minutes of a day sum to at most 1440 and none is negative'),
            (15, 'hours_asleep_range', 'whoop.fact_daily_recovery',
             'hours_asleep not between 0 and 24', 'hours_asleep within 0-24'),
            (20, 'references_dim_user', 'whoop.fact_daily_recovery',
             'not exists (select from whoop.dim_user u where u.user_sk = t.user_sk and u.user_id = t.user_id)',
             'user_sk names a whoop.dim_user version of the same member'),
            (21, 'references_dim_user', 'whoop.fact_daily_strain',
             'not exists (select from whoop.dim_user u where u.user_sk = t.user_sk and u.user_id = t.user_id)',
             'user_sk names a whoop.dim_user version of the same member'),
            (22, 'references_dim_date', 'whoop.fact_daily_recovery',
             'not exists (select from whoop.dim_date d where d.date_sk = t.date_sk and d.day = t.day)',
             'date_sk names the whoop.dim_date row of the day'),
            (23, 'references_dim_date', 'whoop.fact_daily_strain',
             'not exists (select from whoop.dim_date d where d.date_sk = t.date_sk and d.day = t.day)',
             'date_sk names the whoop.dim_date row of the day'),
            -- A cycle that began tonight has no main sleep yet, so the
            -- fallback labels it tomorrow until that sleep ends: allowed
            -- for the ongoing cycle only, and only one day ahead.
            (30, 'no_future_days', 'whoop.fact_daily_recovery',
             'exists (select from whoop.user_local_today l where l.user_id = t.user_id and t.day > l.local_today)',
             'no day after the member''s local today'),
            (31, 'no_future_days', 'whoop.fact_daily_strain',
             'exists (select from whoop.user_local_today l where l.user_id = t.user_id and t.day > l.local_today + case when t.cycle_complete then 0 else 1 end)',
             'no day after the member''s local today (the ongoing cycle may be labelled tomorrow)'),
            (40, 'accepted_score_state', 'whoop.raw_cycle',
             'score_state not in (''SCORED'', ''PENDING_SCORE'', ''UNSCORABLE'')',
             'score_state is SCORED, PENDING_SCORE or UNSCORABLE'),
            (41, 'accepted_score_state', 'whoop.raw_recovery',
             'score_state not in (''SCORED'', ''PENDING_SCORE'', ''UNSCORABLE'')',
             'score_state is SCORED, PENDING_SCORE or UNSCORABLE'),
            (42, 'accepted_score_state', 'whoop.raw_sleep',
             'score_state not in (''SCORED'', ''PENDING_SCORE'', ''UNSCORABLE'')',
             'score_state is SCORED, PENDING_SCORE or UNSCORABLE'),
            (43, 'accepted_score_state', 'whoop.raw_workout',
             'score_state not in (''SCORED'', ''PENDING_SCORE'', ''UNSCORABLE'')',
             'score_state is SCORED, PENDING_SCORE or UNSCORABLE'),
            (50, 'timezone_offset_format', 'whoop.raw_cycle',
             'whoop.utc_offset(timezone_offset) is null', 'timezone_offset parses (else local times are taken as UTC)'),
            (51, 'timezone_offset_format', 'whoop.raw_sleep',
             'whoop.utc_offset(timezone_offset) is null', 'timezone_offset parses (else local times are taken as UTC)'),
            (52, 'timezone_offset_format', 'whoop.raw_workout',
             'whoop.utc_offset(timezone_offset) is null', 'timezone_offset parses (else local times are taken as UTC)')
        ) as c(ord, check_name, object_name, failing, rule)
        order by ord
    loop
        begin
            if exists (select from pg_class c where c.oid = v_check.object_name::regclass
                                                and c.relkind = 'm' and not c.relispopulated) then
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
                     when v_check.check_name = 'timezone_offset_format' then 'warn'
                     else 'fail' end,
                coalesce(v_msg, v_check.rule))
        returning id into v_id;
        v_ids := v_ids || v_id;
    end loop;

    -- Freshness of the last successful sync of every account endpoint.
    select count(*),
           count(*) filter (where s.last_success_at is null or s.last_success_at < now() - interval '2 days'),
           count(*) filter (where s.last_success_at is null or s.last_success_at < now() - interval '7 days'),
           min(s.last_success_at)
      into v_total, v_n, v_very, v_oldest
    from whoop.sync_state s;
    insert into whoop.quality_log (run_id, check_name, object_name, failing_rows, status, detail)
    values (v_run, 'sync_freshness', 'whoop.sync_state', v_n,
            case when v_total = 0 then 'warn'
                 when v_very > 0 then 'fail'
                 when v_n > 0 then 'warn'
                 else 'pass' end,
            case when v_total = 0 then 'no sync recorded yet'
                 else format('%s of %s account endpoints last synced over 2 days ago (%s over 7 days); oldest last success: %s',
                             v_n, v_total, v_very, coalesce(v_oldest::text, 'never')) end)
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

------------------------------------------------------------------------------
-- The pipeline.

create table whoop.run_log (
    id            bigint generated always as identity primary key,
    run_id        bigint not null,
    step          text not null check (step in ('pipeline', 'sync', 'refresh', 'quality')),
    status        text not null
                  check (status in ('running', 'ok', 'warn', 'failed', 'skipped', 'aborted')),
    started_at    timestamptz not null,
    finished_at   timestamptz,
    duration      interval generated always as (finished_at - started_at) stored,
    row_count     bigint,
    detail        text,
    error         text,
    pid           integer,
    backend_start timestamptz,
    query_start   timestamptz,
    unique (run_id, step)
);
create index on whoop.run_log (status) where status = 'running';

comment on table whoop.run_log is
    'whoop.run_pipeline() runs: one ''pipeline'' row per run and one row per step (sync, refresh, quality)';
comment on column whoop.run_log.step is 'pipeline (the run as a whole), sync, refresh or quality';
comment on column whoop.run_log.status is
    'running; ok; warn (quality warnings); failed (see error); skipped (another run was in progress); aborted (the run ended without finishing, e.g. cancelled)';
comment on column whoop.run_log.row_count is
    'sync: rows inserted or updated; refresh: rows in all refreshed views; quality: checks run; pipeline: NULL';
comment on column whoop.run_log.detail is 'a one-line summary of the step';
comment on column whoop.run_log.pid is 'backend running the pipeline (with backend_start and query_start: identifies the CALL)';
comment on column whoop.run_log.backend_start is 'start of that backend';
comment on column whoop.run_log.query_start is 'start of the CALL statement in that backend';

-- A run is alive while the backend that started it is still executing the
-- very statement (same backend start, same statement start).  The pipeline
-- commits between its steps, so no lock can span it; this lease check
-- cannot leak: a cancelled run, a dead session or a session that moved on
-- no longer passes it.
create function whoop.pipeline_run_alive(pid integer, backend_start timestamptz, query_start timestamptz)
returns boolean
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
    select exists (
        select from pg_stat_activity a
        where a.pid = pipeline_run_alive.pid
          and a.backend_start = pipeline_run_alive.backend_start
          and ((a.state = 'active' and a.query_start = pipeline_run_alive.query_start)
               or a.state is null or a.state = 'disabled'))
$$;

comment on function whoop.pipeline_run_alive(integer, timestamptz, timestamptz) is
    'whether the backend that started a pipeline run is still executing that run''s statement (security definer: sees every session)';

-- No SET clause (search_path) here: a procedure with one cannot COMMIT.
-- Every name below is schema-qualified or from pg_catalog.
create procedure whoop.run_pipeline(server name default null, full_resync boolean default false)
language plpgsql
as $$
declare
    v_run bigint;
    v_other record;
    v_started timestamptz;
    v_ok bigint;
    v_failed bigint;
    v_rows bigint;
    v_total bigint;
    v_status text;
    v_detail text;
    v_error text;
    v_state text;
    v_msg text;
    v_statuses text[] := '{}';
begin
    -- Bad arguments raise here, before a run is recorded (whoop.sync() would
    -- raise for them too, but only once the run has begun).
    if server is not null and not exists (
            select from pg_foreign_server s
            join pg_foreign_data_wrapper w on w.oid = s.srvfdw
            where s.srvname = server and w.fdwname = 'whoop_fdw') then
        raise exception 'server "%" does not exist or does not use whoop_fdw', server
            using errcode = 'undefined_object',
                  hint = 'Name a server of the whoop_fdw wrapper, or pass NULL for all of them.';
    end if;

    -- Admission: one pipeline at a time.  The transaction-level lock
    -- serialises only this check and is gone at the COMMIT below.
    perform pg_advisory_xact_lock(hashtext('whoop.run_pipeline'));
    update whoop.run_log l
       set status = 'aborted', finished_at = coalesce(l.finished_at, now()),
           error = coalesce(l.error, 'the run ended without finishing (cancelled, failed in sync, or its session ended)')
     where l.status = 'running'
       and l.run_id in (select p.run_id from whoop.run_log p
                        where p.step = 'pipeline' and p.status = 'running'
                          and not whoop.pipeline_run_alive(p.pid, p.backend_start, p.query_start));
    v_run := nextval('whoop.run_id_seq');
    select l.run_id, l.pid, l.started_at into v_other
    from whoop.run_log l
    where l.step = 'pipeline' and l.status = 'running'
    order by l.run_id
    limit 1;
    if found then
        insert into whoop.run_log (run_id, step, status, started_at, finished_at, error, pid)
        values (v_run, 'pipeline', 'skipped', now(), now(),
                format('pipeline run %s is still running (pid %s, since %s)',
                       v_other.run_id, v_other.pid, v_other.started_at),
                pg_backend_pid());
        commit;
        raise notice 'whoop.run_pipeline: run % is still running (pid %), so run % does nothing',
            v_other.run_id, v_other.pid, v_run;
        return;
    end if;
    insert into whoop.run_log (run_id, step, status, started_at, pid, backend_start, query_start)
    select v_run, 'pipeline', 'running', now(), a.pid, a.backend_start, a.query_start
    from pg_stat_activity a
    where a.pid = pg_backend_pid();
    commit;

    -- Step 1: sync.  whoop.sync() commits per account and endpoint and logs
    -- each in whoop.sync_log under our run id; it does not raise for an
    -- endpoint that fails.  It cannot be wrapped in an exception block (no
    -- COMMIT inside a subtransaction): should it raise anyway, this run
    -- stops here and the next run marks it aborted.
    v_started := clock_timestamp();
    insert into whoop.run_log (run_id, step, status, started_at)
    values (v_run, 'sync', 'running', v_started);
    commit;
    call whoop.sync(server => server, "full" => full_resync, run_id => v_run);
    select count(*) filter (where s.status = 'ok'), count(*) filter (where s.status = 'failed'),
           coalesce(sum(coalesce(s.rows_inserted, 0) + coalesce(s.rows_updated, 0)), 0),
           string_agg(format('%s/%s/%s: %s', s.server_name, s.user_id, s.endpoint, s.error), '; '
                      order by s.server_name, s.user_id, s.endpoint) filter (where s.status = 'failed')
      into v_ok, v_failed, v_rows, v_error
    from whoop.sync_log s
    where s.run_id = v_run;
    v_status := case when v_failed > 0 then 'failed' else 'ok' end;
    update whoop.run_log l
       set status = v_status, finished_at = clock_timestamp(), row_count = v_rows,
           detail = format('%s account endpoints synced, %s failed, %s rows inserted or updated',
                           v_ok, v_failed, v_rows),
           error = v_error
     where l.run_id = v_run and l.step = 'sync';
    v_statuses := v_statuses || v_status;
    commit;

    -- Step 2: refresh, after a failed sync too (the views then show what
    -- the raw layer has).
    v_started := clock_timestamp();
    insert into whoop.run_log (run_id, step, status, started_at)
    values (v_run, 'refresh', 'running', v_started);
    commit;
    begin
        select count(*) filter (where r.status = 'ok'),
               count(*) filter (where r.status <> 'ok'),
               coalesce(sum(r.row_count), 0),
               string_agg(r.view_name || ' ' || r.status || ': ' || r.error, '; ' order by r.refresh_order)
                   filter (where r.status <> 'ok'),
               count(*)
          into v_ok, v_failed, v_rows, v_error, v_total
        from whoop.refresh(v_run) r;
        v_status := case when v_failed > 0 then 'failed' else 'ok' end;
        v_detail := format('%s of %s materialized views refreshed', v_ok, v_total);
    exception when others then
        get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text;
        v_status := 'failed';
        v_rows := null;
        v_detail := 'refresh failed';
        v_error := v_state || ': ' || v_msg;
    end;
    update whoop.run_log l
       set status = v_status, finished_at = clock_timestamp(), row_count = v_rows,
           detail = v_detail, error = v_error
     where l.run_id = v_run and l.step = 'refresh';
    v_statuses := v_statuses || v_status;
    commit;

    -- Step 3: quality checks.
    v_started := clock_timestamp();
    insert into whoop.run_log (run_id, step, status, started_at)
    values (v_run, 'quality', 'running', v_started);
    commit;
    begin
        select count(*),
               count(*) filter (where q.status = 'warn'),
               count(*) filter (where q.status = 'fail'),
               string_agg(q.check_name || ' on ' || q.object_name || ': ' || q.failing_rows
                          || ' rows (' || coalesce(q.detail, '') || ')', '; ')
                   filter (where q.status = 'fail')
          into v_total, v_ok, v_failed, v_error
        from whoop.check_quality(v_run) q;
        v_status := case when v_failed > 0 then 'failed' when v_ok > 0 then 'warn' else 'ok' end;
        v_rows := v_total;
        v_detail := format('%s checks: %s pass, %s warn, %s fail', v_total, v_total - v_ok - v_failed,
                           v_ok, v_failed);
    exception when others then
        get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text;
        v_status := 'failed';
        v_rows := null;
        v_detail := 'quality checks failed to run';
        v_error := v_state || ': ' || v_msg;
    end;
    update whoop.run_log l
       set status = v_status, finished_at = clock_timestamp(), row_count = v_rows,
           detail = v_detail, error = v_error
     where l.run_id = v_run and l.step = 'quality';
    v_statuses := v_statuses || v_status;

    v_status := case when 'failed' = any (v_statuses) then 'failed'
                     when 'warn' = any (v_statuses) then 'warn'
                     else 'ok' end;
    update whoop.run_log l
       set status = v_status, finished_at = clock_timestamp(),
           detail = format('sync %s, refresh %s, quality %s', v_statuses[1], v_statuses[2], v_statuses[3])
     where l.run_id = v_run and l.step = 'pipeline';
    commit;
    if v_status <> 'ok' then
        raise notice 'whoop.run_pipeline: run % finished with status %: see whoop.run_log', v_run, v_status;
    end if;
end;
$$;

comment on procedure whoop.run_pipeline(name, boolean) is
    'sync -> refresh -> quality checks under one run id, each step recorded in whoop.run_log (committed as it goes); a step that fails does not stop the next; a second pipeline while one runs records itself as skipped and returns with a NOTICE. Call it outside a transaction block';

------------------------------------------------------------------------------
-- Scheduling with pg_cron (optional: nothing here needs pg_cron installed).

create function whoop.pipeline_job_name()
returns text
language sql stable
as $$ select 'whoop_pipeline_' || current_database() $$;

comment on function whoop.pipeline_job_name() is
    'name of the pg_cron job of this database''s pipeline (pg_cron serves all databases of a cluster, so the name carries the database)';

-- cron_call runs a query against pg_cron: here when pg_cron lives in this
-- database, otherwise through dblink (when installed here) in pg_cron's
-- database.  It raises a clear error when neither can work.
create function whoop.cron_call(query text, out result text)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_cron_db text := current_setting('cron.database_name', true);
    v_dblink name;
    v_conn text;
    v_socket text;
    v_state text;
    v_msg text;
begin
    if coalesce(current_setting('shared_preload_libraries', true), '') !~ '(^|[\s,"])pg_cron([\s,"]|$)'
       or v_cron_db is null then
        raise exception 'pg_cron is not available in this cluster'
            using errcode = 'object_not_in_prerequisite_state',
                  detail = 'whoop.schedule() creates a pg_cron job; pg_cron must be in shared_preload_libraries.',
                  hint = 'Install pg_cron (Debian: apt-get install postgresql-15-cron), add it to shared_preload_libraries, restart, and CREATE EXTENSION pg_cron in the database named by cron.database_name. Or call CALL whoop.run_pipeline() from any other scheduler.';
    end if;

    if v_cron_db = current_database() then
        if not exists (select from pg_extension where extname = 'pg_cron') then
            raise exception 'pg_cron is loaded but the extension is not created in database "%"', v_cron_db
                using errcode = 'object_not_in_prerequisite_state',
                      hint = 'Run CREATE EXTENSION pg_cron; in this database.';
        end if;
        execute query into result;
        return;
    end if;

    select n.nspname into v_dblink
    from pg_extension x join pg_namespace n on n.oid = x.extnamespace
    where x.extname = 'dblink';
    if v_dblink is null then
        raise exception 'pg_cron runs in database "%", not in "%"', v_cron_db, current_database()
            using errcode = 'object_not_in_prerequisite_state',
                  detail = 'pg_cron jobs can only be created from the database named by cron.database_name.',
                  hint = format('Run in database %s: %s; -- or CREATE EXTENSION dblink here and call this function again.',
                                v_cron_db, regexp_replace(query, '::\w+$', ''));
    end if;
    v_socket := split_part(current_setting('unix_socket_directories'), ',', 1);
    v_conn := format('dbname=%s port=%s user=%s',
                     quote_literal(v_cron_db), current_setting('port'), quote_literal(current_user))
              || case when trim(v_socket) <> '' then ' host=' || quote_literal(trim(v_socket)) else '' end;
    begin
        execute format('select r from %I.dblink($1, $2) as t(r text)', v_dblink)
            into result using v_conn, query;
    exception when others then
        get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text;
        raise exception 'pg_cron in database "%" (through dblink): %', v_cron_db, v_msg
            using errcode = v_state,
                  hint = format('Run in database %s: %s;', v_cron_db, regexp_replace(query, '::\w+$', ''));
    end;
end;
$$;

comment on function whoop.cron_call(text) is
    'runs a query in pg_cron''s database (here, or through dblink when pg_cron lives in another database); clear error and hint otherwise';

create function whoop.schedule(cron text default '0 */3 * * *')
returns bigint
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_query text;
begin
    if cron is null or btrim(cron) = '' then
        raise exception 'a cron schedule is required'
            using errcode = 'invalid_parameter_value',
                  hint = 'For example whoop.schedule(''0 */3 * * *'') for every three hours.';
    end if;
    if current_setting('cron.database_name', true) = current_database() then
        v_query := format('select cron.schedule(%L, %L, %L)::text',
                          whoop.pipeline_job_name(), cron, 'CALL whoop.run_pipeline()');
    else
        v_query := format('select cron.schedule_in_database(%L, %L, %L, %L)::text',
                          whoop.pipeline_job_name(), cron, 'CALL whoop.run_pipeline()', current_database());
    end if;
    return whoop.cron_call(v_query)::bigint;
end;
$$;

comment on function whoop.schedule(text) is
    'schedules CALL whoop.run_pipeline() in this database as pg_cron job whoop.pipeline_job_name() (default every 3 hours); calling it again replaces the schedule; returns the job id. Needs pg_cron; when pg_cron lives in another database, needs dblink here';

create function whoop.unschedule()
returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    return whoop.cron_call(format(
        'select (select count(cron.unschedule(jobid)) from cron.job where jobname = %L and username = current_user) > 0',
        whoop.pipeline_job_name()))::boolean;
end;
$$;

comment on function whoop.unschedule() is
    'removes this database''s pipeline job from pg_cron; true if there was one, false if not';
