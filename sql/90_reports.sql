-- Reports: the daily summary, the psql report and the HTML report for member 4004.
select day, name, weekday, recovery, recovery_zone, hrv_ms, resting_hr, hours_asleep, day_strain,
       target_strain, strain_gap, workout_count, momentum_category, gap_category, overtraining_risk,
       load_zone, cycle_complete
from whoop.daily_summary where user_id = 4004 order by day;
-- The last 7 days of the member's data (a NULL user_id: every member); an unknown member.
select * from whoop.report(4004, 7);
select * from whoop.report(999999, 7);
-- Any number of days: at most the member's whole history, never a date out of range.
select * from whoop.report(4004, 2147483647) limit 1;
select substring(h from '<p class="sub">(.*?)</p>') as html_range from whoop.report_html(4004, 2147483647) h;
-- The numbers of that report: two dates give those days, both included.
\x on
select * from whoop.report_kpis(4004, '2025-03-16', '2025-03-22');
\x off
-- A range as Grafana gives it: a day counts when its 00:00 lies in the range, so noon leaves 03-20 out.
select recovery_days, strain_days, mean_day_strain, latest_recovery_day
from whoop.report_kpis(4004, '2025-03-20T12:00:00Z', '2025-03-22T00:00:00Z');
-- No day in the range: one row of zero counts and no means.
select recovery_days, green_days, risk_days, mean_recovery is null as no_mean, latest_recovery_day, season
from whoop.report_kpis(4004, '2025-03-23', '2025-04-30');
-- Schema whoop keeps the reports and their numbers; the drawing helpers are internal.
select p.oid::regprocedure from pg_proc p
where p.pronamespace in ('whoop'::regnamespace, 'whoop_internal'::regnamespace)
  and (p.proname like 'report%' or p.proname = 'html_escape')
order by p.oid::regprocedure::text;
\set VERBOSITY terse
select * from whoop.report(4004, 0);
\set VERBOSITY default
-- Text for HTML: the five special characters become references.
select whoop_internal.html_escape($$<p class="x">Tom & 'Jerry'</p>$$),
       whoop_internal.html_escape(null) is null as null_stays_null;
-- One self-contained page: four inline SVG charts, no scripts, no external resources.
select left(whoop.report_html(4004, 30), 15) as doctype,
       (length(h) - length(replace(h, '<svg', ''))) / 4 as svg_charts,
       (length(h) - length(replace(h, '<table', ''))) / 6 as tables,
       h like '%<h1>Kim Park</h1>%' as names_the_member,
       h ~* '<script|src=|href=|url\(|@import' as loads_or_runs_anything
from whoop.report_html(4004, 30) h;
\set VERBOSITY terse
select whoop.report_html(999999);
select whoop.report_html(4004, -1);
\set VERBOSITY default
-- whoop_reader may read the summary and run the reports.
set role whoop_reader;
select count(*) from whoop.daily_summary where user_id = 4004;
select count(*) > 5 as report_lines from whoop.report(4004);
select mean_recovery from whoop.report_kpis(4004, '2025-03-16', '2025-03-22');
select length(whoop.report_html(4004)) > 10000 as html_report;
reset role;
