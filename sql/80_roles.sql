-- whoop_reader reads the marts and the metrics, and nothing else.
select rolname, rolcanlogin, rolsuper, rolinherit from pg_roles where rolname = 'whoop_reader';
select c.relname, has_table_privilege('whoop_reader', c.oid, 'select') as can_read
from pg_class c
where c.relnamespace = 'whoop'::regnamespace and c.relkind in ('r', 'v', 'm')
  and c.relname in ('dim_user', 'dim_date', 'fact_daily_recovery', 'fact_daily_strain', 'recovery_momentum',
                    'strain_recovery_efficiency', 'training_readiness_gap', 'recovery_volatility',
                    'autonomic_balance', 'seasonal_adaptation', 'training_load', 'raw_cycle', 'raw_recovery',
                    'raw_profile', 'sync_state', 'sync_log', 'run_log', 'refresh_log', 'quality_log',
                    'user_settings', 'stg_cycle', 'daily_scores', 'lineage')
order by can_read desc, c.relname;
select p.oid::regprocedure as operation, has_function_privilege('whoop_reader', p.oid, 'execute') as can_run
from pg_proc p
where p.oid in ('whoop.refresh(bigint, boolean)'::regprocedure, 'whoop.check_quality(bigint)'::regprocedure,
                'whoop.run_pipeline(name, boolean)'::regprocedure, 'whoop.schedule(text)'::regprocedure,
                'whoop.unschedule()'::regprocedure)
order by 1::text;
set role whoop_reader;
select count(*) >= 0 as can_read_metrics from whoop.recovery_momentum;
select count(*) from whoop.raw_cycle;
select * from whoop.refresh();
reset role;
