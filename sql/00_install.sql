-- The extension installs into schema whoop with its wrapper.
create extension whoop_fdw;
select nspname from pg_namespace where nspname = 'whoop';
select fdwname, fdwhandler::regproc, fdwvalidator::regproc
from pg_foreign_data_wrapper where fdwname = 'whoop_fdw';
select extrelocatable, extnamespace::regnamespace from pg_extension where extname = 'whoop_fdw';
