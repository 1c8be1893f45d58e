-- Marts: dim_user (SCD2), dim_date and the daily facts, for member 4004 of 40_staging.
insert into whoop.raw_profile (user_id, observed_at, email, first_name, last_name, record) values
    (4004, '2025-03-19 00:00:00Z', 'kim@example.org', 'Kim', 'Park', '{}');
insert into whoop.raw_body_measurement (user_id, observed_at, height_meter, weight_kilogram, max_heart_rate, record) values
    (4004, '2025-03-19 00:00:01Z', 1.68, 70, 188, '{}'),
    (4004, '2025-03-21 12:00:00Z', 1.68, 69.5, 188, '{}'),
    (4004, '2025-03-22 12:00:00Z', 1.68, 69.5, 188, '{}');
select view_name, mode, status, error from whoop.refresh() order by refresh_order;
-- Three snapshots, two versions: the profile and the first measurement
-- (a second apart) make one, the weight change another; an unchanged
-- snapshot adds none.
select valid_from, valid_to, is_current, name, email, height_meter, weight_kilogram, max_heart_rate,
       user_sk = (hashtextextended('4004@' || extract(epoch from valid_from)::text, 0) & 9223372036854775807)
           as deterministic_key
from whoop.dim_user where user_id = 4004 order by valid_from;
select f.day, f.date_sk, f.cycle_id, u.weight_kilogram as weight_that_day, f.recovery_score_state,
       f.recovery_score, f.recovery_zone, f.hours_asleep, f.sleep_need_hours, f.sleep_score_state
from whoop.fact_daily_recovery f join whoop.dim_user u using (user_sk)
where f.user_id = 4004 order by f.day;
select day, cycle_id, score_state, day_strain, kcal, workout_count, max_workout_strain, workout_minutes,
       zone_0_minutes + zone_1_minutes + zone_2_minutes + zone_3_minutes + zone_4_minutes + zone_5_minutes
           as zone_minutes, distance_km, sports, cycle_complete
from whoop.fact_daily_strain where user_id = 4004 order by day;
select day, date_sk, year, quarter, month, month_name, iso_year, iso_week, iso_week_name, day_of_month,
       day_of_year, iso_day_of_week, day_name, is_weekend, season, season_southern, season_year,
       season_start, season_end, training_period
from whoop.dim_date
where day in ('2024-12-31', '2025-01-01', '2025-02-28', '2025-03-01', '2025-06-01', '2025-09-01', '2025-12-01')
order by day;
select min(day) <= '2024-01-01' and max(day) >= make_date(extract(year from current_date)::int + 1, 12, 31)
    as covers_with_margin,
    count(*) = max(day) - min(day) + 1 as no_holes
from whoop.dim_date;
