-- 70_refresh.sql: run ids, lineage and the refresh of the materialized
-- views in dependency order.

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

create view whoop.lineage as
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
direct as (
    select distinct m.oid as view_oid, d.refclassid, d.refobjid
    from members m
    join pg_catalog.pg_rewrite rw on rw.ev_class = m.oid
    join pg_catalog.pg_depend d
      on d.classid = 'pg_catalog.pg_rewrite'::regclass and d.objid = rw.oid and d.deptype = 'n'
    where d.refclassid in ('pg_catalog.pg_class'::regclass, 'pg_catalog.pg_proc'::regclass)
      and not (d.refclassid = 'pg_catalog.pg_class'::regclass and d.refobjid = m.oid)
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
    'what every view and materialized view of the extension reads, directly (depth 1) or through other views (depth > 1), from pg_depend/pg_rewrite';
comment on column whoop.lineage.object is 'the view or materialized view';
comment on column whoop.lineage.object_type is 'view or materialized view';
comment on column whoop.lineage.depends_on_type is 'table, view, materialized view, foreign table, function or aggregate';
comment on column whoop.lineage.depends_on is 'a table, view, materialized view or function it reads (system objects are not listed)';
comment on column whoop.lineage.depth is '1 = named in the view''s own query; n = reached through n - 1 views in between (shortest path)';
comment on column whoop.lineage.object_oid is 'the object as a regclass (for joins with the catalog)';
comment on column whoop.lineage.depends_on_oid is 'the relation depended on as a regclass; NULL for functions';

------------------------------------------------------------------------------
-- Refresh.

create table whoop.refresh_log (
    id            bigint generated always as identity primary key,
    run_id        bigint not null,
    view_name     text not null,
    refresh_order integer not null,
    mode          text check (mode in ('concurrently', 'complete')),
    status        text not null check (status in ('ok', 'failed', 'skipped')),
    started_at    timestamptz not null,
    finished_at   timestamptz not null,
    duration      interval generated always as (finished_at - started_at) stored,
    row_count     bigint,
    error         text
);
create index on whoop.refresh_log (run_id);
--upgrade 1.0--1.1 begin
-- history travels with pg_dump, like the run ids it is keyed by
select pg_catalog.pg_extension_config_dump('whoop.refresh_log', '');
select pg_catalog.pg_extension_config_dump('whoop.refresh_log_id_seq', '');
--upgrade 1.0--1.1 end

comment on table whoop.refresh_log is 'one row per materialized view per whoop.refresh() call';
--upgrade 1.0--1.1 begin
comment on column whoop.refresh_log.run_id is 'the pipeline run, or the stand-alone refresh call (ids from whoop_internal.run_id_seq)';
--upgrade 1.0--1.1 end
comment on column whoop.refresh_log.refresh_order is 'position in the dependency order of that refresh (1 = first)';
comment on column whoop.refresh_log.mode is
    'concurrently (readers keep the old rows until commit) or complete (first population: the view had no rows to keep); NULL when skipped';
comment on column whoop.refresh_log.status is 'ok, failed (see error), or skipped because a view it depends on failed or was skipped';
comment on column whoop.refresh_log.row_count is 'rows in the view after the refresh';
comment on column whoop.refresh_log.error is 'SQLSTATE and message of the failure, or why it was skipped';

-- The extension's materialized views in refresh order.  A view depends on
-- another when the other one is among the relations it reads, directly or
-- through plain views (whoop.lineage).  If A depends on B, A's set of
-- upstream views strictly contains B's, so ordering by the size of that set
-- is a topological order; the name breaks ties.
create view whoop.refresh_plan as
select
    row_number() over (order by cardinality(coalesce(u.upstream, '{}')), n.nspname, m.relname)::integer
        as refresh_order,
    m.oid::regclass as view_oid,
    format('%I.%I', n.nspname, m.relname) as view_name,
    coalesce(u.upstream, '{}') as upstream
from pg_catalog.pg_class m
join pg_catalog.pg_namespace n on n.oid = m.relnamespace
join pg_catalog.pg_depend e
  on e.classid = 'pg_catalog.pg_class'::regclass and e.objid = m.oid
 and e.refclassid = 'pg_catalog.pg_extension'::regclass and e.deptype = 'e'
join pg_catalog.pg_extension x on x.oid = e.refobjid and x.extname = 'whoop_fdw'
left join lateral (
    select array_agg(distinct l.depends_on_oid order by l.depends_on_oid) as upstream
    from whoop.lineage l
    join pg_catalog.pg_class uc on uc.oid = l.depends_on_oid
    where l.object_oid = m.oid and uc.relkind = 'm'
) u on true
where m.relkind = 'm';

comment on view whoop.refresh_plan is
    'the extension''s materialized views in the order whoop.refresh() refreshes them, derived from the catalog';
comment on column whoop.refresh_plan.upstream is 'materialized views this one reads, directly or through views';
comment on column whoop.refresh_plan.refresh_order is 'position in the refresh order (1 = first)';
comment on column whoop.refresh_plan.view_oid is 'the materialized view as a regclass';

--upgrade 1.0--1.1 begin
create or replace function whoop.refresh(run_id bigint default null)
returns table (view_name text, refresh_order integer, mode text, status text,
               duration interval, row_count bigint, error text)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_run bigint := coalesce(refresh.run_id, nextval('whoop_internal.run_id_seq'));
    v_plan record;
    v_broken regclass[] := '{}';
    v_mode text;
    v_status text;
    v_rows bigint;
    v_error text;
    v_start timestamptz;
    v_state text;
    v_msg text;
    v_work_mem text := current_setting('work_mem');
begin
    -- The facts sort a few rows per member and day: give the sorts room
    -- (at least 64MB, for this refresh only) rather than spill to disk.
    if pg_size_bytes(v_work_mem) < 64 * 1024 * 1024 then
        perform set_config('work_mem', '64MB', true);
    end if;
    for v_plan in select * from whoop.refresh_plan p order by p.refresh_order loop
        v_start := clock_timestamp();
        v_rows := null;
        v_error := null;
        v_mode := null;
        if v_plan.upstream && v_broken then
            v_status := 'skipped';
            v_error := 'skipped: depends on '
                       || (select string_agg(b::text, ', ' order by b::text)
                           from unnest(v_broken) b where b = any (v_plan.upstream))
                       || ', which failed or was skipped';
            v_broken := v_broken || v_plan.view_oid;
        else
            begin
                -- CONCURRENTLY needs a populated view with a unique index on
                -- plain columns (every view here has one); the first
                -- population cannot be concurrent, but then there is nothing
                -- for readers to see yet (they get an error until the commit).
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
                v_status := 'ok';
            exception when others then
                get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text;
                v_status := 'failed';
                v_error := v_state || ': ' || v_msg;
                v_broken := v_broken || v_plan.view_oid;
            end;
        end if;
        insert into whoop.refresh_log
            (run_id, view_name, refresh_order, mode, status, started_at, finished_at, row_count, error)
        values (v_run, v_plan.view_name, v_plan.refresh_order, v_mode, v_status, v_start,
                clock_timestamp(), v_rows, v_error);
        if v_status = 'failed' then
            raise warning 'whoop.refresh: % failed: %', v_plan.view_name, v_error;
        end if;
    end loop;

    perform set_config('work_mem', v_work_mem, true);
    return query
        select l.view_name, l.refresh_order, l.mode, l.status, l.duration, l.row_count, l.error
        from whoop.refresh_log l
        where l.run_id = v_run
        order by l.refresh_order, l.id;
end;
$$;

comment on function whoop.refresh(bigint) is
    'refreshes every materialized view of the extension in dependency order (from the catalog), CONCURRENTLY when populated; logs each in whoop.refresh_log; a failure is logged (WARNING) and the views depending on it are skipped, the rest refreshed. One transaction: readers see all new contents at commit';
--upgrade 1.0--1.1 end
