-- 74_pipeline.sql: the pipeline -- queued webhook events, sync, refresh and
-- quality checks under one run id, each step recorded in whoop.run_log.

------------------------------------------------------------------------------
-- The pipeline.

create table whoop.run_log (
    id            bigint generated always as identity primary key,
    run_id        bigint not null,
    step          text not null check (step in ('pipeline', 'webhooks', 'sync', 'refresh', 'quality')),
    status        text not null
                  check (status in ('running', 'ok', 'warn', 'failed', 'skipped', 'aborted')),
    started_at    timestamptz not null,
    finished_at   timestamptz,
    duration      interval generated always as (finished_at - started_at) stored,
    row_count     bigint,
    detail        text,
    error         text,
    pid           integer,
    backend_start timestamptz,
    query_start   timestamptz,
    unique (run_id, step)
);
create index on whoop.run_log (status) where status = 'running';
--upgrade 1.0--1.1: alter table whoop.run_log drop constraint run_log_step_check, add constraint run_log_step_check check (step in ('pipeline', 'webhooks', 'sync', 'refresh', 'quality'));
--upgrade 1.0--1.1 begin
-- history travels with pg_dump, like the run ids it is keyed by
select pg_catalog.pg_extension_config_dump('whoop.run_log', '');
select pg_catalog.pg_extension_config_dump('whoop.run_log_id_seq', '');
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
comment on table whoop.run_log is
    'whoop.run_pipeline() runs: one ''pipeline'' row per run and one row per step (webhooks, sync, refresh, quality)';
comment on column whoop.run_log.step is 'pipeline (the run as a whole), webhooks, sync, refresh or quality';
--upgrade 1.0--1.1 end
comment on column whoop.run_log.status is
    'running; ok; warn (quality warnings); failed (see error); skipped (another run was in progress); aborted (the run ended without finishing, e.g. cancelled)';
--upgrade 1.0--1.1 begin
comment on column whoop.run_log.row_count is
    'webhooks: events applied; sync: rows inserted or updated; refresh: rows in all refreshed views; quality: checks run; pipeline: NULL';
--upgrade 1.0--1.1 end
comment on column whoop.run_log.detail is 'a one-line summary of the step';
comment on column whoop.run_log.pid is 'backend running the pipeline (with backend_start and query_start: identifies the CALL)';
comment on column whoop.run_log.backend_start is 'start of that backend';
comment on column whoop.run_log.query_start is 'start of the CALL statement in that backend';

-- A run is alive while the backend that started it is still executing the
-- very statement (same backend start, same statement start).  The pipeline
-- commits between its steps, so no lock can span it; this lease check
-- cannot leak: a cancelled run, a dead session or a session that moved on
-- no longer passes it.
--upgrade 1.0--1.1: alter function whoop.pipeline_run_alive(integer, timestamptz, timestamptz) set schema whoop_internal;

create function whoop_internal.pipeline_run_alive(pid integer, backend_start timestamptz, query_start timestamptz)
returns boolean
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
    select exists (
        select from pg_stat_activity a
        where a.pid = pipeline_run_alive.pid
          and a.backend_start = pipeline_run_alive.backend_start
          and ((a.state = 'active' and a.query_start = pipeline_run_alive.query_start)
               or a.state is null or a.state = 'disabled'))
$$;

comment on function whoop_internal.pipeline_run_alive(integer, timestamptz, timestamptz) is
    'whether the backend that started a pipeline run is still executing that run''s statement (security definer: sees every session)';


-- No SET clause (search_path) here: a procedure with one cannot COMMIT.
-- Every name below is schema-qualified or from pg_catalog.
--upgrade 1.0--1.1 begin
create or replace procedure whoop.run_pipeline(server name default null, full_resync boolean default false)
language plpgsql
as $$
declare
    v_run bigint;
    v_other record;
    v_started timestamptz;
    v_ok bigint;
    v_failed bigint;
    v_rows bigint;
    v_total bigint;
    v_status text;
    v_detail text;
    v_error text;
    v_state text;
    v_msg text;
    v_statuses text[] := '{}';
begin
    -- Inside BEGIN ... COMMIT the first COMMIT below would fail (2D000)
    -- with the run half recorded: refuse at once, saying why.
    perform whoop_internal.assert_outside_transaction_block('whoop.run_pipeline()');
    -- Bad arguments raise here, before a run is recorded (whoop.sync() would
    -- raise for them too, but only once the run has begun).
    if full_resync is null then
        raise exception 'full_resync must be true or false, not NULL'
            using errcode = 'null_value_not_allowed',
                  hint = 'Pass full_resync => true to refetch all history, or leave it out.';
    end if;
    if server is not null and not exists (
            select from pg_foreign_server s
            join pg_foreign_data_wrapper w on w.oid = s.srvfdw
            where s.srvname = server and w.fdwname = 'whoop_fdw') then
        raise exception 'server "%" does not exist or does not use whoop_fdw', server
            using errcode = 'undefined_object',
                  hint = 'Name a server of the whoop_fdw wrapper, or pass NULL for all of them.';
    end if;

    -- Admission: one pipeline at a time.  The transaction-level lock
    -- serialises only this check and is gone at the COMMIT below.
    perform pg_advisory_xact_lock(hashtext('whoop.run_pipeline'));
    update whoop.run_log l
       set status = 'aborted', finished_at = coalesce(l.finished_at, now()),
           error = coalesce(l.error, 'the run ended without finishing (cancelled, failed in sync, or its session ended)')
     where l.status = 'running'
       and l.run_id in (select p.run_id from whoop.run_log p
                        where p.step = 'pipeline' and p.status = 'running'
                          and not whoop_internal.pipeline_run_alive(p.pid, p.backend_start, p.query_start));
    v_run := nextval('whoop_internal.run_id_seq');
    select l.run_id, l.pid, l.started_at into v_other
    from whoop.run_log l
    where l.step = 'pipeline' and l.status = 'running'
    order by l.run_id
    limit 1;
    if found then
        insert into whoop.run_log (run_id, step, status, started_at, finished_at, error, pid)
        values (v_run, 'pipeline', 'skipped', now(), now(),
                format('pipeline run %s is still running (pid %s, since %s)',
                       v_other.run_id, v_other.pid, v_other.started_at),
                pg_backend_pid());
        commit;
        raise notice 'whoop.run_pipeline: run % is still running (pid %), so run % does nothing',
            v_other.run_id, v_other.pid, v_run;
        return;
    end if;
    insert into whoop.run_log (run_id, step, status, started_at, pid, backend_start, query_start)
    select v_run, 'pipeline', 'running', now(), a.pid, a.backend_start, a.query_start
    from pg_stat_activity a
    where a.pid = pg_backend_pid();
    commit;

    -- Step 1: the queued webhook events, so that the sync after them finds
    -- the cycles they marked.  whoop.apply_webhooks() commits per account
    -- and records failures on the events; like the sync below it cannot be
    -- wrapped in an exception block.
    v_started := clock_timestamp();
    insert into whoop.run_log (run_id, step, status, started_at)
    values (v_run, 'webhooks', 'running', v_started);
    commit;
    call whoop.apply_webhooks(server => server, run_id => v_run);
    select count(*) filter (where e.status = 'applied'),
           count(*) filter (where e.status = 'queued'),
           count(*) filter (where e.status = 'dead'),
           string_agg(distinct format('%s/%s: %s', e.server_name, e.user_id, e.last_error), '; ')
               filter (where e.status <> 'applied')
      into v_ok, v_failed, v_total, v_error
    from whoop.webhook_events e
    where e.run_id = v_run;
    v_status := case when v_failed + v_total > 0 then 'failed' else 'ok' end;
    update whoop.run_log l
       set status = v_status, finished_at = clock_timestamp(), row_count = v_ok,
           detail = format('%s webhook events applied, %s failed and queued for a retry, %s dead letters',
                           v_ok, v_failed, v_total),
           error = v_error
     where l.run_id = v_run and l.step = 'webhooks';
    v_statuses := v_statuses || v_status;
    commit;

    -- Step 2: sync.  whoop.sync() commits per account and endpoint and logs
    -- each in whoop.sync_log under our run id; it does not raise for an
    -- endpoint that fails.  It cannot be wrapped in an exception block (no
    -- COMMIT inside a subtransaction): should it raise anyway, this run
    -- stops here and the next run marks it aborted.
    v_started := clock_timestamp();
    insert into whoop.run_log (run_id, step, status, started_at)
    values (v_run, 'sync', 'running', v_started);
    commit;
    call whoop.sync(server => server, "full" => full_resync, run_id => v_run);
    select count(*) filter (where s.status = 'ok'), count(*) filter (where s.status = 'failed'),
           coalesce(sum(coalesce(s.rows_inserted, 0) + coalesce(s.rows_updated, 0)), 0),
           string_agg(format('%s/%s/%s: %s', s.server_name, s.user_id, s.endpoint, s.error), '; '
                      order by s.server_name, s.user_id, s.endpoint) filter (where s.status = 'failed')
      into v_ok, v_failed, v_rows, v_error
    from whoop.sync_log s
    where s.run_id = v_run;
    v_status := case when v_failed > 0 then 'failed' else 'ok' end;
    update whoop.run_log l
       set status = v_status, finished_at = clock_timestamp(), row_count = v_rows,
           detail = format('%s account endpoints synced, %s failed, %s rows inserted or updated',
                           v_ok, v_failed, v_rows),
           error = v_error
     where l.run_id = v_run and l.step = 'sync';
    v_statuses := v_statuses || v_status;
    commit;

    -- Step 3: refresh, after a failed sync too (the views then show what
    -- the raw layer has).
    v_started := clock_timestamp();
    insert into whoop.run_log (run_id, step, status, started_at)
    values (v_run, 'refresh', 'running', v_started);
    commit;
    begin
        select count(*) filter (where r.status = 'ok'),
               count(*) filter (where r.status <> 'ok'),
               coalesce(sum(r.row_count), 0),
               string_agg(r.view_name || ' ' || r.status || ': ' || r.error, '; ' order by r.refresh_order)
                   filter (where r.status <> 'ok'),
               count(*)
          into v_ok, v_failed, v_rows, v_error, v_total
        from whoop.refresh(v_run) r;
        v_status := case when v_failed > 0 then 'failed' else 'ok' end;
        v_detail := format('%s of %s views refreshed', v_ok, v_total);
    exception when others then
        get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text;
        v_status := 'failed';
        v_rows := null;
        v_detail := 'refresh failed';
        v_error := v_state || ': ' || v_msg;
    end;
    update whoop.run_log l
       set status = v_status, finished_at = clock_timestamp(), row_count = v_rows,
           detail = v_detail, error = v_error
     where l.run_id = v_run and l.step = 'refresh';
    v_statuses := v_statuses || v_status;
    commit;

    -- Step 4: quality checks.
    v_started := clock_timestamp();
    insert into whoop.run_log (run_id, step, status, started_at)
    values (v_run, 'quality', 'running', v_started);
    commit;
    begin
        select count(*),
               count(*) filter (where q.status = 'warn'),
               count(*) filter (where q.status = 'fail'),
               string_agg(q.check_name || ' on ' || q.object_name || ': ' || q.failing_rows
                          || ' rows (' || coalesce(q.detail, '') || ')', '; ')
                   filter (where q.status = 'fail')
          into v_total, v_ok, v_failed, v_error
        from whoop.check_quality(v_run) q;
        v_status := case when v_failed > 0 then 'failed' when v_ok > 0 then 'warn' else 'ok' end;
        v_rows := v_total;
        v_detail := format('%s checks: %s pass, %s warn, %s fail', v_total, v_total - v_ok - v_failed,
                           v_ok, v_failed);
    exception when others then
        get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text;
        v_status := 'failed';
        v_rows := null;
        v_detail := 'quality checks failed to run';
        v_error := v_state || ': ' || v_msg;
    end;
    update whoop.run_log l
       set status = v_status, finished_at = clock_timestamp(), row_count = v_rows,
           detail = v_detail, error = v_error
     where l.run_id = v_run and l.step = 'quality';
    v_statuses := v_statuses || v_status;

    v_status := case when 'failed' = any (v_statuses) then 'failed'
                     when 'warn' = any (v_statuses) then 'warn'
                     else 'ok' end;
    update whoop.run_log l
       set status = v_status, finished_at = clock_timestamp(),
           detail = format('webhooks %s, sync %s, refresh %s, quality %s',
                           v_statuses[1], v_statuses[2], v_statuses[3], v_statuses[4])
     where l.run_id = v_run and l.step = 'pipeline';
    commit;
    if v_status <> 'ok' then
        raise notice 'whoop.run_pipeline: run % finished with status %: see whoop.run_log', v_run, v_status;
    end if;
end;
$$;

comment on procedure whoop.run_pipeline(name, boolean) is
    'queued webhook events -> sync -> refresh -> quality checks under one run id, each step recorded in whoop.run_log (committed as it goes); a step that fails does not stop the next; a second pipeline while one runs records itself as skipped and returns with a NOTICE. Call it outside a transaction block';
--upgrade 1.0--1.1 end
