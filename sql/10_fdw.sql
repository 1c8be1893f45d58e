-- The foreign data wrapper against the bundled simulator (two athletes, 120
-- days, seed 42, frozen at 2026-06-30T12:00:00Z): options, IMPORT FOREIGN
-- SCHEMA, linking accounts, scans, pushdown and EXPLAIN.
\getenv sim_url WHOOP_SIM_URL
\getenv refresh_token_1 WHOOP_SIM_REFRESH_TOKEN_1
\getenv refresh_token_2 WHOOP_SIM_REFRESH_TOKEN_2
\getenv code_1 WHOOP_SIM_CODE_1
\set api_url :sim_url '/developer'
\set oauth_url :sim_url '/oauth/oauth2'
\set VERBOSITY default
set timezone = 'UTC';

-- option validation: unknown options name the valid ones
create server bad foreign data wrapper whoop_fdw options (apiurl 'https://x.example');
create server bad foreign data wrapper whoop_fdw options (client_id 'x');
create server bad foreign data wrapper whoop_fdw options (page_size '26');
create server bad foreign data wrapper whoop_fdw options (page_size '0');
create server bad foreign data wrapper whoop_fdw options (page_size 'ten');
create server bad foreign data wrapper whoop_fdw options (timeout_ms '-1');
create server bad foreign data wrapper whoop_fdw options (connect_timeout_ms '0');
create server bad foreign data wrapper whoop_fdw options (max_retries '21');
create server bad foreign data wrapper whoop_fdw options (api_url 'http://api.example.com/developer');
create server bad foreign data wrapper whoop_fdw options (api_url 'http://127.example.com/developer');
create server bad foreign data wrapper whoop_fdw options (oauth_url 'file:///etc/passwd');
create server bad foreign data wrapper whoop_fdw options (api_url 'ftp://127.0.0.1/x');
create server bad foreign data wrapper whoop_fdw options (api_url 'https://user:pw@api.example.com/');
create server bad foreign data wrapper whoop_fdw options (api_url 'https://api.example.com/?x=1');
create server bad foreign data wrapper whoop_fdw options (api_url 'not a url');
create server bad foreign data wrapper whoop_fdw options (update_window 'soon');
create server bad foreign data wrapper whoop_fdw options (update_window '-3 days');
create server bad foreign data wrapper whoop_fdw options (page_size '5', page_size '6');
create foreign data wrapper other_fdw handler whoop_internal.whoop_fdw_handler
    validator whoop_internal.whoop_fdw_validator options (api_url 'https://x.example');

-- the defaults point at WHOOP; loopback http is fine for the simulator
create server real_whoop foreign data wrapper whoop_fdw;
create server ipv6_sim foreign data wrapper whoop_fdw options (api_url 'http://[::1]:9/developer');
create server sim foreign data wrapper whoop_fdw
    options (api_url :'api_url', oauth_url :'oauth_url', timeout_ms '10000');
create user mapping for current_user server sim options (client_id 'sim-client', client_secret 'sim-secret');
create user mapping for public server real_whoop options (client_id 'x', client_sekret 'y');
create user mapping for public server real_whoop options (client_id '');

-- IMPORT FOREIGN SCHEMA: the remote schema is "whoop"
create schema api;
import foreign schema whoop_v2 from server sim into api;
import foreign schema whoop from server sim into api options (prefix 'x');
import foreign schema whoop from server sim into api options (update_window 'weekly');
import foreign schema whoop from server sim into api;
select foreign_table_name from information_schema.foreign_tables
where foreign_table_schema = 'api' order by 1;
\d api.cycle
\d api.sleep
\d api.workout
select c.relname, array_agg(a.attname::text order by a.attnum) as columns
from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attnum > 0
where c.relnamespace = 'api'::regnamespace and c.relname in ('recovery', 'profile', 'body_measurement')
group by c.relname order by 1;

create schema only_two;
import foreign schema whoop limit to (cycle, recovery, nonexistent) from server sim into only_two;
import foreign schema whoop limit to (cycle, recovery) from server sim into only_two;
select foreign_table_name from information_schema.foreign_tables
where foreign_table_schema = 'only_two' order by 1;
-- with table_prefix, LIMIT TO names the tables as imported (EXCEPT takes either name)
create schema prefixed;
import foreign schema whoop limit to (cycle) from server sim into prefixed
    options (table_prefix 'p_');
import foreign schema whoop limit to (p_cycle, p_sleep) from server sim into prefixed
    options (table_prefix 'p_');
import foreign schema whoop except (p_cycles) from server sim into prefixed
    options (table_prefix 'p_');
select foreign_table_name from information_schema.foreign_tables
where foreign_table_schema = 'prefixed' order by 1;
create schema all_but_two;
import foreign schema whoop except (sleep, workout) from server sim into all_but_two
    options (update_window '14 days', table_prefix 'w_');
select c.relname, ft.ftoptions from pg_foreign_table ft join pg_class c on c.oid = ft.ftrelid
where c.relnamespace = 'all_but_two'::regnamespace order by 1;

-- linking accounts
select count(*) from whoop.accounts;
select * from api.cycle limit 1;
select whoop.add_account('sim', :'refresh_token_1');
select whoop.connect_account('sim', :'code_1', 'https://localhost/callback');
select whoop.add_account('sim', :'refresh_token_1');
select whoop.connect_account('sim', 'not-a-code', 'https://localhost/callback');
select whoop.add_account('sim', :'refresh_token_2');
select whoop.add_account('nosuchserver', 'x');
select whoop.add_account('real_whoop', 'x');
-- arguments WHOOP would refuse are refused before anything is sent
select whoop.add_account('sim', null);
select whoop.add_account(null, 'x');
select whoop.add_account('sim', '');
select whoop.add_account('sim', E'token\n');
select whoop.connect_account('sim', 'code', null);
select whoop.connect_account('sim', 'code', 'javascript:alert(1)');
select whoop.disconnect_account('sim', null);
select whoop.authorize_url('sim', '');
select whoop.authorize_url('sim', 'http://example.com/callback');
select whoop.authorize_url('sim', 'https://example.com/callback#fragment');
select whoop.authorize_url(null, 'https://localhost/callback');
select server_name, user_id, owner, email, first_name, last_name, status, scope
from whoop.accounts order by user_id;
select regexp_replace(whoop.authorize_url('sim', 'https://localhost/callback', 'abcdefgh'),
                      '127\.0\.0\.1:[0-9]+', 'SIM');
select whoop.authorize_url('sim', 'https://localhost/callback', 'abc');
select length(regexp_replace(whoop.authorize_url('sim', 'https://localhost/callback'),
                             '.*state=', ''));

-- scans: every record of every endpoint, typed and flattened
select count(*), count(distinct user_id), min(start), max(start) from api.cycle;
select count(*), count(*) filter (where score_state = 'SCORED') as scored,
       round(avg(recovery_score)::numeric, 4) as avg_recovery from api.recovery;
select count(*), count(*) filter (where nap) as naps from api.sleep;
select count(*), count(distinct sport_name) > 5 as many_sports from api.workout;
select user_id, email, first_name, last_name from api.profile order by user_id;
select user_id, height_meter, weight_kilogram, max_heart_rate from api.body_measurement order by user_id;
select id, user_id, start, "end", timezone_offset, score_state, strain, kilojoule,
       average_heart_rate, max_heart_rate
from api.cycle order by start desc, user_id limit 4;
select cycle_id, sleep_id, score_state, user_calibrating, recovery_score, resting_heart_rate,
       hrv_rmssd_milli, spo2_percentage, skin_temp_celsius
from api.recovery where user_id = 20377465 order by created_at desc limit 3;
select id, nap, score_state, total_in_bed_time_milli, total_light_sleep_time_milli,
       total_slow_wave_sleep_time_milli, total_rem_sleep_time_milli, baseline_milli,
       respiratory_rate, sleep_performance_percentage
from api.sleep where user_id = 13230394 order by start desc limit 3;
select sport_name, strain, zone_zero_milli + zone_one_milli + zone_two_milli + zone_three_milli
       + zone_four_milli + zone_five_milli = extract(epoch from "end" - start) * 1000 as zones_add_up
from api.workout where user_id = 13230394 order by start desc limit 3;
select raw->'score'->>'strain' = strain::text as raw_matches, raw ? 'id'
from api.cycle where strain is not null limit 1;

-- pushdown: the requests are shown, every qual is still checked locally
explain (verbose, costs off)
select id, start from api.cycle where start >= '2026-06-01' and start < '2026-06-15';
explain (verbose, costs off)
select id from api.cycle where "end" > '2026-06-20' and user_id = 13230394;
explain (verbose, costs off)
select * from api.cycle where id = 4126600000;
explain (verbose, costs off)
select * from api.recovery where cycle_id in (4126600000, 4126400000);
explain (verbose, costs off)
select * from api.workout where start > '2026-06-28' and start < '2026-06-01';
explain (verbose, costs off)
select * from api.sleep where user_id = 1;
explain (verbose, costs off)
select id from api.cycle limit 5;
explain (verbose, costs off)
select updated_at from api.cycle where updated_at >= '2026-06-20';
explain (verbose, costs off)
select updated_at from all_but_two.w_cycle where updated_at >= '2026-06-20';
-- what no row can match sends nothing; what the API cannot express is not sent
explain (costs off)
select * from api.cycle where start > 'infinity';
explain (costs off)
select * from api.cycle where start < 'infinity';
explain (costs off)
select * from api.cycle where start < '-infinity';
explain (costs off)
select * from api.cycle where start >= '2026-06-01' and start < '10000-01-01';
explain (costs off)
select * from api.cycle where start >= '0100-01-01 BC';
explain (costs off)
select * from api.cycle where id = -1;
explain (costs off)
select * from api.sleep where id = '00000000-0000-0000-0000-000000000000';
explain (costs off)
select * from api.profile;
select count(*) from api.cycle where start >= '2026-06-01' and start < '2026-06-15';
select count(*) from (select * from api.cycle offset 0) c
where start >= '2026-06-01' and start < '2026-06-15';
select id, score_state from api.cycle where id = 4126600000;
select count(*) from api.cycle where id = 1;
select count(*) from api.recovery where cycle_id in (4126600000, 4126400000);
select count(*) from api.workout where start > '2026-06-28' and start < '2026-06-01';
select count(*) from api.cycle where user_id = 1;
select count(*) from api.cycle where start > 'infinity';
select count(*) from api.cycle where start < 'infinity';
select count(*) from api.cycle where id = -1;
select count(*) from (select id from api.cycle limit 5) s;

-- columns must be fields of the endpoint; tables must name an endpoint
create foreign table api.typo (id bigint, strian double precision) server sim options (endpoint 'cycle');
select * from api.typo;
create foreign table api.unknown (id bigint) server sim;
select * from api.unknown;
create foreign table api.bad_endpoint (id bigint) server sim options (endpoint 'heart_rate');
create foreign table api.cycle_as_text (id text, start text, strain numeric(6,2), raw text)
    server sim options (endpoint 'cycle');
select id, start, strain, left(raw, 8) from api.cycle_as_text order by start desc limit 2;
