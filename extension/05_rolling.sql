-- 05_rolling.sql: window aggregates in C (fdw/rolling.c): rolling mean,
-- variance and standard deviation, momentum (least-squares slope per day)
-- and EWMA.
--
-- All but ewma have a moving-aggregate implementation (an inverse
-- transition function), so a sliding frame costs O(1) per row, and combine,
-- serialize and deserialize functions, so a GROUP BY can run in parallel.
-- Transition functions are not strict: their state is internal and must be
-- created on the first row, even when that row is NULL.

-- The support functions live in whoop_internal; the aggregates are the
-- interface, in whoop.
--upgrade 1.0--1.1: alter function whoop.rolling_var_accum(internal, float8) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.rolling_var_accum_inv(internal, float8) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.rolling_var_combine(internal, internal) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.rolling_var_serialize(internal) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.rolling_var_deserialize(bytea, internal) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.rolling_var_final(internal) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.rolling_stddev_final(internal) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.rolling_avg_final(internal) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.momentum_accum(internal, float8, date) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.momentum_accum_inv(internal, float8, date) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.momentum_accum(internal, float8, timestamptz) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.momentum_accum_inv(internal, float8, timestamptz) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.momentum_combine(internal, internal) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.momentum_serialize(internal) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.momentum_deserialize(bytea, internal) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.momentum_final(internal) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.ewma_accum(internal, float8, integer) set schema whoop_internal;
--upgrade 1.0--1.1: alter function whoop.ewma_final(internal) set schema whoop_internal;

-- rolling_variance / rolling_stddev

create function whoop_internal.rolling_var_accum(internal, float8)
returns internal
language c immutable parallel safe
as 'MODULE_PATHNAME', 'rolling_var_accum';

create function whoop_internal.rolling_var_accum_inv(internal, float8)
returns internal
language c immutable parallel safe
as 'MODULE_PATHNAME', 'rolling_var_accum_inv';

create function whoop_internal.rolling_var_combine(internal, internal)
returns internal
language c immutable parallel safe
as 'MODULE_PATHNAME', 'rolling_var_combine';

create function whoop_internal.rolling_var_serialize(internal)
returns bytea
language c immutable strict parallel safe
as 'MODULE_PATHNAME', 'rolling_var_serialize';

create function whoop_internal.rolling_var_deserialize(bytea, internal)
returns internal
language c immutable strict parallel safe
as 'MODULE_PATHNAME', 'rolling_var_deserialize';

create function whoop_internal.rolling_var_final(internal)
returns float8
language c immutable strict parallel safe
as 'MODULE_PATHNAME', 'rolling_var_final';

create function whoop_internal.rolling_stddev_final(internal)
returns float8
language c immutable strict parallel safe
as 'MODULE_PATHNAME', 'rolling_stddev_final';

create function whoop_internal.rolling_avg_final(internal)
returns float8
language c immutable strict parallel safe
as 'MODULE_PATHNAME', 'rolling_avg_final';

create aggregate whoop.rolling_variance(float8) (
    sfunc = whoop_internal.rolling_var_accum,
    stype = internal,
    sspace = 120,
    finalfunc = whoop_internal.rolling_var_final,
    combinefunc = whoop_internal.rolling_var_combine,
    serialfunc = whoop_internal.rolling_var_serialize,
    deserialfunc = whoop_internal.rolling_var_deserialize,
    msfunc = whoop_internal.rolling_var_accum,
    minvfunc = whoop_internal.rolling_var_accum_inv,
    mstype = internal,
    msspace = 120,
    mfinalfunc = whoop_internal.rolling_var_final,
    parallel = safe
);

-- rolling_avg shares the variance state: float8 avg() has no inverse
-- transition, so next to a rolling_stddev it would be the O(window) part.
create aggregate whoop.rolling_avg(float8) (
    sfunc = whoop_internal.rolling_var_accum,
    stype = internal,
    sspace = 120,
    finalfunc = whoop_internal.rolling_avg_final,
    combinefunc = whoop_internal.rolling_var_combine,
    serialfunc = whoop_internal.rolling_var_serialize,
    deserialfunc = whoop_internal.rolling_var_deserialize,
    msfunc = whoop_internal.rolling_var_accum,
    minvfunc = whoop_internal.rolling_var_accum_inv,
    mstype = internal,
    msspace = 120,
    mfinalfunc = whoop_internal.rolling_avg_final,
    parallel = safe
);

create aggregate whoop.rolling_stddev(float8) (
    sfunc = whoop_internal.rolling_var_accum,
    stype = internal,
    sspace = 120,
    finalfunc = whoop_internal.rolling_stddev_final,
    combinefunc = whoop_internal.rolling_var_combine,
    serialfunc = whoop_internal.rolling_var_serialize,
    deserialfunc = whoop_internal.rolling_var_deserialize,
    msfunc = whoop_internal.rolling_var_accum,
    minvfunc = whoop_internal.rolling_var_accum_inv,
    mstype = internal,
    msspace = 120,
    mfinalfunc = whoop_internal.rolling_stddev_final,
    parallel = safe
);

-- momentum

create function whoop_internal.momentum_accum(internal, float8, date)
returns internal
language c immutable parallel safe
as 'MODULE_PATHNAME', 'momentum_accum_date';

create function whoop_internal.momentum_accum_inv(internal, float8, date)
returns internal
language c immutable parallel safe
as 'MODULE_PATHNAME', 'momentum_accum_inv_date';

create function whoop_internal.momentum_accum(internal, float8, timestamptz)
returns internal
language c immutable parallel safe
as 'MODULE_PATHNAME', 'momentum_accum_timestamptz';

create function whoop_internal.momentum_accum_inv(internal, float8, timestamptz)
returns internal
language c immutable parallel safe
as 'MODULE_PATHNAME', 'momentum_accum_inv_timestamptz';

create function whoop_internal.momentum_combine(internal, internal)
returns internal
language c immutable parallel safe
as 'MODULE_PATHNAME', 'momentum_combine';

create function whoop_internal.momentum_serialize(internal)
returns bytea
language c immutable strict parallel safe
as 'MODULE_PATHNAME', 'momentum_serialize';

create function whoop_internal.momentum_deserialize(bytea, internal)
returns internal
language c immutable strict parallel safe
as 'MODULE_PATHNAME', 'momentum_deserialize';

create function whoop_internal.momentum_final(internal)
returns float8
language c immutable strict parallel safe
as 'MODULE_PATHNAME', 'momentum_final';

create aggregate whoop.momentum(value float8, at date) (
    sfunc = whoop_internal.momentum_accum,
    stype = internal,
    sspace = 224,
    finalfunc = whoop_internal.momentum_final,
    combinefunc = whoop_internal.momentum_combine,
    serialfunc = whoop_internal.momentum_serialize,
    deserialfunc = whoop_internal.momentum_deserialize,
    msfunc = whoop_internal.momentum_accum,
    minvfunc = whoop_internal.momentum_accum_inv,
    mstype = internal,
    msspace = 224,
    mfinalfunc = whoop_internal.momentum_final,
    parallel = safe
);

create aggregate whoop.momentum(value float8, at timestamptz) (
    sfunc = whoop_internal.momentum_accum,
    stype = internal,
    sspace = 224,
    finalfunc = whoop_internal.momentum_final,
    combinefunc = whoop_internal.momentum_combine,
    serialfunc = whoop_internal.momentum_serialize,
    deserialfunc = whoop_internal.momentum_deserialize,
    msfunc = whoop_internal.momentum_accum,
    minvfunc = whoop_internal.momentum_accum_inv,
    mstype = internal,
    msspace = 224,
    mfinalfunc = whoop_internal.momentum_final,
    parallel = safe
);

-- ewma: order-dependent, so no combine function and no inverse.

create function whoop_internal.ewma_accum(internal, float8, integer)
returns internal
language c immutable parallel safe
as 'MODULE_PATHNAME', 'ewma_accum';

create function whoop_internal.ewma_final(internal)
returns float8
language c immutable strict parallel safe
as 'MODULE_PATHNAME', 'ewma_final';

create aggregate whoop.ewma(value float8, span integer) (
    sfunc = whoop_internal.ewma_accum,
    stype = internal,
    sspace = 32,
    finalfunc = whoop_internal.ewma_final,
    parallel = safe
);

comment on aggregate whoop.rolling_variance(float8) is
    'sample variance sum((x - avg(x))^2) / (n - 1) of the non-null inputs; NULL below 2 inputs, NaN if any input is NaN or infinite, exactly 0 when all are equal; double-double shifted sums with an inverse transition, so sliding window frames cost O(1) per row';
comment on aggregate whoop.rolling_avg(float8) is
    'arithmetic mean sum(x) / n of the non-null inputs; NULL without inputs; NaN and infinities as in avg(float8); double-double shifted sums, so the result does not depend on input order and sliding window frames cost O(1) per row';
comment on aggregate whoop.rolling_stddev(float8) is
    'sample standard deviation sqrt(sum((x - avg(x))^2) / (n - 1)) of the non-null inputs; NULL below 2 inputs, NaN if any input is NaN or infinite, exactly 0 when all are equal; double-double shifted sums with an inverse transition, so sliding window frames cost O(1) per row';
comment on aggregate whoop.momentum(float8, date) is
    'least-squares slope of value against at, per day: sum((t - avg(t)) (v - avg(v))) / sum((t - avg(t))^2) with t in days, over rows where both are non-null; NULL below 2 distinct days, NaN if a day is infinite or a value is NaN or infinite, exactly 0 when all values are equal; O(1) per row in sliding window frames';
comment on aggregate whoop.momentum(float8, timestamptz) is
    'least-squares slope of value against at, per day: sum((t - avg(t)) (v - avg(v))) / sum((t - avg(t))^2) with t = epoch seconds / 86400, over rows where both are non-null; NULL below 2 distinct times, NaN if a time is infinite or a value is NaN or infinite, exactly 0 when all values are equal; O(1) per row in sliding window frames';
comment on aggregate whoop.ewma(float8, integer) is
    'exponentially weighted moving average in input order: seeded with the first non-null value, then e = l x + (1 - l) e with l = 2 / (span + 1); NULL values are skipped; span must be a positive constant (error otherwise); use over (order by ...) or ewma(x, span order by ...)';

comment on function whoop_internal.rolling_var_accum(internal, float8) is
    'transition function of rolling_avg, rolling_variance and rolling_stddev (plain and moving mode)';
comment on function whoop_internal.rolling_var_accum_inv(internal, float8) is
    'inverse transition of rolling_variance and rolling_stddev; NULL asks the executor to restart the frame when removal would lose precision';
comment on function whoop_internal.rolling_var_combine(internal, internal) is
    'combine function of rolling_variance and rolling_stddev (parallel aggregation)';
comment on function whoop_internal.rolling_var_serialize(internal) is
    'serializes a rolling_variance/rolling_stddev state for parallel aggregation';
comment on function whoop_internal.rolling_var_deserialize(bytea, internal) is
    'deserializes a rolling_variance/rolling_stddev state for parallel aggregation';
comment on function whoop_internal.rolling_var_final(internal) is
    'final function of rolling_variance';
comment on function whoop_internal.rolling_stddev_final(internal) is
    'final function of rolling_stddev';
comment on function whoop_internal.rolling_avg_final(internal) is
    'final function of rolling_avg';
comment on function whoop_internal.momentum_accum(internal, float8, date) is
    'transition function of momentum(float8, date) (plain and moving mode)';
comment on function whoop_internal.momentum_accum_inv(internal, float8, date) is
    'inverse transition of momentum(float8, date); NULL asks the executor to restart the frame when removal would lose precision';
comment on function whoop_internal.momentum_accum(internal, float8, timestamptz) is
    'transition function of momentum(float8, timestamptz) (plain and moving mode)';
comment on function whoop_internal.momentum_accum_inv(internal, float8, timestamptz) is
    'inverse transition of momentum(float8, timestamptz); NULL asks the executor to restart the frame when removal would lose precision';
comment on function whoop_internal.momentum_combine(internal, internal) is
    'combine function of momentum (parallel aggregation)';
comment on function whoop_internal.momentum_serialize(internal) is
    'serializes a momentum state for parallel aggregation';
comment on function whoop_internal.momentum_deserialize(bytea, internal) is
    'deserializes a momentum state for parallel aggregation';
comment on function whoop_internal.momentum_final(internal) is
    'final function of momentum: the least-squares slope per day';
comment on function whoop_internal.ewma_accum(internal, float8, integer) is
    'transition function of ewma; checks the span';
comment on function whoop_internal.ewma_final(internal) is
    'final function of ewma';

-- Several sums of one group in one order, for one sort per group.
--upgrade 1.0--1.1 begin
create function whoop_internal.sum_each_accum(internal, float8[])
returns internal
language c immutable parallel safe
as 'MODULE_PATHNAME', 'sum_each_accum';

create function whoop_internal.sum_each_final(internal)
returns float8[]
language c immutable strict parallel safe
as 'MODULE_PATHNAME', 'sum_each_final';

-- no combine function: a group is always summed by one process, in order
create aggregate whoop_internal.sum_each(float8[]) (
    sfunc = whoop_internal.sum_each_accum,
    stype = internal,
    finalfunc = whoop_internal.sum_each_final,
    parallel = safe
);

comment on aggregate whoop_internal.sum_each(float8[]) is
    'element-wise sums of float8 arrays in input order, each element as sum(float8) sums it (NULLs skipped; NULL without a value): sum_each(array[a, b] order by k) = array[sum(a order by k), sum(b order by k)] bit for bit, with one sort per group instead of one per sum (whoop_internal.cycle_workouts_def uses it); arrays of one group must have one length (2202E otherwise)';
comment on function whoop_internal.sum_each_accum(internal, float8[]) is
    'transition function of sum_each';
comment on function whoop_internal.sum_each_final(internal) is
    'final function of sum_each: the sums, NULL where an element had no value';
--upgrade 1.0--1.1 end
