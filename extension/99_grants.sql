-- 99_grants.sql: who may do what -- every grant and revoke of the
-- extension, in one place.
--
-- whoop_reader is the role dashboards (Grafana) and analysts connect as, or
-- are granted: it reads the marts and the metrics and nothing else -- not
-- the raw layer, not the sync state, not the accounts or their tokens, not
-- the logs.  Roles belong to the cluster, not to a database or an
-- extension: whoop_reader is created here only if missing, and it outlives
-- DROP EXTENSION (its grants go with the objects; drop the role yourself
-- once no database uses it).

do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'whoop_reader') then
        create role whoop_reader nologin;
        comment on role whoop_reader is
            'whoop_fdw: reads the warehouse marts and metrics and nothing else (GRANT whoop_reader TO a login role)';
    end if;
end;
$$;

-- whoop_webhook is what the webhook receiver (whoop-webhookd) logs in as,
-- through a login role it is granted to: it may hand deliveries to
-- whoop.receive_webhook() -- which checks them and writes the queue with
-- the extension owner's rights -- and nothing else; it reads nothing.  Like
-- whoop_reader it is created only if missing and outlives the extension.
--upgrade 1.0--1.1 begin
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'whoop_webhook') then
        create role whoop_webhook nologin;
        comment on role whoop_webhook is
            'whoop_fdw: may call whoop.receive_webhook() and nothing else (GRANT whoop_webhook TO the role whoop-webhookd logs in as)';
    end if;
end;
$$;
--upgrade 1.0--1.1 end

-- The token table: no role but its owner (the extension owner) may read it.
revoke all on whoop_internal.account from public;

-- Anyone may list the accounts they may use (the view filters by role and
-- shows no tokens).
grant select on whoop.accounts to public;
--upgrade 1.0--1.1 begin
grant select on whoop.account_freshness to public;
--upgrade 1.0--1.1 end

-- The internals are not secret (the token table and the operations have
-- their own revokes): the public functions call them by name, so every role
-- that may call those needs the schema.
--upgrade 1.0--1.1 begin
grant usage on schema whoop_internal to public;
--upgrade 1.0--1.1 end

grant usage on schema whoop to whoop_reader;
-- (replayed by the upgrade, which recreates autonomic_balance, seasonal_adaptation and daily_summary)
--upgrade 1.0--1.1 begin
grant select on
    whoop.dim_user, whoop.dim_date, whoop.fact_daily_recovery, whoop.fact_daily_strain,
    whoop.recovery_momentum, whoop.strain_recovery_efficiency, whoop.training_readiness_gap,
    whoop.recovery_volatility, whoop.autonomic_balance, whoop.seasonal_adaptation,
    whoop.training_load, whoop.daily_summary
to whoop_reader;
--upgrade 1.0--1.1 end

-- whoop.report_kpis() and whoop.report_html() run with the caller's rights
-- and read the marts and metrics through this view of them.
--upgrade 1.0--1.1 begin
grant select on whoop_internal.report_days to whoop_reader;
--upgrade 1.0--1.1 end

-- The operations change data or reach outside the database: only the
-- extension owner (and roles it grants them to) may run them.
--upgrade 1.0--1.1 begin
revoke execute on function whoop.refresh(bigint, boolean) from public;
--upgrade 1.0--1.1 end
revoke execute on function whoop.check_quality(bigint) from public;
revoke execute on procedure whoop.run_pipeline(name, boolean) from public;
revoke execute on function whoop.schedule(text) from public;
revoke execute on function whoop.unschedule() from public;
revoke execute on function whoop_internal.cron_call(text) from public;
revoke execute on function whoop_internal.pipeline_run_alive(integer, timestamptz, timestamptz) from public;
--upgrade 1.0--1.1 begin
revoke execute on function whoop.claim_accounts() from public;
--upgrade 1.0--1.1 end

-- Webhooks: only the receiver's role may hand in deliveries.
--upgrade 1.0--1.1 begin
revoke execute on function whoop.receive_webhook(name, text, text, bytea) from public;
grant usage on schema whoop to whoop_webhook;
grant execute on function whoop.receive_webhook(name, text, text, bytea) to whoop_webhook;
--upgrade 1.0--1.1 end

-- Applying webhook events writes the raw layer and calls WHOOP: an
-- operation, like the sync.  The queue's status view is for operators, not
-- for whoop_reader: like the logs, it is the owner's unless granted.
--upgrade 1.0--1.1 begin
revoke execute on procedure whoop.apply_webhooks(name, integer, bigint) from public;
revoke execute on function whoop.requeue_webhooks(name) from public;
revoke execute on function whoop.schedule_webhooks(text) from public;
revoke execute on function whoop.unschedule_webhooks() from public;
revoke all on whoop.webhook_status from public;
--upgrade 1.0--1.1 end
