-- Operations: refresh order and modes, lineage, quality checks, scheduling.
select refresh_order, view_name, upstream from whoop.refresh_plan order by refresh_order;
select object, depends_on, depends_on_type, depth from whoop.lineage
where object in ('whoop.training_load', 'whoop.fact_daily_recovery')
  and depends_on_type not in ('function', 'aggregate')
order by object, depth, depends_on;
-- A materialized view that is not populated is refreshed completely, the others
-- concurrently; a maintained object not built is rebuilt whole (full), the others
-- recompute the queued members (incremental: none here).
refresh materialized view whoop.dim_date with no data;
update whoop_internal.maintained set built = false where name = 'training_load';
select view_name, mode, status, members from whoop.refresh()
where view_name like '%training%' or view_name like 'whoop.dim%' order by 1;
-- The facts and metrics are no longer materialized views.
refresh materialized view whoop.training_load;
-- A failing view is logged, its dependents skipped, the rest refreshed (and a WARNING says so).
insert into whoop.raw_cycle (id, user_id, start, "end", timezone_offset, score_state, created_at, updated_at, record)
values (40049, 4004, '2025-03-23 06:30Z', null, '-04:00', 'SCORED', now(), now(),
        '{"score": {"strain": "twelve"}}');
select view_name, status, error from whoop.refresh() order by refresh_order;
delete from whoop.raw_cycle where id = 40049;
select count(*) filter (where status = 'ok') as ok from whoop.refresh();
-- Quality checks (freshness and future days depend on the clock and on what
-- earlier suites synced: left out here, tested in test/suites/test_warehouse.py).
select check_name, object_name, failing_rows, status, detail
from whoop.check_quality() where check_name not in ('sync_freshness', 'no_future_days');
select count(distinct run_id) >= 1 as kept_in_history from whoop.quality_log;
-- Scheduling needs pg_cron in this database, or dblink to reach it: whichever
-- is missing, a clear error (SQLSTATE 55000) with a hint.
do $$
begin
    perform whoop.schedule();
exception when object_not_in_prerequisite_state then
    raise notice 'whoop.schedule(): SQLSTATE %', sqlstate;
end;
$$;
