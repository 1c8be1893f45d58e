-- Staging: offsets, local times, units and the WHOOP day.
select tz, whoop_internal.utc_offset(tz)
from (values ('Z'), ('+00:00'), ('-05:00'), ('+05:30'), ('+0900'), ('-03'), ('Europe/Paris'), ('')) v(tz);
-- Local wall-clock time from the record's offset, whatever the session TimeZone.
set timezone = 'America/Los_Angeles';
select whoop_internal.local_time('2025-03-19 22:30:00+00', '+09:00') as tokyo,
       whoop_internal.local_time('2025-03-19 22:30:00+00', 'bogus') as unparseable_is_utc;
reset timezone;
select whoop_internal.date_sk('2025-03-09');
-- Recovery zones at their edges: green >= 67, yellow >= 34, red below.
select s, whoop_internal.recovery_zone(s)
from unnest(array[0, 33.5, 33.999, 34, 66.9, 67, 100]::float8[]) s;

-- Member 4004: a night in Tokyo (wakes on 20 March local, still 19 March
-- in UTC), a cycle without sleep (day = start + 12 h), then back at
-- UTC-04:00 two cycles whose main sleeps both end on 22 March: the longer
-- (7 h) wins over the shorter (3.5 h); a nap does not count.  The losing
-- cycle's recovery (55) is not the day's; the winner's (40) is.
insert into whoop.raw_cycle (id, user_id, start, "end", timezone_offset, score_state, created_at, updated_at, record)
select (r->>'id')::bigint, 4004, (r->>'start')::timestamptz, (r->>'end')::timestamptz, r->>'timezone_offset',
       r->>'score_state', (r->>'start')::timestamptz, (r->>'start')::timestamptz + interval '1 day', r
from jsonb_array_elements($$[
  {"id": 40041, "user_id": 4004, "start": "2025-03-19T13:30:00.000Z", "end": "2025-03-20T13:00:00.000Z",
   "timezone_offset": "+09:00", "score_state": "SCORED",
   "score": {"strain": 12.5, "kilojoule": 8368, "average_heart_rate": 64, "max_heart_rate": 171}},
  {"id": 40042, "user_id": 4004, "start": "2025-03-20T13:00:00.000Z", "end": "2025-03-22T02:00:00.000Z",
   "timezone_offset": "+09:00", "score_state": "SCORED",
   "score": {"strain": 8.0, "kilojoule": 10460, "average_heart_rate": 70, "max_heart_rate": 140}},
  {"id": 40043, "user_id": 4004, "start": "2025-03-22T02:00:00.000Z", "end": "2025-03-22T06:30:00.000Z",
   "timezone_offset": "-04:00", "score_state": "SCORED",
   "score": {"strain": 2.0, "kilojoule": 1200, "average_heart_rate": 58, "max_heart_rate": 90}},
  {"id": 40044, "user_id": 4004, "start": "2025-03-22T06:30:00.000Z",
   "timezone_offset": "-04:00", "score_state": "PENDING_SCORE"}
]$$::jsonb) r;
insert into whoop.raw_sleep (id, cycle_id, user_id, start, "end", timezone_offset, nap, score_state, created_at, updated_at, record)
select (r->>'id')::uuid, (r->>'cycle_id')::bigint, 4004, (r->>'start')::timestamptz, (r->>'end')::timestamptz,
       r->>'timezone_offset', (r->>'nap')::boolean, r->>'score_state', (r->>'end')::timestamptz,
       (r->>'end')::timestamptz, r
from jsonb_array_elements($$[
  {"id": "00000000-0000-4000-8000-000000004001", "cycle_id": 40041, "start": "2025-03-19T13:30:00.000Z",
   "end": "2025-03-19T21:30:00.000Z", "timezone_offset": "+09:00", "nap": false, "score_state": "SCORED",
   "score": {"stage_summary": {"total_in_bed_time_milli": 28800000, "total_awake_time_milli": 1800000,
                               "total_no_data_time_milli": 0, "total_light_sleep_time_milli": 13500000,
                               "total_slow_wave_sleep_time_milli": 5400000, "total_rem_sleep_time_milli": 8100000,
                               "sleep_cycle_count": 5, "disturbance_count": 7},
             "sleep_needed": {"baseline_milli": 28800000, "need_from_sleep_debt_milli": 1800000,
                              "need_from_recent_strain_milli": 900000, "need_from_recent_nap_milli": -900000},
             "respiratory_rate": 14.5, "sleep_performance_percentage": 93, "sleep_consistency_percentage": 80,
             "sleep_efficiency_percentage": 93.75}},
  {"id": "00000000-0000-4000-8000-000000004003", "cycle_id": 40043, "start": "2025-03-22T02:00:00.000Z",
   "end": "2025-03-22T05:30:00.000Z", "timezone_offset": "-04:00", "nap": false, "score_state": "PENDING_SCORE"},
  {"id": "00000000-0000-4000-8000-000000004004", "cycle_id": 40044, "start": "2025-03-22T06:30:00.000Z",
   "end": "2025-03-22T13:30:00.000Z", "timezone_offset": "-04:00", "nap": false, "score_state": "PENDING_SCORE"},
  {"id": "00000000-0000-4000-8000-000000004005", "cycle_id": 40044, "start": "2025-03-22T18:00:00.000Z",
   "end": "2025-03-23T03:00:00.000Z", "timezone_offset": "-04:00", "nap": true, "score_state": "PENDING_SCORE"}
]$$::jsonb) r;
insert into whoop.raw_recovery (cycle_id, sleep_id, user_id, score_state, created_at, updated_at, record)
select (r->>'cycle_id')::bigint, (r->>'sleep_id')::uuid, 4004, r->>'score_state', '2025-03-23', '2025-03-23', r
from jsonb_array_elements($$[
  {"cycle_id": 40041, "sleep_id": "00000000-0000-4000-8000-000000004001", "score_state": "SCORED",
   "score": {"user_calibrating": false, "recovery_score": 72.5, "resting_heart_rate": 52,
             "hrv_rmssd_milli": 65.25, "spo2_percentage": 97.5, "skin_temp_celsius": 33.7}},
  {"cycle_id": 40043, "sleep_id": "00000000-0000-4000-8000-000000004003", "score_state": "SCORED",
   "score": {"user_calibrating": false, "recovery_score": 55, "resting_heart_rate": 58,
             "hrv_rmssd_milli": 41, "spo2_percentage": 96, "skin_temp_celsius": 33.9}},
  {"cycle_id": 40044, "sleep_id": "00000000-0000-4000-8000-000000004004", "score_state": "SCORED",
   "score": {"user_calibrating": false, "recovery_score": 40, "resting_heart_rate": 57,
             "hrv_rmssd_milli": 44.5, "spo2_percentage": 96.5, "skin_temp_celsius": 33.8}}
]$$::jsonb) r;
insert into whoop.raw_workout (id, user_id, start, "end", timezone_offset, sport_name, score_state, created_at, updated_at, record)
select (r->>'id')::uuid, 4004, (r->>'start')::timestamptz, (r->>'end')::timestamptz, r->>'timezone_offset',
       r->>'sport_name', r->>'score_state', (r->>'end')::timestamptz, (r->>'end')::timestamptz, r
from jsonb_array_elements($$[
  {"id": "00000000-0000-4000-8000-000000004101", "start": "2025-03-20T08:00:00.000Z",
   "end": "2025-03-20T09:00:00.000Z", "timezone_offset": "+09:00", "sport_name": "running",
   "score_state": "SCORED",
   "score": {"strain": 11.25, "average_heart_rate": 148, "max_heart_rate": 171, "kilojoule": 2510.4,
             "percent_recorded": 100, "distance_meter": 10000,
             "zone_durations": {"zone_zero_milli": 300000, "zone_one_milli": 600000, "zone_two_milli": 1200000,
                                "zone_three_milli": 900000, "zone_four_milli": 480000, "zone_five_milli": 120000}}},
  {"id": "00000000-0000-4000-8000-000000004102", "start": "2025-03-20T10:00:00.000Z",
   "end": "2025-03-20T10:30:00.000Z", "timezone_offset": "+09:00", "sport_name": "yoga",
   "score_state": "UNSCORABLE"}
]$$::jsonb) r;

select cycle_id, day, day_rule, main_sleep_id is not null as has_main_sleep, main_sleep_length, is_primary
from whoop.stg_cycle_day where user_id = 4004 order by cycle_id;
select cycle_id, start_local, end_local, cycle_complete, score_state, day_strain, kcal
from whoop.stg_cycle where user_id = 4004 order by cycle_id;
select sleep_id, wake_date, nap, score_state, hours_in_bed, hours_asleep, light_sleep_hours, slow_wave_sleep_hours,
       rem_sleep_hours, sleep_need_hours, respiratory_rate
from whoop.stg_sleep where user_id = 4004 order by start;
select cycle_id, score_state, recovery_score, recovery_zone, hrv_rmssd_milli
from whoop.stg_recovery where user_id = 4004 order by cycle_id;
select cycle_id, sport_name, score_state, duration_minutes, strain, kcal, distance_km,
       zone_0_minutes, zone_1_minutes, zone_2_minutes, zone_3_minutes, zone_4_minutes, zone_5_minutes
from whoop.stg_workout where user_id = 4004 order by start;

-- jsonb_number() gives what #>> and ::double precision give: integers on
-- both sides of 2^53, fractions, a number beyond bigint, a string, JSON
-- null, a missing key, and steps through an array, a scalar or a string.
select p, d, whoop_internal.jsonb_number(d, p) as number,
       float8send(whoop_internal.jsonb_number(d, p))
           is not distinct from float8send((d #>> string_to_array(p, '.'))::double precision) as same_bits
from (values ('score.a', '{"score": {"a": 28800000}}'::jsonb),
             ('score.a', '{"score": {"a": -9007199254740992}}'),
             ('score.a', '{"score": {"a": 9007199254740993}}'),
             ('score.a', '{"score": {"a": 14.2734375}}'),
             ('score.a', '{"score": {"a": 96.0}}'),
             ('score.a', '{"score": {"a": 0.1}}'),
             ('score.a', '{"score": {"a": -0}}'),
             ('score.a', '{"score": {"a": 1e-7}}'),
             ('score.a', '{"score": {"a": 123456789012345678901234567890}}'),
             ('score.a', '{"score": {"a": "12.5"}}'),
             ('score.a', '{"score": {"a": null}}'),
             ('score.a', '{"score": {"b": 1}}'),
             ('score.a', '{"score": [1, 2]}'),
             ('score.a', '{"score": 5}'),
             ('score.a', '{"score": "a"}'),
             ('score', '[1]'),
             ('score.a.b', '{"score": {"a": {"b": 2.5}}}')) v(p, d);
-- and the same bits for 100,000 numbers of every size and precision
select setseed(0.5);
select count(*) as numbers,
       count(*) filter (where float8send(whoop_internal.jsonb_number(d, 'x'))
                              is distinct from float8send((d ->> 'x')::double precision)) as different
from (select jsonb_build_object('x', round(((random() - 0.5) * 10 ^ (g % 40 - 12))::numeric, g % 17)) as d
      from generate_series(1, 100000) g) v;
-- the cast's errors, word for word: a boolean, a non-numeric string, an
-- object, a number beyond double precision
select ('{"a": true}'::jsonb ->> 'a')::double precision;
select whoop_internal.jsonb_number('{"a": true}', 'a');
select whoop_internal.jsonb_number('{"a": "abc"}', 'a');
select whoop_internal.jsonb_number('{"a": {"b": 1}}', 'a');
select ('{"a": 1e309}'::jsonb ->> 'a')::double precision;
select whoop_internal.jsonb_number('{"a": 1e309}', 'a');
select whoop_internal.jsonb_number('{"a": 1}', 'a.b.c.d.e.f.g.h.i');
