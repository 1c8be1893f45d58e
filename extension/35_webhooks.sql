-- 35_webhooks.sql: WHOOP webhooks -- the queue of received events and the
-- function that receives one.
--
-- WHOOP posts an event (a workout, sleep or recovery updated or deleted)
-- to the app's registered URL.  The receiver that ships with the extension
-- (whoop-webhookd, outside the server) passes each request's signature
-- headers and raw body to whoop.receive_webhook(), which checks the
-- signature with the app's client secret and queues the event durably,
-- once per trace_id, before the receiver answers 2XX.  Applying queued
-- events (fetching the records, tombstones for deletions) is not part of
-- this version: the scheduled sync picks up updated records as before.

--upgrade 1.0--1.1 begin
create table whoop.webhook_events (
    id          bigint generated always as identity primary key,
    server_name name not null,
    trace_id    text not null,
    user_id     bigint not null,
    event_type  text not null
                check (event_type in ('workout.updated', 'workout.deleted',
                                      'sleep.updated', 'sleep.deleted',
                                      'recovery.updated', 'recovery.deleted')),
    record_id   uuid not null,
    signed_at   timestamptz not null,
    received_at timestamptz not null default pg_catalog.now(),
    status      text not null default 'queued' check (status in ('queued')),
    unique (server_name, trace_id)
);

-- the events are data, not schema: a dump keeps them
select pg_catalog.pg_extension_config_dump('whoop.webhook_events', '');
select pg_catalog.pg_extension_config_dump('whoop.webhook_events_id_seq', '');

comment on table whoop.webhook_events is
    'WHOOP webhook events received and verified by whoop.receive_webhook(), one row per delivery trace_id and server';
comment on column whoop.webhook_events.id is
    'arrival order';
comment on column whoop.webhook_events.server_name is
    'the whoop_fdw server (WHOOP app) the event was posted for';
comment on column whoop.webhook_events.trace_id is
    'WHOOP''s id of the delivery; a retried or duplicated delivery has the same one and is stored once';
comment on column whoop.webhook_events.user_id is
    'the WHOOP member whose record changed';
comment on column whoop.webhook_events.event_type is
    'what happened: <workout|sleep|recovery>.<updated|deleted> (creates arrive as updated)';
comment on column whoop.webhook_events.record_id is
    'the record''s id; for recovery.* the id of the sleep the recovery belongs to';
comment on column whoop.webhook_events.signed_at is
    'the X-WHOOP-Signature-Timestamp the signature covers (WHOOP''s send time)';
comment on column whoop.webhook_events.received_at is
    'when the event was queued';
comment on column whoop.webhook_events.status is
    '''queued'': received, not applied (applying events is not part of this version)';

create function whoop.receive_webhook(server name, signature text, "timestamp" text, body bytea)
returns text
language c
security definer
set search_path = pg_catalog, pg_temp
as 'MODULE_PATHNAME', 'whoop_receive_webhook';

comment on function whoop.receive_webhook(name, text, text, bytea) is
    'checks a WHOOP webhook (X-WHOOP-Signature, X-WHOOP-Signature-Timestamp, raw body) and queues its event in whoop.webhook_events; returns queued or duplicate; refusals raise errors with their own SQLSTATE';
--upgrade 1.0--1.1 end
