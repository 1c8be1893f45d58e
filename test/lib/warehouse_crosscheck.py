"""warehouse_crosscheck.py -- every metric recomputed with plain SQL.

Each check recomputes one metric column from the facts without window
functions and without the extension's aggregates: correlated subqueries over
explicit calendar ranges, stddev_samp, an exact numeric least-squares slope,
a recursive CTE for the EWMA.  It compares with the materialized view within
a relative 1e-9 and returns (view, column, rows compared, mismatches).
Used on the hand-built fixture (test_warehouse.py) and on simulator data
(test_warehouse_sim.py).
"""

# Values equal within tolerance, or both NULL.
SAME = "((got is null and want is null) or abs(got - want) <= 1e-9 * greatest(1, abs(want), abs(got)))"

RECOVERY = "(select g.day, g.recovery_score as v from whoop.fact_daily_recovery g " \
           "where g.user_id = m.user_id and g.recovery_score is not null)"
STRAIN = "(select g.day, g.day_strain as v from whoop.fact_daily_strain g " \
         "where g.user_id = m.user_id and g.day_strain is not null)"
LN = "(select g.day, ln(g.hrv_rmssd_milli) as v from whoop.fact_daily_recovery g " \
     "where g.user_id = m.user_id and g.hrv_rmssd_milli > 0)"
# Every day of the member with a recovery or a main sleep, whatever its HRV:
# a baseline of resting HR or respiratory rate counts the days that have it.
RECOVERY_DAYS = "(select g.day, g.resting_heart_rate as rhr, g.respiratory_rate as resp " \
                "from whoop.fact_daily_recovery g where g.user_id = m.user_id)"


def _stat(fn, source, lo, hi, minimum, col="v"):
    """_stat: fn(col) over source days m.day-lo ... m.day-hi, NULL below minimum observations."""
    return ("(select case when count(q.{c}) >= {mn} then {fn}(q.{c}) end from {src} q "
            "where q.day between m.day - {lo} and m.day - {hi})").format(
        c=col, mn=minimum, fn=fn, src=source, lo=lo, hi=hi)


def _slope(lo, minimum):
    """_slope: exact (numeric) least-squares slope of recovery over m.day-lo ... m.day."""
    return ("(select case when count(*) >= {mn} then "
            "((count(*) * sum(x * y) - sum(x) * sum(y)) / nullif(count(*) * sum(x * x) - sum(x) * sum(x), 0))"
            "::float8 end "
            "from (select (q.day - m.day)::numeric as x, q.v::numeric as y from {src} q "
            "where q.day between m.day - {lo} and m.day) p)").format(mn=minimum, src=RECOVERY, lo=lo)


def _compare(view, column, want, got=None):
    return ("select '{v}', '{c}', count(*), count(*) filter (where not {same}) from "
            "(select ({g})::float8 as got, ({w})::float8 as want from whoop.{v} m) x").format(
        v=view, c=column, same=SAME, w=want, g=got or "m." + column)


def checks():
    """checks: the list of SQL statements, one per (view, column)."""
    out = []
    # 1. recovery_momentum
    prev = "(select g.recovery_score from whoop.fact_daily_recovery g where g.user_id = m.user_id " \
           "and g.day = m.day - 1 and g.recovery_score is not null)"
    change = "(m.recovery_score - %s)" % prev
    t3, t7, t14 = _slope(2, 2), _slope(6, 3), _slope(13, 5)
    out += [_compare("recovery_momentum", "change_1d", change),
            _compare("recovery_momentum", "trend_3d", t3),
            _compare("recovery_momentum", "trend_7d", t7),
            _compare("recovery_momentum", "trend_14d", t14)]
    num = "(coalesce(0.4 * %s, 0) + coalesce(0.3 * %s, 0) + coalesce(0.2 * %s, 0) + coalesce(0.1 * %s, 0))" % (
        change, t3, t7, t14)
    den = "nullif((case when %s is null then 0 else 0.4 end) + (case when %s is null then 0 else 0.3 end) + " \
          "(case when %s is null then 0 else 0.2 end) + (case when %s is null then 0 else 0.1 end), 0)" % (
              change, t3, t7, t14)
    out.append(_compare("recovery_momentum", "momentum_score", "%s / %s" % (num, den)))

    # 2. strain_recovery_efficiency
    base = _stat("avg", RECOVERY, 7, 1, 3)
    nxt = "(select g.recovery_score from whoop.fact_daily_recovery g where g.user_id = m.user_id " \
          "and g.day = m.day + 1 and g.recovery_score is not null)"
    out += [_compare("strain_recovery_efficiency", "baseline_recovery", base),
            _compare("strain_recovery_efficiency", "next_day_recovery", nxt),
            _compare("strain_recovery_efficiency", "efficiency",
                     "case when m.day_strain >= 1 then (%s - %s) / m.day_strain end" % (nxt, base))]
    eff_src = ("(select e.day, e.efficiency as v from whoop.strain_recovery_efficiency e "
               "where e.user_id = m.user_id and e.efficiency is not null)")
    out.append(_compare("strain_recovery_efficiency", "efficiency_30d", _stat("avg", eff_src, 29, 0, 5)))

    # 3. training_readiness_gap
    target = "(case when m.recovery_score >= 67 then 16 when m.recovery_score >= 34 then 12 else 5 end)"
    prior = _stat("avg", STRAIN, 7, 1, 3)
    out += [_compare("training_readiness_gap", "strain_gap", "m.day_strain - %s" % target),
            _compare("training_readiness_gap", "avg_strain_prior_7d", prior),
            _compare("training_readiness_gap", "overtraining_risk",
                     "(m.recovery_score < 67 and %s > 14 and m.day_strain - %s > 2)::int" % (prior, target),
                     got="m.overtraining_risk::int")]

    # 4. recovery_volatility
    v7, v30 = _stat("stddev_samp", RECOVERY, 6, 0, 3), _stat("stddev_samp", RECOVERY, 29, 0, 10)
    a30 = _stat("avg", RECOVERY, 29, 0, 10)
    out += [_compare("recovery_volatility", "volatility_7d", v7),
            _compare("recovery_volatility", "volatility_30d", v30),
            _compare("recovery_volatility", "avg_recovery_30d", a30),
            _compare("recovery_volatility", "cv_30d", "%s / nullif(%s, 0)" % (v30, a30)),
            _compare("recovery_volatility", "volatility_trend",
                     "%s - %s" % (v7, _stat("stddev_samp", RECOVERY, 13, 7, 3)))]

    # 5. autonomic_balance
    ln = "ln(m.hrv_rmssd_milli)"
    bm, bsd = _stat("avg", LN, 60, 1, 14), _stat("stddev_samp", LN, 60, 1, 14)
    rm, rsd = _stat("avg", RECOVERY_DAYS, 60, 1, 14, "rhr"), _stat("stddev_samp", RECOVERY_DAYS, 60, 1, 14, "rhr")
    pm, psd = _stat("avg", RECOVERY_DAYS, 60, 1, 14, "resp"), _stat("stddev_samp", RECOVERY_DAYS, 60, 1, 14, "resp")
    zh = "(%s - %s) / nullif(%s, 0)" % (ln, bm, bsd)
    zr = "(m.resting_heart_rate - %s) / nullif(%s, 0)" % (rm, rsd)
    zp = "(m.respiratory_rate - %s) / nullif(%s, 0)" % (pm, psd)
    out += [_compare("autonomic_balance", "hrv_7d", _stat("avg", LN, 6, 0, 3)),
            _compare("autonomic_balance", "hrv_cv_7d",
                     "100 * %s / %s" % (_stat("stddev_samp", LN, 6, 0, 3), _stat("avg", LN, 6, 0, 3))),
            _compare("autonomic_balance", "hrv_baseline", bm),
            _compare("autonomic_balance", "swc_low", "%s - 0.5 * %s" % (bm, bsd)),
            _compare("autonomic_balance", "rhr_baseline", rm),
            _compare("autonomic_balance", "rhr_baseline_sd", rsd),
            _compare("autonomic_balance", "resp_baseline", pm),
            _compare("autonomic_balance", "resp_baseline_sd", psd),
            _compare("autonomic_balance", "z_hrv", zh),
            _compare("autonomic_balance", "z_rhr", zr),
            _compare("autonomic_balance", "z_resp", zp),
            _compare("autonomic_balance", "balance_score",
                     "case when (%s) is not null and (%s) is not null and (%s) is not null then "
                     "greatest(0, least(100, 50 + 10 * (0.45 * (%s) - 0.35 * (%s) - 0.20 * (%s)))) end"
                     % (zh, zr, zp, zh, zr, zp))]

    # 6. seasonal_adaptation: season means and baselines from explicit date ranges
    days = ("(select r.day, r.recovery_score, r.hrv_rmssd_milli, r.resting_heart_rate, r.skin_temp_celsius, "
            "s.day_strain from whoop.fact_daily_strain s full join whoop.fact_daily_recovery r "
            "using (user_id, day) where coalesce(s.user_id, r.user_id) = m.user_id "
            "and (r.recovery_score is not null or s.day_strain is not null))")
    days = days.replace("select r.day,", "select coalesce(r.day, s.day) as day,")
    season = "q.day between m.season_start and m.season_end"
    before = "q.day < m.season_start"

    def season_mean(col):
        """season_mean: the season's mean of COL, NULL below 14 observations of it in the season."""
        return "(select case when count(q.{c}) >= 14 then avg(q.{c}) end from {d} q where {s})".format(
            c=col, d=days, s=season)
    mean_rec = season_mean("recovery_score")
    base_rec = "(select case when count(q.recovery_score) >= 30 then avg(q.recovery_score) end from %s q where %s)" % (
        days, before)
    sd_rec = ("(select case when count(q.recovery_score) >= 30 then stddev_samp(q.recovery_score) end "
              "from %s q where %s)" % (days, before))
    out += [_compare("seasonal_adaptation", "days", "(select count(*) from %s q where %s)" % (days, season)),
            _compare("seasonal_adaptation", "recovery_days",
                     "(select count(q.recovery_score) from %s q where %s)" % (days, season)),
            _compare("seasonal_adaptation", "avg_recovery", mean_rec),
            _compare("seasonal_adaptation", "avg_day_strain", season_mean("day_strain")),
            _compare("seasonal_adaptation", "avg_skin_temp_celsius", season_mean("skin_temp_celsius")),
            _compare("seasonal_adaptation", "baseline_recovery", base_rec),
            _compare("seasonal_adaptation", "z_recovery", "(%s - %s) / nullif(%s, 0)" % (mean_rec, base_rec, sd_rec)),
            _compare("seasonal_adaptation", "rhr_deviation",
                     "(select case when count(q.resting_heart_rate) >= 30 then avg(q.resting_heart_rate) end "
                     "from %s q where %s) - %s" % (days, before, season_mean("resting_heart_rate")))]

    # 7. training_load: rolling means, and the EWMA by recursion over each member's scored days
    a7, c28 = _stat("avg", STRAIN, 6, 0, 4), _stat("avg", STRAIN, 27, 0, 14)
    out += [_compare("training_load", "acute_load_7d", a7),
            _compare("training_load", "chronic_load_28d", c28),
            _compare("training_load", "acwr_rolling", "%s / nullif(%s, 0)" % (a7, c28))]
    out.append("""
with recursive s as (
    select user_id, day, day_strain, row_number() over (partition by user_id order by day) as n
    from whoop.fact_daily_strain where day_strain is not null
), r as (
    select user_id, n, day, day_strain as e7, day_strain as e28 from s where n = 1
    union all
    select s.user_id, s.n, s.day, r.e7 + 2.0 / 8 * (s.day_strain - r.e7), r.e28 + 2.0 / 29 * (s.day_strain - r.e28)
    from r join s on s.user_id = r.user_id and s.n = r.n + 1
), x as (
    select m.acwr_ewma as got,
           case when r.n >= 28 then r.e7 / nullif(r.e28, 0) end as want
    from whoop.training_load m join r using (user_id, day)
)
select 'training_load', 'acwr_ewma', count(*), count(*) filter (where not %s) from x""" % SAME)
    return out


def run(psql_rows):
    """run executes every check with psql_rows(sql) -> [[...]] and returns [(view, column, n, mismatches)]."""
    results = []
    for sql in checks():
        for view, column, n, bad in psql_rows(sql):
            results.append((view, column, int(n), int(bad)))
    return results
