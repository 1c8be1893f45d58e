-- Rolling window aggregates: rolling_avg, rolling_variance, rolling_stddev,
-- momentum, ewma.
-- Small fixed cases; results are rounded or compared with tolerances so the
-- output is stable.  The large accuracy runs are in test/suites/test_rolling.py.
set client_min_messages = warning;
create extension if not exists whoop_fdw;
set extra_float_digits = -3;  -- 12 significant digits: stable, readable output

-- Plain aggregates agree with the built-ins on easy data.
select whoop.rolling_variance(x), var_samp(x),
       whoop.rolling_stddev(x), stddev_samp(x)
from (values (1.0::float8), (2), (4), (8), (null)) v(x);

-- NULL below two values; NULL inputs are skipped.
select whoop.rolling_variance(x) as none,
       whoop.rolling_variance(x) filter (where x = 1) as one
from (values (1.0::float8), (null), (null)) v(x);
select whoop.rolling_variance(x) from (values (null::float8)) v(x);

-- A sliding frame: each row against the exact numeric variance; a spike of
-- 1e15 enters and leaves, then values near 1e9 with fractions.
create temp table w (i int, x float8);
insert into w values (1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (6, 8), (7, 8),
    (8, 1e15), (9, 1), (10, 2), (11, 3), (12, 4), (13, null), (14, 5),
    (15, 1e9 + 0.25), (16, 1e9 + 0.5), (17, 1e9), (18, 1e9 + 0.75), (19, 1e9 + 0.5);
select i, x, v as var, e::float8 as exact,
       abs(v - e) <= 1e-13 * e as accurate, v = 0 as exact_zero
from (select i, x, whoop.rolling_variance(x) over f as v,
             var_samp(x::text::numeric) over f as e
      from w window f as (order by i rows 3 preceding)) s
order by i;

-- Frames of 2 to 5 rows: maximum relative error, zeros exact.
select frame, max(abs(v - e) / nullif(e, 0)) < 1e-13 as accurate,
       bool_and((v = 0) = (e = 0)) as zeros_exact, count(v) as n
from (select 2 as frame, whoop.rolling_variance(x) over (order by i rows 1 preceding) as v,
             var_samp(x::text::numeric) over (order by i rows 1 preceding) as e from w
      union all
      select 3, whoop.rolling_variance(x) over (order by i rows 2 preceding),
             var_samp(x::text::numeric) over (order by i rows 2 preceding) from w
      union all
      select 5, whoop.rolling_variance(x) over (order by i rows 4 preceding),
             var_samp(x::text::numeric) over (order by i rows 4 preceding) from w) s
group by frame order by frame;

-- rolling_avg: the mean of the frame, exact enough to equal the numeric mean
-- rounded to float8, before and after the spike leaves.
select i, x, a as mean, e::float8 as exact, a = e::float8 as equal
from (select i, x, whoop.rolling_avg(x) over f as a, avg(x::text::numeric) over f as e
      from w window f as (order by i rows 3 preceding)) s
order by i;
select whoop.rolling_avg(x) as none from (values (null::float8)) v(x);
-- NaN and infinities as in avg(float8), also when they leave the frame.
select i, x, whoop.rolling_avg(x) over f as mean, avg(x) over f as builtin
from (values (1, 1.0::float8), (2, 'Infinity'), (3, 3), (4, '-Infinity'), (5, 5),
             (6, 'NaN'), (7, 7), (8, 8), (9, 9)) v(i, x)
window f as (order by i rows 2 preceding) order by i;
-- Input order does not change the result (double-double sums).
select count(distinct a) as distinct_results, count(*) as orders
from (select r, whoop.rolling_avg(x order by md5(g::text || r::text)) as a
      from generate_series(1, 5000) g, generate_series(1, 4) r,
           lateral (select (g * 0.1 + 1e-3 * sin(g))::float8 as x) v
      group by r) t;

-- rolling_stddev is the square root, and never negative.
select i, s as sd, e::float8 as exact,
       abs(s - e) <= 1e-13 * e as accurate
from (select i, whoop.rolling_stddev(x) over f as s,
             stddev_samp(x::text::numeric) over f as e
      from w window f as (order by i rows 1 preceding)) s
order by i;

-- NaN and Infinity behave as in stddev_samp(float8), and leave the frame again.
select i, x, whoop.rolling_stddev(x) over f as sd, stddev_samp(x) over f as builtin
from (values (1, 1.0::float8), (2, 'NaN'), (3, 3), (4, 4), (5, 'Infinity'),
             (6, '-Infinity'), (7, 7), (8, 8), (9, 9)) v(i, x)
window f as (order by i rows 2 preceding) order by i;

-- A calendar window over dates with gaps.
select d, round(whoop.rolling_stddev(x) over f::numeric, 6) as sd,
       round(stddev_samp(x::text::numeric) over f, 6) as exact
from (values (date '2024-01-01', 60.0::float8), ('2024-01-02', 70), ('2024-01-04', 40),
             ('2024-01-09', 80), ('2024-01-10', 80), ('2024-01-20', 55),
             ('2024-01-21', 65)) v(d, x)
window f as (order by d range between '6 days' preceding and current row) order by d;

-- momentum: least-squares slope per day; agrees with regr_slope.
select round(whoop.momentum(y, d)::numeric, 12) as momentum,
       round(regr_slope(y, d - date '2024-01-01')::numeric, 12) as regr_slope
from (values (1.0::float8, date '2024-01-01'), (3, '2024-01-02'), (4, '2024-01-04')) v(y, d);
-- timestamptz: per day too (12 hours apart, +1 => 2 per day).
select whoop.momentum(y, t)
from (values (1.0::float8, timestamptz '2024-01-01 00:00+00'),
             (2, '2024-01-01 12:00+00'), (3, '2024-01-02 00:00+00')) v(y, t);
-- NULL below two distinct times; exactly 0 for constant values.
select whoop.momentum(y, d) as single_row
from (values (1.0::float8, date '2024-01-01')) v(y, d);
select whoop.momentum(y, d) as same_day
from (values (1.0::float8, date '2024-01-01'), (3, '2024-01-01')) v(y, d);
select whoop.momentum(y, d) as constant
from (values (5.5::float8, date '2024-01-01'), (5.5, '2024-01-03'), (5.5, '2024-01-04')) v(y, d);
-- NaN values and infinite times give NaN; NULLs are skipped.
select whoop.momentum(y, d) as nan_value
from (values (1.0::float8, date '2024-01-01'), ('NaN', '2024-01-02'), (3, '2024-01-03')) v(y, d);
select whoop.momentum(y, d) as infinite_day
from (values (1.0::float8, date '2024-01-01'), (2, 'infinity'), (3, '2024-01-03')) v(y, d);
select whoop.momentum(y, d) as nulls_skipped
from (values (1.0::float8, date '2024-01-01'), (null, '2024-01-02'), (3, null),
             (5, '2024-01-03')) v(y, d);
-- A calendar frame with gaps, a NaN and a constant run, against the exact
-- slope (n sum(ty) - sum(t) sum(y)) / (n sum(t^2) - sum(t)^2) in numeric.
select d, y, m::numeric(20, 9) as trend, e::numeric(20, 9) as exact,
       abs(m - e) <= 1e-12 * abs(e) or m = e as accurate
from (select d, y, whoop.momentum(y, d) over f as m,
             case when isnan then 'NaN'::numeric
                  when n * stt - st * st <> 0 then (n * sty - st * sy) / (n * stt - st * st)
             end as e
      from (select d, y, t, yn, bool_or(y = 'NaN') over f as isnan,
                   count(*) over f as n, sum(t) over f as st, sum(yn) over f as sy,
                   sum(t * t) over f as stt, sum(t * yn) over f as sty,
                   whoop.momentum(y, d) over f
            from (select d, y, (d - date '2024-01-01')::numeric as t,
                         case when y = 'NaN' then 0 else y::text::numeric end as yn
                  from (values (date '2024-01-01', 50.0::float8), ('2024-01-02', 52),
                               ('2024-01-03', 51.5), ('2024-01-05', 60), ('2024-01-06', 'NaN'),
                               ('2024-01-07', 58), ('2024-01-08', 58), ('2024-01-09', 58),
                               ('2024-01-10', 58), ('2024-01-11', 57.25),
                               ('2024-01-20', 40)) v(d, y)) r
            window f as (order by d range between '2 days' preceding and current row)) s
      window f as (order by d range between '2 days' preceding and current row)) s
order by d;

-- ewma: lambda = 2 / (span + 1), seeded with the first value.
select i, x, whoop.ewma(x, 3) over (order by i) as ewma
from (values (1, 1.0::float8), (2, 2), (3, null), (4, 4), (5, 8)) v(i, x) order by i;
select whoop.ewma(x, 1 order by i) as span_1, whoop.ewma(x, 3 order by i desc) as reversed
from (values (1, 1.0::float8), (2, 2), (3, 4), (4, 8)) v(i, x);
select whoop.ewma(x, 7) from (values (null::float8)) v(x);
\set VERBOSITY terse
select whoop.ewma(x, 0) from (values (1.0::float8)) v(x);
select whoop.ewma(x, -3) from (values (1.0::float8)) v(x);
select whoop.ewma(x, null) from (values (1.0::float8)) v(x);
select whoop.ewma(x, s) from (values (1.0::float8, 7), (2, 28)) v(x, s);
\set VERBOSITY default
select whoop.ewma(x, 0) from (values (1.0::float8)) v(x);

-- Parallel plain aggregation: partial states combine to the serial result.
create temp table g as
    select i % 5 as k, date '2024-01-01' + i as d,
           (i % 7) * 1.5 + i / 1000.0 as x
    from generate_series(1, 20000) i;
select k, round(whoop.rolling_variance(x)::numeric, 8) as var,
       round(var_samp(x::numeric), 8) as exact,
       round(whoop.momentum(x, d)::numeric, 10) as trend
from g group by k order by k;

-- Every aggregate and support function carries a comment.
select p.oid::regprocedure as undocumented
from pg_proc p join pg_depend dep on dep.objid = p.oid and dep.deptype = 'e'
join pg_extension e on e.oid = dep.refobjid and e.extname = 'whoop_fdw'
where (p.proname ~ '^(rolling|momentum|ewma)')
  and obj_description(p.oid, 'pg_proc') is null;
select count(*) as aggregates, bool_and(p.proparallel = 's') as parallel_safe
from pg_proc p where p.pronamespace = 'whoop'::regnamespace
  and p.proname in ('rolling_avg', 'rolling_variance', 'rolling_stddev', 'momentum', 'ewma');

-- sum_each: element-wise sums in input order, each equal bit for bit to
-- sum() with the same order; NULLs skipped, NULL without a value
select whoop_internal.sum_each(array[x, y] order by k) = array[sum(x order by k), sum(y order by k)] as same_bits,
       whoop_internal.sum_each(array[x, y] order by k desc) = array[sum(x order by k desc), sum(y order by k desc)] as same_bits_reversed
from (values (1, 0.1::float8, null::float8), (2, 0.2, 1e17), (3, 0.3, 1), (4, 1e-17, -1e17)) v(k, x, y);
select whoop_internal.sum_each(a order by k)
from (values (1, array[1.5, null]::float8[]), (2, null), (3, array[2.25, null]::float8[])) v(k, a);
select whoop_internal.sum_each(a) is null as no_arrays from (values (null::float8[])) v(a);
select whoop_internal.sum_each(a order by k) from (values (1, array[1]::float8[]), (2, array[1, 2]::float8[])) v(k, a);
