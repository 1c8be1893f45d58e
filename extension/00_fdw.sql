-- 00_fdw.sql: the schemas, and the foreign data wrapper itself (handler,
-- validator, wrapper).
--
-- Users see schema whoop: the tables, views and functions the README
-- documents.  Everything they need not name -- the token table, helpers of
-- the sync and the reports, aggregate support functions, the wrapper's
-- handler -- lives in whoop_internal, whose names may change between
-- versions.  Grants are all in the last layer (99_grants.sql).
--
-- Upgrades: 1.0 is released.  A change to an object marks it for the
-- generated whoop_fdw--1.0--1.1.sql (see the Makefile): "--upgrade 1.0--1.1
-- begin" ... "end" around what both scripts run, "--upgrade 1.0--1.1:" in
-- front of a step only the upgrade runs.

--upgrade 1.0--1.1 begin
create schema whoop_internal;

comment on schema whoop_internal is
    'whoop_fdw internals (token table, helpers, aggregate support functions): not an interface, names may change between versions';
--upgrade 1.0--1.1 end

--upgrade 1.0--1.1: alter function whoop.whoop_fdw_handler() set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.whoop_fdw_validator(text[], oid) set schema whoop_internal;

create function whoop_internal.whoop_fdw_handler()
returns fdw_handler
language c strict
as 'MODULE_PATHNAME', 'whoop_fdw_handler';

create function whoop_internal.whoop_fdw_validator(text[], oid)
returns void
language c strict
as 'MODULE_PATHNAME', 'whoop_fdw_validator';

create foreign data wrapper whoop_fdw
    handler whoop_internal.whoop_fdw_handler
    validator whoop_internal.whoop_fdw_validator;

comment on function whoop_internal.whoop_fdw_handler() is
    'FDW handler of whoop_fdw: plans and scans WHOOP API endpoints as foreign tables';
comment on function whoop_internal.whoop_fdw_validator(text[], oid) is
    'checks the options of whoop_fdw servers, user mappings and foreign tables';
comment on foreign data wrapper whoop_fdw is
    'WHOOP developer API (v2) as foreign tables: one server per WHOOP app';
