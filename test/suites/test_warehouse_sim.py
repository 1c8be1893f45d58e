"""test_warehouse_sim.py -- the warehouse on simulator data, cross-checked.

Loads every record the WHOOP simulator serves (control plane
/_sim/records, independent of the FDW and the sync) straight into the raw
tables, refreshes, and checks: facts and metrics against the independent
Python model (warehouse_fixture.Reference), every metric column against
plain SQL (warehouse_crosscheck), quality checks, and that a second refresh
changes nothing.
"""

import datetime as dt
import json
import os
import unittest

import harness
import warehouse_crosscheck
import warehouse_fixture as fx
from harness import psql, rows, scalar
from test_warehouse import Compare, install_extension, query, refresh, METRICS, MARTS

DB = "wh_warehouse_sim"
SIM_NOW = "2026-06-30T12:00:00Z"

SIM = None
RECS = None
REF = None


def records(sim, kind):
    got = sim.control("GET", "records?kind=%s" % kind)
    return got["records"] if isinstance(got, dict) else got


def setUpModule():
    global SIM, RECS, REF
    SIM = harness.Simulator("--athletes", "2", "--days", "240", "--now", SIM_NOW).start()
    RECS = {k: records(SIM, k) for k in ("cycle", "recovery", "sleep", "workout")}
    install_extension(DB)
    psql(fx.RAW_INSERT_SQL.replace("@DOC@", json.dumps(RECS)))
    users = sorted({r["user_id"] for r in RECS["cycle"]})
    psql("".join("insert into whoop.raw_profile values (%d, '2020-01-01Z', 'a%d@example.org', 'A', 'B', '{}');"
                 "insert into whoop.raw_body_measurement values (%d, '2020-01-01Z', 1.8, 75, 190, '{}');"
                 % (u, u, u) for u in users))
    REF = fx.Reference(RECS, hemispheres={})
    refresh()


def tearDownModule():
    if SIM:
        SIM.stop()
    psql("drop database if exists %s with (force)" % DB, dbname="postgres")


class SimulatorData(Compare, unittest.TestCase):

    def test_raw_counts_equal_what_the_simulator_serves(self):
        for kind in ("cycle", "recovery", "sleep", "workout"):
            self.assertEqual(int(scalar("select count(*) from whoop.raw_%s" % kind)), len(RECS[kind]), kind)
        self.assertGreater(len(RECS["cycle"]), 300)

    def test_facts_match_the_reference(self):
        self.compare("fact_daily_recovery", REF.recovery)
        got = {(r["user_id"], dt.date.fromisoformat(r["day"])): r
               for r in query("select * from whoop.fact_daily_strain")}
        self.assertEqual(sorted(got), sorted(REF.strain))
        for k, exp in REF.strain.items():
            row = dict(got[k])
            row["zone_total_minutes"] = sum(row["zone_%d_minutes" % i] for i in range(6))
            for col, val in exp.items():
                self.assertTrue(fx_close(row[col], val), "%s %s: %r vs %r" % (k, col, row[col], val))

    # one test per metric, so that one metric's failure does not hide another's
    def test_recovery_momentum_matches_the_reference(self):
        self.compare("recovery_momentum", REF.recovery_momentum())

    def test_strain_recovery_efficiency_matches_the_reference(self):
        self.compare("strain_recovery_efficiency", REF.strain_recovery_efficiency())

    def test_training_readiness_gap_matches_the_reference(self):
        self.compare("training_readiness_gap", REF.training_readiness_gap())

    def test_recovery_volatility_matches_the_reference(self):
        self.compare("recovery_volatility", REF.recovery_volatility())

    def test_autonomic_balance_matches_the_reference(self):
        self.compare("autonomic_balance", REF.autonomic_balance())

    def test_seasonal_adaptation_matches_the_reference(self):
        self.compare("seasonal_adaptation", REF.seasonal_adaptation(), key=("user_id", "year", "season"))

    def test_training_load_matches_the_reference(self):
        self.compare("training_load", REF.training_load())

    def test_metrics_match_plain_sql(self):
        for view, column, n, bad in warehouse_crosscheck.run(rows):
            self.assertGreater(n, 0, (view, column))
            self.assertEqual(bad, 0, "%s.%s: %d of %d rows differ" % (view, column, bad, n))

    def test_quality_checks_pass(self):
        res = query("select * from whoop.check_quality()")
        skip = {"sync_freshness"}
        if dt.datetime.now(dt.timezone.utc) < dt.datetime.fromisoformat(SIM_NOW.replace("Z", "+00:00")):
            skip.add("no_future_days")       # the simulator's data reaches its own "now"
        # every rule ran: one row per builtin rule, two per unique index of
        # what users read (schema whoop), one for freshness
        expected = int(scalar("select count(*) from whoop.quality_rules"))
        expected += 2 * int(scalar(
            "select count(*) from whoop.refresh_plan p join pg_index i on i.indrelid = p.stored_in "
            "where i.indisunique and p.view_name like 'whoop.%'"))
        self.assertEqual(len(res), expected + 1)
        self.assertEqual({r["check_name"] for r in res} - {"unique_grain", "not_null_keys", "sync_freshness"},
                         {r[0] for r in rows("select distinct check_name from whoop.quality_rules")})
        bad = [r for r in res if r["status"] != "pass" and r["check_name"] not in skip]
        self.assertEqual(bad, [])

    def test_a_second_refresh_changes_nothing(self):
        digest = lambda: psql(" union all ".join(
            "select '%s', md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from whoop.%s t" % (v, v)
            for v in MARTS + METRICS))
        before = digest()
        refresh()
        self.assertEqual(digest(), before)


class PipelineEndToEnd(harness.SimulatorSuite):
    """CALL whoop.run_pipeline() through the FDW and the sync, on the simulator."""

    SIM_ARGS = ("--athletes", "2", "--days", "120", "--now", SIM_NOW,
                "--rate-per-minute", "0", "--rate-per-day", "0")
    DB = "wh_pipeline_e2e"
    LINK = {"import_into": None}

    def setUp(self):
        # the module's other classes work in the module's database
        os.environ["WHOOP_TEST_DB"] = self.DB

    def run_pipeline(self):
        psql("call whoop.run_pipeline()")
        run = scalar("select max(run_id) from whoop.run_log where step = 'pipeline'")
        return int(run), {r["step"]: r for r in query("select * from whoop.run_log where run_id = %s" % run)}

    def digest(self):
        return psql(" union all ".join(
            "select '%s', md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from whoop.%s t" % (v, v)
            for v in MARTS + METRICS))

    def test_pipeline_twice_and_a_late_change(self):
        run, steps = self.run_pipeline()
        self.assertEqual(steps["sync"]["status"], "ok", steps["sync"])
        self.assertGreater(steps["sync"]["row_count"], 0)
        self.assertEqual(steps["refresh"]["status"], "ok", steps["refresh"])
        quality = query("select * from whoop.quality_log where run_id = %d and status <> 'pass'" % run)
        if dt.datetime.now(dt.timezone.utc) < dt.datetime.fromisoformat(SIM_NOW.replace("Z", "+00:00")):
            quality = [q for q in quality if q["check_name"] != "no_future_days"]
        self.assertEqual(quality, [])
        self.assertEqual(steps["pipeline"]["status"], "ok")
        # Everything the simulator serves arrived, and the facts are the reference's.
        recs = {k: records(self.sim, k) for k in ("cycle", "recovery", "sleep", "workout")}
        for kind, items in recs.items():
            self.assertEqual(int(scalar("select count(*) from whoop.raw_%s" % kind)), len(items), kind)
        ref = fx.Reference(recs, hemispheres={})
        cmp = Compare()
        cmp.assertEqual, cmp.assertTrue, cmp.assertNotIn = self.assertEqual, self.assertTrue, self.assertNotIn
        cmp.compare("fact_daily_recovery", ref.recovery)
        cmp.compare("recovery_momentum", ref.recovery_momentum())
        self.assertEqual(sorted(int(r[0]) for r in rows("select user_id from whoop.dim_user")), sorted(self.users))
        # A second run changes nothing.
        digest = self.digest()
        run2, steps2 = self.run_pipeline()
        self.assertEqual(steps2["pipeline"]["status"], "ok")
        self.assertEqual(steps2["sync"]["row_count"], 0)
        self.assertEqual(self.digest(), digest)
        # A recovery re-scored ten days back reaches the facts and the metrics.
        cycle = query("select cycle_id, day from whoop.fact_daily_recovery where recovery_score is not null "
                      "and user_id = %d order by day desc offset 10 limit 1" % self.users[0])[0]
        self.sim.control("POST", "touch", {"kind": "recovery", "id": cycle["cycle_id"],
                                           "set": {"score.recovery_score": 1.25}})
        run3, steps3 = self.run_pipeline()
        self.assertEqual(steps3["sync"]["row_count"], 1)
        self.assertEqual(scalar("select recovery_score from whoop.fact_daily_recovery where cycle_id = %d"
                                % cycle["cycle_id"]), "1.25")
        self.assertEqual(scalar("select recovery_score from whoop.recovery_momentum where user_id = %d "
                                "and day = '%s'" % (self.users[0], cycle["day"])), "1.25")

    def test_sync_failure_is_recorded_and_the_rest_runs(self):
        psql("alter server sim options (add max_retries '0')")
        try:
            self.sim.fault(path="/v2/activity/sleep", kind="status", status=500, count=1000)
            run, steps = self.run_pipeline()
            self.assertEqual(steps["sync"]["status"], "failed")
            self.assertIn("/sleep: ", steps["sync"]["error"])
            self.assertRegex(steps["sync"]["detail"], r"^\d+ account endpoints synced, 2 failed")
            self.assertEqual(steps["refresh"]["status"], "ok")
            self.assertIn(steps["quality"]["status"], ("ok", "warn"))
            self.assertEqual(steps["pipeline"]["status"], "failed")
        finally:
            self.sim.reset()
            psql("alter server sim options (drop max_retries)")
        run, steps = self.run_pipeline()
        self.assertEqual(steps["pipeline"]["status"], "ok")


def fx_close(a, b):
    from test_warehouse import close
    return close(a, b)


if __name__ == "__main__":
    unittest.main()
