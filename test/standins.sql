-- standins.sql -- TEMPORARY, tests only: SQL stand-ins for the C aggregates
-- (whoop.rolling_stddev, rolling_variance, momentum, ewma) until they land
-- on main.  Created in schema whoop BEFORE CREATE EXTENSION whoop_fdw so the
-- metric views can be created.  Delete this file when the aggregates land.
create schema if not exists whoop;
create aggregate whoop.rolling_variance(float8) (
    sfunc = float8_accum, stype = float8[], finalfunc = float8_var_samp,
    combinefunc = float8_combine, initcond = '{0,0,0}', parallel = safe);
create aggregate whoop.rolling_stddev(float8) (
    sfunc = float8_accum, stype = float8[], finalfunc = float8_stddev_samp,
    combinefunc = float8_combine, initcond = '{0,0,0}', parallel = safe);
create function whoop._standin_momentum_sfunc(float8[], float8, date) returns float8[]
language sql immutable strict
as $$ select float8_regr_accum($1, $2, ($3 - date '2000-01-01')::float8) $$;
create aggregate whoop.momentum(float8, date) (
    sfunc = whoop._standin_momentum_sfunc, stype = float8[], finalfunc = float8_regr_slope,
    initcond = '{0,0,0,0,0,0}');
create function whoop._standin_ewma_sfunc(s float8, v float8, span int) returns float8
language sql immutable
as $$ select case when v is null then s when s is null then v else s + 2.0 / (span + 1) * (v - s) end $$;
create aggregate whoop.ewma(float8, int) (sfunc = whoop._standin_ewma_sfunc, stype = float8);
