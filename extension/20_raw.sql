-- 20_raw.sql: the raw layer -- WHOOP records as they arrived, one table per endpoint.
--
-- Rows are keyed by WHOOP's own ids.  whoop.sync() upserts into them and a row
-- only changes when the incoming updated_at is newer, so replaying a fetch is
-- harmless.  Profile and body measurement have no ids or timestamps of their
-- own: they are kept as snapshot histories, a new row whenever a value changes
-- (that history feeds the SCD2 user dimension).
--
-- Sleeps, workouts and recoveries can be deleted at WHOOP (a webhook says
-- so, or a sync's listing no longer returns them).  They stay here as
-- tombstones, deleted_at set, for audit: every staging view, and so every
-- fact and metric, ignores them, and no later fetch brings them back.

create table whoop.raw_cycle (
    id              bigint primary key,
    user_id         bigint not null,
    start           timestamptz not null,
    "end"           timestamptz,
    timezone_offset text not null,
    score_state     text not null,
    created_at      timestamptz not null,
    updated_at      timestamptz not null,
    record          jsonb not null,
    _extracted_at   timestamptz not null default now()
);
-- A member's cycles in time order.  It also carries the columns a full
-- build of whoop_internal.cycle_day and cycle_workouts reads from the cycles
-- (id, end, offset), so that those read it alone (an index-only scan), not
-- the table with every record's jsonb: 4-6 s less of a first build's
-- critical path at 2,000 members x 2 years.
--upgrade 1.0--1.1: drop index whoop.raw_cycle_user_id_start_idx;
--upgrade 1.0--1.1 begin
create index raw_cycle_user_id_start_idx on whoop.raw_cycle (user_id, start)
    include (id, "end", timezone_offset);
comment on index whoop.raw_cycle_user_id_start_idx is
    'a member''s cycles in time order, with what a full build of the cycle days and the cycles'' workouts reads of them (an index-only scan)';
--upgrade 1.0--1.1 end
-- whoop.dim_date spans the first cycle to the last moment of the last cycle
-- or sleep: these three read those ends off an index (min/max), so its
-- refresh after a batch of changes reads no whole table (2.3 s of a 5 s
-- batch at 2,000 members x 2 years before them)
--upgrade 1.0--1.1 begin
create index raw_cycle_start_idx on whoop.raw_cycle (start);
create index raw_cycle_coalesce_idx on whoop.raw_cycle ((coalesce("end", start)));
--upgrade 1.0--1.1 end

create table whoop.raw_recovery (
    cycle_id        bigint primary key,
    sleep_id        uuid,
    user_id         bigint not null,
    score_state     text not null,
    created_at      timestamptz not null,
    updated_at      timestamptz not null,
    record          jsonb not null,
    _extracted_at   timestamptz not null default now(),
    deleted_at      timestamptz
);
create index on whoop.raw_recovery (user_id);

create table whoop.raw_sleep (
    id              uuid primary key,
    cycle_id        bigint,
    user_id         bigint not null,
    start           timestamptz not null,
    "end"           timestamptz not null,
    timezone_offset text not null,
    nap             boolean not null,
    score_state     text not null,
    created_at      timestamptz not null,
    updated_at      timestamptz not null,
    record          jsonb not null,
    _extracted_at   timestamptz not null default now(),
    deleted_at      timestamptz
);
create index on whoop.raw_sleep (user_id, start);
--upgrade 1.0--1.1: alter table whoop.raw_recovery add column deleted_at timestamptz;
--upgrade 1.0--1.1: alter table whoop.raw_sleep add column deleted_at timestamptz;
--upgrade 1.0--1.1: alter table whoop.raw_workout add column deleted_at timestamptz;
create index on whoop.raw_sleep (cycle_id);
--upgrade 1.0--1.1 begin
create index raw_sleep_end_idx on whoop.raw_sleep ("end");
-- The candidates for each cycle's main sleep, with every column
-- whoop.stg_cycle_day weighs them by: its full build reads this index
-- alone, not the table with every record's jsonb (2 GB at 2,000 members x
-- 2 years), and a member's rows sit together for an incremental one.
create index raw_sleep_main_sleeps_idx on whoop.raw_sleep (user_id, cycle_id)
    include (id, start, "end", timezone_offset)
    where not nap and deleted_at is null;
comment on index whoop.raw_sleep_main_sleeps_idx is
    'the live non-nap sleeps of each member and cycle with what whoop.stg_cycle_day weighs them by: a full build reads this, not the table (an index-only scan)';
-- which sleep each live recovery names: all that whoop.stg_cycle_day reads
-- of the recoveries (see raw_sleep_main_sleeps_idx)
create index raw_recovery_sleep_ids_idx on whoop.raw_recovery (cycle_id) include (sleep_id)
    where deleted_at is null;
comment on index whoop.raw_recovery_sleep_ids_idx is
    'the sleep each live recovery names: what whoop.stg_cycle_day reads of the recoveries (an index-only scan)';
--upgrade 1.0--1.1 end

create table whoop.raw_workout (
    id              uuid primary key,
    user_id         bigint not null,
    start           timestamptz not null,
    "end"           timestamptz not null,
    timezone_offset text not null,
    sport_name      text,
    score_state     text not null,
    created_at      timestamptz not null,
    updated_at      timestamptz not null,
    record          jsonb not null,
    _extracted_at   timestamptz not null default now(),
    deleted_at      timestamptz
);
create index on whoop.raw_workout (user_id, start);

create table whoop.raw_profile (
    user_id         bigint not null,
    observed_at     timestamptz not null,
    email           text,
    first_name      text,
    last_name       text,
    record          jsonb not null,
    primary key (user_id, observed_at)
);

create table whoop.raw_body_measurement (
    user_id         bigint not null,
    observed_at     timestamptz not null,
    height_meter    double precision,
    weight_kilogram double precision,
    max_heart_rate  integer,
    record          jsonb not null,
    primary key (user_id, observed_at)
);

-- pg_dump keeps the data: it cannot be fetched again beyond what WHOOP
-- still serves, and a full resync costs the app's rate limit
select pg_catalog.pg_extension_config_dump('whoop.raw_cycle', '');
select pg_catalog.pg_extension_config_dump('whoop.raw_recovery', '');
select pg_catalog.pg_extension_config_dump('whoop.raw_sleep', '');
select pg_catalog.pg_extension_config_dump('whoop.raw_workout', '');
select pg_catalog.pg_extension_config_dump('whoop.raw_profile', '');
select pg_catalog.pg_extension_config_dump('whoop.raw_body_measurement', '');

comment on table whoop.raw_cycle is
    'WHOOP cycles (physiological days, sleep onset to sleep onset) as last fetched; one row per cycle id';
comment on table whoop.raw_recovery is
    'WHOOP recoveries as last fetched; one row per cycle (a recovery belongs to its cycle and main sleep)';
comment on table whoop.raw_sleep is
    'WHOOP sleeps and naps as last fetched; one row per sleep id';
comment on table whoop.raw_workout is
    'WHOOP workouts as last fetched; one row per workout id';
comment on table whoop.raw_profile is
    'history of WHOOP basic profiles: a row each time a fetched profile differs from the previous one';
comment on table whoop.raw_body_measurement is
    'history of WHOOP body measurements: a row each time a fetched measurement differs from the previous one';
comment on column whoop.raw_cycle.record is 'the whole API record as returned by WHOOP';
comment on column whoop.raw_recovery.record is 'the whole API record as returned by WHOOP';
comment on column whoop.raw_sleep.record is 'the whole API record as returned by WHOOP';
comment on column whoop.raw_workout.record is 'the whole API record as returned by WHOOP';
comment on column whoop.raw_profile.record is 'the whole API record as returned by WHOOP';
comment on column whoop.raw_body_measurement.record is
    'the whole API record as returned by WHOOP, plus user_id (WHOOP omits it)';
comment on column whoop.raw_cycle."end" is 'NULL while the cycle is ongoing (the current day)';
comment on column whoop.raw_cycle.updated_at is
    'WHOOP''s last change of the record; the upsert only replaces a row with a newer one';
comment on column whoop.raw_cycle._extracted_at is 'when whoop.sync() last wrote this row';
comment on column whoop.raw_recovery._extracted_at is 'when whoop.sync() last wrote this row';
comment on column whoop.raw_sleep._extracted_at is 'when whoop.sync() last wrote this row';
comment on column whoop.raw_workout._extracted_at is 'when whoop.sync() last wrote this row';
comment on column whoop.raw_profile.observed_at is 'when whoop.sync() first saw this version of the profile';
comment on column whoop.raw_body_measurement.observed_at is
    'when whoop.sync() first saw this version of the measurement';

--upgrade 1.0--1.1 begin
comment on column whoop.raw_recovery.deleted_at is
    'when the recovery was found deleted at WHOOP (its sleep deleted); NULL while it exists. Tombstones stay for audit and are ignored by every view';
comment on column whoop.raw_sleep.deleted_at is
    'when the sleep was found deleted at WHOOP (webhook sleep.deleted, or missing from a sync''s listing); NULL while it exists. Tombstones stay for audit and are ignored by every view';
comment on column whoop.raw_workout.deleted_at is
    'when the workout was found deleted at WHOOP (webhook workout.deleted, or missing from a sync''s listing); NULL while it exists. Tombstones stay for audit and are ignored by every view';
--upgrade 1.0--1.1 end

-- Finding a workout's cycle probes raw_cycle once per workout
-- (whoop.stg_workout).  Members who train together share start times, so
-- per column the planner sees few distinct starts and expects the same
-- (member, start) probe again: it caches probes that never repeat (at
-- 2,000 members x 2 years, 20 % of the cycle_workouts build).  ANALYZE
-- counts the distinct pairs here.
--upgrade 1.0--1.1 begin
create statistics whoop.raw_workout_member_start (ndistinct) on user_id, start from whoop.raw_workout;
comment on statistics whoop.raw_workout_member_start is
    'distinct (user_id, start) pairs, for the planner''s estimate of repeated cycle lookups in whoop.stg_workout';
--upgrade 1.0--1.1 end
