-- 00_fdw.sql: the foreign data wrapper itself (handler, validator, wrapper).

create function whoop.whoop_fdw_handler()
returns fdw_handler
language c strict
as 'MODULE_PATHNAME', 'whoop_fdw_handler';

create function whoop.whoop_fdw_validator(text[], oid)
returns void
language c strict
as 'MODULE_PATHNAME', 'whoop_fdw_validator';

create foreign data wrapper whoop_fdw
    handler whoop.whoop_fdw_handler
    validator whoop.whoop_fdw_validator;

comment on function whoop.whoop_fdw_handler() is
    'FDW handler of whoop_fdw: plans and scans WHOOP API endpoints as foreign tables';
comment on function whoop.whoop_fdw_validator(text[], oid) is
    'checks the options of whoop_fdw servers, user mappings and foreign tables';
comment on foreign data wrapper whoop_fdw is
    'WHOOP developer API (v2) as foreign tables: one server per WHOOP app';
