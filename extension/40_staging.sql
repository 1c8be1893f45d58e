-- 40_staging.sql: the staging layer -- typed views over the raw records.
--
-- One view per record type: fields pulled out of the jsonb, units converted
-- (milliseconds to hours or minutes, kilojoules to kilocalories, metres to
-- kilometres), local wall-clock times from each record's own timezone_offset,
-- and the WHOOP day of every cycle.  Score columns are NULL unless the
-- record's score_state is SCORED; pending and unscorable records stay
-- visible here with their state, so nothing is silently dropped before the
-- marts.  Plain views: they cost nothing until the marts are refreshed.

--upgrade 1.0--1.1: alter function whoop.utc_offset(text) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.local_time(timestamptz, text) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.date_sk(date) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.recovery_zone(double precision) set schema whoop_internal;

-- The helpers below are single expressions, not STRICT, so that the planner
-- inlines them into the views (a non-inlined SQL function call per row
-- costs tens of microseconds -- seconds over a few years of data).
--upgrade 1.0--1.1 begin
create or replace function whoop_internal.utc_offset(tz text)
returns interval
language sql immutable parallel safe
as $$
    select case
        when tz in ('Z', 'z') then interval '0'
        -- digits only past the regular expression: the casts cannot fail
        when tz ~ '^[+-]\d{2}(:?\d{2})?$' then
            case when substr(tz, 2, 2)::int <= 15
                  and coalesce(nullif(substr(replace(tz, ':', ''), 4, 2), ''), '0')::int <= 59 then
                (case when left(tz, 1) = '-' then -1 else 1 end)
                * make_interval(hours => substr(tz, 2, 2)::int,
                                mins => coalesce(nullif(substr(replace(tz, ':', ''), 4, 2), ''), '0')::int)
            end
    end
$$;

comment on function whoop_internal.utc_offset(text) is
    'WHOOP timezone_offset (''+hh:mm'', ''-hh:mm'', ''+hhmm'', ''+hh'' or ''Z'') as an interval east of UTC; NULL when unparseable or out of range (hours above 15, minutes above 59)';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
create or replace function whoop_internal.local_time(at timestamptz, tz text)
returns timestamp
language sql immutable parallel safe
as $$
    select (at at time zone 'UTC') + coalesce(whoop_internal.utc_offset(tz), interval '0')
$$;

comment on function whoop_internal.local_time(timestamptz, text) is
    'wall-clock time of an instant at a WHOOP timezone_offset (UTC when the offset is unparseable); independent of the session TimeZone';
--upgrade 1.0--1.1 end

create function whoop_internal.date_sk(day date)
returns integer
language sql immutable strict parallel safe
as $$
    select (extract(year from day) * 10000 + extract(month from day) * 100
            + extract(day from day))::integer
$$;

comment on function whoop_internal.date_sk(date) is 'the YYYYMMDD integer key of a day in whoop.dim_date';

create function whoop_internal.recovery_zone(recovery_score double precision)
returns text
language sql immutable parallel safe
as $$
    select case
        when recovery_score >= 67 then 'green'
        when recovery_score >= 34 then 'yellow'
        when recovery_score is not null then 'red'
    end
$$;

comment on function whoop_internal.recovery_zone(double precision) is
    'WHOOP''s recovery zone of a score: green >= 67, yellow 34 up to (not including) 67, red below 34 (so 33.5 is red and 66.9 yellow)';

-- The scores' numbers.  (record -> 'score' -> 'stage_summary' ->>
-- 'total_in_bed_time_milli')::double precision copies the containers on its
-- way down and the value's text; over the 1.5 million sleeps of 2,000
-- members x 2 years that is about a second of a first build's critical path
-- (whoop.fact_daily_recovery).  jsonb_number() reads the value in place:
-- the same double for every value, the same error for every value the cast
-- refuses.
--upgrade 1.0--1.1 begin
create function whoop_internal.jsonb_number(document jsonb, path text)
returns double precision
language c immutable strict parallel safe
as 'MODULE_PATHNAME', 'jsonb_number';

comment on function whoop_internal.jsonb_number(jsonb, text) is
    'the value at a path of keys separated by dots (''score.stage_summary.total_in_bed_time_milli'') as (document #>> keys)::double precision gives it: NULL when a key is missing, the value is JSON null or a step is not an object; the cast''s error when the value is not a number';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
create or replace view whoop.stg_cycle as
select
    c.id as cycle_id,
    c.user_id,
    c.start,
    c."end",
    c.timezone_offset,
    whoop_internal.local_time(c.start, c.timezone_offset) as start_local,
    whoop_internal.local_time(c."end", c.timezone_offset) as end_local,
    c."end" is not null as cycle_complete,
    c.score_state,
    s.strain as day_strain,
    s.kilojoule,
    s.kilojoule / 4.184 as kcal,
    s.average_heart_rate,
    s.max_heart_rate,
    c.created_at,
    c.updated_at
from whoop.raw_cycle c
left join lateral (
    select whoop_internal.jsonb_number(c.record, 'score.strain') as strain,
           whoop_internal.jsonb_number(c.record, 'score.kilojoule') as kilojoule,
           (c.record #>> '{score,average_heart_rate}')::numeric::integer as average_heart_rate,
           (c.record #>> '{score,max_heart_rate}')::numeric::integer as max_heart_rate
    where c.score_state = 'SCORED'
) s on true;
--upgrade 1.0--1.1 end

comment on view whoop.stg_cycle is
    'WHOOP cycles (sleep onset to next sleep onset), typed; score columns only for SCORED cycles';
comment on column whoop.stg_cycle.start_local is 'cycle start as local wall-clock time (its timezone_offset)';
comment on column whoop.stg_cycle.end_local is 'cycle end as local wall-clock time; NULL while ongoing';
comment on column whoop.stg_cycle.cycle_complete is 'false for the ongoing cycle (no end yet)';
comment on column whoop.stg_cycle.day_strain is 'WHOOP day strain, 0-21 (logarithmic)';
comment on column whoop.stg_cycle.kilojoule is 'energy expended over the cycle, kJ';
comment on column whoop.stg_cycle.kcal is 'energy expended over the cycle, kcal (kJ / 4.184)';
comment on column whoop.stg_cycle.average_heart_rate is 'mean heart rate over the cycle, bpm';
comment on column whoop.stg_cycle.max_heart_rate is 'highest heart rate over the cycle, bpm';

--upgrade 1.0--1.1 begin
create or replace view whoop.stg_sleep as
select
    s.id as sleep_id,
    s.cycle_id,
    s.user_id,
    s.start,
    s."end",
    s.timezone_offset,
    whoop_internal.local_time(s.start, s.timezone_offset) as start_local,
    whoop_internal.local_time(s."end", s.timezone_offset) as end_local,
    whoop_internal.local_time(s."end", s.timezone_offset)::date as wake_date,
    s.nap,
    s.score_state,
    extract(epoch from s."end" - s.start)::double precision / 3600 as duration_hours,
    sc.in_bed_milli / 3600000.0::double precision as hours_in_bed,
    sc.awake_milli / 3600000.0::double precision as hours_awake,
    (sc.in_bed_milli - sc.awake_milli) / 3600000.0::double precision as hours_asleep,
    sc.no_data_milli / 3600000.0::double precision as hours_no_data,
    sc.light_milli / 3600000.0::double precision as light_sleep_hours,
    sc.slow_wave_milli / 3600000.0::double precision as slow_wave_sleep_hours,
    sc.rem_milli / 3600000.0::double precision as rem_sleep_hours,
    sc.sleep_cycle_count,
    sc.disturbance_count,
    (sc.need_baseline_milli + sc.need_debt_milli + sc.need_strain_milli + sc.need_nap_milli)
        / 3600000.0::double precision as sleep_need_hours,
    sc.need_baseline_milli / 3600000.0::double precision as sleep_need_baseline_hours,
    sc.need_debt_milli / 3600000.0::double precision as sleep_need_debt_hours,
    sc.need_strain_milli / 3600000.0::double precision as sleep_need_strain_hours,
    sc.need_nap_milli / 3600000.0::double precision as sleep_need_nap_hours,
    sc.respiratory_rate,
    sc.sleep_performance_percentage,
    sc.sleep_consistency_percentage,
    sc.sleep_efficiency_percentage,
    s.created_at,
    s.updated_at
from whoop.raw_sleep s
left join lateral (
    select whoop_internal.jsonb_number(s.record, 'score.stage_summary.total_in_bed_time_milli') as in_bed_milli,
           whoop_internal.jsonb_number(s.record, 'score.stage_summary.total_awake_time_milli') as awake_milli,
           whoop_internal.jsonb_number(s.record, 'score.stage_summary.total_no_data_time_milli') as no_data_milli,
           whoop_internal.jsonb_number(s.record, 'score.stage_summary.total_light_sleep_time_milli') as light_milli,
           whoop_internal.jsonb_number(s.record, 'score.stage_summary.total_slow_wave_sleep_time_milli') as slow_wave_milli,
           whoop_internal.jsonb_number(s.record, 'score.stage_summary.total_rem_sleep_time_milli') as rem_milli,
           (s.record #>> '{score,stage_summary,sleep_cycle_count}')::numeric::integer as sleep_cycle_count,
           (s.record #>> '{score,stage_summary,disturbance_count}')::numeric::integer as disturbance_count,
           whoop_internal.jsonb_number(s.record, 'score.sleep_needed.baseline_milli') as need_baseline_milli,
           coalesce(whoop_internal.jsonb_number(s.record, 'score.sleep_needed.need_from_sleep_debt_milli'), 0) as need_debt_milli,
           coalesce(whoop_internal.jsonb_number(s.record, 'score.sleep_needed.need_from_recent_strain_milli'), 0) as need_strain_milli,
           coalesce(whoop_internal.jsonb_number(s.record, 'score.sleep_needed.need_from_recent_nap_milli'), 0) as need_nap_milli,
           whoop_internal.jsonb_number(s.record, 'score.respiratory_rate') as respiratory_rate,
           whoop_internal.jsonb_number(s.record, 'score.sleep_performance_percentage') as sleep_performance_percentage,
           whoop_internal.jsonb_number(s.record, 'score.sleep_consistency_percentage') as sleep_consistency_percentage,
           whoop_internal.jsonb_number(s.record, 'score.sleep_efficiency_percentage') as sleep_efficiency_percentage
    where s.score_state = 'SCORED'
) sc on true
where s.deleted_at is null;
--upgrade 1.0--1.1 end

comment on view whoop.stg_sleep is
    'WHOOP sleeps and naps, typed, durations in hours; score columns only for SCORED sleeps';
comment on column whoop.stg_sleep.wake_date is
    'local calendar date on which the sleep ended: for the main sleep of a cycle, that cycle''s WHOOP day';
comment on column whoop.stg_sleep.nap is 'true for naps; the main sleep of a cycle is its non-nap sleep';
comment on column whoop.stg_sleep.start_local is 'sleep start as local wall-clock time (its timezone_offset)';
comment on column whoop.stg_sleep.end_local is 'sleep end as local wall-clock time (its timezone_offset)';
comment on column whoop.stg_sleep.sleep_cycle_count is 'number of sleep cycles WHOOP counted';
comment on column whoop.stg_sleep.disturbance_count is 'number of disturbances during the sleep';
comment on column whoop.stg_sleep.duration_hours is 'end - start in hours, known whatever the score state';
comment on column whoop.stg_sleep.hours_in_bed is 'total time in bed, hours';
comment on column whoop.stg_sleep.hours_awake is 'time awake while in bed, hours';
comment on column whoop.stg_sleep.hours_asleep is 'hours asleep: in bed minus awake';
comment on column whoop.stg_sleep.hours_no_data is 'time in bed without strap data, hours';
comment on column whoop.stg_sleep.light_sleep_hours is 'light sleep, hours';
comment on column whoop.stg_sleep.slow_wave_sleep_hours is 'slow-wave (deep) sleep, hours';
comment on column whoop.stg_sleep.rem_sleep_hours is 'REM sleep, hours';
comment on column whoop.stg_sleep.sleep_need_hours is
    'sleep WHOOP said was needed: baseline + sleep debt + recent strain + recent naps (the nap term is <= 0), hours';
comment on column whoop.stg_sleep.sleep_need_baseline_hours is 'baseline sleep need, hours';
comment on column whoop.stg_sleep.sleep_need_debt_hours is 'extra need from sleep debt, hours';
comment on column whoop.stg_sleep.sleep_need_strain_hours is 'extra need from recent strain, hours';
comment on column whoop.stg_sleep.sleep_need_nap_hours is 'need reduction from recent naps (<= 0), hours';
comment on column whoop.stg_sleep.respiratory_rate is 'breaths per minute during the sleep';
comment on column whoop.stg_sleep.sleep_performance_percentage is 'hours asleep relative to sleep need, %';
comment on column whoop.stg_sleep.sleep_consistency_percentage is 'similarity of sleep/wake times to the previous days, %';
comment on column whoop.stg_sleep.sleep_efficiency_percentage is 'time asleep relative to time in bed, %';

--upgrade 1.0--1.1 begin
create or replace view whoop.stg_recovery as
select
    r.cycle_id,
    r.sleep_id,
    r.user_id,
    r.score_state,
    s.user_calibrating,
    s.recovery_score,
    whoop_internal.recovery_zone(s.recovery_score) as recovery_zone,
    s.resting_heart_rate,
    s.hrv_rmssd_milli,
    s.spo2_percentage,
    s.skin_temp_celsius,
    r.created_at,
    r.updated_at
from whoop.raw_recovery r
left join lateral (
    select (r.record #>> '{score,user_calibrating}')::boolean as user_calibrating,
           whoop_internal.jsonb_number(r.record, 'score.recovery_score') as recovery_score,
           whoop_internal.jsonb_number(r.record, 'score.resting_heart_rate') as resting_heart_rate,
           whoop_internal.jsonb_number(r.record, 'score.hrv_rmssd_milli') as hrv_rmssd_milli,
           whoop_internal.jsonb_number(r.record, 'score.spo2_percentage') as spo2_percentage,
           whoop_internal.jsonb_number(r.record, 'score.skin_temp_celsius') as skin_temp_celsius
    where r.score_state = 'SCORED'
) s on true
where r.deleted_at is null;
--upgrade 1.0--1.1 end

comment on view whoop.stg_recovery is
    'WHOOP recoveries (one per cycle, from its main sleep), typed; score columns only for SCORED recoveries';
comment on column whoop.stg_recovery.user_calibrating is 'true while WHOOP is still learning the member''s baselines';
comment on column whoop.stg_recovery.recovery_score is 'recovery, 0-100 %, full precision';
--upgrade 1.0--1.1 begin
comment on column whoop.stg_recovery.recovery_zone is 'green >= 67, yellow >= 34, red below (whoop_internal.recovery_zone)';
--upgrade 1.0--1.1 end
comment on column whoop.stg_recovery.resting_heart_rate is 'resting heart rate during the sleep, bpm';
comment on column whoop.stg_recovery.hrv_rmssd_milli is 'heart rate variability (rMSSD), milliseconds';
comment on column whoop.stg_recovery.spo2_percentage is 'blood oxygen saturation, %; NULL when not measured';
comment on column whoop.stg_recovery.skin_temp_celsius is 'skin temperature, °C; NULL on straps that do not measure it';

--upgrade 1.0--1.1 begin
create or replace view whoop.stg_workout as
select
    w.id as workout_id,
    w.user_id,
    c.id as cycle_id,
    w.start,
    w."end",
    w.timezone_offset,
    whoop_internal.local_time(w.start, w.timezone_offset) as start_local,
    whoop_internal.local_time(w."end", w.timezone_offset) as end_local,
    w.sport_name,
    w.score_state,
    extract(epoch from w."end" - w.start)::double precision / 60 as duration_minutes,
    s.strain,
    s.average_heart_rate,
    s.max_heart_rate,
    s.kilojoule,
    s.kilojoule / 4.184 as kcal,
    s.percent_recorded,
    s.distance_meter / 1000 as distance_km,
    s.altitude_gain_meter,
    s.altitude_change_meter,
    s.z0 / 60000.0::double precision as zone_0_minutes,
    s.z1 / 60000.0::double precision as zone_1_minutes,
    s.z2 / 60000.0::double precision as zone_2_minutes,
    s.z3 / 60000.0::double precision as zone_3_minutes,
    s.z4 / 60000.0::double precision as zone_4_minutes,
    s.z5 / 60000.0::double precision as zone_5_minutes,
    w.created_at,
    w.updated_at
from whoop.raw_workout w
left join lateral (
    -- the member's latest cycle starting at or before the workout, if the
    -- workout starts before that cycle's end
    select case when c."end" is null or w.start < c."end" then c.id end as id
    from whoop.raw_cycle c
    where c.user_id = w.user_id and c.start <= w.start
    order by c.start desc
    limit 1
) c on true
left join lateral (
    select whoop_internal.jsonb_number(w.record, 'score.strain') as strain,
           (w.record #>> '{score,average_heart_rate}')::numeric::integer as average_heart_rate,
           (w.record #>> '{score,max_heart_rate}')::numeric::integer as max_heart_rate,
           whoop_internal.jsonb_number(w.record, 'score.kilojoule') as kilojoule,
           whoop_internal.jsonb_number(w.record, 'score.percent_recorded') as percent_recorded,
           whoop_internal.jsonb_number(w.record, 'score.distance_meter') as distance_meter,
           whoop_internal.jsonb_number(w.record, 'score.altitude_gain_meter') as altitude_gain_meter,
           whoop_internal.jsonb_number(w.record, 'score.altitude_change_meter') as altitude_change_meter,
           coalesce(whoop_internal.jsonb_number(w.record, 'score.zone_durations.zone_zero_milli'), 0) as z0,
           coalesce(whoop_internal.jsonb_number(w.record, 'score.zone_durations.zone_one_milli'), 0) as z1,
           coalesce(whoop_internal.jsonb_number(w.record, 'score.zone_durations.zone_two_milli'), 0) as z2,
           coalesce(whoop_internal.jsonb_number(w.record, 'score.zone_durations.zone_three_milli'), 0) as z3,
           coalesce(whoop_internal.jsonb_number(w.record, 'score.zone_durations.zone_four_milli'), 0) as z4,
           coalesce(whoop_internal.jsonb_number(w.record, 'score.zone_durations.zone_five_milli'), 0) as z5
    where w.score_state = 'SCORED'
) s on true
where w.deleted_at is null;
--upgrade 1.0--1.1 end

comment on view whoop.stg_workout is
    'WHOOP workouts, typed, with the cycle they belong to; score columns only for SCORED workouts';
comment on column whoop.stg_workout.cycle_id is
    'the member''s cycle whose [start, end) contains the workout start (an ongoing cycle has no end); NULL when none does';
comment on column whoop.stg_workout.duration_minutes is 'end - start in minutes, known whatever the score state';
comment on column whoop.stg_workout.start_local is 'workout start as local wall-clock time (its timezone_offset)';
comment on column whoop.stg_workout.end_local is 'workout end as local wall-clock time (its timezone_offset)';
comment on column whoop.stg_workout.sport_name is 'WHOOP sport, lower case (e.g. running)';
comment on column whoop.stg_workout.altitude_gain_meter is 'altitude gained, m; NULL when not measured';
comment on column whoop.stg_workout.altitude_change_meter is 'net altitude change, m; NULL when not measured';
comment on column whoop.stg_workout.strain is 'workout strain, 0-21';
comment on column whoop.stg_workout.kcal is 'energy expended, kcal (kJ / 4.184)';
comment on column whoop.stg_workout.percent_recorded is 'share of the workout with heart-rate data, %';
comment on column whoop.stg_workout.distance_km is 'distance, km; NULL when the sport has none';
comment on column whoop.stg_workout.zone_0_minutes is 'minutes in heart-rate zone 0 (below zone 1)';
comment on column whoop.stg_workout.zone_1_minutes is 'minutes in heart-rate zone 1 (50-60 % of max HR)';
comment on column whoop.stg_workout.zone_2_minutes is 'minutes in heart-rate zone 2 (60-70 % of max HR)';
comment on column whoop.stg_workout.zone_3_minutes is 'minutes in heart-rate zone 3 (70-80 % of max HR)';
comment on column whoop.stg_workout.zone_4_minutes is 'minutes in heart-rate zone 4 (80-90 % of max HR)';
comment on column whoop.stg_workout.zone_5_minutes is 'minutes in heart-rate zone 5 (90-100 % of max HR)';

-- The WHOOP day of a cycle: the local date on which its main (non-nap)
-- sleep ended, else the local date of cycle start + 12 hours.  The main
-- sleep of a cycle is its non-nap sleep; should a cycle hold several, the
-- one its recovery names wins, then the longest, then the latest to end.
-- Any score state counts here: a day label is not a score, and the sleep's
-- start and end are known before it is scored.  Two cycles on one day
-- (travel, shift work): the one with the longer main sleep is the day's
-- primary cycle (no main sleep counts as shortest), then the later start,
-- then the higher id (only so that the choice is total).
--upgrade 1.0--1.1 begin
create or replace view whoop.stg_cycle_day as
with main_sleep as (
    -- user_id leads the DISTINCT ON (a cycle has one member, so the rows
    -- are the same) so that a filter on the member reaches raw_sleep.  A
    -- sleep whose cycle is missing (or another member's) gets a group of its
    -- own that no cycle joins below: no join with raw_cycle here, which the
    -- planner misjudged (correlated keys) into a nested loop per sleep.
    select distinct on (s.user_id, s.cycle_id)
        s.user_id, s.cycle_id, s.id as sleep_id, s."end", s.timezone_offset,
        s."end" - s.start as length
    from whoop.raw_sleep s
    left join whoop.raw_recovery r on r.cycle_id = s.cycle_id and r.deleted_at is null
    where not s.nap and s.deleted_at is null
    order by s.user_id, s.cycle_id, (s.id = r.sleep_id) is true desc, s."end" - s.start desc,
             s."end" desc, s.id
),
dated as (
    select
        c.id as cycle_id,
        c.user_id,
        c.start,
        ms.sleep_id as main_sleep_id,
        ms.length as main_sleep_length,
        case when ms.sleep_id is not null
             then whoop_internal.local_time(ms."end", ms.timezone_offset)::date
             else whoop_internal.local_time(c.start + interval '12 hours', c.timezone_offset)::date
        end as day,
        case when ms.sleep_id is not null then 'main sleep end' else 'cycle start + 12 h' end as day_rule
    from whoop.raw_cycle c
    left join main_sleep ms on ms.cycle_id = c.id and ms.user_id = c.user_id
)
select
    cycle_id, user_id, day, day_rule, main_sleep_id, main_sleep_length,
    row_number() over (partition by user_id, day
                       order by main_sleep_length desc nulls last, start desc, cycle_id desc) = 1
        as is_primary
from dated;
--upgrade 1.0--1.1 end

comment on view whoop.stg_cycle_day is
    'the WHOOP day of every cycle (local date its main sleep ended, else of start + 12 h) and whether it is the day''s primary cycle';
comment on column whoop.stg_cycle_day.day is 'the WHOOP day: the local calendar date the cycle is labelled with';
comment on column whoop.stg_cycle_day.day_rule is
    '''main sleep end'' or ''cycle start + 12 h'' (the fallback for cycles without a main sleep)';
comment on column whoop.stg_cycle_day.main_sleep_id is 'the cycle''s main (non-nap) sleep, any score state';
comment on column whoop.stg_cycle_day.main_sleep_length is 'end - start of the main sleep';
comment on column whoop.stg_cycle_day.is_primary is
    'true for the one cycle that represents (user_id, day) in the daily facts: longest main sleep, then latest start';
