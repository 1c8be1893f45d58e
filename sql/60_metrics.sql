-- Metrics: categories exactly at their edges, and member 4004's rows.
select x, whoop_internal.momentum_category(x) from unnest(array[2, 1.9999, 0.5, 0.4999, -0.4999, -0.5, -1.9999, -2]::float8[]) x;
select x, whoop_internal.efficiency_category(x) from unnest(array[1.0001, 1, 0.5001, 0.5, 0.0001, 0, -0.4999, -0.5]::float8[]) x;
select x, whoop_internal.strain_gap_category(x) from unnest(array[4.0001, 4, 1.5001, 1.5, -1.5, -1.5001, -4, -4.0001]::float8[]) x;
select x, whoop_internal.volatility_category(x) from unnest(array[4.9999, 5, 9.9999, 10, 14.9999, 15, 19.9999, 20]::float8[]) x;
select x, whoop_internal.balance_category(x) from unnest(array[80, 79.9999, 60, 59.9999, 40, 39.9999, 20, 19.9999]::float8[]) x;
select x, whoop_internal.adaptation_category(x) from unnest(array[10.0001, 10, 5.0001, 5, -4.9999, -5, -9.9999, -10]::float8[]) x;
select x, whoop_internal.load_zone(x) from unnest(array[0.7999, 0.8, 1.3, 1.3001, 1.5, 1.5001]::float8[]) x;
select h, whoop_internal.balance_state(h, 4.0, 4.2) from unnest(array[4.2001, 4.2, 4.0, 3.9999]::float8[]) h;
select whoop_internal.momentum_category(null) is null and whoop_internal.load_zone(null) is null as null_stays_null;

-- Member 4004's days have recoveries 72.5 (20 March) and 40 (22 March):
-- not consecutive, so no change_1d; the 3-day window 20-22 March holds both,
-- a slope of -16.25 points/day.
select day, recovery_score, change_1d, trend_3d, trend_7d, trend_14d, momentum_score, momentum_category
from whoop.recovery_momentum where user_id = 4004 order by day;
select day, recovery_zone, target_strain, day_strain, strain_gap, gap_category, avg_strain_prior_7d, overtraining_risk
from whoop.training_readiness_gap where user_id = 4004 order by day;
select day, day_strain, baseline_recovery, next_day_recovery, efficiency, efficiency_30d, efficiency_category
from whoop.strain_recovery_efficiency where user_id = 4004 order by day;
select day, volatility_7d, volatility_30d, volatility_category from whoop.recovery_volatility where user_id = 4004 order by day;
select day, round(ln_rmssd::numeric, 6) as ln_rmssd, round(hrv_7d::numeric, 6) as hrv_7d, hrv_baseline, balance_score,
       balance_state
from whoop.autonomic_balance where user_id = 4004 order by day;
-- Two scored recoveries in the season: too few for a season mean (14), so no category.
select year, season, hemisphere, days, recovery_days, avg_recovery, avg_day_strain, baseline_days, baseline_recovery,
       adaptation_category
from whoop.seasonal_adaptation where user_id = 4004 order by year, season;
select day, day_strain, acute_load_ewma, chronic_load_ewma, acute_load_7d, load_zone
from whoop.training_load where user_id = 4004 order by day;
-- Every materialized view has a unique index on plain columns (for REFRESH CONCURRENTLY),
-- every maintained object's rows table a primary key on its grain; that the key
-- columns hold no NULLs is one of whoop.check_quality()'s checks.
select p.view_name, p.method, pg_get_indexdef(i.indexrelid)
from whoop.refresh_plan p join pg_index i on i.indrelid = p.stored_in and i.indisunique
order by 1, 3;
