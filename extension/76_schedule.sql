-- 76_schedule.sql: scheduling the pipeline, and the webhook applier, with
-- pg_cron (optional: nothing here needs pg_cron installed).

--upgrade 1.0--1.1: alter function whoop.pipeline_job_name() set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.cron_call(text) set schema whoop_internal;

create function whoop_internal.pipeline_job_name()
returns text
language sql stable
as $$ select 'whoop_pipeline_' || current_database() $$;

comment on function whoop_internal.pipeline_job_name() is
    'name of the pg_cron job of this database''s pipeline (pg_cron serves all databases of a cluster, so the name carries the database)';

--upgrade 1.0--1.1 begin
create function whoop_internal.webhooks_job_name()
returns text
language sql stable
as $$ select 'whoop_webhooks_' || current_database() $$;

comment on function whoop_internal.webhooks_job_name() is
    'name of the pg_cron job that applies this database''s webhook events (see pipeline_job_name)';
--upgrade 1.0--1.1 end

-- cron_call runs a query against pg_cron: here when pg_cron lives in this
-- database, otherwise through dblink (when installed here) in pg_cron's
-- database.  It raises a clear error when neither can work.
create function whoop_internal.cron_call(query text, out result text)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_cron_db text := current_setting('cron.database_name', true);
    v_dblink name;
    v_conn text;
    v_socket text;
    v_state text;
    v_msg text;
begin
    if coalesce(current_setting('shared_preload_libraries', true), '') !~ '(^|[\s,"])pg_cron([\s,"]|$)'
       or v_cron_db is null then
        raise exception 'pg_cron is not available in this cluster'
            using errcode = 'object_not_in_prerequisite_state',
                  detail = 'whoop.schedule() creates a pg_cron job; pg_cron must be in shared_preload_libraries.',
                  hint = 'Install pg_cron (Debian: apt-get install postgresql-15-cron), add it to shared_preload_libraries, restart, and CREATE EXTENSION pg_cron in the database named by cron.database_name. Or call CALL whoop.run_pipeline() from any other scheduler.';
    end if;

    if v_cron_db = current_database() then
        if not exists (select from pg_extension where extname = 'pg_cron') then
            raise exception 'pg_cron is loaded but the extension is not created in database "%"', v_cron_db
                using errcode = 'object_not_in_prerequisite_state',
                      hint = 'Run CREATE EXTENSION pg_cron; in this database.';
        end if;
        execute query into result;
        return;
    end if;

    select n.nspname into v_dblink
    from pg_extension x join pg_namespace n on n.oid = x.extnamespace
    where x.extname = 'dblink';
    if v_dblink is null then
        raise exception 'pg_cron runs in database "%", not in "%"', v_cron_db, current_database()
            using errcode = 'object_not_in_prerequisite_state',
                  detail = 'pg_cron jobs can only be created from the database named by cron.database_name.',
                  hint = format('Run in database %s: %s; -- or CREATE EXTENSION dblink here and call this function again.',
                                v_cron_db, regexp_replace(query, '::\w+$', ''));
    end if;
    v_socket := split_part(current_setting('unix_socket_directories'), ',', 1);
    v_conn := format('dbname=%s port=%s user=%s',
                     quote_literal(v_cron_db), current_setting('port'), quote_literal(current_user))
              || case when trim(v_socket) <> '' then ' host=' || quote_literal(trim(v_socket)) else '' end;
    begin
        execute format('select r from %I.dblink($1, $2) as t(r text)', v_dblink)
            into result using v_conn, query;
    exception when others then
        get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text;
        raise exception 'pg_cron in database "%" (through dblink): %', v_cron_db, v_msg
            using errcode = v_state,
                  hint = format('Run in database %s: %s;', v_cron_db, regexp_replace(query, '::\w+$', ''));
    end;
end;
$$;

comment on function whoop_internal.cron_call(text) is
    'runs a query in pg_cron''s database (here, or through dblink when pg_cron lives in another database); clear error and hint otherwise';

--upgrade 1.0--1.1 begin
create or replace function whoop.schedule(cron text default '0 */3 * * *')
returns bigint
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_query text;
begin
    if cron is null or btrim(cron) = '' then
        raise exception 'a cron schedule is required'
            using errcode = 'invalid_parameter_value',
                  hint = 'For example whoop.schedule(''0 */3 * * *'') for every three hours.';
    end if;
    if current_setting('cron.database_name', true) = current_database() then
        v_query := format('select cron.schedule(%L, %L, %L)::text',
                          whoop_internal.pipeline_job_name(), cron, 'CALL whoop.run_pipeline()');
    else
        v_query := format('select cron.schedule_in_database(%L, %L, %L, %L)::text',
                          whoop_internal.pipeline_job_name(), cron, 'CALL whoop.run_pipeline()', current_database());
    end if;
    return whoop_internal.cron_call(v_query)::bigint;
end;
$$;

comment on function whoop.schedule(text) is
    'schedules CALL whoop.run_pipeline() in this database as pg_cron job whoop_pipeline_<database> (default every 3 hours); calling it again replaces the schedule; returns the job id. Needs pg_cron; when pg_cron lives in another database, needs dblink here';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
create or replace function whoop.unschedule()
returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    return whoop_internal.cron_call(format(
        'select (select count(cron.unschedule(jobid)) from cron.job where jobname = %L and username = current_user) > 0',
        whoop_internal.pipeline_job_name()))::boolean;
end;
$$;

comment on function whoop.unschedule() is
    'removes this database''s pipeline job from pg_cron; true if there was one, false if not';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
-- The webhook applier has a job of its own: events should not wait for the
-- next pipeline (hours), and applying a minute's events costs a request or
-- two each, not a sync.
create function whoop.schedule_webhooks(cron text default '* * * * *')
returns bigint
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_query text;
begin
    if cron is null or btrim(cron) = '' then
        raise exception 'a cron schedule is required'
            using errcode = 'invalid_parameter_value',
                  hint = 'For example whoop.schedule_webhooks(''* * * * *'') for every minute.';
    end if;
    if current_setting('cron.database_name', true) = current_database() then
        v_query := format('select cron.schedule(%L, %L, %L)::text',
                          whoop_internal.webhooks_job_name(), cron, 'CALL whoop.apply_webhooks()');
    else
        v_query := format('select cron.schedule_in_database(%L, %L, %L, %L)::text',
                          whoop_internal.webhooks_job_name(), cron, 'CALL whoop.apply_webhooks()',
                          current_database());
    end if;
    return whoop_internal.cron_call(v_query)::bigint;
end;
$$;

comment on function whoop.schedule_webhooks(text) is
    'schedules CALL whoop.apply_webhooks() in this database as pg_cron job whoop_webhooks_<database> (default every minute; pg_cron 1.5 and later also take ''20 seconds''); calling it again replaces the schedule; returns the job id. Needs pg_cron; when pg_cron lives in another database, needs dblink here';

create function whoop.unschedule_webhooks()
returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    return whoop_internal.cron_call(format(
        'select (select count(cron.unschedule(jobid)) from cron.job where jobname = %L and username = current_user) > 0',
        whoop_internal.webhooks_job_name()))::boolean;
end;
$$;

comment on function whoop.unschedule_webhooks() is
    'removes this database''s webhook applier job from pg_cron; true if there was one, false if not';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
-- pg_cron keeps its jobs in its own tables, which DROP EXTENSION whoop_fdw
-- does not reach: a scheduled pipeline would go on calling a procedure that
-- no longer exists.  An event trigger cannot run after its own extension is
-- dropped, so it refuses the drop up front while the job exists.  The tag
-- does not say which extension is being dropped; the statement text does.
create function whoop_internal.refuse_drop_while_scheduled()
returns event_trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_jobs text;
begin
    if current_query() !~* 'drop\s+extension\M[^;]*\mwhoop_fdw\M' then
        return;
    end if;
    begin
        v_jobs := whoop_internal.cron_call(format(
            'select string_agg(jobname, '', '' order by jobname) from cron.job '
            'where jobname in (%L, %L) and database = %L',
            whoop_internal.pipeline_job_name(), whoop_internal.webhooks_job_name(),
            current_database()));
    exception when others then
        return;                 -- pg_cron unusable here: there is no job to leave behind
    end;
    if v_jobs is not null then
        raise exception 'whoop_fdw is still scheduled in pg_cron: job %', v_jobs
            using errcode = 'dependent_objects_still_exist',
                  detail = 'Dropping the extension would leave the job calling a procedure that no longer exists.',
                  hint = format('Run %s first, then drop the extension.',
                                concat_ws(' and ',
                                          case when strpos(v_jobs, whoop_internal.pipeline_job_name()) > 0
                                               then 'SELECT whoop.unschedule();' end,
                                          case when strpos(v_jobs, whoop_internal.webhooks_job_name()) > 0
                                               then 'SELECT whoop.unschedule_webhooks();' end));
    end if;
end
$$;

comment on function whoop_internal.refuse_drop_while_scheduled() is
    'event trigger function: refuses DROP EXTENSION whoop_fdw while this database''s pipeline or webhook applier job exists in pg_cron';

create event trigger whoop_refuse_drop_while_scheduled
    on ddl_command_start
    when tag in ('DROP EXTENSION')
    execute function whoop_internal.refuse_drop_while_scheduled();

comment on event trigger whoop_refuse_drop_while_scheduled is
    'whoop_fdw: DROP EXTENSION whoop_fdw is refused while the pg_cron job of whoop.schedule() or whoop.schedule_webhooks() exists (unschedule first)';
--upgrade 1.0--1.1 end
