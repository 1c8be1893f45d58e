-- 30_sync.sql: incremental sync from the foreign tables into the raw layer.
--
-- Per server, account and endpoint a high-water mark (the largest updated_at
-- seen) says where the next sync starts; it reaches back update_window
-- because WHOOP re-scores records for days after they happened.

create table whoop.sync_state (
    server_name     name not null,
    user_id         bigint not null,
    endpoint        text not null,
    high_water_mark timestamptz,
    last_success_at timestamptz,
    last_attempt_at timestamptz,
    last_error      text,
    primary key (server_name, user_id, endpoint)
);

create table whoop.sync_log (
    id              bigint generated always as identity primary key,
    run_id          bigint,
    server_name     name not null,
    user_id         bigint not null,
    endpoint        text not null,
    started_at      timestamptz not null,
    finished_at     timestamptz not null,
    status          text not null check (status in ('ok', 'failed')),
    full_resync     boolean not null default false,
    fetch_from      timestamptz,
    rows_seen       integer,
    rows_inserted   integer,
    rows_updated    integer,
    requests        integer,
    high_water_mark_before timestamptz,
    high_water_mark_after  timestamptz,
    error           text
);
create index on whoop.sync_log (run_id);

comment on table whoop.sync_state is
    'per server, account and endpoint: the high-water mark of the incremental sync and the last outcome';
comment on column whoop.sync_state.high_water_mark is
    'largest updated_at synced so far; the next sync fetches from this mark minus the update window';
comment on column whoop.sync_state.last_success_at is 'when this endpoint last synced without error';
comment on table whoop.sync_log is 'one row per account and endpoint per whoop.sync() call';
comment on column whoop.sync_log.run_id is 'the whoop.run_pipeline() run that called the sync, if any';
comment on column whoop.sync_log.fetch_from is 'the updated_at bound the fetch used (NULL = everything)';
comment on column whoop.sync_log.requests is 'HTTP requests the fetch made to WHOOP';
