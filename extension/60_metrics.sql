-- 60_metrics.sql: the analytic metrics -- maintained objects over the facts
-- (whoop.<name> over whoop_internal.<name>_rows, computed per member from
-- whoop_internal.<name>_def; see 50_marts.sql and 70_refresh.sql).
--
-- Rules shared by every metric (see README, "Warehouse"):
--  * windows are calendar windows over the WHOOP day: "7 days" is D-6 ... D,
--    written RANGE BETWEEN '6 days' PRECEDING AND CURRENT ROW, never ROWS;
--    a missing day shrinks the sample, it does not stretch the window;
--  * every windowed value has a minimum number of observations (non-NULL
--    inputs in the window) and is NULL below it;
--  * no look-ahead: day D uses days <= D only, except next_day_recovery in
--    strain_recovery_efficiency, which is D+1 by definition;
--  * full precision (double precision); categories compare at their exact
--    edges, and a NULL value has a NULL category;
--  * standard deviations are sample standard deviations (whoop.rolling_stddev).
-- A metric has a row for each day on which its primary input was SCORED
-- (named per view); the windows also see only scored values.

--upgrade 1.0--1.1: alter function whoop.momentum_category(double precision) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.efficiency_category(double precision) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.strain_gap_category(double precision) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.volatility_category(double precision) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.balance_state(double precision, double precision, double precision) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.balance_category(double precision) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.adaptation_category(double precision) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.load_zone(double precision) set schema whoop_internal;

-- Categories as immutable SQL functions: one definition per category, used
-- by the views and testable at their exact edges.  Single CASE expressions,
-- not STRICT (a NULL falls through every branch), so the planner inlines them.
create function whoop_internal.momentum_category(momentum_score double precision)
returns text language sql immutable parallel safe
as $$
    select case
        when momentum_score >= 2 then 'Accelerating'
        when momentum_score >= 0.5 then 'Improving'
        when momentum_score > -0.5 then 'Stable'
        when momentum_score > -2 then 'Declining'
        when momentum_score is not null then 'Deteriorating'
    end
$$;
comment on function whoop_internal.momentum_category(double precision) is
    '>= 2 Accelerating, >= 0.5 Improving, > -0.5 Stable, > -2 Declining, else Deteriorating';

create function whoop_internal.efficiency_category(efficiency double precision)
returns text language sql immutable parallel safe
as $$
    select case
        when efficiency > 1 then 'Highly Efficient'
        when efficiency > 0.5 then 'Efficient'
        when efficiency > 0 then 'Moderate'
        when efficiency > -0.5 then 'Poor'
        when efficiency is not null then 'Very Poor'
    end
$$;
comment on function whoop_internal.efficiency_category(double precision) is
    '> 1 Highly Efficient, > 0.5 Efficient, > 0 Moderate, > -0.5 Poor, else Very Poor';

create function whoop_internal.strain_gap_category(strain_gap double precision)
returns text language sql immutable parallel safe
as $$
    select case
        when strain_gap > 4 then 'Overreaching'
        when strain_gap > 1.5 then 'Pushing'
        when strain_gap >= -1.5 then 'Aligned'
        when strain_gap >= -4 then 'Conservative'
        when strain_gap is not null then 'Undertrained'
    end
$$;
comment on function whoop_internal.strain_gap_category(double precision) is
    '> 4 Overreaching, > 1.5 Pushing, >= -1.5 Aligned, >= -4 Conservative, else Undertrained';

create function whoop_internal.volatility_category(volatility double precision)
returns text language sql immutable parallel safe
as $$
    select case
        when volatility < 5 then 'Very Stable'
        when volatility < 10 then 'Stable'
        when volatility < 15 then 'Moderate'
        when volatility < 20 then 'Volatile'
        when volatility is not null then 'Very Volatile'
    end
$$;
comment on function whoop_internal.volatility_category(double precision) is
    '< 5 Very Stable, < 10 Stable, < 15 Moderate, < 20 Volatile, else Very Volatile';

create function whoop_internal.balance_state(hrv_7d double precision, swc_low double precision, swc_high double precision)
returns text language sql immutable parallel safe
as $$
    select case
        when hrv_7d > swc_high then 'Parasympathetic'
        when hrv_7d >= swc_low then 'Balanced'
        when hrv_7d < swc_low then 'Sympathetic'
    end
$$;
comment on function whoop_internal.balance_state(double precision, double precision, double precision) is
    'hrv_7d above swc_high Parasympathetic, within [swc_low, swc_high] Balanced, below Sympathetic';

create function whoop_internal.balance_category(balance_score double precision)
returns text language sql immutable parallel safe
as $$
    select case
        when balance_score >= 80 then 'Excellent'
        when balance_score >= 60 then 'Good'
        when balance_score >= 40 then 'Moderate'
        when balance_score >= 20 then 'Poor'
        when balance_score is not null then 'Very Poor'
    end
$$;
comment on function whoop_internal.balance_category(double precision) is
    '>= 80 Excellent, >= 60 Good, >= 40 Moderate, >= 20 Poor, else Very Poor';

create function whoop_internal.adaptation_category(recovery_deviation double precision)
returns text language sql immutable parallel safe
as $$
    select case
        when recovery_deviation > 10 then 'Thriving'
        when recovery_deviation > 5 then 'Well Adapted'
        when recovery_deviation > -5 then 'Normal Adaptation'
        when recovery_deviation > -10 then 'Struggling'
        when recovery_deviation is not null then 'Poorly Adapted'
    end
$$;
comment on function whoop_internal.adaptation_category(double precision) is
    '> 10 Thriving, > 5 Well Adapted, > -5 Normal Adaptation, > -10 Struggling, else Poorly Adapted';

create function whoop_internal.load_zone(acwr double precision)
returns text language sql immutable parallel safe
as $$
    select case
        when acwr < 0.8 then 'Detraining'
        when acwr <= 1.3 then 'Optimal'
        when acwr <= 1.5 then 'Caution'
        when acwr is not null then 'High Risk'
    end
$$;
comment on function whoop_internal.load_zone(double precision) is
    'acute:chronic ratio < 0.8 Detraining, <= 1.3 Optimal, <= 1.5 Caution, else High Risk (a heuristic, not a diagnosis)';

--upgrade 1.0--1.1 begin
-- Maintained like the metrics (in whoop_internal: only definitions read it):
-- four metrics read it, seasonal_adaptation twice, and a stored copy in
-- (user_id, day) order spares each of them the join of the facts and a sort.
-- (the full join of the two facts written as a union of its two halves, so
-- that a filter on the member reaches both facts' scans: same rows)
create view whoop_internal.daily_scores_def as
select
    s.user_id,
    s.day,
    r.recovery_score,
    r.recovery_zone,
    r.hrv_rmssd_milli,
    case when r.hrv_rmssd_milli > 0 then ln(r.hrv_rmssd_milli) end as ln_rmssd,
    r.resting_heart_rate,
    r.respiratory_rate,
    r.skin_temp_celsius,
    s.day_strain
from whoop.fact_daily_strain s
left join whoop.fact_daily_recovery r on r.user_id = s.user_id and r.day = s.day
union all
select
    r.user_id,
    r.day,
    r.recovery_score,
    r.recovery_zone,
    r.hrv_rmssd_milli,
    case when r.hrv_rmssd_milli > 0 then ln(r.hrv_rmssd_milli) end as ln_rmssd,
    r.resting_heart_rate,
    r.respiratory_rate,
    r.skin_temp_celsius,
    null::double precision as day_strain
from whoop.fact_daily_recovery r
where not exists (select from whoop.fact_daily_strain s where s.user_id = r.user_id and s.day = r.day);

select whoop_internal.create_maintained('daily_scores', '{user_id,day}', 'whoop_internal');

comment on view whoop_internal.daily_scores is
    'the scored daily inputs of the metrics, recovery and strain facts side by side (one row per member and day)';
comment on column whoop_internal.daily_scores.ln_rmssd is 'natural log of hrv_rmssd_milli (ms); NULL unless positive';

-- 1. recovery_momentum: a row per day with a scored recovery.
create view whoop_internal.recovery_momentum_def as
with w as (
    select
        user_id, day, recovery_score,
        -- the day before's score: the previous row when it is that day
        -- (one row per day; lag() needs no window of its own, a
        -- one-day frame would)
        case when lag(day) over w3 = day - 1 then lag(recovery_score) over w3 end as previous_recovery,
        whoop.momentum(recovery_score, day) over w3 as m3, count(recovery_score) over w3 as n3,
        whoop.momentum(recovery_score, day) over w7 as m7, count(recovery_score) over w7 as n7,
        whoop.momentum(recovery_score, day) over w14 as m14, count(recovery_score) over w14 as n14
    from whoop.fact_daily_recovery
    where recovery_score is not null
    window w3 as (partition by user_id order by day range between '2 days' preceding and current row),
           w7 as (partition by user_id order by day range between '6 days' preceding and current row),
           w14 as (partition by user_id order by day range between '13 days' preceding and current row)
),
t as (
    select user_id, day, recovery_score,
           recovery_score - previous_recovery as change_1d,
           case when n3 >= 2 then m3 end as trend_3d,
           case when n7 >= 3 then m7 end as trend_7d,
           case when n14 >= 5 then m14 end as trend_14d
    from w
),
s as (
    select t.*,
           (coalesce(0.4 * change_1d, 0) + coalesce(0.3 * trend_3d, 0)
            + coalesce(0.2 * trend_7d, 0) + coalesce(0.1 * trend_14d, 0))
           / nullif((case when change_1d is not null then 0.4 else 0 end)
                    + (case when trend_3d is not null then 0.3 else 0 end)
                    + (case when trend_7d is not null then 0.2 else 0 end)
                    + (case when trend_14d is not null then 0.1 else 0 end), 0)
               as momentum_score
    from t
)
select
    user_id, day, recovery_score, change_1d, trend_3d, trend_7d, trend_14d, momentum_score,
    whoop_internal.momentum_category(momentum_score) as momentum_category
from s;

select whoop_internal.create_maintained('recovery_momentum', '{user_id,day}');

comment on view whoop.recovery_momentum is
    'direction of recovery: day-over-day change and least-squares trends over 3/7/14 calendar days; a row per day with a scored recovery';
comment on column whoop.recovery_momentum.change_1d is 'recovery today - recovery yesterday (D-1); NULL if either is missing';
comment on column whoop.recovery_momentum.trend_3d is
    'least-squares slope of recovery over D-2 ... D, points per day (whoop.momentum); NULL below 2 observations';
comment on column whoop.recovery_momentum.trend_7d is 'slope over D-6 ... D, points/day; NULL below 3 observations';
comment on column whoop.recovery_momentum.trend_14d is 'slope over D-13 ... D, points/day; NULL below 5 observations';
comment on column whoop.recovery_momentum.momentum_score is
    'weighted mean of the terms present: 0.4 change_1d, 0.3 trend_3d, 0.2 trend_7d, 0.1 trend_14d, weights renormalised over the present terms; NULL when none is';
comment on column whoop.recovery_momentum.momentum_category is
    '>= 2 Accelerating, >= 0.5 Improving, > -0.5 Stable, > -2 Declining, else Deteriorating';

-- 2. strain_recovery_efficiency: a row per day with a scored day strain.
create view whoop_internal.strain_recovery_efficiency_def as
with b as (
    select
        user_id, day, day_strain, recovery_score,
        whoop.rolling_avg(recovery_score) over wb as baseline_mean,
        count(recovery_score) over wb as baseline_n,
        -- the next day's score: the next row when it is that day (one row
        -- per day; lead() needs no window of its own, a one-day frame would)
        case when lead(day) over wb = day + 1 then lead(recovery_score) over wb end as next_day_recovery
    from whoop_internal.daily_scores
    window wb as (partition by user_id order by day range between '7 days' preceding and '1 day' preceding)
),
e as (
    select user_id, day, day_strain, recovery_score, next_day_recovery,
           case when baseline_n >= 3 then baseline_mean end as baseline_recovery,
           case when day_strain >= 1 and baseline_n >= 3
                then (next_day_recovery - baseline_mean) / day_strain end as efficiency
    from b
    where day_strain is not null
),
m as (
    select e.*,
           case when count(efficiency) over w30 >= 5 then whoop.rolling_avg(efficiency) over w30 end as efficiency_30d
    from e
    window w30 as (partition by user_id order by day range between '29 days' preceding and current row)
)
select
    user_id, day, day_strain, recovery_score, baseline_recovery, next_day_recovery,
    efficiency, efficiency_30d,
    whoop_internal.efficiency_category(efficiency) as efficiency_category
from m;

select whoop_internal.create_maintained('strain_recovery_efficiency', '{user_id,day}');

comment on view whoop.strain_recovery_efficiency is
    'how well the body answers load: next-day recovery against the prior week''s recovery, per unit of strain; a row per day with a scored day strain';
comment on column whoop.strain_recovery_efficiency.recovery_score is 'recovery on day D itself (context only)';
comment on column whoop.strain_recovery_efficiency.baseline_recovery is 'mean recovery over D-7 ... D-1; NULL below 3 observations';
comment on column whoop.strain_recovery_efficiency.next_day_recovery is 'recovery on D+1 (the one intended look-ahead); NULL if none';
comment on column whoop.strain_recovery_efficiency.efficiency is
    '(next_day_recovery - baseline_recovery) / day_strain, only when day_strain >= 1; NULL otherwise or when an input is missing';
comment on column whoop.strain_recovery_efficiency.efficiency_30d is 'mean efficiency over D-29 ... D; NULL below 5 observations';
comment on column whoop.strain_recovery_efficiency.efficiency_category is
    'on the day''s efficiency: > 1 Highly Efficient, > 0.5 Efficient, > 0 Moderate, > -0.5 Poor, else Very Poor; NULL stays NULL';

-- 3. training_readiness_gap: a row per day with a scored recovery.
create view whoop_internal.training_readiness_gap_def as
with b as (
    select
        user_id, day, recovery_score, recovery_zone, day_strain,
        whoop.rolling_avg(day_strain) over wp as prior_mean,
        count(day_strain) over wp as prior_n
    from whoop_internal.daily_scores
    window wp as (partition by user_id order by day range between '7 days' preceding and '1 day' preceding)
),
g as (
    select user_id, day, recovery_score, recovery_zone, day_strain,
           case recovery_zone when 'red' then 0 when 'yellow' then 10 when 'green' then 14 end
               ::double precision as recommended_strain_min,
           case recovery_zone when 'red' then 10 when 'yellow' then 14 when 'green' then 18 end
               ::double precision as recommended_strain_max,
           case recovery_zone when 'red' then 5 when 'yellow' then 12 when 'green' then 16 end
               ::double precision as target_strain,
           case when prior_n >= 3 then prior_mean end as avg_strain_prior_7d
    from b
    where recovery_score is not null
)
select
    user_id, day, recovery_score, recovery_zone, recommended_strain_min, recommended_strain_max,
    target_strain, day_strain,
    day_strain - target_strain as strain_gap,
    whoop_internal.strain_gap_category(day_strain - target_strain) as gap_category,
    avg_strain_prior_7d,
    recovery_zone <> 'green' and avg_strain_prior_7d > 14 and day_strain - target_strain > 2
        as overtraining_risk
from g;

select whoop_internal.create_maintained('training_readiness_gap', '{user_id,day}');

comment on view whoop.training_readiness_gap is
    'does training match readiness: day strain against the strain band recommended for the day''s recovery zone; a row per day with a scored recovery';
comment on column whoop.training_readiness_gap.recommended_strain_min is 'lower edge of the recommended band: red 0, yellow 10, green 14';
comment on column whoop.training_readiness_gap.recommended_strain_max is 'upper edge of the recommended band: red 10, yellow 14, green 18';
comment on column whoop.training_readiness_gap.target_strain is 'target strain of the band: red 5, yellow 12, green 16';
comment on column whoop.training_readiness_gap.strain_gap is 'day_strain - target_strain; NULL without a scored day strain';
comment on column whoop.training_readiness_gap.gap_category is
    '> 4 Overreaching, > 1.5 Pushing, >= -1.5 Aligned, >= -4 Conservative, else Undertrained';
comment on column whoop.training_readiness_gap.avg_strain_prior_7d is 'mean day strain over D-7 ... D-1; NULL below 3 observations';
comment on column whoop.training_readiness_gap.overtraining_risk is
    'zone not green AND avg_strain_prior_7d > 14 AND strain_gap > 2 (SQL logic: false as soon as one part is false, NULL when undecided for lack of data)';

-- 4. recovery_volatility: a row per day with a scored recovery.
create view whoop_internal.recovery_volatility_def as
with w as (
    select
        user_id, day, recovery_score,
        whoop.rolling_stddev(recovery_score) over w7 as sd7, count(recovery_score) over w7 as n7,
        whoop.rolling_stddev(recovery_score) over w7p as sd7p, count(recovery_score) over w7p as n7p,
        whoop.rolling_stddev(recovery_score) over w30 as sd30,
        whoop.rolling_avg(recovery_score) over w30 as mean30, count(recovery_score) over w30 as n30
    from whoop.fact_daily_recovery
    where recovery_score is not null
    window w7 as (partition by user_id order by day range between '6 days' preceding and current row),
           w7p as (partition by user_id order by day range between '13 days' preceding and '7 days' preceding),
           w30 as (partition by user_id order by day range between '29 days' preceding and current row)
),
v as (
    select user_id, day, recovery_score,
           case when n7 >= 3 then sd7 end as volatility_7d,
           case when n7p >= 3 then sd7p end as volatility_7d_prior,
           case when n30 >= 10 then sd30 end as volatility_30d,
           case when n30 >= 10 then mean30 end as avg_recovery_30d
    from w
)
select
    user_id, day, recovery_score, volatility_7d, volatility_30d, avg_recovery_30d,
    volatility_30d / nullif(avg_recovery_30d, 0) as cv_30d,
    volatility_7d - volatility_7d_prior as volatility_trend,
    whoop_internal.volatility_category(volatility_30d) as volatility_category
from v;

select whoop_internal.create_maintained('recovery_volatility', '{user_id,day}');

comment on view whoop.recovery_volatility is
    'stability of recovery: rolling sample standard deviations over 7 and 30 calendar days; a row per day with a scored recovery';
comment on column whoop.recovery_volatility.volatility_7d is 'sample sd of recovery over D-6 ... D; NULL below 3 observations';
comment on column whoop.recovery_volatility.volatility_30d is 'sample sd of recovery over D-29 ... D; NULL below 10 observations';
comment on column whoop.recovery_volatility.avg_recovery_30d is 'mean recovery over D-29 ... D; NULL below 10 observations';
comment on column whoop.recovery_volatility.cv_30d is 'coefficient of variation: volatility_30d / avg_recovery_30d (a ratio, not %)';
comment on column whoop.recovery_volatility.volatility_trend is
    'volatility_7d - the volatility_7d of D-7 (sd over D-13 ... D-7, min 3, whether or not D-7 itself has a score)';
comment on column whoop.recovery_volatility.volatility_category is
    'on volatility_30d: < 5 Very Stable, < 10 Stable, < 15 Moderate, < 20 Volatile, else Very Volatile';

-- 5. autonomic_balance: a row per day with a scored, positive HRV.  Each
-- baseline counts every day on which its own measure was scored, so the
-- windows run over all days with any of the three and the rows are chosen
-- only after them: a scored recovery with an HRV of 0 still has a resting
-- HR, and an unscorable recovery after a scored sleep still has a
-- respiratory rate (the sleep's, in fact_daily_recovery).
create view whoop_internal.autonomic_balance_def as
with w as (
    select
        user_id, day, hrv_rmssd_milli, ln_rmssd, resting_heart_rate, respiratory_rate,
        whoop.rolling_avg(ln_rmssd) over w7 as ln_mean7,
        whoop.rolling_stddev(ln_rmssd) over w7 as ln_sd7,
        count(ln_rmssd) over w7 as ln_n7,
        whoop.rolling_avg(ln_rmssd) over wb as ln_base_mean,
        whoop.rolling_stddev(ln_rmssd) over wb as ln_base_sd,
        count(ln_rmssd) over wb as ln_base_n,
        whoop.rolling_avg(resting_heart_rate) over wb as rhr_base_mean,
        whoop.rolling_stddev(resting_heart_rate) over wb as rhr_base_sd,
        count(resting_heart_rate) over wb as rhr_base_n,
        whoop.rolling_avg(respiratory_rate) over wb as resp_base_mean,
        whoop.rolling_stddev(respiratory_rate) over wb as resp_base_sd,
        count(respiratory_rate) over wb as resp_base_n
    from whoop_internal.daily_scores
    where ln_rmssd is not null or resting_heart_rate is not null or respiratory_rate is not null
    window w7 as (partition by user_id order by day range between '6 days' preceding and current row),
           wb as (partition by user_id order by day range between '60 days' preceding and '1 day' preceding)
),
z as (
    select user_id, day, hrv_rmssd_milli, ln_rmssd, resting_heart_rate, respiratory_rate,
           case when ln_n7 >= 3 then ln_mean7 end as hrv_7d,
           case when ln_n7 >= 3 then 100 * ln_sd7 / nullif(ln_mean7, 0) end as hrv_cv_7d,
           case when ln_base_n >= 14 then ln_base_mean end as hrv_baseline,
           case when ln_base_n >= 14 then ln_base_sd end as hrv_baseline_sd,
           case when rhr_base_n >= 14 then rhr_base_mean end as rhr_baseline,
           case when rhr_base_n >= 14 then rhr_base_sd end as rhr_baseline_sd,
           case when resp_base_n >= 14 then resp_base_mean end as resp_baseline,
           case when resp_base_n >= 14 then resp_base_sd end as resp_baseline_sd
    from w
    where ln_rmssd is not null
),
s as (
    select z.*,
           hrv_baseline - 0.5 * hrv_baseline_sd as swc_low,
           hrv_baseline + 0.5 * hrv_baseline_sd as swc_high,
           hrv_rmssd_milli / nullif(resting_heart_rate, 0) as hrv_rhr_ratio,
           (ln_rmssd - hrv_baseline) / nullif(hrv_baseline_sd, 0) as z_hrv,
           (resting_heart_rate - rhr_baseline) / nullif(rhr_baseline_sd, 0) as z_rhr,
           (respiratory_rate - resp_baseline) / nullif(resp_baseline_sd, 0) as z_resp
    from z
),
b as (
    select s.*,
           -- greatest/least skip NULLs: clamp only a value that exists.
           case when z_hrv is not null and z_rhr is not null and z_resp is not null
                then greatest(0, least(100, 50 + 10 * (0.45 * z_hrv - 0.35 * z_rhr - 0.20 * z_resp)))
           end as balance_score
    from s
)
select
    user_id, day, hrv_rmssd_milli, ln_rmssd, resting_heart_rate, respiratory_rate,
    hrv_7d, hrv_cv_7d, hrv_baseline, hrv_baseline_sd, swc_low, swc_high, hrv_rhr_ratio,
    rhr_baseline, rhr_baseline_sd, resp_baseline, resp_baseline_sd,
    z_hrv, z_rhr, z_resp, balance_score,
    whoop_internal.balance_state(hrv_7d, swc_low, swc_high) as balance_state,
    whoop_internal.balance_category(balance_score) as balance_category
from b;

select whoop_internal.create_maintained('autonomic_balance', '{user_id,day}');

comment on view whoop.autonomic_balance is
    'nervous-system balance from ln rMSSD against its own 60-day baseline and smallest worthwhile change (Plews 2012/2014, Buchheit 2014); a row per day with a scored, positive HRV; the resting-HR and respiratory baselines count every day with their own measure scored';
comment on column whoop.autonomic_balance.ln_rmssd is 'ln(hrv_rmssd_milli), HRV in ms';
comment on column whoop.autonomic_balance.hrv_7d is 'mean ln_rmssd over D-6 ... D; NULL below 3 observations';
comment on column whoop.autonomic_balance.hrv_cv_7d is '100 * sd / mean of ln_rmssd over D-6 ... D, %; NULL below 3 observations';
comment on column whoop.autonomic_balance.hrv_baseline is 'mean ln_rmssd over D-60 ... D-1 (days with a positive HRV); NULL below 14 observations';
comment on column whoop.autonomic_balance.hrv_baseline_sd is 'sample sd of ln_rmssd over D-60 ... D-1 (days with a positive HRV); NULL below 14 observations';
comment on column whoop.autonomic_balance.swc_low is 'smallest-worthwhile-change band, lower edge: hrv_baseline - 0.5 sd';
comment on column whoop.autonomic_balance.swc_high is 'smallest-worthwhile-change band, upper edge: hrv_baseline + 0.5 sd';
comment on column whoop.autonomic_balance.hrv_rhr_ratio is 'hrv_rmssd_milli / resting_heart_rate (ms per bpm)';
comment on column whoop.autonomic_balance.rhr_baseline is
    'mean resting HR over D-60 ... D-1, every day with a scored resting HR (also one whose HRV is 0 or missing); NULL below 14 observations';
comment on column whoop.autonomic_balance.rhr_baseline_sd is
    'sample sd of resting HR over D-60 ... D-1, every day with a scored resting HR; NULL below 14 observations';
comment on column whoop.autonomic_balance.resp_baseline is
    'mean respiratory rate over D-60 ... D-1, every day with a scored respiratory rate (the main sleep''s: also one whose recovery is unscorable or HRV not positive); NULL below 14 observations';
comment on column whoop.autonomic_balance.resp_baseline_sd is
    'sample sd of respiratory rate over D-60 ... D-1, every day with a scored respiratory rate; NULL below 14 observations';
comment on column whoop.autonomic_balance.z_hrv is '(ln_rmssd - hrv_baseline) / hrv_baseline_sd';
comment on column whoop.autonomic_balance.z_rhr is '(resting_heart_rate - rhr_baseline) / rhr_baseline_sd';
comment on column whoop.autonomic_balance.z_resp is '(respiratory_rate - resp_baseline) / resp_baseline_sd';
comment on column whoop.autonomic_balance.balance_score is
    'clamp(50 + 10 * (0.45 z_hrv - 0.35 z_rhr - 0.20 z_resp), 0, 100); NULL when any z-score is';
comment on column whoop.autonomic_balance.balance_state is
    'hrv_7d above swc_high Parasympathetic, within [swc_low, swc_high] Balanced, below Sympathetic';
comment on column whoop.autonomic_balance.balance_category is
    'on balance_score: >= 80 Excellent, >= 60 Good, >= 40 Moderate, >= 20 Poor, else Very Poor';

-- 6. seasonal_adaptation: grain (user_id, year, season).  A season's mean of
-- a measure needs 14 observations of it within the season, two weeks of the
-- season's thirteen: the first days of a season say nothing about how the
-- season treats the member, and a category from one day reads as a finding.
-- Below 14 the mean is NULL, and with it the deviation, z-score, index and
-- category built on it.
-- A season's baseline is every day before it: running aggregates over the
-- member's days in order, read at the first day of each season -- one pass,
-- where joining each season to all earlier days read a member's history
-- once per season.  d is read twice (the seasons and the running
-- baselines): not materialized, so that a member filter reaches both reads
-- instead of a materialized scan of every member's days.
create view whoop_internal.seasonal_adaptation_def as
with d as not materialized (
    select
        f.user_id, f.day, dd.season_year,
        case when coalesce(us.hemisphere, 'north') = 'south' then dd.season_southern else dd.season end
            as season,
        coalesce(us.hemisphere, 'north') as hemisphere,
        dd.season_start, dd.season_end,
        f.recovery_score, f.ln_rmssd, f.resting_heart_rate, f.skin_temp_celsius, f.day_strain
    from whoop_internal.daily_scores f
    join whoop.dim_date dd on dd.day = f.day
    left join whoop.user_settings us on us.user_id = f.user_id
    where f.recovery_score is not null or f.day_strain is not null
),
-- whoop.rolling_avg/rolling_stddev sum in double-double, so their results do
-- not depend on the physical order of rows (a refresh with unchanged data
-- reproduces every value bit for bit) and need no ORDER BY (a sort per group).
s as not materialized (
    select user_id, season_year, season, hemisphere, season_start, season_end,
           count(*) as days,
           count(recovery_score) as recovery_days,
           case when count(recovery_score) >= 14 then whoop.rolling_avg(recovery_score) end as avg_recovery,
           case when count(ln_rmssd) >= 14 then whoop.rolling_avg(ln_rmssd) end as avg_ln_rmssd,
           case when count(resting_heart_rate) >= 14 then whoop.rolling_avg(resting_heart_rate) end
               as avg_resting_heart_rate,
           case when count(skin_temp_celsius) >= 14 then whoop.rolling_avg(skin_temp_celsius) end
               as avg_skin_temp_celsius,
           case when count(day_strain) >= 14 then whoop.rolling_avg(day_strain) end as avg_day_strain
    from d
    group by user_id, season_year, season, hemisphere, season_start, season_end
),
b as (
    select user_id, season_year, season, baseline_days,
           case when recovery_n >= 30 then recovery_mean end as recovery_mean,
           case when recovery_n >= 30 then recovery_sd end as recovery_sd,
           case when ln_rmssd_n >= 30 then ln_rmssd_mean end as ln_rmssd_mean,
           case when ln_rmssd_n >= 30 then ln_rmssd_sd end as ln_rmssd_sd,
           case when rhr_n >= 30 then rhr_mean end as rhr_mean,
           case when rhr_n >= 30 then rhr_sd end as rhr_sd,
           case when skin_n >= 30 then skin_mean end as skin_mean,
           case when skin_n >= 30 then skin_sd end as skin_sd,
           case when strain_n >= 30 then strain_mean end as strain_mean
    from (
        select user_id, season_year, season, season_start,
               lag(season_start) over (partition by user_id order by day) as previous_season_start,
               count(*) over before as baseline_days,
               count(recovery_score) over before as recovery_n,
               whoop.rolling_avg(recovery_score) over before as recovery_mean,
               whoop.rolling_stddev(recovery_score) over before as recovery_sd,
               count(ln_rmssd) over before as ln_rmssd_n,
               whoop.rolling_avg(ln_rmssd) over before as ln_rmssd_mean,
               whoop.rolling_stddev(ln_rmssd) over before as ln_rmssd_sd,
               count(resting_heart_rate) over before as rhr_n,
               whoop.rolling_avg(resting_heart_rate) over before as rhr_mean,
               whoop.rolling_stddev(resting_heart_rate) over before as rhr_sd,
               count(skin_temp_celsius) over before as skin_n,
               whoop.rolling_avg(skin_temp_celsius) over before as skin_mean,
               whoop.rolling_stddev(skin_temp_celsius) over before as skin_sd,
               count(day_strain) over before as strain_n,
               whoop.rolling_avg(day_strain) over before as strain_mean
        from d
        window before as (partition by user_id order by day rows between unbounded preceding and 1 preceding)
    ) x
    where previous_season_start is distinct from season_start
),
v as (
    select s.*, b.baseline_days,
           b.recovery_mean as baseline_recovery,
           b.ln_rmssd_mean as baseline_ln_rmssd,
           b.rhr_mean as baseline_resting_heart_rate,
           b.skin_mean as baseline_skin_temp_celsius,
           b.strain_mean as baseline_day_strain,
           s.avg_recovery - b.recovery_mean as recovery_deviation,
           s.avg_ln_rmssd - b.ln_rmssd_mean as hrv_deviation,
           b.rhr_mean - s.avg_resting_heart_rate as rhr_deviation,
           s.avg_skin_temp_celsius - b.skin_mean as skin_temp_deviation,
           s.avg_day_strain - b.strain_mean as strain_deviation,
           (s.avg_recovery - b.recovery_mean) / nullif(b.recovery_sd, 0) as z_recovery,
           (s.avg_ln_rmssd - b.ln_rmssd_mean) / nullif(b.ln_rmssd_sd, 0) as z_hrv,
           (b.rhr_mean - s.avg_resting_heart_rate) / nullif(b.rhr_sd, 0) as z_rhr,
           (s.avg_skin_temp_celsius - b.skin_mean) / nullif(b.skin_sd, 0) as z_skin
    from s
    join b using (user_id, season_year, season)
)
select
    user_id, season_year as year, season, hemisphere, season_start, season_end, days, recovery_days,
    avg_recovery, avg_ln_rmssd, avg_resting_heart_rate, avg_skin_temp_celsius, avg_day_strain,
    baseline_days, baseline_recovery, baseline_ln_rmssd, baseline_resting_heart_rate,
    baseline_skin_temp_celsius, baseline_day_strain,
    recovery_deviation, hrv_deviation, rhr_deviation, skin_temp_deviation, strain_deviation,
    z_recovery, z_hrv, z_rhr, z_skin,
    0.4 * z_recovery + 0.3 * z_hrv + 0.2 * z_rhr + 0.1 * z_skin as adaptation_index,
    whoop_internal.adaptation_category(recovery_deviation) as adaptation_category
from v;

select whoop_internal.create_maintained('seasonal_adaptation', '{user_id,year,season}');

comment on view whoop.seasonal_adaptation is
    'how a member fares per meteorological season against everything before it; grain (user_id, year, season); a season counts days with a scored recovery or strain; each season mean needs 14 observations of its measure, each baseline 30';
comment on column whoop.seasonal_adaptation.year is
    'the year the season ends in: December counts to the next year''s Dec-Feb season (whoop.dim_date.season_year)';
comment on column whoop.seasonal_adaptation.season is 'season name in the member''s hemisphere (whoop.user_settings, default north)';
comment on column whoop.seasonal_adaptation.hemisphere is 'north or south, from whoop.user_settings';
comment on column whoop.seasonal_adaptation.days is 'days of the season with a scored recovery or day strain (so far, for the current season)';
comment on column whoop.seasonal_adaptation.recovery_days is
    'days of the season with a scored recovery: avg_recovery, and the deviation and category on it, need 14';
comment on column whoop.seasonal_adaptation.season_start is 'first day of the season';
comment on column whoop.seasonal_adaptation.season_end is 'last day of the season (it may not have ended yet)';
comment on column whoop.seasonal_adaptation.avg_recovery is 'mean recovery over the season''s days; NULL below 14 observations';
comment on column whoop.seasonal_adaptation.avg_resting_heart_rate is 'mean resting HR over the season, bpm; NULL below 14 observations';
comment on column whoop.seasonal_adaptation.avg_skin_temp_celsius is 'mean skin temperature over the season, °C; NULL below 14 observations';
comment on column whoop.seasonal_adaptation.avg_day_strain is 'mean day strain over the season; NULL below 14 observations';
comment on column whoop.seasonal_adaptation.avg_ln_rmssd is 'mean ln(HRV ms) over the season; NULL below 14 observations';
comment on column whoop.seasonal_adaptation.baseline_days is 'days with data before season_start';
comment on column whoop.seasonal_adaptation.baseline_recovery is
    'mean recovery over all days before the season began; NULL below 30 such days (each baseline counts its own observations)';
comment on column whoop.seasonal_adaptation.baseline_ln_rmssd is 'mean ln rMSSD before the season; NULL below 30 observations';
comment on column whoop.seasonal_adaptation.baseline_resting_heart_rate is 'mean resting HR before the season; NULL below 30 observations';
comment on column whoop.seasonal_adaptation.baseline_skin_temp_celsius is 'mean skin temperature before the season; NULL below 30 observations';
comment on column whoop.seasonal_adaptation.baseline_day_strain is 'mean day strain before the season; NULL below 30 observations';
comment on column whoop.seasonal_adaptation.recovery_deviation is 'avg_recovery - baseline_recovery (points)';
comment on column whoop.seasonal_adaptation.hrv_deviation is 'avg_ln_rmssd - baseline_ln_rmssd';
comment on column whoop.seasonal_adaptation.rhr_deviation is 'baseline - season resting HR (positive = lower = better)';
comment on column whoop.seasonal_adaptation.skin_temp_deviation is 'avg - baseline skin temperature, °C';
comment on column whoop.seasonal_adaptation.strain_deviation is 'avg - baseline day strain';
comment on column whoop.seasonal_adaptation.z_recovery is 'recovery_deviation / sample sd of recovery before the season';
comment on column whoop.seasonal_adaptation.z_hrv is 'hrv_deviation / sample sd of ln rMSSD before the season';
comment on column whoop.seasonal_adaptation.z_rhr is 'rhr_deviation / sample sd of resting HR before the season';
comment on column whoop.seasonal_adaptation.z_skin is 'skin_temp_deviation / sample sd of skin temperature before the season';
comment on column whoop.seasonal_adaptation.adaptation_index is
    '0.4 z_recovery + 0.3 z_hrv + 0.2 z_rhr + 0.1 z_skin; NULL when any term is (e.g. a strap without skin temperature)';
comment on column whoop.seasonal_adaptation.adaptation_category is
    'on recovery_deviation: > 10 Thriving, > 5 Well Adapted, > -5 Normal Adaptation, > -10 Struggling, else Poorly Adapted; NULL until the season has 14 days with a scored recovery and a baseline';

-- 7. training_load: a row per day with a scored day strain.
-- The EWMAs run over the member's scored days in order (a day without data
-- is skipped, not counted as zero strain: an unworn strap is not rest).
create view whoop_internal.training_load_def as
with w as (
    select
        user_id, day, day_strain,
        whoop.ewma(day_strain, 7) over wr as ewma7,
        whoop.ewma(day_strain, 28) over wr as ewma28,
        count(day_strain) over wr as n_all,
        whoop.rolling_avg(day_strain) over w7 as mean7, count(day_strain) over w7 as n7,
        whoop.rolling_avg(day_strain) over w28 as mean28, count(day_strain) over w28 as n28
    from whoop.fact_daily_strain
    where day_strain is not null
    window wr as (partition by user_id order by day range between unbounded preceding and current row),
           w7 as (partition by user_id order by day range between '6 days' preceding and current row),
           w28 as (partition by user_id order by day range between '27 days' preceding and current row)
),
l as (
    select user_id, day, day_strain,
           case when n_all >= 7 then ewma7 end as acute_load_ewma,
           case when n_all >= 28 then ewma28 end as chronic_load_ewma,
           case when n7 >= 4 then mean7 end as acute_load_7d,
           case when n28 >= 14 then mean28 end as chronic_load_28d
    from w
),
r as (
    select l.*,
           acute_load_ewma / nullif(chronic_load_ewma, 0) as acwr_ewma,
           acute_load_7d / nullif(chronic_load_28d, 0) as acwr_rolling
    from l
)
select
    user_id, day, day_strain, acute_load_ewma, chronic_load_ewma, acwr_ewma,
    acute_load_7d, chronic_load_28d, acwr_rolling,
    whoop_internal.load_zone(acwr_ewma) as load_zone
from r;

select whoop_internal.create_maintained('training_load', '{user_id,day}');

comment on view whoop.training_load is
    'acute:chronic workload ratio of day strain (Williams et al. 2017): EWMA (lambda = 2/(N+1), N = 7 and 28) and rolling coupled 7/28-day means; a heuristic, not a diagnosis; a row per day with a scored day strain';
comment on column whoop.training_load.acute_load_ewma is
    'whoop.ewma(day_strain, 7) over the member''s scored days so far; NULL before the 7th';
comment on column whoop.training_load.chronic_load_ewma is
    'whoop.ewma(day_strain, 28) over the member''s scored days so far; NULL before the 28th';
comment on column whoop.training_load.acwr_ewma is 'acute_load_ewma / chronic_load_ewma';
comment on column whoop.training_load.acute_load_7d is 'mean day strain over D-6 ... D; NULL below 4 observations';
comment on column whoop.training_load.chronic_load_28d is 'mean day strain over D-27 ... D (includes the acute week); NULL below 14 observations';
comment on column whoop.training_load.acwr_rolling is 'acute_load_7d / chronic_load_28d (coupled rolling ratio)';
comment on column whoop.training_load.load_zone is
    'on acwr_ewma: < 0.8 Detraining, <= 1.3 Optimal, <= 1.5 Caution, else High Risk (a heuristic, not a diagnosis)';
--upgrade 1.0--1.1 end
