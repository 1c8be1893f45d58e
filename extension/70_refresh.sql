-- 70_refresh.sql: run ids, lineage, change capture and the refresh of the
-- materialized views and the maintained objects in dependency order.

--upgrade 1.0--1.1: alter sequence whoop.run_id_seq set schema whoop_internal;

-- One sequence numbers pipeline runs and stand-alone refresh and check
-- batches alike, so run_log, refresh_log, quality_log and sync_log rows of
-- one run share an id.
create sequence whoop_internal.run_id_seq;
--upgrade 1.0--1.1 begin
-- pg_dump keeps the logs that carry run ids, so it must keep the ids too
select pg_catalog.pg_extension_config_dump('whoop_internal.run_id_seq', '');
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
comment on sequence whoop_internal.run_id_seq is
    'run ids of whoop.run_pipeline() and of stand-alone whoop.refresh() / whoop.check_quality() calls';
--upgrade 1.0--1.1 end

------------------------------------------------------------------------------
-- Lineage, from the catalog.

--upgrade 1.0--1.1 begin
create or replace view whoop.lineage as
with recursive members as (
    select c.oid, c.relkind
    from pg_catalog.pg_depend e
    join pg_catalog.pg_extension x on x.oid = e.refobjid and x.extname = 'whoop_fdw'
    join pg_catalog.pg_class c on c.oid = e.objid
    where e.classid = 'pg_catalog.pg_class'::regclass
      and e.refclassid = 'pg_catalog.pg_extension'::regclass
      and e.deptype = 'e'
      and c.relkind in ('v', 'm')
),
-- a maintained object (whoop_internal.maintained) reads its rows table and
-- whatever its definition view reads
maintained as (
    select pg_catalog.to_regclass(format('%I.%I', mt.view_schema, mt.name))::oid as view_oid,
           coalesce(pg_catalog.to_regclass(format('whoop_internal.%I', mt.name || '_def'))::oid, 0) as def_oid
    from whoop_internal.maintained mt
),
direct as (
    select distinct m.oid as view_oid, d.refclassid, d.refobjid
    from members m
    left join maintained mt on mt.view_oid = m.oid
    join pg_catalog.pg_rewrite rw on rw.ev_class in (m.oid, coalesce(mt.def_oid, 0))
    join pg_catalog.pg_depend d
      on d.classid = 'pg_catalog.pg_rewrite'::regclass and d.objid = rw.oid and d.deptype = 'n'
    where d.refclassid in ('pg_catalog.pg_class'::regclass, 'pg_catalog.pg_proc'::regclass)
      and not (d.refclassid = 'pg_catalog.pg_class'::regclass
               and d.refobjid in (m.oid, coalesce(mt.def_oid, 0)))
),
walk (view_oid, refclassid, refobjid, depth) as (
    select view_oid, refclassid, refobjid, 1 from direct
    union
    select w.view_oid, d.refclassid, d.refobjid, w.depth + 1
    from walk w
    join direct d on w.refclassid = 'pg_catalog.pg_class'::regclass and d.view_oid = w.refobjid
),
shortest as (
    select view_oid, refclassid, refobjid, min(depth) as depth
    from walk
    group by view_oid, refclassid, refobjid
)
select
    format('%I.%I', vn.nspname, v.relname) as object,
    case v.relkind when 'm' then 'materialized view' else 'view' end as object_type,
    case when r.oid is not null then format('%I.%I', rn.nspname, r.relname)
         else format('%I.%I(%s)', pn.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid))
    end as depends_on,
    case
        when r.relkind = 'r' then 'table'
        when r.relkind = 'p' then 'table'
        when r.relkind = 'v' then 'view'
        when r.relkind = 'm' then 'materialized view'
        when r.relkind = 'f' then 'foreign table'
        when r.relkind is not null then 'relation'
        when p.prokind = 'a' then 'aggregate'
        when p.prokind = 'w' then 'window function'
        else 'function'
    end as depends_on_type,
    s.depth,
    s.view_oid::regclass as object_oid,
    case when s.refclassid = 'pg_catalog.pg_class'::regclass then s.refobjid::regclass end as depends_on_oid
from shortest s
join pg_catalog.pg_class v on v.oid = s.view_oid
join pg_catalog.pg_namespace vn on vn.oid = v.relnamespace
left join pg_catalog.pg_class r on s.refclassid = 'pg_catalog.pg_class'::regclass and r.oid = s.refobjid
left join pg_catalog.pg_namespace rn on rn.oid = r.relnamespace
left join pg_catalog.pg_proc p on s.refclassid = 'pg_catalog.pg_proc'::regclass and p.oid = s.refobjid
left join pg_catalog.pg_namespace pn on pn.oid = p.pronamespace;

comment on view whoop.lineage is
    'what every view and materialized view of the extension reads, directly (depth 1) or through other views (depth > 1), from pg_depend/pg_rewrite; a maintained object (a fact or metric) reads its rows table and what its definition reads';
comment on column whoop.lineage.object is 'the view or materialized view';
comment on column whoop.lineage.object_type is 'view or materialized view';
comment on column whoop.lineage.depends_on_type is 'table, view, materialized view, foreign table, function or aggregate';
comment on column whoop.lineage.depends_on is 'a table, view, materialized view or function it reads (system objects are not listed)';
comment on column whoop.lineage.depth is '1 = named in the view''s own query; n = reached through n - 1 views in between (shortest path)';
comment on column whoop.lineage.object_oid is 'the object as a regclass (for joins with the catalog)';
comment on column whoop.lineage.depends_on_oid is 'the relation depended on as a regclass; NULL for functions';
--upgrade 1.0--1.1 end

------------------------------------------------------------------------------
-- Refresh.

--upgrade 1.0--1.1: alter table whoop.refresh_log drop constraint refresh_log_mode_check, add constraint refresh_log_mode_check check (mode in ('concurrently', 'complete', 'full', 'incremental'));
--upgrade 1.0--1.1: alter table whoop.refresh_log add column members integer;
create table whoop.refresh_log (
    id            bigint generated always as identity primary key,
    run_id        bigint not null,
    view_name     text not null,
    refresh_order integer not null,
    mode          text check (mode in ('concurrently', 'complete', 'full', 'incremental')),
    status        text not null check (status in ('ok', 'failed', 'skipped')),
    started_at    timestamptz not null,
    finished_at   timestamptz not null,
    duration      interval generated always as (finished_at - started_at) stored,
    row_count     bigint,
    error         text,
    members       integer
);
create index on whoop.refresh_log (run_id);
--upgrade 1.0--1.1 begin
-- whoop.refresh() looks up each object's last full build
create index refresh_log_full_builds on whoop.refresh_log (view_name, id) where mode = 'full' and status = 'ok';
comment on index whoop.refresh_log_full_builds is
    'each object''s full builds, newest last: whoop.refresh() hands the objects of a group to its workers longest first, by their last full build';
--upgrade 1.0--1.1 end
--upgrade 1.0--1.1 begin
-- history travels with pg_dump, like the run ids it is keyed by
select pg_catalog.pg_extension_config_dump('whoop.refresh_log', '');
select pg_catalog.pg_extension_config_dump('whoop.refresh_log_id_seq', '');
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1 begin
comment on table whoop.refresh_log is 'one row per materialized view or maintained object per whoop.refresh() call';
comment on column whoop.refresh_log.run_id is 'the pipeline run, or the stand-alone refresh call (ids from whoop_internal.run_id_seq)';
comment on column whoop.refresh_log.mode is
    'materialized views: concurrently (readers keep the old rows until commit) or complete (first population); maintained objects: incremental (only the queued members recomputed) or full (rebuilt whole); NULL when skipped';
comment on column whoop.refresh_log.row_count is 'rows in the view after the refresh';
comment on column whoop.refresh_log.members is 'incremental: how many members were recomputed (0 when none changed); NULL otherwise';
--upgrade 1.0--1.1 end
comment on column whoop.refresh_log.refresh_order is 'position in the dependency order of that refresh (1 = first)';
comment on column whoop.refresh_log.status is 'ok, failed (see error), or skipped because a view it depends on failed or was skipped';
comment on column whoop.refresh_log.error is 'SQLSTATE and message of the failure, or why it was skipped';

-- The extension's materialized views and maintained objects in refresh
-- order.  An object depends on another when the other one is among the
-- relations it (for a maintained object: its definition) reads, directly or
-- through plain views (whoop.lineage), transitively.  If A depends on B, A's
-- set of upstream objects strictly contains B's, so ordering by the size of
-- that set is a topological order; the name breaks ties.
--upgrade 1.0--1.1 begin
create or replace view whoop.refresh_plan as
with recursive objects as (
    select m.oid, m.oid as reads, m.oid as stored_in, m.relispopulated as populated, 'refresh'::text as method
    from pg_catalog.pg_class m
    join pg_catalog.pg_depend e
      on e.classid = 'pg_catalog.pg_class'::regclass and e.objid = m.oid
     and e.refclassid = 'pg_catalog.pg_extension'::regclass and e.deptype = 'e'
    join pg_catalog.pg_extension x on x.oid = e.refobjid and x.extname = 'whoop_fdw'
    where m.relkind = 'm'
    union all
    select format('%I.%I', mt.view_schema, mt.name)::regclass::oid,
           format('whoop_internal.%I', mt.name || '_def')::regclass::oid,
           format('whoop_internal.%I', mt.name || '_rows')::regclass::oid,
           mt.built, 'maintained'
    from whoop_internal.maintained mt
),
edges as (
    select distinct o.oid, u.oid as upstream
    from objects o
    join whoop.lineage l on l.object_oid = o.reads
    join objects u on u.oid = l.depends_on_oid::oid
    where u.oid <> o.oid
),
closure (oid, upstream) as (
    select oid, upstream from edges
    union
    select c.oid, e.upstream from closure c join edges e on e.oid = c.upstream
)
select
    row_number() over (order by cardinality(coalesce(u.upstream, '{}')), n.nspname, c.relname)::integer
        as refresh_order,
    o.oid::regclass as view_oid,
    format('%I.%I', n.nspname, c.relname) as view_name,
    coalesce(u.upstream, '{}') as upstream,
    o.method,
    o.stored_in::regclass as stored_in,
    o.populated
from objects o
join pg_catalog.pg_class c on c.oid = o.oid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
left join lateral (
    select array_agg(cl.upstream::regclass order by cl.upstream) as upstream
    from closure cl
    where cl.oid = o.oid
) u on true;

comment on view whoop.refresh_plan is
    'the extension''s materialized views and maintained objects in the order whoop.refresh() refreshes them, derived from the catalog and whoop_internal.maintained';
comment on column whoop.refresh_plan.upstream is 'materialized views and maintained objects this one reads, directly or through views, transitively';
comment on column whoop.refresh_plan.refresh_order is 'position in the refresh order (1 = first)';
comment on column whoop.refresh_plan.view_oid is 'the materialized view, or the public view of a maintained object, as a regclass';
comment on column whoop.refresh_plan.method is 'refresh (a materialized view: REFRESH MATERIALIZED VIEW) or maintained (a view over a table whoop.refresh() keeps up to date per member)';
comment on column whoop.refresh_plan.stored_in is 'where the rows are: the materialized view itself, or whoop_internal.<name>_rows';
comment on column whoop.refresh_plan.populated is 'materialized view: populated; maintained object: built (false until the next refresh rebuilds it whole)';
--upgrade 1.0--1.1 end

------------------------------------------------------------------------------
-- Change capture: which members the next refresh recomputes.
--
-- Statement-level triggers on every table the definitions read put the
-- distinct member ids of the changed rows (transition tables) into
-- refresh_queue; a TRUNCATE marks every maintained object for a full
-- rebuild.  whoop.refresh() takes the queue in its transaction: changes
-- committed meanwhile stay queued for the next refresh, and a refresh that
-- fails leaves the queue as it was.
--
-- The queue has no unique key, and a member changed twice is queued twice:
-- with one, a sync or webhook applier queueing a member that a running
-- refresh had taken would wait, on the key, for that refresh to commit --
-- minutes at a team's size, with WHOOP's data held back all that time.
--upgrade 1.0--1.1 begin
create table whoop_internal.refresh_queue (
    user_id     bigint not null,
    queued_at   timestamptz not null default now()
);

comment on table whoop_internal.refresh_queue is
    'members whose raw data, profile or settings changed since the last whoop.refresh(), a row per changing statement (no unique key, so that a change never waits for a running refresh): the next refresh recomputes their rows of every maintained object (not dumped: a restore rebuilds whole)';
comment on column whoop_internal.refresh_queue.queued_at is 'when the change was captured';

create function whoop_internal.queue_changed_members()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    if tg_op = 'INSERT' then
        insert into whoop_internal.refresh_queue (user_id)
        select distinct n.user_id from new_rows n;
    elsif tg_op = 'UPDATE' then
        insert into whoop_internal.refresh_queue (user_id)
        select n.user_id from new_rows n union select o.user_id from old_rows o;
    elsif tg_op = 'DELETE' then
        insert into whoop_internal.refresh_queue (user_id)
        select distinct o.user_id from old_rows o;
    end if;
    return null;
end;
$$;

comment on function whoop_internal.queue_changed_members() is
    'statement trigger: queues the members of the inserted, updated or deleted rows (transition tables new_rows/old_rows) in whoop_internal.refresh_queue';

create function whoop_internal.queue_full_rebuild()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    update whoop_internal.maintained set built = false where built;
    return null;
end;
$$;

comment on function whoop_internal.queue_full_rebuild() is
    'TRUNCATE trigger: marks every maintained object unbuilt, so the next whoop.refresh() rebuilds them whole';

do $$
declare
    v_table text;
begin
    foreach v_table in array array['raw_cycle', 'raw_sleep', 'raw_recovery', 'raw_workout', 'raw_profile',
                                   'raw_body_measurement', 'user_settings'] loop
        execute format('create trigger refresh_queue_insert after insert on whoop.%I referencing new table as new_rows '
                       'for each statement execute function whoop_internal.queue_changed_members()', v_table);
        execute format('create trigger refresh_queue_update after update on whoop.%I referencing old table as old_rows new table as new_rows '
                       'for each statement execute function whoop_internal.queue_changed_members()', v_table);
        execute format('create trigger refresh_queue_delete after delete on whoop.%I referencing old table as old_rows '
                       'for each statement execute function whoop_internal.queue_changed_members()', v_table);
        execute format('create trigger refresh_queue_truncate after truncate on whoop.%I '
                       'for each statement execute function whoop_internal.queue_full_rebuild()', v_table);
    end loop;
end;
$$;
--upgrade 1.0--1.1 end

------------------------------------------------------------------------------
-- The refresh.

-- A rows table that a refresh empties with TRUNCATE (its first build) is
-- loaded without its indexes, which are built afterwards: one sort per index
-- instead of an index insertion per row, half the cost of the load at a
-- million rows.  TRUNCATE has already locked readers out until the commit,
-- so dropping the indexes for the load costs them nothing more.
--upgrade 1.0--1.1 begin
create function whoop_internal.drop_indexes(p_table regclass)
returns text[]
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_index record;
    v_recreate text[] := '{}';
begin
    -- ALTER TABLE needs the owner: a role refreshing with granted rights
    -- loads with the indexes in place
    if not exists (select from pg_class c where c.oid = p_table and pg_has_role(c.relowner, 'usage')) then
        return v_recreate;
    end if;
    -- Only indexes that the statements recreate whole: none that another
    -- object depends on (a foreign key), none with settings the definitions
    -- leave out (tablespace, storage parameters, comment, CLUSTER, replica
    -- identity).  The others stay and take their insertions.
    for v_index in
        select i.indexrelid, con.oid as constraint_oid, con.conname
        from pg_index i
        join pg_class ic on ic.oid = i.indexrelid
        left join pg_constraint con on con.conindid = i.indexrelid and con.conrelid = i.indrelid
        where i.indrelid = p_table
          and ic.reltablespace = 0 and ic.reloptions is null
          and not i.indisclustered and not i.indisreplident
          and obj_description(i.indexrelid, 'pg_class') is null
          and (con.oid is null or obj_description(con.oid, 'pg_constraint') is null)
          and not exists (select from pg_depend d
                          where d.deptype = 'n'
                            and ((d.refclassid = 'pg_class'::regclass and d.refobjid = i.indexrelid)
                                 or (d.refclassid = 'pg_constraint'::regclass and d.refobjid = con.oid)))
        order by i.indisprimary desc, i.indexrelid
    loop
        if v_index.constraint_oid is not null then
            v_recreate := v_recreate || format('alter table %s add constraint %I %s', p_table, v_index.conname,
                                               pg_get_constraintdef(v_index.constraint_oid));
            execute format('alter table %s drop constraint %I', p_table, v_index.conname);
        else
            v_recreate := v_recreate || pg_get_indexdef(v_index.indexrelid);
            execute format('drop index %s', v_index.indexrelid::regclass);
        end if;
    end loop;
    return v_recreate;
end;
$$;

comment on function whoop_internal.drop_indexes(regclass) is
    'drops the indexes of a table, constraints too, and returns the statements that recreate them as they were, primary key first; leaves those it could not recreate whole (a foreign key depends on it; a tablespace, storage parameters, a comment, CLUSTER or replica identity set) and all of them when the caller does not own the table (whoop.refresh() uses it around the load of an emptied rows table)';
--upgrade 1.0--1.1 end

-- A first build fills emptied rows tables whose definitions do not read each
-- other side by side: PostgreSQL never runs an INSERT ... SELECT in
-- parallel, and the definitions' windows would run above a Gather anyway.
--upgrade 1.0--1.1 begin
create function whoop_internal.load_rows(targets regclass[], queries text[])
returns table (target regclass, row_count bigint, started_at timestamptz, finished_at timestamptz)
language c volatile
as 'MODULE_PATHNAME', 'load_rows';

comment on function whoop_internal.load_rows(regclass[], text[]) is
    'loads each table of targets with the rows of the query at the same position (SELECTs that do not read the targets), as INSERT INTO target query would: the queries computed side by side by parallel workers (up to max_parallel_workers_per_gather), the caller inserting every row, when every target has no index, trigger, CHECK constraint, generated column or row security; else, or when no worker starts, one after the other as INSERT ... SELECT. Needs INSERT on each target. Returns per target the rows loaded and when its query ran (whoop.refresh() uses it for a full rebuild)';
--upgrade 1.0--1.1 end

-- A full rebuild of a table that has rows (full => true, or after a TRUNCATE
-- of a raw table) computes, beside the others, only the rows that differ
-- from the definition, and rewrites just those.  Readers keep the old rows
-- until the commit, and a table whose rows did not change is neither
-- rewritten nor bloated with a copy of itself.
--upgrade 1.0--1.1 begin
create function whoop_internal.stage_changes(p_rows regclass, p_def regclass, out changes regclass, out query text)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_key text[];
begin
    select array_agg(a.attname::text order by k.n) into v_key
    from pg_index i
    cross join unnest(i.indkey) with ordinality k(attnum, n)
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
    where i.indrelid = p_rows and i.indisprimary;
    if v_key is null then
        raise exception 'table % has no primary key', p_rows
            using errcode = 'object_not_in_prerequisite_state',
                  hint = 'The changes of a full rebuild are found by the primary key; without one the table is emptied and loaded again.';
    end if;
    execute format('create temporary table %I on commit drop as '
                   'select null::tid as _replaced, null::boolean as _new, t.* from %s t with no data',
                   (select c.relname from pg_class c where c.oid = p_rows) || '_changes', p_rows);
    changes := format('pg_temp.%I', (select c.relname from pg_class c where c.oid = p_rows) || '_changes')::regclass;
    -- A row of the table without a new row of the same key, or whose binary
    -- image (*=, floats bit for bit) differs from it, is replaced; a new row
    -- without an old one of its key is added (its key is null only when the
    -- old row has no new one).
    query := format('select t.ctid, t.ctid is null or n.%1$I is not null, n.* '
                    'from %2$s n full join %3$s t on %4$s '
                    'where t.ctid is null or n.%1$I is null or not (n *= t)',
                    v_key[1], p_def, p_rows,
                    (select string_agg(format('n.%1$I = t.%1$I', k), ' and ') from unnest(v_key) k));
end;
$$;

comment on function whoop_internal.stage_changes(regclass, regclass) is
    'for a full rebuild of the rows table p_rows from its definition p_def: creates the temporary table changes (_replaced: the ctid of a row to remove; _new: whether the row that follows is to be added; then the table''s columns) and returns the query that fills it with the rows that differ, by primary key and binary image (whoop.refresh() runs the query beside others with whoop_internal.load_rows(), then whoop_internal.apply_changes())';

create function whoop_internal.apply_changes(p_rows regclass, p_changes regclass, out deleted bigint, out inserted bigint)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    -- it drops the table at the end: only ever one of stage_changes()
    if (select c.relpersistence from pg_class c where c.oid = p_changes) <> 't' then
        raise exception 'table % is not a temporary table of changes', p_changes
            using errcode = 'invalid_parameter_value',
                  hint = 'Pass the table that whoop_internal.stage_changes() created.';
    end if;
    execute format('delete from %s where ctid = any (array(select c._replaced from %s c where c._replaced is not null))',
                   p_rows, p_changes);
    get diagnostics deleted = row_count;
    execute format('insert into %1$s (%2$s) select %2$s from %3$s c where c._new',
                   p_rows, whoop_internal.column_list(p_rows), p_changes);
    get diagnostics inserted = row_count;
    execute format('drop table %s', p_changes);
end;
$$;

comment on function whoop_internal.apply_changes(regclass, regclass) is
    'applies the changes that whoop_internal.stage_changes() staged to the rows table p_rows: deletes the replaced rows, inserts the new ones, drops the temporary table and returns how many rows it deleted and inserted';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1: drop function whoop.refresh(bigint);
--upgrade 1.0--1.1 begin
create function whoop.refresh(run_id bigint default null, full boolean default false)
returns table (view_name text, refresh_order integer, mode text, status text,
               duration interval, row_count bigint, error text, members integer)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_run bigint := coalesce(refresh.run_id, nextval('whoop_internal.run_id_seq'));
    v_plan record;
    v_broken regclass[] := '{}';
    v_rebuilt regclass[] := '{}';
    v_changed bigint[];
    v_recreate text[];
    v_statement text;
    v_requeue boolean := false;
    v_name text;
    v_mode text;
    v_status text;
    v_rows bigint;
    v_members integer;
    v_deleted bigint;
    v_inserted bigint;
    v_error text;
    v_start timestamptz;
    v_state text;
    v_msg text;
    v_work_mem text := current_setting('work_mem');
    v_jit text := current_setting('jit');
    -- the objects loaded side by side (whoop_internal.load_rows()), and
    -- per object its rows, when it ran and its index statements
    v_group regclass[];
    v_member record;
    v_oid regclass;
    v_batched jsonb := '{}';
    v_batched_before jsonb;
    v_recreate_start timestamptz;
    v_finished timestamptz;
    v_emptied boolean;          -- built whole by TRUNCATE (no rows to keep for readers)
    v_order regclass[];         -- the group, longest first
    v_targets regclass[];
    v_queries text[];
    v_changes record;
    v_member_name text;
    -- the plan, read once: it is derived from the catalog (whoop.lineage),
    -- and evaluating it costs 10-300 ms a query
    v_plans whoop.refresh_plan[];
    v_stored_in regclass;
begin
    -- One refresh at a time (the maintained rows are read, then rewritten);
    -- readers and the change capture never wait for this lock.
    lock table whoop_internal.maintained in exclusive mode;
    v_plans := array(select p from whoop.refresh_plan p order by p.refresh_order);
    -- The facts sort a few rows per member and day: give the sorts room
    -- (at least 64MB, for this refresh only) rather than spill to disk.
    if pg_size_bytes(v_work_mem) < 64 * 1024 * 1024 then
        perform set_config('work_mem', '64MB', true);
    end if;
    -- JIT compiles a statement's expressions before it runs, 0.5-1.5 s for
    -- these plans.  That pays off over a full rebuild's million rows, but it
    -- costs more than an incremental statement's whole work (the changed
    -- members' few hundred rows each), and the planner cannot tell the two
    -- apart: its estimate of the loop over the members is as high.  So JIT
    -- is off here, and on (as the caller had it) only for full rebuilds.
    perform set_config('jit', 'off', true);
    -- The members changed since the last refresh.  Taken in this
    -- transaction: a rollback leaves them queued.
    with taken as (delete from whoop_internal.refresh_queue returning user_id)
    select coalesce(array_agg(distinct t.user_id order by t.user_id), '{}') into v_changed from taken t;

    for v_plan in select * from unnest(v_plans) p order by p.refresh_order loop
        v_start := clock_timestamp();
        v_finished := null;
        v_group := '{}';
        v_rows := null;
        v_error := null;
        v_mode := null;
        v_members := null;
        if v_plan.upstream && v_broken then
            v_status := 'skipped';
            v_error := 'skipped: depends on '
                       || (select string_agg(b::text, ', ' order by b::text)
                           from unnest(v_broken) b where b = any (v_plan.upstream))
                       || ', which failed or was skipped';
            v_broken := v_broken || v_plan.view_oid;
        else
            begin
                if v_plan.method = 'refresh' then
                    -- CONCURRENTLY needs a populated view with a unique index
                    -- on plain columns (every view here has one); the first
                    -- population cannot be concurrent, but then there is
                    -- nothing for readers to see yet (they get an error until
                    -- the commit).
                    if (select c.relispopulated from pg_class c where c.oid = v_plan.view_oid)
                       and exists (select from pg_index i
                                   where i.indrelid = v_plan.view_oid and i.indisunique and i.indisvalid
                                     and i.indpred is null and i.indexprs is null) then
                        v_mode := 'concurrently';
                        execute format('refresh materialized view concurrently %s', v_plan.view_oid);
                    else
                        v_mode := 'complete';
                        execute format('refresh materialized view %s', v_plan.view_oid);
                    end if;
                    execute format('select count(*) from %s', v_plan.view_oid) into v_rows;
                else
                    v_name := (select c.relname from pg_class c where c.oid = v_plan.view_oid);
                    -- Whole when asked, never built, or when an object it
                    -- reads was rebuilt whole in this refresh; else only the
                    -- queued members' rows: every definition computes a
                    -- member's rows from that member's rows alone.
                    if v_batched ? v_plan.view_oid::oid::text then
                        -- loaded beside an earlier object (below)
                        v_mode := 'full';
                        v_rows := (v_batched -> v_plan.view_oid::oid::text ->> 'rows')::bigint;
                        v_start := (v_batched -> v_plan.view_oid::oid::text ->> 'started')::timestamptz;
                        v_finished := (v_batched -> v_plan.view_oid::oid::text ->> 'finished')::timestamptz;
                    elsif refresh.full or not v_plan.populated or v_plan.upstream && v_rebuilt then
                        v_mode := 'full';
                        v_recreate := '{}';
                        v_emptied := not exists (select from whoop_internal.maintained m
                                                 where m.name = v_name and m.row_count > 0);
                        -- The later objects also built whole that read
                        -- neither this one nor any before them still to build
                        -- are computed with it, side by side.
                        select coalesce(array_agg(j.view_oid order by j.refresh_order), '{}') into v_group
                        from unnest(v_plans) j
                        where j.refresh_order > v_plan.refresh_order
                          and j.method = 'maintained'
                          and (refresh.full or not j.populated or j.upstream && v_rebuilt)
                          and not j.upstream && v_broken
                          and not v_batched ? j.view_oid::oid::text
                          and not exists (select from unnest(v_plans) k
                                          where k.refresh_order >= v_plan.refresh_order
                                            and k.refresh_order < j.refresh_order
                                            and k.view_oid = any (j.upstream));
                        if cardinality(v_group) > 0 then
                            v_batched_before := v_batched;
                            begin
                                v_group := v_plan.view_oid || v_group;
                                -- The workers take the longest first (by each
                                -- object's last full build): a group lasts as
                                -- long as its busiest worker, and one that
                                -- takes a long object last idles the other.
                                select array_agg(g.oid order by d.duration desc nulls last, g.n) into v_order
                                from unnest(v_group) with ordinality g(oid, n)
                                join unnest(v_plans) p on p.view_oid = g.oid
                                left join lateral (select l.duration from whoop.refresh_log l
                                                   where l.view_name = p.view_name and l.mode = 'full' and l.status = 'ok'
                                                   order by l.id desc limit 1) d on true;
                                v_targets := '{}';
                                v_queries := '{}';
                                -- An emptied table (a first build) is loaded
                                -- whole, without its indexes; a table with rows
                                -- gets only the rows that differ, computed into
                                -- a temporary table and applied after the load:
                                -- readers keep the old rows until the commit
                                -- (TRUNCATE would lock them out), and rows that
                                -- did not change are not rewritten.
                                for v_member in
                                    select p.view_oid, p.stored_in, c.relname,
                                           not exists (select from whoop_internal.maintained m
                                                       where m.name = c.relname and m.row_count > 0) as emptied
                                    from unnest(v_order) with ordinality g(oid, n)
                                    join unnest(v_plans) p on p.view_oid = g.oid
                                    join pg_class c on c.oid = g.oid
                                    order by g.n
                                loop
                                    if v_member.emptied then
                                        execute format('truncate %s', v_member.stored_in);
                                        v_batched := v_batched || jsonb_build_object(v_member.view_oid::oid::text, jsonb_build_object(
                                            'recreate', to_jsonb(whoop_internal.drop_indexes(v_member.stored_in))));
                                        v_targets := v_targets || v_member.stored_in;
                                        v_queries := v_queries || format('select * from whoop_internal.%I', v_member.relname || '_def');
                                    else
                                        select s.changes, s.query into v_changes
                                        from whoop_internal.stage_changes(v_member.stored_in,
                                                 format('whoop_internal.%I', v_member.relname || '_def')::regclass) s;
                                        v_batched := v_batched || jsonb_build_object(v_member.view_oid::oid::text, jsonb_build_object(
                                            'changes', v_changes.changes::oid));
                                        v_targets := v_targets || v_changes.changes;
                                        v_queries := v_queries || v_changes.query;
                                    end if;
                                end loop;
                                perform set_config('jit', v_jit, true);
                                for v_member in
                                    select p.view_oid, l.row_count, l.started_at, l.finished_at
                                    from whoop_internal.load_rows(v_targets, v_queries) with ordinality l(target, row_count, started_at, finished_at, n)
                                    join unnest(v_plans) p on p.view_oid = v_order[l.n]
                                loop
                                    v_batched := jsonb_set(v_batched, array[v_member.view_oid::oid::text],
                                        (v_batched -> v_member.view_oid::oid::text)
                                        || jsonb_build_object('rows', v_member.row_count, 'started', v_member.started_at,
                                                              'finished', v_member.finished_at));
                                end loop;
                                perform set_config('jit', 'off', true);
                                -- each object's indexes or changes, their time
                                -- added to its own
                                foreach v_oid in array v_group loop
                                    v_recreate_start := clock_timestamp();
                                    v_member_name := (select c.relname from pg_class c where c.oid = v_oid);
                                    if v_batched -> v_oid::oid::text ? 'changes' then
                                        v_stored_in := (select p.stored_in from unnest(v_plans) p where p.view_oid = v_oid);
                                        perform whoop_internal.apply_changes(
                                            v_stored_in, (v_batched -> v_oid::oid::text ->> 'changes')::oid::regclass);
                                        -- counted, not derived from the old count:
                                        -- a full rebuild also mends a count gone wrong
                                        execute format('select count(*) from %s', v_stored_in) into v_rows;
                                        v_batched := jsonb_set(v_batched, array[v_oid::oid::text, 'rows'], to_jsonb(v_rows));
                                    else
                                        for v_statement in
                                            select jsonb_array_elements_text(v_batched -> v_oid::oid::text -> 'recreate')
                                        loop
                                            execute v_statement;
                                        end loop;
                                    end if;
                                    v_batched := jsonb_set(v_batched, array[v_oid::oid::text, 'finished'],
                                        to_jsonb((v_batched -> v_oid::oid::text ->> 'finished')::timestamptz
                                                 + (clock_timestamp() - v_recreate_start)));
                                    update whoop_internal.maintained m
                                    set built = true, row_count = (v_batched -> v_oid::oid::text ->> 'rows')::bigint
                                    where m.name = v_member_name;
                                end loop;
                                v_rows := (v_batched -> v_plan.view_oid::oid::text ->> 'rows')::bigint;
                                v_start := (v_batched -> v_plan.view_oid::oid::text ->> 'started')::timestamptz;
                                v_finished := (v_batched -> v_plan.view_oid::oid::text ->> 'finished')::timestamptz;
                                v_rebuilt := v_rebuilt || v_group;
                            exception when others then
                                -- built one by one instead, each with its own error
                                v_group := '{}';
                                v_batched := v_batched_before;
                                perform set_config('jit', 'off', true);
                            end;
                        end if;
                        if cardinality(v_group) = 0 then
                            -- alone: DELETE, not TRUNCATE, when readers have
                            -- rows to keep reading until the commit
                            if v_emptied then
                                execute format('truncate %s', v_plan.stored_in);
                                v_recreate := whoop_internal.drop_indexes(v_plan.stored_in);
                            else
                                execute format('delete from %s', v_plan.stored_in);
                            end if;
                            perform set_config('jit', v_jit, true);
                            execute format('insert into %s select * from whoop_internal.%I', v_plan.stored_in, v_name || '_def');
                            get diagnostics v_rows = row_count;
                            foreach v_statement in array v_recreate loop
                                execute v_statement;
                            end loop;
                            perform set_config('jit', 'off', true);
                        end if;
                        v_rebuilt := v_rebuilt || v_plan.view_oid;
                    else
                        v_mode := 'incremental';
                        v_members := cardinality(v_changed);
                        select m.row_count into v_rows from whoop_internal.maintained m where m.name = v_name;
                        if v_members > 0 then
                            execute format('delete from %s where user_id = any ($1)', v_plan.stored_in) using v_changed;
                            get diagnostics v_deleted = row_count;
                            -- one member at a time: the member id reaches
                            -- every scan of the definition as an index condition
                            execute format('insert into %s select d.* from unnest($1) u(user_id) '
                                           'cross join lateral (select * from whoop_internal.%I x '
                                           'where x.user_id = u.user_id offset 0) d',
                                           v_plan.stored_in, v_name || '_def') using v_changed;
                            get diagnostics v_inserted = row_count;
                            v_rows := v_rows - v_deleted + v_inserted;
                        end if;
                    end if;
                    update whoop_internal.maintained m set built = true, row_count = v_rows where m.name = v_name;
                end if;
                v_status := 'ok';
            exception when others then
                -- the subtransaction is rolled back: the object keeps its rows
                get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text;
                v_status := 'failed';
                v_error := v_state || ': ' || v_msg;
                -- the objects loaded beside it were rolled back with it
                v_batched := v_batched - array(select g::oid::text from unnest(v_group) g);
                v_broken := v_broken || v_plan.view_oid;
                v_rows := null;
            end;
        end if;
        if v_status <> 'ok' and v_plan.method = 'maintained' then
            -- its rows (and those of the objects skipped after it) were left
            -- as they were: the changed members stay queued
            v_requeue := true;
        end if;
        insert into whoop.refresh_log
            (run_id, view_name, refresh_order, mode, status, started_at, finished_at, row_count, error, members)
        values (v_run, v_plan.view_name, v_plan.refresh_order, v_mode, v_status, v_start,
                coalesce(v_finished, clock_timestamp()), v_rows, v_error, v_members);
        if v_status = 'failed' then
            raise warning 'whoop.refresh: % failed: %', v_plan.view_name, v_error;
        end if;
    end loop;

    if v_requeue then
        insert into whoop_internal.refresh_queue (user_id)
        select u from unnest(v_changed) u;
    end if;
    perform set_config('work_mem', v_work_mem, true);
    perform set_config('jit', v_jit, true);
    return query
        select l.view_name, l.refresh_order, l.mode, l.status, l.duration, l.row_count, l.error, l.members
        from whoop.refresh_log l
        where l.run_id = v_run
        order by l.refresh_order, l.id;
end;
$$;

comment on function whoop.refresh(bigint, boolean) is
    'refreshes the extension''s materialized views (dim_date, dim_user: CONCURRENTLY when populated) and maintained objects (the facts and metrics) in dependency order; a maintained object is recomputed only for the members queued in whoop_internal.refresh_queue since the last refresh (incremental), or rebuilt whole when full => true, when it was never built (after CREATE EXTENSION, an upgrade or a restore) or after a TRUNCATE of a raw table. Logs each in whoop.refresh_log; a failure is logged (WARNING), the objects depending on it are skipped and the changed members stay queued. One transaction: readers never wait and see all new contents at commit';
--upgrade 1.0--1.1 end
