"""bench_warehouse.py -- the warehouse at team scale: 200 athletes x 2 years.

Through the FDW from the simulator (rate limit off), in one run:
  1. sync time: CALL whoop.sync() for 200 accounts x 6 endpoints;
  2. full refresh time: SELECT whoop.refresh() over every materialized view;
  3. the metric views refreshed as written (with whoop.rolling_stddev,
     whoop.rolling_avg and whoop.momentum) against the same views rewritten
     with the built-in aggregates (stddev_samp, avg, regr_slope), each as a
     plain REFRESH of a copy, interleaved, best of three.
Prints times and ratios; asserts nothing about time.
"""

import re
import sys
import time

import harness
from harness import psql, rows, scalar

ATHLETES = 200
DAYS = 730

METRICS = ["recovery_momentum", "strain_recovery_efficiency", "training_readiness_gap",
           "recovery_volatility", "autonomic_balance", "seasonal_adaptation", "training_load"]


def builtin_variant(definition):
    """builtin_variant rewrites a view definition to use the built-in aggregates."""
    definition = definition.replace("whoop.rolling_stddev(", "stddev_samp(")
    definition = definition.replace("whoop.rolling_avg(", "avg(")
    definition = definition.replace("whoop.rolling_variance(", "var_samp(")
    return re.sub(r"whoop\.momentum\(([^,()]+), ([^,()]+)\)",
                  r"regr_slope(\1, (\2 - '2000-01-01'::date)::double precision)", definition)


def timed(sql):
    started = time.perf_counter()
    psql(sql)
    return time.perf_counter() - started


def main(cluster):
    t0 = time.perf_counter()
    sim = harness.Simulator("--athletes", str(ATHLETES), "--days", str(DAYS),
                            "--rate-per-minute", "0", "--rate-per-day", "0").start()
    sim_start = time.perf_counter() - t0
    try:
        harness.fresh_database("bench_warehouse")
        t0 = time.perf_counter()
        harness.link_simulator(sim, import_into=None)
        link_time = time.perf_counter() - t0
        print("simulator: %d athletes x %d days, started in %.1f s; accounts linked in %.1f s"
              % (ATHLETES, DAYS, sim_start, link_time))

        sim.reset()
        sync_time = timed("call whoop.sync()")
        stats = sim.stats()
        requests = sum(sum(v.values()) for k, v in stats["requests"].items())
        records = int(scalar("select (select count(*) from whoop.raw_cycle) + "
                             "(select count(*) from whoop.raw_recovery) + "
                             "(select count(*) from whoop.raw_sleep) + "
                             "(select count(*) from whoop.raw_workout)"))
        failed = scalar("select count(*) from whoop.sync_log where status = 'failed'")
        print("sync:    %7.1f s  %d requests, %d records (%.0f records/s), %s failed endpoints"
              % (sync_time, requests, records, records / sync_time, failed))

        first_refresh = timed("select count(*) from whoop.refresh()")
        second_refresh = timed("select count(*) from whoop.refresh()")
        print("refresh: %7.1f s  first (every view built), %.1f s again (CONCURRENTLY)"
              % (first_refresh, second_refresh))
        slowest = rows("select view_name, round(extract(epoch from finished_at - started_at)::numeric, 1) "
                       "from whoop.refresh_log where run_id = (select max(run_id) from whoop.refresh_log) "
                       "order by finished_at - started_at desc limit 4")
        print("         slowest views in the second refresh: %s"
              % ", ".join("%s %s s" % (r[0], r[1]) for r in slowest))

        # copies of the metric views, as written and with built-in aggregates
        psql("create schema bench_ours; create schema bench_builtin; set work_mem = '64MB';")
        differing = []
        for view in METRICS:
            definition = psql("select pg_get_viewdef('whoop_internal.%s_def'::regclass)" % view).strip()
            variant = builtin_variant(definition)
            if variant != definition:
                differing.append(view)
            psql("create materialized view bench_ours.%s as %s with no data;"
                 "create materialized view bench_builtin.%s as %s with no data;"
                 % (view, definition.rstrip(";"), view, variant.rstrip(";")))
        best = {}
        for _ in range(3):
            for view in differing:
                for schema in ("bench_ours", "bench_builtin"):
                    t = timed("set work_mem = '64MB'; refresh materialized view %s.%s" % (schema, view))
                    key = (schema, view)
                    best[key] = min(best.get(key, t), t)
        print("metric views whose definition uses our aggregates, plain REFRESH, best of 3:")
        print("  %-28s %10s %12s %8s" % ("view", "ours (s)", "built-in (s)", "ratio"))
        total_ours = total_builtin = 0.0
        for view in differing:
            ours, builtin = best[("bench_ours", view)], best[("bench_builtin", view)]
            total_ours += ours
            total_builtin += builtin
            print("  %-28s %10.2f %12.2f %7.1fx" % (view, ours, builtin, builtin / ours))
        ratio = total_builtin / total_ours
        print("  %-28s %10.2f %12.2f %7.1fx  (target >= 1.5x: %s)"
              % ("all of them", total_ours, total_builtin, ratio, "met" if ratio >= 1.5 else "NOT met"))
        same = rows("select count(*) from bench_ours.recovery_volatility o "
                    "join bench_builtin.recovery_volatility b using (user_id, day) "
                    "where abs(o.volatility_30d - b.volatility_30d) > 1e-6 * greatest(1, abs(b.volatility_30d))")
        print("  recovery_volatility rows differing by more than 1e-6 relative: %s" % same[0][0])
        return 0 if failed == "0" else 1
    finally:
        sim.stop()


if __name__ == "__main__":
    sys.exit(main(None))
