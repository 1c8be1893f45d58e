-- 90_reports.sql: reading the warehouse without Grafana -- a daily summary
-- view, a compact text report for psql and a self-contained HTML report --
-- and the numbers all of them and the Grafana dashboard show.
--
-- Everything here only reads the marts and the metrics (security invoker
-- functions, a view whoop_reader may read), rounds for display only, and
-- counts "the last N days" back from the member's latest day in the data
-- (not from today), so a strap left in a drawer still shows its last days.
--
-- The KPIs are computed in one place, whoop.report_kpis(): the text report,
-- the HTML report and the dashboard's KPI panels read it, so the three can
-- never disagree on a number.  whoop_internal.report_range says which days
-- a report covers; the drawing helpers (the other whoop_internal.report_*,
-- whoop_internal.html_escape) take numbers and return SVG or HTML; they
-- compute no KPI.

--upgrade 1.0--1.1: alter function whoop.html_escape(text) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.report_fmt(double precision) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.report_x(date, date, date) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.report_y(double precision, double precision, double precision) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.report_line(date[], double precision[], date, date, double precision, double precision) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.report_area(date[], double precision[], double precision[], date, date, double precision, double precision) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.report_band(double precision, double precision, double precision, double precision, text) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.report_chart(text, text, date, date, double precision, double precision, double precision[], text[], text, text) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.report_categories(text, text[], text[], text[]) set schema whoop_internal;

------------------------------------------------------------------------------
-- The days: every daily value of a member at full precision, and the
-- daily summary that rounds them.

-- fact_daily_strain has a row for every day that has a primary cycle, so it
-- is the base; every other relation joins on (user_id, day) through its
-- unique index, and a filter on user_id and day reaches all of them.  The
-- summary, the KPIs and the HTML report's series all read these rows, so
-- the three join the day's values alike; the planner drops the joins whose
-- columns a query does not read.
--upgrade 1.0--1.1 begin
create view whoop_internal.report_days as
select
    s.user_id,
    s.user_sk,
    s.day,
    s.day_strain,
    s.workout_count,
    s.sports,
    s.cycle_complete,
    r.recovery_score,
    r.recovery_zone,
    r.hrv_rmssd_milli,
    r.resting_heart_rate,
    r.hours_asleep,
    r.sleep_performance_percentage,
    m.momentum_category,
    e.efficiency_category,
    g.target_strain,
    g.strain_gap,
    g.gap_category,
    g.overtraining_risk,
    v.volatility_category,
    b.ln_rmssd,
    b.hrv_7d,
    b.swc_low,
    b.swc_high,
    b.balance_state,
    b.balance_score,
    b.balance_category,
    l.acwr_ewma,
    l.acwr_rolling,
    l.load_zone
from whoop.fact_daily_strain s
left join whoop.fact_daily_recovery r on r.user_id = s.user_id and r.day = s.day
left join whoop.recovery_momentum m on m.user_id = s.user_id and m.day = s.day
left join whoop.strain_recovery_efficiency e on e.user_id = s.user_id and e.day = s.day
left join whoop.training_readiness_gap g on g.user_id = s.user_id and g.day = s.day
left join whoop.recovery_volatility v on v.user_id = s.user_id and v.day = s.day
left join whoop.autonomic_balance b on b.user_id = s.user_id and b.day = s.day
left join whoop.training_load l on l.user_id = s.user_id and l.day = s.day;

comment on view whoop_internal.report_days is
    'one row per member and WHOOP day: the facts and every daily metric at full precision, joined on (user_id, day); what whoop.daily_summary rounds, whoop.report_kpis() aggregates and whoop.report_html() draws (internal)';

create or replace view whoop.daily_summary as
select
    d.user_id,
    u.name,
    d.day,
    to_char(d.day, 'Dy') as weekday,
    round(d.recovery_score::numeric, 0) as recovery,
    d.recovery_zone,
    round(d.hrv_rmssd_milli::numeric, 1) as hrv_ms,
    round(d.resting_heart_rate::numeric, 0) as resting_hr,
    round(d.hours_asleep::numeric, 1) as hours_asleep,
    round(d.sleep_performance_percentage::numeric, 0) as sleep_performance,
    round(d.day_strain::numeric, 1) as day_strain,
    round(d.target_strain::numeric, 0) as target_strain,
    round(d.strain_gap::numeric, 1) as strain_gap,
    d.workout_count,
    array_to_string(d.sports, ', ') as sports,
    d.momentum_category,
    d.efficiency_category,
    d.gap_category,
    d.overtraining_risk,
    d.volatility_category,
    d.balance_state,
    round(d.balance_score::numeric, 0) as balance_score,
    d.balance_category,
    d.load_zone,
    round(d.acwr_ewma::numeric, 2) as acwr,
    d.cycle_complete
from whoop_internal.report_days d
left join whoop.dim_user u on u.user_sk = d.user_sk;

comment on view whoop.daily_summary is
    'one readable row per member and WHOOP day: the key numbers rounded for display and every daily metric category; whoop_reader may read it';
comment on column whoop.daily_summary.name is 'the member''s name in the whoop.dim_user version valid on the day';
comment on column whoop.daily_summary.weekday is 'abbreviated day name (Mon ... Sun)';
comment on column whoop.daily_summary.recovery is 'recovery score, %, rounded to a whole number (NULL unless scored)';
comment on column whoop.daily_summary.recovery_zone is 'green >= 67, yellow >= 34, red below (on the full-precision score)';
comment on column whoop.daily_summary.hrv_ms is 'heart rate variability (rMSSD), ms, one decimal';
comment on column whoop.daily_summary.resting_hr is 'resting heart rate, bpm';
comment on column whoop.daily_summary.hours_asleep is 'main sleep: in bed minus awake, hours, one decimal';
comment on column whoop.daily_summary.sleep_performance is 'hours asleep relative to need, %';
comment on column whoop.daily_summary.day_strain is 'WHOOP day strain 0-21, one decimal (still growing while cycle_complete is false)';
comment on column whoop.daily_summary.target_strain is
    'strain recommended for the day''s recovery zone: red 5, yellow 12, green 16 (whoop.training_readiness_gap)';
comment on column whoop.daily_summary.strain_gap is 'day_strain - target_strain, one decimal';
comment on column whoop.daily_summary.workout_count is 'SCORED workouts within the day''s cycle';
comment on column whoop.daily_summary.sports is 'the workouts'' sports, comma-separated';
comment on column whoop.daily_summary.momentum_category is 'whoop.recovery_momentum: direction of recovery';
comment on column whoop.daily_summary.efficiency_category is
    'whoop.strain_recovery_efficiency: next-day recovery against the prior week per unit of strain';
comment on column whoop.daily_summary.gap_category is 'whoop.training_readiness_gap: strain against the zone''s target';
comment on column whoop.daily_summary.overtraining_risk is
    'zone not green AND mean strain of the prior 7 days > 14 AND strain_gap > 2 (whoop.training_readiness_gap)';
comment on column whoop.daily_summary.volatility_category is 'whoop.recovery_volatility: on the 30-day sd of recovery';
comment on column whoop.daily_summary.balance_state is
    'whoop.autonomic_balance: 7-day ln rMSSD above (Parasympathetic), within (Balanced) or below (Sympathetic) its SWC band';
comment on column whoop.daily_summary.balance_score is 'whoop.autonomic_balance.balance_score, 0-100, rounded';
comment on column whoop.daily_summary.balance_category is 'on balance_score: Excellent, Good, Moderate, Poor, Very Poor';
comment on column whoop.daily_summary.load_zone is
    'whoop.training_load: zone of the acute:chronic ratio (a heuristic, not a diagnosis)';
comment on column whoop.daily_summary.acwr is 'acute:chronic workload ratio (EWMA 7 / 28 days), two decimals';
comment on column whoop.daily_summary.cycle_complete is 'false for the ongoing cycle, whose strain still grows';
--upgrade 1.0--1.1 end

------------------------------------------------------------------------------
-- The numbers of a report.

-- A range is given as two timestamps and holds the days whose 00:00 lies
-- within it: two dates give the days first ... last, and Grafana's
-- $__timeFrom() and $__timeTo() give exactly the days its
-- $__timeFilter(day::timestamp) selects (a range starting at 12:00 leaves
-- out that day).  day compares with a timestamp through the btree
-- operators of its family, so the (user_id, day) indexes still serve.  A
-- mean is over the days that have the value (a night's sleep counts even
-- when its recovery was not scored); a "latest" value is that of the last
-- day in the range that has it.  One SELECT, not STRICT and no SET clause,
-- so that the planner inlines it into the caller's query (a dashboard
-- panel reads one or two columns: the lookups of the latest values go).
--upgrade 1.0--1.1 begin
create or replace function whoop.report_kpis(user_id bigint, range_start timestamp, range_end timestamp)
returns table (
    recovery_days bigint,
    strain_days bigint,
    mean_recovery double precision,
    green_days bigint,
    yellow_days bigint,
    red_days bigint,
    mean_hrv double precision,
    mean_resting_hr double precision,
    mean_hours_asleep double precision,
    mean_day_strain double precision,
    risk_days bigint,
    latest_recovery_day date,
    latest_recovery double precision,
    latest_recovery_zone text,
    latest_volatility_category text,
    latest_volatility_30d double precision,
    latest_balance_state text,
    latest_balance_score double precision,
    latest_load_zone text,
    latest_acwr double precision,
    season_year integer,
    season text,
    season_recovery_days bigint,
    season_adaptation_category text,
    season_recovery double precision,
    season_baseline_recovery double precision
)
language sql stable parallel safe
as $$
    select k.recovery_days, k.strain_days, k.mean_recovery, k.green_days, k.yellow_days, k.red_days,
           k.mean_hrv, k.mean_resting_hr, k.mean_hours_asleep, k.mean_day_strain, k.risk_days,
           k.recovery_day, lr.recovery_score, lr.recovery_zone, lv.volatility_category, lv.volatility_30d,
           lb.balance_state, lb.balance_score, ll.load_zone, ll.acwr_ewma,
           a.year, a.season, a.recovery_days, a.adaptation_category, a.avg_recovery, a.baseline_recovery
    from (select count(d.recovery_score) as recovery_days,
                 count(d.day_strain) as strain_days,
                 avg(d.recovery_score) as mean_recovery,
                 count(*) filter (where d.recovery_zone = 'green') as green_days,
                 count(*) filter (where d.recovery_zone = 'yellow') as yellow_days,
                 count(*) filter (where d.recovery_zone = 'red') as red_days,
                 avg(d.hrv_rmssd_milli) as mean_hrv,
                 avg(d.resting_heart_rate) as mean_resting_hr,
                 avg(d.hours_asleep) as mean_hours_asleep,
                 avg(d.day_strain) as mean_day_strain,
                 count(*) filter (where d.overtraining_risk) as risk_days,
                 max(d.day) filter (where d.recovery_score is not null) as recovery_day,
                 max(d.day) filter (where d.volatility_category is not null) as volatility_day,
                 max(d.day) filter (where d.balance_state is not null) as balance_day,
                 max(d.day) filter (where d.load_zone is not null) as load_day
          from whoop_internal.report_days d
          where d.user_id = report_kpis.user_id
            and d.day between report_kpis.range_start and report_kpis.range_end) k
    -- the latest values: each relation's row on the last day that has the value
    left join whoop.fact_daily_recovery lr on lr.user_id = report_kpis.user_id and lr.day = k.recovery_day
    left join whoop.recovery_volatility lv on lv.user_id = report_kpis.user_id and lv.day = k.volatility_day
    left join whoop.autonomic_balance lb on lb.user_id = report_kpis.user_id and lb.day = k.balance_day
    left join whoop.training_load ll on ll.user_id = report_kpis.user_id and ll.day = k.load_day
    -- the season of the range's end: the last one that began by then
    left join (select x.year, x.season, x.recovery_days, x.adaptation_category, x.avg_recovery,
                      x.baseline_recovery
               from whoop.seasonal_adaptation x
               where x.user_id = report_kpis.user_id and x.season_start <= report_kpis.range_end
               order by x.season_start desc limit 1) a on true
$$;

comment on function whoop.report_kpis(bigint, timestamp, timestamp) is
    'the KPIs of a member''s days in range_start ... range_end (a day counts when its 00:00 lies in the range: two dates give those days, both included), one row: days with a scored recovery and strain, means over the days that have a value, days per recovery zone, overtraining-risk days, the latest values in the range and the season of its end; what whoop.report(), whoop.report_html() and the Grafana dashboard show';
--upgrade 1.0--1.1 end

-- The range of a report: the last DAYS days of a member's data, counted back
-- from the member's latest day and starting no earlier than the first, so
-- that any DAYS beyond the history (days => 2147483647 for "all of it")
-- gives the whole history rather than a first day before the date type
-- begins (22008).  DAYS is compared with the history's length as integers;
-- last_day - (days - 1) is computed only when it falls within the history.
--upgrade 1.0--1.1 begin
create or replace function whoop_internal.report_range(user_id bigint, days integer,
                                                       out first_day date, out last_day date)
returns record
language sql stable parallel safe
as $$
    select case when report_range.days - 1 >= max(s.day) - min(s.day) then min(s.day)
                else max(s.day) - (report_range.days - 1) end,
           max(s.day)
    from whoop.fact_daily_strain s
    where s.user_id = report_range.user_id
$$;

comment on function whoop_internal.report_range(bigint, integer) is
    'first and last day of a report on a member''s last DAYS (>= 1) days of data: back from the member''s latest day, never before the first; NULLs without data (internal to whoop.report and whoop.report_html)';
--upgrade 1.0--1.1 end

------------------------------------------------------------------------------
-- The psql report.

--upgrade 1.0--1.1 begin
create or replace function whoop.report(user_id bigint default null, days integer default 14)
returns setof text
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
    v_member record;
    v_last date;
    v_first date;
    v_days integer;
    v_k record;
    v_any boolean := false;
    v_fmt constant text := '%-9s %4s %-6s %4s %3s %5s %5s %5s  %-13s %-16s %-13s %-15s %s';
begin
    if report.days is null or report.days < 1 then
        raise exception 'days must be a positive number of days, not %', coalesce(report.days::text, 'NULL')
            using errcode = 'invalid_parameter_value';
    end if;

    for v_member in
        select f.user_id, coalesce(u.name, 'member ' || f.user_id) as name
        from (select distinct s.user_id from whoop.fact_daily_strain s
              where report.user_id is null or s.user_id = report.user_id) f
        left join whoop.dim_user u on u.user_id = f.user_id and u.is_current
        order by 2, 1
    loop
        select r.first_day, r.last_day into v_first, v_last
        from whoop_internal.report_range(v_member.user_id, report.days) r;
        v_days := v_last - v_first + 1;
        if v_any then
            return next '';
        end if;
        v_any := true;

        select * into v_k from whoop.report_kpis(v_member.user_id, v_first, v_last);

        return next format('%s · member %s · %s to %s (%s %s%s)', v_member.name, v_member.user_id,
                           to_char(v_first, 'YYYY-MM-DD'), to_char(v_last, 'YYYY-MM-DD'), v_days,
                           case when v_days = 1 then 'day' else 'days' end,
                           case when v_days < report.days then ', all of the member''s data' else '' end);
        return next format('recovery %s %% avg (%s green, %s yellow, %s red) · HRV %s ms · RHR %s bpm · '
                           'strain %s · asleep %s h · risk days %s',
                           coalesce(round(v_k.mean_recovery::numeric, 0)::text, '-'),
                           v_k.green_days, v_k.yellow_days, v_k.red_days,
                           coalesce(round(v_k.mean_hrv::numeric, 0)::text, '-'),
                           coalesce(round(v_k.mean_resting_hr::numeric, 0)::text, '-'),
                           coalesce(round(v_k.mean_day_strain::numeric, 1)::text, '-'),
                           coalesce(round(v_k.mean_hours_asleep::numeric, 1)::text, '-'), v_k.risk_days);
        return next format('latest: volatility %s · balance %s · load %s',
                           coalesce(case when v_k.latest_volatility_category is not null
                                         then format('%s (sd %s)', v_k.latest_volatility_category,
                                                     round(v_k.latest_volatility_30d::numeric, 1)) end, '-'),
                           coalesce(v_k.latest_balance_state
                                    || coalesce(' (score ' || round(v_k.latest_balance_score::numeric, 0) || ')', ''),
                                    '-'),
                           coalesce(case when v_k.latest_load_zone is not null
                                         then format('%s (ACWR %s)', v_k.latest_load_zone,
                                                     round(v_k.latest_acwr::numeric, 2)) end, '-'));
        if v_k.season is not null then
            if v_k.season_recovery is null then
                -- the season has no mean recovery yet (too few scored days), so no category
                return next format('season: %s %s, too few days yet (%s %s with a scored recovery)',
                                   v_k.season_year, v_k.season, v_k.season_recovery_days,
                                   case when v_k.season_recovery_days = 1 then 'day' else 'days' end);
            else
                return next format('season: %s %s, %s (recovery %s %%%s)',
                                   v_k.season_year, v_k.season,
                                   coalesce(v_k.season_adaptation_category, 'no baseline yet'),
                                   round(v_k.season_recovery::numeric, 0),
                                   case when v_k.season_baseline_recovery is not null
                                        then format(' vs %s %% before it', round(v_k.season_baseline_recovery::numeric, 0))
                                        else '' end);
            end if;
        end if;
        return next '';
        return next format(v_fmt, 'day', 'rec', 'zone', 'HRV', 'RHR', 'strn', 'gap', 'sleep',
                           'momentum', 'efficiency', 'readiness', 'balance', 'load');
        return query
            select rtrim(format(v_fmt,
                          d.weekday || ' ' || to_char(d.day, 'MM-DD'),
                          coalesce(d.recovery::text, '-'), coalesce(d.recovery_zone, ''),
                          coalesce(round(d.hrv_ms)::text, '-'), coalesce(d.resting_hr::text, '-'),
                          coalesce(d.day_strain::text || case when d.cycle_complete then '' else '~' end, '-'),
                          coalesce(case when d.strain_gap > 0 then '+' else '' end || d.strain_gap::text, ''),
                          coalesce(d.hours_asleep::text, '-'),
                          coalesce(d.momentum_category, ''), coalesce(d.efficiency_category, ''),
                          coalesce(d.gap_category || case when d.overtraining_risk then '*' else '' end, ''),
                          coalesce(d.balance_state, ''), coalesce(d.load_zone, '')))
            from whoop.daily_summary d
            where d.user_id = v_member.user_id and d.day between v_first and v_last
            order by d.day;
        return next '';
        return next 'rec recovery % · HRV ms · RHR resting bpm · strn day strain (~ still growing) · sleep h asleep';
        return next 'gap strain - target of the zone · * overtraining risk: zone not green, prior-7-day strain > 14, gap > 2';
    end loop;

    if not v_any then
        return next case when report.user_id is null then 'no data yet: call whoop.run_pipeline()'
                         else format('no data for member %s', report.user_id) end;
    end if;
end;
$$;

comment on function whoop.report(bigint, integer) is
    'a compact text report for psql: per member (all when user_id is NULL) a header with the KPIs (whoop.report_kpis) and one line per day for the last DAYS days of the member''s data (all of it when it has fewer); read it with psql -At or \pset tuples_only';
--upgrade 1.0--1.1 end

------------------------------------------------------------------------------
-- The HTML report: helpers.

create function whoop_internal.html_escape(value text)
returns text
language sql immutable strict parallel safe
as $$
    select replace(replace(replace(replace(replace(value, '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),
                           '"', '&quot;'), '''', '&#39;')
$$;

comment on function whoop_internal.html_escape(text) is
    'text made safe for HTML content and quoted attribute values: & < > " and '' as character references';

-- Chart geometry: a 960 x 250 viewBox, plot area x 56 ... 944, y 30 ... 214.
-- A day owns a slot of the x axis; its point sits in the middle.

create function whoop_internal.report_fmt(value double precision)
returns text
language sql immutable strict parallel safe
as $$
    select round(value::numeric, 1)::text
$$;

comment on function whoop_internal.report_fmt(double precision) is 'an SVG coordinate: one decimal (internal to whoop.report_html)';

create function whoop_internal.report_x(day date, first_day date, last_day date)
returns double precision
language sql immutable strict parallel safe
as $$
    select 56 + 888 * ((day - first_day) + 0.5) / (last_day - first_day + 1)::double precision
$$;

comment on function whoop_internal.report_x(date, date, date) is
    'x of the middle of a day''s slot in a chart of first_day ... last_day (internal to whoop.report_html)';

create function whoop_internal.report_y(value double precision, lo double precision, hi double precision)
returns double precision
language sql immutable strict parallel safe
as $$
    select 214 - 184 * (least(greatest(value, lo), hi) - lo) / (hi - lo)
$$;

comment on function whoop_internal.report_y(double precision, double precision, double precision) is
    'y of a value on an axis from lo (bottom) to hi (top), clamped to the plot (internal to whoop.report_html)';

--upgrade 1.0--1.1 begin
create or replace function whoop_internal.report_line(days date[], vals double precision[], first_day date, last_day date,
                                                      lo double precision, hi double precision)
returns text
language sql immutable parallel safe
as $$
    select coalesce(string_agg(case when p.prev is null or p.day - p.prev > 1 then 'M' else 'L' end
                               || whoop_internal.report_fmt(whoop_internal.report_x(p.day, first_day, last_day)) || ' '
                               || whoop_internal.report_fmt(whoop_internal.report_y(p.val, lo, hi)), ' ' order by p.day), '')
    from (select t.day, t.val, lag(t.day) over (order by t.day) as prev
          from unnest(days, vals) as t(day, val)
          where t.val is not null) p
$$;

comment on function whoop_internal.report_line(date[], double precision[], date, date, double precision, double precision) is
    'SVG path data of a daily series: a line through consecutive days, broken where a day is missing (internal to whoop.report_html)';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
create or replace function whoop_internal.report_area(days date[], lows double precision[], highs double precision[],
                                                      first_day date, last_day date, lo double precision, hi double precision)
returns text
language sql immutable parallel safe
as $$
    with pts as (
        select t.day, t.low, t.high,
               case when lag(t.day) over (order by t.day) is null
                         or t.day - lag(t.day) over (order by t.day) > 1 then 1 else 0 end as starts
        from unnest(days, lows, highs) as t(day, low, high)
        where t.low is not null and t.high is not null
    ),
    runs as (
        select day, low, high, sum(starts) over (order by day) as run from pts
    ),
    shapes as (
        select run,
               'M' || string_agg(whoop_internal.report_fmt(whoop_internal.report_x(day, first_day, last_day)) || ' '
                                 || whoop_internal.report_fmt(whoop_internal.report_y(high, lo, hi)), ' L' order by day)
               || ' L' || string_agg(whoop_internal.report_fmt(whoop_internal.report_x(day, first_day, last_day)) || ' '
                                     || whoop_internal.report_fmt(whoop_internal.report_y(low, lo, hi)), ' L' order by day desc)
               || ' Z' as d
        from runs
        group by run
    )
    select coalesce(string_agg(d, ' ' order by run), '') from shapes
$$;

comment on function whoop_internal.report_area(date[], double precision[], double precision[], date, date, double precision, double precision) is
    'SVG path data of a band between two daily series: one closed shape per run of consecutive days (internal to whoop.report_html)';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
create or replace function whoop_internal.report_band(low double precision, high double precision, lo double precision,
                                                      hi double precision, fill text)
returns text
language sql immutable parallel safe
as $$
    select format('<rect x="56" y="%s" width="888" height="%s" fill="%s"/>',
                  whoop_internal.report_fmt(whoop_internal.report_y(high, lo, hi)),
                  whoop_internal.report_fmt(whoop_internal.report_y(low, lo, hi) - whoop_internal.report_y(high, lo, hi)),
                  whoop_internal.html_escape(fill))
$$;

comment on function whoop_internal.report_band(double precision, double precision, double precision, double precision, text) is
    'an SVG rectangle across the plot between two values, e.g. a recovery zone (internal to whoop.report_html)';
--upgrade 1.0--1.1 end

-- A chart: title, legend, background bands, y grid with labels, x axis
-- with month (or week) labels, then the series on top.  legend,
-- background and body are SVG markup made by the caller (who escapes any
-- text in them); title and the tick labels are escaped here.
--upgrade 1.0--1.1 begin
create or replace function whoop_internal.report_chart(title text, legend text, first_day date, last_day date,
                                                       lo double precision, hi double precision,
                                                       ticks double precision[], tick_labels text[],
                                                       background text, body text)
returns text
language sql stable parallel safe
as $$
    select format('<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 960 250" width="960" height="250"'
                  ' role="img" aria-label="%1$s"><title>%1$s</title>'
                  '<text class="ct" x="56" y="18">%1$s</text><text class="lg" x="944" y="18" text-anchor="end">%2$s</text>'
                  '%3$s%4$s%5$s<rect class="frame" x="56" y="30" width="888" height="184"/>%6$s</svg>',
                  whoop_internal.html_escape(title), coalesce(legend, ''), coalesce(background, ''),
                  -- y grid and labels
                  (select coalesce(string_agg(format('<line class="grid" x1="56" x2="944" y1="%1$s" y2="%1$s"/>'
                                                     '<text class="yl" x="50" y="%2$s" text-anchor="end">%3$s</text>',
                                                     whoop_internal.report_fmt(whoop_internal.report_y(t.v, lo, hi)),
                                                     whoop_internal.report_fmt(whoop_internal.report_y(t.v, lo, hi) + 4),
                                                     whoop_internal.html_escape(t.label)), '' order by t.v), '')
                   from unnest(ticks, tick_labels) as t(v, label)
                   where t.v between lo and hi),
                  -- x axis: the first of each month, or Mondays for ranges up to nine weeks.
                  -- A label is centred on its tick unless that would run it past the
                  -- right edge of the picture (a label near the range's end): then it
                  -- ends at its tick.  Its width is estimated at 7 px a character, a
                  -- little over what DejaVu Sans, the widest usual sans-serif, needs
                  -- at 11 px for "May 2026" (54 px); the plot starts at x 56, so no
                  -- label reaches the left edge.
                  (select coalesce(string_agg(format('<line class="tick" x1="%1$s" x2="%1$s" y1="214" y2="219"/>'
                                                     '<text class="xl" x="%1$s" y="232" text-anchor="%3$s">%2$s</text>',
                                                     whoop_internal.report_fmt(t.x), whoop_internal.html_escape(t.label),
                                                     case when t.x + 3.5 * length(t.label) > 956 then 'end' else 'middle' end),
                                              '' order by t.day), '')
                   from (select d.day, whoop_internal.report_x(d.day, first_day, last_day) as x,
                                case when last_day - first_day > 62 then to_char(d.day, 'Mon YYYY')
                                     else to_char(d.day, 'DD Mon') end as label
                         from (select g::date as day from generate_series(first_day, last_day, interval '1 day') g) d
                         where case when last_day - first_day > 62 then extract(day from d.day) = 1
                                    else extract(isodow from d.day) = 1 end) t),
                  coalesce(body, ''))
$$;

comment on function whoop_internal.report_chart(text, text, date, date, double precision, double precision, double precision[], text[], text, text) is
    'one inline SVG chart of whoop.report_html: frame, y grid, date axis, background and series markup (internal)';
--upgrade 1.0--1.1 end

-- A category distribution as an HTML table with a bar per category.
--upgrade 1.0--1.1 begin
create or replace function whoop_internal.report_categories(title text, categories text[], colors text[], observed text[])
returns text
language sql immutable parallel safe
as $$
    with c as (
        select c.category, c.color, c.ord,
               (select count(*) from unnest(observed) o where o = c.category) as n
        from unnest(categories, colors) with ordinality as c(category, color, ord)
    ),
    total as (
        select count(o) as rated, count(*) as days from unnest(observed) o
    )
    select format('<table class="cat"><caption>%s</caption><thead><tr><th>category</th><th>days</th>'
                  '<th>share</th><th></th></tr></thead><tbody>%s</tbody>'
                  '<tfoot><tr><td colspan="4">%s of %s days rated</td></tr></tfoot></table>',
                  whoop_internal.html_escape(title),
                  string_agg(format('<tr><td><span class="sw" style="background:%1$s"></span>%2$s</td>'
                                    '<td class="n">%3$s</td><td class="n">%4$s%%</td>'
                                    '<td class="bar"><span style="width:%5$spx;background:%1$s"></span></td></tr>',
                                    whoop_internal.html_escape(c.color), whoop_internal.html_escape(c.category), c.n,
                                    case when t.rated > 0 then round(100.0 * c.n / t.rated) else 0 end,
                                    case when t.rated > 0 then round(100.0 * c.n / t.rated) else 0 end),
                             '' order by c.ord),
                  t.rated, t.days)
    from c cross join total t
    group by t.rated, t.days
$$;

comment on function whoop_internal.report_categories(text, text[], text[], text[]) is
    'an HTML table counting how often each category occurs among the observed values (internal to whoop.report_html)';
--upgrade 1.0--1.1 end

------------------------------------------------------------------------------
-- The HTML report.

--upgrade 1.0--1.1 begin
create or replace function whoop.report_html(user_id bigint default null, days integer default 90)
returns text
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
    v_user bigint := report_html.user_id;
    v_name text;
    v_first date;
    v_last date;
    v_range text;
    v_members bigint;
    v_k record;
    v_d record;
    v_lo double precision;
    v_hi double precision;
    v_ticks double precision[];
    v_labels text[];
    v_kpis text;
    v_recovery text;
    v_hrv text;
    v_strain text;
    v_load text;
    v_tables text;
    v_seasons text;
    v_risk text;
    c_green constant text := '#16a34a';
    c_yellow constant text := '#d4a106';
    c_red constant text := '#dc2626';
    c_blue constant text := '#2563eb';
    c_grey constant text := '#94a3b8';
begin
    if report_html.days is null or report_html.days < 1 then
        raise exception 'days must be a positive number of days, not %', coalesce(report_html.days::text, 'NULL')
            using errcode = 'invalid_parameter_value';
    end if;
    if v_user is null then
        select count(distinct s.user_id), min(s.user_id) into v_members, v_user from whoop.fact_daily_strain s;
        if v_members <> 1 then
            raise exception 'whoop.report_html needs a user_id when there are % members', v_members
                using errcode = 'invalid_parameter_value',
                      hint = 'select user_id, name from whoop.dim_user where is_current';
        end if;
    end if;
    select r.first_day, r.last_day into v_first, v_last from whoop_internal.report_range(v_user, report_html.days) r;
    if v_last is null then
        raise exception 'no data for member %', v_user
            using errcode = 'no_data_found', hint = 'call whoop.run_pipeline() first, or check the user_id';
    end if;
    v_range := format('%s %s%s', v_last - v_first + 1, case when v_last = v_first then 'day' else 'days' end,
                      case when v_last - v_first + 1 < report_html.days then ', all of the member''s data' else '' end);
    select coalesce(u.name, 'member ' || v_user) into v_name
    from (select 1) one left join whoop.dim_user u on u.user_id = v_user and u.is_current;

    -- The series of the range, in arrays (one element per day with data).
    select array_agg(d.day order by d.day) as day,
           array_agg(d.recovery_score order by d.day) as recovery,
           array_agg(d.recovery_zone order by d.day) as zone,
           array_agg(d.ln_rmssd order by d.day) as ln_rmssd,
           array_agg(d.hrv_7d order by d.day) as hrv_7d,
           array_agg(d.swc_low order by d.day) as swc_low,
           array_agg(d.swc_high order by d.day) as swc_high,
           array_agg(d.day_strain order by d.day) as strain,
           array_agg(d.target_strain order by d.day) as target,
           array_agg(d.gap_category order by d.day) as gap_category,
           array_agg(d.acwr_ewma order by d.day) as acwr,
           array_agg(d.acwr_rolling order by d.day) as acwr_rolling,
           array_agg(d.momentum_category order by d.day) as momentum_category,
           array_agg(d.efficiency_category order by d.day) as efficiency_category,
           array_agg(d.volatility_category order by d.day) as volatility_category,
           array_agg(d.balance_state order by d.day) as balance_state,
           array_agg(d.load_zone order by d.day) as load_zone
    into v_d
    from whoop_internal.report_days d
    where d.user_id = v_user and d.day between v_first and v_last;

    select * into v_k from whoop.report_kpis(v_user, v_first, v_last);
    v_kpis := format('<div class="kpi"><b style="color:%s">%s</b><span>latest recovery%s</span></div>',
                     case v_k.latest_recovery_zone when 'green' then c_green when 'yellow' then c_yellow
                                                   when 'red' then c_red else c_grey end,
                     coalesce(round(v_k.latest_recovery::numeric)::text || ' %', '–'),
                     coalesce(' (' || to_char(v_k.latest_recovery_day, 'DD Mon') || ')', ''))
        || format('<div class="kpi"><b>%s</b><span>average recovery</span></div>',
                  coalesce(round(v_k.mean_recovery::numeric)::text || ' %', '–'))
        || format('<div class="kpi"><b><i style="color:%s">%s</i> · <i style="color:%s">%s</i> · <i style="color:%s">%s</i></b>'
                  '<span>green · yellow · red days</span></div>',
                  c_green, v_k.green_days, c_yellow, v_k.yellow_days, c_red, v_k.red_days)
        || format('<div class="kpi"><b>%s ms</b><span>average HRV</span></div>',
                  coalesce(round(v_k.mean_hrv::numeric)::text, '–'))
        || format('<div class="kpi"><b>%s bpm</b><span>average resting HR</span></div>',
                  coalesce(round(v_k.mean_resting_hr::numeric)::text, '–'))
        || format('<div class="kpi"><b>%s</b><span>average day strain</span></div>',
                  coalesce(round(v_k.mean_day_strain::numeric, 1)::text, '–'))
        || format('<div class="kpi"><b>%s h</b><span>average asleep</span></div>',
                  coalesce(round(v_k.mean_hours_asleep::numeric, 1)::text, '–'))
        || format('<div class="kpi"><b style="color:%s">%s</b><span>overtraining-risk days</span></div>',
                  case when v_k.risk_days > 0 then c_red else c_green end, v_k.risk_days);

    -- 1. Recovery with its zone bands, a dot per day in its zone's colour.
    v_recovery := whoop_internal.report_chart(
        'Recovery (%)',
        format('<tspan fill="%s">■ green ≥ 67</tspan>  <tspan fill="%s">■ yellow 34 to below 67</tspan>  '
               '<tspan fill="%s">■ red below 34</tspan>',
               c_green, c_yellow, c_red),
        v_first, v_last, 0, 100, array[0, 34, 67, 100], array['0', '34', '67', '100'],
        whoop_internal.report_band(0, 34, 0, 100, '#fee2e2') || whoop_internal.report_band(34, 67, 0, 100, '#fef3c7')
            || whoop_internal.report_band(67, 100, 0, 100, '#dcfce7'),
        format('<path class="s" d="%s" stroke="#334155"/>', whoop_internal.report_line(v_d.day, v_d.recovery, v_first, v_last, 0, 100))
            || (select coalesce(string_agg(format('<circle cx="%s" cy="%s" r="2.6" fill="%s"/>',
                                                  whoop_internal.report_fmt(whoop_internal.report_x(t.day, v_first, v_last)),
                                                  whoop_internal.report_fmt(whoop_internal.report_y(t.val, 0, 100)),
                                                  case t.zone when 'green' then c_green when 'yellow' then c_yellow
                                                              else c_red end), '' order by t.day), '')
                from unnest(v_d.day, v_d.recovery, v_d.zone) as t(day, val, zone)
                where t.val is not null));

    -- 2. HRV: daily ln rMSSD, its 7-day mean and the smallest-worthwhile-change
    -- band around the 60-day baseline, on a log axis labelled in ms.
    select min(least(t.ln, t.low)) - 0.05, max(greatest(t.ln, t.high)) + 0.05 into v_lo, v_hi
    from unnest(v_d.ln_rmssd, v_d.swc_low, v_d.swc_high) as t(ln, low, high);
    if v_lo is null then
        v_lo := ln(20);
        v_hi := ln(150);
    end if;
    select array_agg(ln(ms) order by ms), array_agg(ms::text order by ms) into v_ticks, v_labels
    from unnest(array[10, 15, 20, 25, 30, 35, 40, 45, 50, 60, 70, 80, 90, 100, 120, 140, 160, 200, 250, 300]) ms
    where ln(ms) between v_lo and v_hi;
    while cardinality(v_ticks) > 6 loop
        select array_agg(t.v order by t.i), array_agg(t.l order by t.i) into v_ticks, v_labels
        from unnest(v_ticks, v_labels) with ordinality as t(v, l, i) where t.i % 2 = 1;
    end loop;
    v_hrv := whoop_internal.report_chart(
        'Heart-rate variability (rMSSD, ms, log scale)',
        format('<tspan fill="%s">■ SWC band (60-day baseline ± 0.5 sd)</tspan>  <tspan fill="%s">— 7-day mean</tspan>  '
               '<tspan fill="%s">● daily</tspan>', '#93c5fd', c_blue, c_grey),
        v_first, v_last, v_lo, v_hi, v_ticks, v_labels,
        format('<path d="%s" fill="#dbeafe" stroke="#93c5fd"/>',
               whoop_internal.report_area(v_d.day, v_d.swc_low, v_d.swc_high, v_first, v_last, v_lo, v_hi)),
        (select coalesce(string_agg(format('<circle cx="%s" cy="%s" r="2.2" fill="%s"/>',
                                           whoop_internal.report_fmt(whoop_internal.report_x(t.day, v_first, v_last)),
                                           whoop_internal.report_fmt(whoop_internal.report_y(t.val, v_lo, v_hi)), c_grey),
                                    '' order by t.day), '')
         from unnest(v_d.day, v_d.ln_rmssd) as t(day, val) where t.val is not null)
        || format('<path class="s" d="%s" stroke="%s" stroke-width="2.2"/>',
                  whoop_internal.report_line(v_d.day, v_d.hrv_7d, v_first, v_last, v_lo, v_hi), c_blue));

    -- 3. Day strain against the target of the day's recovery zone; bars in the
    -- colour of the readiness-gap category.
    v_strain := whoop_internal.report_chart(
        'Day strain vs recommended target',
        format('<tspan fill="%s">■ overreaching</tspan>  <tspan fill="%s">■ pushing</tspan>  <tspan fill="%s">■ aligned</tspan>  '
               '<tspan fill="%s">■ conservative</tspan>  <tspan fill="%s">■ undertrained</tspan>  <tspan fill="#0f172a">— target</tspan>',
               c_red, '#f97316', c_green, '#60a5fa', c_grey),
        v_first, v_last, 0, 21, array[0, 5, 10, 14, 18, 21], array['0', '5', '10', '14', '18', '21'],
        null,
        (select coalesce(string_agg(format('<rect x="%s" y="%s" width="%s" height="%s" fill="%s"/>',
                                           whoop_internal.report_fmt(whoop_internal.report_x(t.day, v_first, v_last) - 0.35 * 888 / (v_last - v_first + 1)),
                                           whoop_internal.report_fmt(whoop_internal.report_y(t.strain, 0, 21)),
                                           whoop_internal.report_fmt(greatest(0.7 * 888 / (v_last - v_first + 1), 1)),
                                           whoop_internal.report_fmt(214 - whoop_internal.report_y(t.strain, 0, 21)),
                                           case t.cat when 'Overreaching' then c_red when 'Pushing' then '#f97316'
                                                      when 'Aligned' then c_green when 'Conservative' then '#60a5fa'
                                                      when 'Undertrained' then c_grey else '#cbd5e1' end),
                                    '' order by t.day), '')
         from unnest(v_d.day, v_d.strain, v_d.gap_category) as t(day, strain, cat) where t.strain is not null)
        || format('<path class="s" d="%s" stroke="#0f172a" stroke-width="2"/>',
                  (select coalesce(string_agg(format('M%s %s L%s %s',
                                                     whoop_internal.report_fmt(whoop_internal.report_x(t.day, v_first, v_last) - 0.5 * 888 / (v_last - v_first + 1)),
                                                     whoop_internal.report_fmt(whoop_internal.report_y(t.target, 0, 21)),
                                                     whoop_internal.report_fmt(whoop_internal.report_x(t.day, v_first, v_last) + 0.5 * 888 / (v_last - v_first + 1)),
                                                     whoop_internal.report_fmt(whoop_internal.report_y(t.target, 0, 21))), ' ' order by t.day), '')
                   from unnest(v_d.day, v_d.target) as t(day, target) where t.target is not null)));

    -- 4. Acute:chronic workload ratio with its zones.
    select greatest(2.0, ceil(max(greatest(t.a, t.r)) * 10) / 10) into v_hi
    from unnest(v_d.acwr, v_d.acwr_rolling) as t(a, r);
    v_hi := coalesce(v_hi, 2.0);
    v_load := whoop_internal.report_chart(
        'Acute:chronic workload ratio (day strain)',
        format('<tspan fill="%s">— EWMA 7/28</tspan>  <tspan fill="%s">-- rolling 7/28</tspan>  '
               '<tspan fill="%s">■ detraining</tspan>  <tspan fill="%s">■ optimal</tspan>  <tspan fill="%s">■ caution</tspan>  '
               '<tspan fill="%s">■ high risk</tspan>',
               '#0f172a', '#64748b', '#93c5fd', c_green, c_yellow, c_red),
        v_first, v_last, 0.4, v_hi, array[0.5, 0.8, 1.0, 1.3, 1.5, 2.0, 2.5, 3.0],
        array['0.5', '0.8', '1.0', '1.3', '1.5', '2.0', '2.5', '3.0'],
        whoop_internal.report_band(0.4, 0.8, 0.4, v_hi, '#dbeafe') || whoop_internal.report_band(0.8, 1.3, 0.4, v_hi, '#dcfce7')
            || whoop_internal.report_band(1.3, 1.5, 0.4, v_hi, '#fef3c7') || whoop_internal.report_band(1.5, v_hi, 0.4, v_hi, '#fee2e2'),
        format('<path class="s" d="%s" stroke="#64748b" stroke-dasharray="5 4"/>',
               whoop_internal.report_line(v_d.day, v_d.acwr_rolling, v_first, v_last, 0.4, v_hi))
        || format('<path class="s" d="%s" stroke="#0f172a" stroke-width="2.2"/>',
                  whoop_internal.report_line(v_d.day, v_d.acwr, v_first, v_last, 0.4, v_hi)));

    -- The category distributions over the range.
    v_tables :=
        whoop_internal.report_categories('Recovery momentum',
            array['Accelerating', 'Improving', 'Stable', 'Declining', 'Deteriorating'],
            array[c_green, '#86efac', c_grey, '#fca5a5', c_red], v_d.momentum_category)
        || whoop_internal.report_categories('Strain-recovery efficiency',
            array['Highly Efficient', 'Efficient', 'Moderate', 'Poor', 'Very Poor'],
            array[c_green, '#86efac', c_grey, '#fca5a5', c_red], v_d.efficiency_category)
        || whoop_internal.report_categories('Training readiness gap',
            array['Overreaching', 'Pushing', 'Aligned', 'Conservative', 'Undertrained'],
            array[c_red, '#f97316', c_green, '#60a5fa', c_grey], v_d.gap_category)
        || whoop_internal.report_categories('Recovery volatility (30 days)',
            array['Very Stable', 'Stable', 'Moderate', 'Volatile', 'Very Volatile'],
            array[c_green, '#86efac', c_grey, '#fca5a5', c_red], v_d.volatility_category)
        || whoop_internal.report_categories('Autonomic balance',
            array['Parasympathetic', 'Balanced', 'Sympathetic'],
            array[c_blue, c_green, c_red], v_d.balance_state)
        || whoop_internal.report_categories('Training load zone',
            array['Detraining', 'Optimal', 'Caution', 'High Risk'],
            array['#93c5fd', c_green, c_yellow, c_red], v_d.load_zone);

    -- Seasons overlapping the range.
    select coalesce(string_agg(format('<tr><td>%s %s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td>'
                                      '<td class="n">%s</td><td class="n">%s</td><td>%s</td></tr>',
                                      a.year, whoop_internal.html_escape(a.season), a.days,
                                      coalesce(round(a.avg_recovery::numeric)::text, '–'),
                                      coalesce(round(a.baseline_recovery::numeric)::text, '–'),
                                      coalesce(to_char(a.recovery_deviation, 'FMSG990.0'), '–'),
                                      coalesce(to_char(a.adaptation_index, 'FMSG990.00'), '–'),
                                      coalesce(whoop_internal.html_escape(a.adaptation_category),
                                               case when a.avg_recovery is null then 'too few days yet'
                                                    else 'no baseline yet' end)),
                               '' order by a.season_start), '')
    into v_seasons
    from whoop.seasonal_adaptation a
    where a.user_id = v_user and a.season_end >= v_first and a.season_start <= v_last;
    v_tables := v_tables
        || '<table class="cat wide"><caption>Seasonal adaptation (seasons in the range)</caption><thead><tr>'
           '<th>season</th><th>days</th><th>recovery</th><th>baseline</th><th>deviation</th><th>index</th>'
           '<th>category</th></tr></thead><tbody>' || v_seasons || '</tbody></table>';

    -- Overtraining-risk days.
    select coalesce(string_agg(format('<tr><td>%s</td><td class="n">%s</td><td>%s</td><td class="n">%s</td>'
                                      '<td class="n">%s</td><td class="n">%s</td></tr>',
                                      to_char(g.day, 'Dy DD Mon YYYY'), round(g.recovery_score::numeric),
                                      whoop_internal.html_escape(g.recovery_zone), round(g.day_strain::numeric, 1),
                                      round(g.target_strain::numeric), round(g.avg_strain_prior_7d::numeric, 1)),
                               '' order by g.day), '')
    into v_risk
    from whoop.training_readiness_gap g
    where g.user_id = v_user and g.day between v_first and v_last and g.overtraining_risk;
    v_risk := case when v_risk = '' then '<p class="none">No overtraining-risk days in the range.</p>'
                   else '<table class="cat wide"><thead><tr><th>day</th><th>recovery %</th><th>zone</th>'
                        '<th>day strain</th><th>target</th><th>prior 7-day strain</th></tr></thead><tbody>'
                        || v_risk || '</tbody></table>' end;

    return format($html$<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>WHOOP report: %1$s</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#0f172a;background:#f8fafc;margin:0 auto;padding:16px 24px;max-width:1000px}
h1{font-size:22px;margin:0}h2{font-size:16px;margin:22px 0 6px}.sub{color:#475569;margin:2px 0 12px}
.kpis{display:flex;flex-wrap:wrap;gap:8px}.kpi{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:8px 12px;min-width:100px}
.kpi b{display:block;font-size:20px}.kpi i{font-style:normal}.kpi span{color:#64748b;font-size:12px}
.charts{margin-top:14px}svg.chart{display:block;width:100%%;height:auto;background:#fff;border:1px solid #e2e8f0;border-radius:6px;margin-bottom:10px}
svg .frame{fill:none;stroke:#cbd5e1}svg .grid{stroke:#e2e8f0}svg .tick{stroke:#94a3b8}svg .s{fill:none;stroke-width:1.6}
svg text{font:11px system-ui,sans-serif;fill:#475569}svg .ct{font-size:13px;font-weight:600;fill:#0f172a}
.cats{display:grid;grid-template-columns:repeat(auto-fill,minmax(290px,1fr));gap:10px;align-items:start}
table.cat{border-collapse:collapse;background:#fff;border:1px solid #e2e8f0;font-size:13px;width:100%%}
table.cat caption{text-align:left;font-weight:600;padding:4px 0}table.cat td,table.cat th{padding:3px 8px;text-align:left}
table.cat th{color:#64748b;font-weight:500;border-bottom:1px solid #e2e8f0}table.cat tfoot td{color:#64748b;font-size:12px}
table.cat .n{text-align:right}table.cat td:first-child{white-space:nowrap}td.bar{width:104px}td.bar span{display:inline-block;height:10px;border-radius:2px}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
table.wide{grid-column:1/-1}.none{color:#475569}footer{color:#64748b;font-size:12px;margin-top:20px}
</style>
</head>
<body>
<header><h1>%1$s</h1><p class="sub">member %2$s · %3$s to %4$s (%14$s) · %6$s of them with a scored recovery</p></header>
<section class="kpis">%7$s</section>
<section class="charts">
%8$s
%9$s
%10$s
%11$s
</section>
<h2>Categories over the range</h2>
<section class="cats">%12$s</section>
<h2>Overtraining-risk days</h2>
%13$s
<footer>whoop_fdw · whoop.report_html(%2$s, %5$s). Zones: recovery green from 67, yellow from 34 to below 67, red below 34. Strain targets by zone: red 5, yellow 12, green 16. SWC: smallest worthwhile change of ln rMSSD, its 60-day baseline ± 0.5 sd. Load zones (acute:chronic EWMA ratio) are a heuristic, not a diagnosis.</footer>
</body>
</html>
$html$,
        whoop_internal.html_escape(v_name), v_user, to_char(v_first, 'DD Mon YYYY'), to_char(v_last, 'DD Mon YYYY'),
        report_html.days, v_k.recovery_days, v_kpis, v_recovery, v_hrv, v_strain, v_load, v_tables, v_risk,
        v_range);
end;
$$;

comment on function whoop.report_html(bigint, integer) is
    'one self-contained HTML page (inline CSS and SVG, no scripts, no external resources) for a member''s last DAYS days of data (all of it when it has fewer): KPIs (whoop.report_kpis), recovery with zone bands, HRV against its SWC band, strain against target, acute:chronic load, category tables; psql -Atc "select whoop.report_html(...)" > report.html';
--upgrade 1.0--1.1 end
