"""bench_fdw.py -- backfill speed: the FDW against the pipeline it replaces.

One athlete, five years, every collection (cycle, recovery, sleep, workout)
loaded into identical local tables (typed columns + the raw record as jsonb),
from the same simulator (rate limit off), in the same run:

  (a) INSERT ... SELECT from the foreign tables (one statement per table);
  (b) a Python loader as the replaced Airflow task would do it: urllib
      paging through the API, json parsing, flattening, and psycopg2
      execute_values batches (Debian's python3-psycopg2).

Prints wall times, records per second, requests made (which must equal the
pages read) and the ratio b/a.  Not a test: nothing here asserts on time.
"""

import json
import os
import sys
import time
import urllib.parse
import urllib.request

import harness

COLLECTIONS = {
    # table: (API path, columns in table order as dotted paths into the record)
    "cycle": ("/v2/cycle", ["id", "user_id", "created_at", "updated_at", "start", "end",
                            "timezone_offset", "score_state", "score.strain", "score.kilojoule",
                            "score.average_heart_rate", "score.max_heart_rate"]),
    "recovery": ("/v2/recovery", ["cycle_id", "sleep_id", "user_id", "created_at", "updated_at",
                                  "score_state", "score.user_calibrating", "score.recovery_score",
                                  "score.resting_heart_rate", "score.hrv_rmssd_milli",
                                  "score.spo2_percentage", "score.skin_temp_celsius"]),
    "sleep": ("/v2/activity/sleep", [
        "id", "cycle_id", "v1_id", "user_id", "created_at", "updated_at", "start", "end",
        "timezone_offset", "nap", "score_state",
        "score.stage_summary.total_in_bed_time_milli", "score.stage_summary.total_awake_time_milli",
        "score.stage_summary.total_no_data_time_milli",
        "score.stage_summary.total_light_sleep_time_milli",
        "score.stage_summary.total_slow_wave_sleep_time_milli",
        "score.stage_summary.total_rem_sleep_time_milli", "score.stage_summary.sleep_cycle_count",
        "score.stage_summary.disturbance_count", "score.sleep_needed.baseline_milli",
        "score.sleep_needed.need_from_sleep_debt_milli",
        "score.sleep_needed.need_from_recent_strain_milli",
        "score.sleep_needed.need_from_recent_nap_milli", "score.respiratory_rate",
        "score.sleep_performance_percentage", "score.sleep_consistency_percentage",
        "score.sleep_efficiency_percentage"]),
    "workout": ("/v2/activity/workout", [
        "id", "v1_id", "user_id", "created_at", "updated_at", "start", "end", "timezone_offset",
        "sport_name", "sport_id", "score_state", "score.strain", "score.average_heart_rate",
        "score.max_heart_rate", "score.kilojoule", "score.percent_recorded", "score.distance_meter",
        "score.altitude_gain_meter", "score.altitude_change_meter",
        "score.zone_durations.zone_zero_milli", "score.zone_durations.zone_one_milli",
        "score.zone_durations.zone_two_milli", "score.zone_durations.zone_three_milli",
        "score.zone_durations.zone_four_milli", "score.zone_durations.zone_five_milli"]),
}


def leaf(record, path):
    for key in path.split("."):
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


def python_loader(sim, access_token, dsn):
    """python_loader is the replaced pipeline's extract-and-load step."""
    import psycopg2
    import psycopg2.extras
    conn = psycopg2.connect(dsn)
    cur = conn.cursor()
    records = 0
    for table, (path, columns) in COLLECTIONS.items():
        next_token = None
        sql = "insert into py.%s values %%s" % table
        while True:
            query = {"limit": "25"}
            if next_token:
                query["nextToken"] = next_token
            req = urllib.request.Request(
                sim.api_url + path + "?" + urllib.parse.urlencode(query),
                headers={"Authorization": "Bearer " + access_token})
            with urllib.request.urlopen(req) as resp:
                page = json.load(resp)
            rows = [tuple(leaf(r, c) for c in columns) + (json.dumps(r),)
                    for r in page["records"]]
            psycopg2.extras.execute_values(cur, sql, rows)
            records += len(rows)
            next_token = page.get("next_token")
            if not next_token:
                break
    conn.commit()
    conn.close()
    return records


def main(cluster):
    sim = harness.Simulator("--athletes", "1", "--days", "1826",
                            "--rate-per-minute", "0", "--rate-per-day", "0").start()
    try:
        harness.fresh_database("bench_fdw")
        harness.link_simulator(sim)
        # identical local tables for both loaders
        for schema in ("fdw", "py"):
            harness.psql("create schema %s;" % schema + "".join(
                "create table %s.%s (like api.%s);" % (schema, t, t) for t in COLLECTIONS))
        results = {}
        for attempt in range(2):
            for schema in ("fdw", "py"):
                harness.psql("".join("truncate %s.%s;" % (schema, t) for t in COLLECTIONS))
            harness.psql("checkpoint")

            sim.reset()
            started = time.perf_counter()
            out = harness.psql("".join("insert into fdw.%s select * from api.%s;" % (t, t)
                                       for t in COLLECTIONS)
                               + "select sum(n) from (" + " union all ".join(
                                   "select count(*) n from fdw.%s" % t for t in COLLECTIONS)
                               + ") s")
            fdw_time = time.perf_counter() - started
            fdw_records = int(out.split()[-1])
            fdw_stats = sim.stats()["requests"]

            # a fresh access token for the Python loader, outside the timing
            token = harness.scalar("select access_token from whoop_internal.account")
            sim.reset()
            dsn = "host=%s port=%s user=%s dbname=bench_fdw" % (
                os.environ["PGHOST"], os.environ["PGPORT"], os.environ["PGUSER"])
            started = time.perf_counter()
            py_records = python_loader(sim, token, dsn)
            py_time = time.perf_counter() - started
            py_stats = sim.stats()["requests"]
            if not results or fdw_time + py_time < results["fdw_time"] + results["py_time"]:
                results = dict(fdw_time=fdw_time, py_time=py_time, fdw_records=fdw_records,
                               py_records=py_records, fdw_stats=fdw_stats, py_stats=py_stats)

        pages = sum(v.get("200", 0) for k, v in results["py_stats"].items())
        fdw_requests = sum(sum(v.values()) for k, v in results["fdw_stats"].items()
                           if not k.startswith("POST"))
        same = harness.scalar("select bool_and(d = 0) from (" + " union all ".join(
            "select count(*) d from ((select * from fdw.{t} except all select * from py.{t}) "
            "union all (select * from py.{t} except all select * from fdw.{t})) x"
            .format(t=t) for t in COLLECTIONS) + ") s")
        print("backfill of 1 athlete x 5 years (cycle, recovery, sleep, workout), best of 2")
        print("  %-44s %8.2f s  %7.0f records/s  %d requests"
              % ("(a) INSERT ... SELECT from the foreign tables", results["fdw_time"],
                 results["fdw_records"] / results["fdw_time"], fdw_requests))
        print("  %-44s %8.2f s  %7.0f records/s  %d requests"
              % ("(b) Python urllib + psycopg2 execute_values", results["py_time"],
                 results["py_records"] / results["py_time"], pages))
        print("  records: %d (a), %d (b); identical tables: %s"
              % (results["fdw_records"], results["py_records"], same))
        print("  pages: %d; FDW requests == pages: %s" % (pages, fdw_requests == pages))
        ratio = results["py_time"] / results["fdw_time"]
        print("  ratio (b)/(a): %.1fx  (target >= 3x: %s)" % (ratio, "met" if ratio >= 3 else "NOT met"))
        return 0 if same == "t" and fdw_requests == pages else 1
    finally:
        sim.stop()


if __name__ == "__main__":
    sys.exit(main(None))
