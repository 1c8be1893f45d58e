-- 50_marts.sql: the star schema -- dimensions and daily facts.
--
-- The dimensions are materialized views, each with a unique index on NOT
-- NULL key columns so that whoop.refresh() can use REFRESH ... CONCURRENTLY
-- (readers keep the old contents until the new ones are committed); the
-- facts are maintained objects (below), kept up to date per member.  Grain of both facts: one row
-- per (user_id, day), the WHOOP day of whoop.stg_cycle_day (kept as
-- whoop_internal.cycle_day); a day's row describes its primary cycle.

-- Per-member settings that the data cannot tell.
create table whoop.user_settings (
    user_id     bigint primary key,
    hemisphere  text not null default 'north' check (hemisphere in ('north', 'south'))
);
select pg_catalog.pg_extension_config_dump('whoop.user_settings', '');

comment on table whoop.user_settings is
    'per-member settings the API cannot tell; members without a row use the defaults. Refresh the marts after a change';
comment on column whoop.user_settings.hemisphere is
    '''north'' (default) or ''south'': which meteorological season names apply to the member in whoop.seasonal_adaptation';

-- dim_date: one row per calendar day, from 1 January of the year before the
-- first record (or before today, whichever is earlier) to 31 December of the
-- year after the last record (or after today).
create materialized view whoop.dim_date as
with bounds as (
    select make_date(extract(year from least(min(d), current_date))::int - 1, 1, 1) as first_day,
           make_date(extract(year from greatest(max(d), current_date))::int + 1, 12, 31) as last_day
    from (
        select (min(start) at time zone 'UTC')::date - 1 as d from whoop.raw_cycle
        union all
        select (max(coalesce("end", start)) at time zone 'UTC')::date + 1 from whoop.raw_cycle
        union all
        select (max("end") at time zone 'UTC')::date + 1 from whoop.raw_sleep
    ) data_days
),
days as (
    select g::date as day
    from bounds, generate_series(bounds.first_day, bounds.last_day, interval '1 day') as g
),
seasons as (
    select day,
           (date_trunc('month', day) - make_interval(months => extract(month from day)::int % 3))::date
               as season_start
    from days
)
select
    day,
    whoop_internal.date_sk(day) as date_sk,
    extract(year from day)::int as year,
    extract(quarter from day)::int as quarter,
    extract(month from day)::int as month,
    to_char(day, 'FMMonth') as month_name,
    to_char(day, 'Mon') as month_short_name,
    extract(isoyear from day)::int as iso_year,
    extract(week from day)::int as iso_week,
    to_char(day, 'IYYY-"W"IW') as iso_week_name,
    extract(day from day)::int as day_of_month,
    extract(doy from day)::int as day_of_year,
    extract(isodow from day)::int as iso_day_of_week,
    to_char(day, 'FMDay') as day_name,
    to_char(day, 'Dy') as day_short_name,
    extract(isodow from day) >= 6 as is_weekend,
    case extract(month from day)::int % 12 / 3
        when 0 then 'Winter' when 1 then 'Spring' when 2 then 'Summer' else 'Autumn'
    end as season,
    case extract(month from day)::int % 12 / 3
        when 0 then 'Summer' when 1 then 'Autumn' when 2 then 'Winter' else 'Spring'
    end as season_southern,
    extract(year from season_start + interval '2 months')::int as season_year,
    season_start,
    (season_start + interval '3 months' - interval '1 day')::date as season_end,
    case
        when extract(month from day) <= 2 then 'Base Building'
        when extract(month from day) <= 5 then 'Build Phase'
        when extract(month from day) <= 8 then 'Peak Season'
        else 'Recovery Phase'
    end as training_period
from seasons;

create unique index dim_date_day on whoop.dim_date (day);
create unique index dim_date_date_sk on whoop.dim_date (date_sk);

comment on materialized view whoop.dim_date is
    'calendar dimension: one row per day, 1 January of the year before the data (or today) to 31 December of the year after';
--upgrade 1.0--1.1 begin
comment on column whoop.dim_date.date_sk is 'integer key YYYYMMDD (whoop_internal.date_sk(day))';
--upgrade 1.0--1.1 end
comment on column whoop.dim_date.iso_year is 'ISO 8601 week-numbering year (differs from year around 1 January)';
comment on column whoop.dim_date.iso_week is 'ISO 8601 week number, 1-53';
comment on column whoop.dim_date.iso_week_name is 'ISO week as text, e.g. 2025-W01';
comment on column whoop.dim_date.iso_day_of_week is 'ISO day of week: 1 = Monday ... 7 = Sunday';
comment on column whoop.dim_date.is_weekend is 'Saturday or Sunday';
comment on column whoop.dim_date.season is
    'meteorological season, northern hemisphere: Winter Dec-Feb, Spring Mar-May, Summer Jun-Aug, Autumn Sep-Nov';
comment on column whoop.dim_date.season_southern is
    'meteorological season, southern hemisphere: Summer Dec-Feb, Autumn Mar-May, Winter Jun-Aug, Spring Sep-Nov';
comment on column whoop.dim_date.season_year is
    'year a season is counted in: the year it ends, so December belongs to the next year''s Dec-Feb season';
comment on column whoop.dim_date.season_start is 'first day of the three-month season containing the day';
comment on column whoop.dim_date.season_end is 'last day of the three-month season containing the day';
comment on column whoop.dim_date.training_period is
    'training calendar: Jan-Feb Base Building, Mar-May Build Phase, Jun-Aug Peak Season, Sep-Dec Recovery Phase';

-- dim_user: SCD type 2 over the profile and body-measurement histories.
-- A version starts at every snapshot that changed a value; at that instant
-- a version takes the latest profile and the latest measurement observed
-- so far -- or, when none was observed yet, the earliest one (history
-- starts with the first sync; the first version speaks for the time before).
-- Snapshots that change nothing are merged into the version before them.
create materialized view whoop.dim_user as
with points as (
    select user_id, observed_at from whoop.raw_profile
    union
    select user_id, observed_at from whoop.raw_body_measurement
),
snapshots as (
    select p.user_id, p.observed_at as valid_from,
           pr.email, pr.first_name, pr.last_name,
           bm.height_meter, bm.weight_kilogram, bm.max_heart_rate
    from points p
    left join lateral (
        select x.email, x.first_name, x.last_name
        from whoop.raw_profile x
        where x.user_id = p.user_id
        order by x.observed_at > p.observed_at, abs(extract(epoch from x.observed_at - p.observed_at))
        limit 1
    ) pr on true
    left join lateral (
        select x.height_meter, x.weight_kilogram, x.max_heart_rate
        from whoop.raw_body_measurement x
        where x.user_id = p.user_id
        order by x.observed_at > p.observed_at, abs(extract(epoch from x.observed_at - p.observed_at))
        limit 1
    ) bm on true
),
marked as (
    select s.*,
           lag(valid_from) over w is null
           or (email, first_name, last_name, height_meter, weight_kilogram, max_heart_rate)
              is distinct from
              (lag(email) over w, lag(first_name) over w, lag(last_name) over w,
               lag(height_meter) over w, lag(weight_kilogram) over w, lag(max_heart_rate) over w)
               as changed
    from snapshots s
    window w as (partition by user_id order by valid_from)
),
versions as (
    select * from marked where changed
)
select
    (hashtextextended(user_id::text || '@' || extract(epoch from valid_from)::text, 0)
        & 9223372036854775807) as user_sk,
    user_id,
    valid_from,
    lead(valid_from) over w as valid_to,
    lead(valid_from) over w is null as is_current,
    first_name,
    last_name,
    nullif(concat_ws(' ', first_name, last_name), '') as name,
    email,
    height_meter,
    weight_kilogram,
    max_heart_rate
from versions
window w as (partition by user_id order by valid_from);

create unique index dim_user_user_sk on whoop.dim_user (user_sk);
create unique index dim_user_user_id_valid_from on whoop.dim_user (user_id, valid_from);

comment on materialized view whoop.dim_user is
    'members as a slowly changing dimension (type 2): a new version whenever a profile or body-measurement value changed between syncs';
comment on column whoop.dim_user.user_sk is
    'surrogate key of the version; a hash of (user_id, valid_from), so it is the same after every refresh';
comment on column whoop.dim_user.user_id is 'WHOOP member id';
comment on column whoop.dim_user.valid_from is
    'when the sync first saw this version; the first version also stands for all days before it';
comment on column whoop.dim_user.valid_to is 'when the next version was first seen; NULL for the current version';
comment on column whoop.dim_user.is_current is 'true for the member''s current version (valid_to is NULL)';
comment on column whoop.dim_user.name is 'first and last name';
comment on column whoop.dim_user.height_meter is 'height, m';
comment on column whoop.dim_user.weight_kilogram is 'weight, kg';
comment on column whoop.dim_user.max_heart_rate is 'maximum heart rate WHOOP uses for the member''s zones, bpm';

-- Facts carry the dim_user version valid on their day: the last version
-- first seen on or before that day (UTC date of valid_from), else the
-- member's first version.  As day ranges: the first version reaches back
-- to -infinity, each version ends where the next begins (versions first seen
-- on the same day leave only the last with a non-empty range).  A view, not a
-- function, so the catalog (whoop.lineage, whoop.refresh()) sees that the
-- facts depend on dim_user.
--upgrade 1.0--1.1: alter view whoop.dim_user_days set schema whoop_internal;

create view whoop_internal.dim_user_days as
select
    user_id,
    user_sk,
    case when lag(valid_from) over w is null then '-infinity'::date
         else (valid_from at time zone 'UTC')::date end as from_day,
    coalesce((lead(valid_from) over w at time zone 'UTC')::date, 'infinity'::date) as to_day
from whoop.dim_user
window w as (partition by user_id order by valid_from);

comment on view whoop_internal.dim_user_days is
    'the days on which each whoop.dim_user version is the valid one, [from_day, to_day): how facts pick their user_sk';
comment on column whoop_internal.dim_user_days.from_day is
    'first day of the version (UTC date it was first seen; -infinity for the member''s first version)';
comment on column whoop_internal.dim_user_days.to_day is 'first day of the next version (infinity for the current one)';

------------------------------------------------------------------------------
-- Maintained objects.  The facts and the metrics are plain views over
-- tables that whoop.refresh() maintains member by member (every one of them
-- is computed per member: all windows are partitioned by user_id), rather
-- than materialized views that a refresh recomputes whole.  For an object
-- <name>: whoop_internal.<name>_def holds its query (the definition),
-- whoop_internal.<name>_rows its rows (primary key = the grain), and
-- whoop.<name> -- what everyone reads -- selects the rows.  Intermediates
-- that several definitions read (whoop_internal.cycle_day here,
-- whoop_internal.daily_scores in 60_metrics.sql), or that a first build
-- computes beside others (whoop_internal.cycle_workouts), are maintained the
-- same way with their view in whoop_internal, so that a refresh computes
-- them once rather than once per reader.  See 70_refresh.sql for the refresh and
-- the change capture.

-- 1.0 had materialized views here.  They go, with the extension's own
-- objects built on them (recreated further on); an object of the user's
-- that depends on them stops the update rather than being dropped with them.
--upgrade 1.0--1.1 begin
do $$
declare
    v_names text[] := array['fact_daily_recovery', 'fact_daily_strain', 'recovery_momentum',
                            'strain_recovery_efficiency', 'training_readiness_gap', 'recovery_volatility',
                            'autonomic_balance', 'seasonal_adaptation', 'training_load'];
    v_user text;
begin
    if not exists (select from pg_catalog.pg_class c
                   where c.relnamespace = 'whoop'::regnamespace and c.relname = any (v_names)
                     and c.relkind = 'm') then
        return;
    end if;
    with recursive dep (classid, objid) as (
        select 'pg_catalog.pg_class'::regclass::oid, c.oid
        from pg_catalog.pg_class c
        where c.relnamespace = 'whoop'::regnamespace and c.relname = any (v_names) and c.relkind = 'm'
        union
        select case when d.classid = 'pg_catalog.pg_rewrite'::regclass
                    then 'pg_catalog.pg_class'::regclass::oid else d.classid end,
               case when d.classid = 'pg_catalog.pg_rewrite'::regclass then rw.ev_class else d.objid end
        from dep
        join pg_catalog.pg_depend d
          on d.refclassid = dep.classid and d.refobjid = dep.objid and d.deptype = 'n'
        left join pg_catalog.pg_rewrite rw
          on d.classid = 'pg_catalog.pg_rewrite'::regclass and rw.oid = d.objid
    )
    select string_agg(pg_catalog.pg_describe_object(dep.classid, dep.objid, 0), ', '
                      order by pg_catalog.pg_describe_object(dep.classid, dep.objid, 0))
      into v_user
    from dep
    where not exists (select from pg_catalog.pg_depend e
                      where e.classid = dep.classid and e.objid = dep.objid
                        and e.refclassid = 'pg_catalog.pg_extension'::regclass and e.deptype = 'e');
    if v_user is not null then
        raise exception 'objects outside the extension depend on the materialized views that whoop_fdw 1.1 replaces: %', v_user
            using errcode = 'dependent_objects_still_exist',
                  detail = '1.1 turns the facts and metrics into views over tables that whoop.refresh() maintains per member; the update drops the 1.0 materialized views and does not drop objects of yours.',
                  hint = 'Save their definitions, drop them, run ALTER EXTENSION whoop_fdw UPDATE, then recreate them (the columns are unchanged).';
    end if;
    -- only the extension's own objects depend on them (checked above)
    drop materialized view whoop.training_load, whoop.seasonal_adaptation, whoop.autonomic_balance,
        whoop.recovery_volatility, whoop.training_readiness_gap, whoop.strain_recovery_efficiency,
        whoop.recovery_momentum, whoop.fact_daily_strain, whoop.fact_daily_recovery cascade;
end;
$$;

create table whoop_internal.maintained (
    name        text primary key,
    view_schema name not null default 'whoop' check (view_schema in ('whoop', 'whoop_internal')),
    built       boolean not null default false,
    row_count   bigint not null default 0
);

comment on table whoop_internal.maintained is
    'the objects whoop.refresh() maintains per member: <view_schema>.<name> reads whoop_internal.<name>_rows, computed from whoop_internal.<name>_def; built is false until the first full rebuild (after CREATE EXTENSION, an upgrade, a restore or a TRUNCATE of a raw table); not dumped, so a restore starts unbuilt';
comment on column whoop_internal.maintained.view_schema is
    'whoop for the facts and metrics; whoop_internal for an intermediate that only definitions read';
comment on column whoop_internal.maintained.built is 'the rows were fully built once and are kept up to date since; false = the next refresh rebuilds them whole';
comment on column whoop_internal.maintained.row_count is 'rows in whoop_internal.<name>_rows, kept by whoop.refresh() (exact: derived from the rows it loads, deletes and inserts; counted after a full rebuild of a table that had rows)';

create function whoop_internal.column_list(p_relation regclass)
returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
    select string_agg(quote_ident(a.attname), ', ' order by a.attnum)
    from pg_attribute a
    where a.attrelid = p_relation and a.attnum > 0 and not a.attisdropped
$$;

comment on function whoop_internal.column_list(regclass) is
    'the columns of a table or view, quoted, comma-separated, in their order: for statements that must name them (the maintained objects'' views, a full rebuild''s changes)';

create function whoop_internal.create_maintained(p_name text, p_key text[], p_view_schema name default 'whoop')
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_def regclass := format('whoop_internal.%I', p_name || '_def')::regclass;
    v_cols text := whoop_internal.column_list(v_def);
begin
    execute format('create table whoop_internal.%I (like %s, primary key (%s))',
                   p_name || '_rows', v_def,
                   (select string_agg(quote_ident(k), ', ' order by o) from unnest(p_key) with ordinality k(k, o)));
    if p_key[1] <> 'user_id' then
        execute format('create index on whoop_internal.%I (user_id)', p_name || '_rows');
    end if;
    execute format('create view %I.%I as select %s from whoop_internal.%I', p_view_schema, p_name, v_cols, p_name || '_rows');
    execute format('comment on view %s is %L', v_def,
                   format('the definition of %I.%I: whoop.refresh() computes whoop_internal.%s from it, per changed member or whole',
                          p_view_schema, p_name, p_name || '_rows'));
    execute format('comment on table whoop_internal.%I is %L', p_name || '_rows',
                   format('the rows of %I.%I, maintained per member by whoop.refresh() from whoop_internal.%s; not dumped (rebuilt by the first refresh after a restore)',
                          p_view_schema, p_name, p_name || '_def'));
    insert into whoop_internal.maintained (name, view_schema) values (p_name, p_view_schema);
end;
$$;

comment on function whoop_internal.create_maintained(text, text[], name) is
    'creates a maintained object from its definition view whoop_internal.<name>_def: the table whoop_internal.<name>_rows (same columns, primary key p_key) and the view <p_view_schema>.<name> over it, and registers it in whoop_internal.maintained (used by the install script)';
--upgrade 1.0--1.1 end

-- The WHOOP day of every cycle, kept per member: both facts start from it,
-- and computing it (each cycle's main sleep, its day, the day's primary
-- cycle) costs as much as the rest of a fact.
--upgrade 1.0--1.1 begin
create view whoop_internal.cycle_day_def as
select cycle_id, user_id, day, day_rule, main_sleep_id, main_sleep_length, is_primary
from whoop.stg_cycle_day;

select whoop_internal.create_maintained('cycle_day', '{user_id,cycle_id}', 'whoop_internal');

comment on view whoop_internal.cycle_day is
    'whoop.stg_cycle_day as of the last whoop.refresh(), maintained per member: what the facts read';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
create view whoop_internal.fact_daily_recovery_def as
select
    cd.user_id,
    cd.day,
    whoop_internal.date_sk(cd.day) as date_sk,
    u.user_sk,
    cd.cycle_id,
    cd.main_sleep_id as sleep_id,
    r.score_state as recovery_score_state,
    s.score_state as sleep_score_state,
    r.recovery_score,
    r.recovery_zone,
    r.resting_heart_rate,
    r.hrv_rmssd_milli,
    r.spo2_percentage,
    r.skin_temp_celsius,
    r.user_calibrating,
    s.respiratory_rate,
    s.sleep_performance_percentage,
    s.sleep_consistency_percentage,
    s.sleep_efficiency_percentage,
    s.hours_asleep,
    s.hours_in_bed,
    s.sleep_need_hours,
    s.light_sleep_hours,
    s.slow_wave_sleep_hours,
    s.rem_sleep_hours,
    s.disturbance_count,
    greatest(r.updated_at, s.updated_at) as updated_at
from whoop_internal.cycle_day cd
left join whoop.stg_recovery r on r.cycle_id = cd.cycle_id
left join whoop_internal.dim_user_days u
    on u.user_id = cd.user_id and cd.day >= u.from_day and cd.day < u.to_day
left join whoop.stg_sleep s on s.sleep_id = cd.main_sleep_id
where cd.is_primary
  and (r.cycle_id is not null or s.sleep_id is not null);

select whoop_internal.create_maintained('fact_daily_recovery', '{user_id,day}');

comment on view whoop.fact_daily_recovery is
    'one row per member and WHOOP day that has a recovery or a main sleep (any score state): recovery and main-sleep measures of the day''s primary cycle; scores only from SCORED records';
comment on column whoop.fact_daily_recovery.day is 'the WHOOP day (see whoop.stg_cycle_day)';
comment on column whoop.fact_daily_recovery.date_sk is 'key into whoop.dim_date';
comment on column whoop.fact_daily_recovery.user_sk is 'the whoop.dim_user version valid on the day: the last version first seen on or before it (UTC date), else the first';
comment on column whoop.fact_daily_recovery.cycle_id is 'the day''s primary cycle';
comment on column whoop.fact_daily_recovery.sleep_id is 'the primary cycle''s main (non-nap) sleep';
comment on column whoop.fact_daily_recovery.recovery_score_state is 'score_state of the recovery; NULL when there is none';
comment on column whoop.fact_daily_recovery.sleep_score_state is 'score_state of the main sleep; NULL when there is none';
comment on column whoop.fact_daily_recovery.recovery_score is 'recovery, 0-100 %, full precision; NULL unless SCORED';
comment on column whoop.fact_daily_recovery.recovery_zone is 'green >= 67, yellow >= 34, red below';
comment on column whoop.fact_daily_recovery.resting_heart_rate is 'bpm';
comment on column whoop.fact_daily_recovery.hrv_rmssd_milli is 'heart rate variability (rMSSD), milliseconds';
comment on column whoop.fact_daily_recovery.spo2_percentage is 'blood oxygen, %';
comment on column whoop.fact_daily_recovery.skin_temp_celsius is 'skin temperature, °C';
comment on column whoop.fact_daily_recovery.user_calibrating is 'true while WHOOP is still learning the member''s baselines';
comment on column whoop.fact_daily_recovery.respiratory_rate is 'breaths per minute during the main sleep';
comment on column whoop.fact_daily_recovery.sleep_performance_percentage is 'hours asleep relative to need, %';
comment on column whoop.fact_daily_recovery.sleep_consistency_percentage is 'regularity of sleep timing, %';
comment on column whoop.fact_daily_recovery.sleep_efficiency_percentage is 'asleep relative to in bed, %';
comment on column whoop.fact_daily_recovery.hours_asleep is 'main sleep: in bed minus awake, hours (naps not included)';
comment on column whoop.fact_daily_recovery.hours_in_bed is 'main sleep: time in bed, hours';
comment on column whoop.fact_daily_recovery.sleep_need_hours is 'sleep needed (baseline + debt + strain + naps), hours';
comment on column whoop.fact_daily_recovery.light_sleep_hours is 'main sleep: light sleep, hours';
comment on column whoop.fact_daily_recovery.slow_wave_sleep_hours is 'main sleep: slow-wave sleep, hours';
comment on column whoop.fact_daily_recovery.rem_sleep_hours is 'main sleep: REM sleep, hours';
comment on column whoop.fact_daily_recovery.disturbance_count is 'main sleep: number of disturbances';
comment on column whoop.fact_daily_recovery.updated_at is 'latest updated_at of the recovery and the main sleep';

-- The SCORED workouts of every cycle, summed once per member and cycle: in
-- start order, so that float results do not depend on the physical row
-- order, all of them by whoop_internal.sum_each after one sort.  Kept apart
-- from the strain fact because it reads neither the cycle days nor the
-- member dimension: a first build computes it beside the cycle days
-- (whoop_internal.load_rows()), and finding each workout's cycle is most of
-- the strain fact's cost.  Grouped by member too -- a cycle has one member,
-- so the groups are the same -- so that a filter on the member reaches
-- raw_workout.
create view whoop_internal.cycle_workouts_def as
select g.user_id, g.cycle_id, g.workout_count, g.max_workout_strain,
       g.sums[1] as workout_minutes,
       g.sums[2] as zone_0_minutes,
       g.sums[3] as zone_1_minutes,
       g.sums[4] as zone_2_minutes,
       g.sums[5] as zone_3_minutes,
       g.sums[6] as zone_4_minutes,
       g.sums[7] as zone_5_minutes,
       g.sums[8] as distance_km,
       g.sports, g.updated_at
from (
    select x.user_id, x.cycle_id,
           count(*) as workout_count,
           max(x.strain) as max_workout_strain,
           whoop_internal.sum_each(array[x.duration_minutes, x.zone_0_minutes, x.zone_1_minutes,
                                         x.zone_2_minutes, x.zone_3_minutes, x.zone_4_minutes,
                                         x.zone_5_minutes, x.distance_km]
                                   order by x.start, x.workout_id) as sums,
           array_agg(distinct x.sport_name order by x.sport_name)
               filter (where x.sport_name is not null) as sports,
           max(x.updated_at) as updated_at
    from whoop.stg_workout x
    where x.cycle_id is not null and x.score_state = 'SCORED'
    group by x.user_id, x.cycle_id
) g;

select whoop_internal.create_maintained('cycle_workouts', '{user_id,cycle_id}', 'whoop_internal');

comment on view whoop_internal.cycle_workouts is
    'the SCORED workouts of each cycle summed, as of the last whoop.refresh(), maintained per member: what whoop.fact_daily_strain reads';

create view whoop_internal.fact_daily_strain_def as
select
    cd.user_id,
    cd.day,
    whoop_internal.date_sk(cd.day) as date_sk,
    u.user_sk,
    cd.cycle_id,
    c.score_state,
    c.day_strain,
    c.kilojoule,
    c.kcal,
    c.average_heart_rate,
    c.max_heart_rate,
    coalesce(w.workout_count, 0) as workout_count,
    w.max_workout_strain,
    coalesce(w.workout_minutes, 0) as workout_minutes,
    coalesce(w.zone_0_minutes, 0) as zone_0_minutes,
    coalesce(w.zone_1_minutes, 0) as zone_1_minutes,
    coalesce(w.zone_2_minutes, 0) as zone_2_minutes,
    coalesce(w.zone_3_minutes, 0) as zone_3_minutes,
    coalesce(w.zone_4_minutes, 0) as zone_4_minutes,
    coalesce(w.zone_5_minutes, 0) as zone_5_minutes,
    coalesce(w.distance_km, 0) as distance_km,
    coalesce(w.sports, '{}') as sports,
    c.cycle_complete,
    greatest(c.updated_at, w.updated_at) as updated_at
from whoop_internal.cycle_day cd
join whoop.stg_cycle c on c.cycle_id = cd.cycle_id
left join whoop_internal.cycle_workouts w on w.cycle_id = cd.cycle_id and w.user_id = cd.user_id
left join whoop_internal.dim_user_days u
    on u.user_id = cd.user_id and cd.day >= u.from_day and cd.day < u.to_day
where cd.is_primary;

select whoop_internal.create_maintained('fact_daily_strain', '{user_id,day}');

comment on view whoop.fact_daily_strain is
    'one row per member and WHOOP day: strain and energy of the day''s primary cycle and the SCORED workouts within it';
comment on column whoop.fact_daily_strain.day is 'the WHOOP day (see whoop.stg_cycle_day)';
comment on column whoop.fact_daily_strain.date_sk is 'key into whoop.dim_date';
comment on column whoop.fact_daily_strain.user_sk is 'the whoop.dim_user version valid on the day: the last version first seen on or before it (UTC date), else the first';
comment on column whoop.fact_daily_strain.cycle_id is 'the day''s primary cycle';
comment on column whoop.fact_daily_strain.score_state is 'score_state of the cycle';
comment on column whoop.fact_daily_strain.day_strain is 'WHOOP day strain 0-21; NULL unless the cycle is SCORED';
comment on column whoop.fact_daily_strain.kilojoule is 'energy over the cycle, kJ';
comment on column whoop.fact_daily_strain.kcal is 'energy over the cycle, kcal';
comment on column whoop.fact_daily_strain.average_heart_rate is 'mean heart rate over the cycle, bpm';
comment on column whoop.fact_daily_strain.max_heart_rate is 'highest heart rate over the cycle, bpm';
comment on column whoop.fact_daily_strain.workout_count is 'SCORED workouts that started within the cycle';
comment on column whoop.fact_daily_strain.max_workout_strain is 'highest workout strain; NULL without workouts';
comment on column whoop.fact_daily_strain.workout_minutes is 'total workout duration, minutes';
comment on column whoop.fact_daily_strain.zone_0_minutes is 'minutes in heart-rate zone 0, summed over the workouts';
comment on column whoop.fact_daily_strain.zone_1_minutes is 'minutes in heart-rate zone 1, summed over the workouts';
comment on column whoop.fact_daily_strain.zone_2_minutes is 'minutes in heart-rate zone 2, summed over the workouts';
comment on column whoop.fact_daily_strain.zone_3_minutes is 'minutes in heart-rate zone 3, summed over the workouts';
comment on column whoop.fact_daily_strain.zone_4_minutes is 'minutes in heart-rate zone 4, summed over the workouts';
comment on column whoop.fact_daily_strain.zone_5_minutes is 'minutes in heart-rate zone 5, summed over the workouts';
comment on column whoop.fact_daily_strain.distance_km is 'distance covered in workouts, km (workouts without distance count 0)';
comment on column whoop.fact_daily_strain.sports is 'distinct sport names of the workouts, sorted; empty without workouts';
comment on column whoop.fact_daily_strain.cycle_complete is 'false for the ongoing cycle, whose strain still grows';
comment on column whoop.fact_daily_strain.updated_at is 'latest updated_at of the cycle and its workouts';
--upgrade 1.0--1.1 end
