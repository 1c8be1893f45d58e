"""test_warehouse.py -- the warehouse layers on a hand-built fixture.

The fixture (warehouse_fixture.py: three members, three to six months, with
gaps, a DST switch, a timezone change, naps, two cycles on one day, pending
and unscorable records, seasons at the edge of the season minimum) is loaded straight into the raw tables; every fact
and metric is compared with an independent Python model of METRICS.md.
Then: the day rule case by case, calendar windows and minimum counts, no
look-ahead, categories at their edges, SCD2, REFRESH CONCURRENTLY and
failure isolation, quality checks on injected bad rows, lineage, the
pipeline (run log, idempotence, one at a time, aborted runs) and the
reader role.
"""

import datetime as dt
import json
import os
import subprocess
import time
import unittest

import harness
import warehouse_crosscheck
import warehouse_fixture as fx
from harness import psql, scalar, rows

DB = "wh_warehouse"
D = dt.date

MARTS = ["dim_user", "dim_date", "fact_daily_recovery", "fact_daily_strain"]
METRICS = ["recovery_momentum", "strain_recovery_efficiency", "training_readiness_gap",
           "recovery_volatility", "autonomic_balance", "seasonal_adaptation", "training_load"]

def install_extension(db):
    """install_extension (re)creates database DB with whoop_fdw and makes it the suite's."""
    psql("drop database if exists %s with (force)" % db, dbname="postgres")
    psql("create database %s" % db, dbname="postgres")
    psql("create extension whoop_fdw", dbname=db)
    os.environ["WHOOP_TEST_DB"] = db
    return db


def query(sql):
    """query runs a SELECT and returns its rows as dicts (through json)."""
    out = psql("select coalesce(json_agg(t), '[]') from (%s) t" % sql)
    return json.loads(out)


def refresh():
    res = query("select * from whoop.refresh()")
    bad = [r for r in res if r["status"] != "ok"]
    assert not bad, bad
    return res


def close(a, b, tol=1e-9):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (bool, str, list, dt.date)) or isinstance(b, (bool, str, list, dt.date)):
        return a == b
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def psql_notices(sql, dbname=None):
    """psql_notices runs SQL and returns (returncode, stdout, stderr) with NOTICEs shown."""
    env = dict(os.environ)
    env["PGOPTIONS"] = "-c client_min_messages=notice"
    proc = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                           "-d", dbname or os.environ["WHOOP_TEST_DB"]],
                          input=sql, capture_output=True, text=True, env=env, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def background(sql, appname):
    """background starts psql on SQL without waiting; application_name tells it apart."""
    env = dict(os.environ)
    env["PGAPPNAME"] = appname
    return subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-d", os.environ["WHOOP_TEST_DB"]],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env), sql


def start_background(sql, appname):
    proc, sql = background(sql, appname)
    proc.stdin.write(sql)
    proc.stdin.close()
    proc.stdin = None
    return proc


def finish(proc):
    """finish waits for a background psql and closes its pipes."""
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


REF = None
RECS = None


def setUpModule():
    global REF, RECS
    install_extension(DB)
    RECS = fx.build()
    psql(fx.load_sql(RECS))
    REF = fx.Reference(RECS)
    refresh()


def tearDownModule():
    psql("drop database if exists %s with (force)" % DB, dbname="postgres")


def day(s):
    return D.fromisoformat(s)


class Compare:
    """Compare mixes in: one SQL view against one reference dict, column by column."""

    def compare(self, view, expected, key=("user_id", "day"), skip_users=()):
        got = query("select * from whoop.%s" % view)
        got_map = {}
        for r in got:
            if r["user_id"] in skip_users:
                continue
            k = tuple(day(r[c]) if c == "day" else r[c] for c in key)
            self.assertNotIn(k, got_map, "%s: duplicate key %s" % (view, k))
            got_map[k] = r
        self.assertEqual(sorted(got_map), sorted(expected), "%s: row set differs" % view)
        checked = 0
        for k, exp in expected.items():
            row = got_map[k]
            for col, val in exp.items():
                v = row[col]
                if isinstance(val, D):
                    v = day(v)
                self.assertTrue(close(v, val), "%s %s %s: sql %r, reference %r" % (view, k, col, v, val))
                checked += 1
        return checked


class DayRule(unittest.TestCase):
    """The WHOOP day of every cycle and the one-row-per-day rule."""

    def test_every_cycle_gets_the_reference_day(self):
        got = {r["cycle_id"]: r for r in query("select * from whoop.stg_cycle_day")}
        self.assertEqual(set(got), {c["id"] for c in RECS["cycle"]})
        for cid, (d, main) in REF.cycle_day.items():
            self.assertEqual(day(got[cid]["day"]), d, "cycle %s" % cid)
            self.assertEqual(got[cid]["main_sleep_id"], main["id"] if main else None)
        primaries = {(r["user_id"], day(r["day"])): r["cycle_id"] for r in got.values() if r["is_primary"]}
        self.assertEqual(primaries, {k: c["id"] for k, c in REF.primary.items()})

    def fact(self, table, user, d):
        res = query("select * from whoop.%s where user_id = %d and day = '%s'" % (table, user, d))
        return res[0] if res else None

    def test_wake_date_is_local_not_utc(self):
        # Tokyo: asleep 22:xx, up 05:45-07:45 at +09:00 -- the previous UTC date.
        r = self.fact("fact_daily_recovery", fx.USER_A, D(2025, 3, 20))
        end = scalar("select \"end\" at time zone 'UTC' from whoop.raw_sleep where id = '%s'" % r["sleep_id"])
        self.assertTrue(end.startswith("2025-03-19"), end)
        # Sydney (+11:00) and a week at 'Z' for the second member.
        self.assertIsNotNone(self.fact("fact_daily_recovery", fx.USER_B, D(2025, 3, 3)))
        self.assertIsNotNone(self.fact("fact_daily_recovery", fx.USER_B, D(2025, 2, 1)))

    def test_dst_night(self):
        # Asleep 23:00 EST (-05:00), up 07:00 EDT (-04:00): day 9 March.
        r = self.fact("fact_daily_recovery", fx.USER_A, D(2025, 3, 9))
        self.assertIsNotNone(r)
        local_end = scalar("select end_local from whoop.stg_sleep where sleep_id = '%s'" % r["sleep_id"])
        self.assertEqual(local_end, "2025-03-09 07:00:00")
        self.assertAlmostEqual(r["hours_in_bed"], 7.0)

    def test_fallback_without_main_sleep(self):
        # No sleep that night: start 23:30 + 12 h = 11:30 next day.
        rows_ = query("select * from whoop.stg_cycle_day where user_id = %d and day = '2025-02-20'" % fx.USER_A)
        self.assertEqual([r["day_rule"] for r in rows_], ["cycle start + 12 h"])
        self.assertIsNotNone(self.fact("fact_daily_strain", fx.USER_A, D(2025, 2, 20)))
        self.assertIsNone(self.fact("fact_daily_recovery", fx.USER_A, D(2025, 2, 20)))

    def test_nap_is_never_the_main_sleep(self):
        # A cycle with only a nap falls back; a nap in an ordinary cycle changes nothing.
        r = query("select * from whoop.stg_cycle_day where user_id = %d and day = '2025-03-03'" % fx.USER_A)
        self.assertEqual(len(r), 1)
        self.assertEqual(r[0]["day_rule"], "cycle start + 12 h")
        self.assertIsNone(r[0]["main_sleep_id"])
        self.assertIsNone(self.fact("fact_daily_recovery", fx.USER_A, D(2025, 3, 3)))
        r = self.fact("fact_daily_recovery", fx.USER_A, D(2025, 2, 22))
        naps = rows("select count(*) from whoop.raw_sleep where nap and user_id = %d "
                    "and cycle_id = %d" % (fx.USER_A, r["cycle_id"]))
        self.assertEqual(naps, [["1"]])
        self.assertFalse(scalar("select nap from whoop.raw_sleep where id = '%s'" % r["sleep_id"]) == "t")

    def test_two_cycles_on_one_day_longer_main_sleep_wins(self):
        cyc = query("select * from whoop.stg_cycle_day where user_id = %d and day = '2025-02-15' "
                    "order by cycle_id" % fx.USER_A)
        self.assertEqual(len(cyc), 2)
        p, q = cyc
        self.assertFalse(p["is_primary"])
        self.assertTrue(q["is_primary"])
        s = self.fact("fact_daily_strain", fx.USER_A, D(2025, 2, 15))
        self.assertEqual(s["cycle_id"], q["cycle_id"])
        # P's 30-minute workout belongs to P, so the day counts Q's 45 minutes only.
        self.assertEqual(s["workout_count"], 1)
        self.assertAlmostEqual(s["workout_minutes"], 45.0)
        r = self.fact("fact_daily_recovery", fx.USER_A, D(2025, 2, 15))
        self.assertEqual(r["cycle_id"], q["cycle_id"])
        self.assertAlmostEqual(r["hours_in_bed"], 7.0)

    def test_two_cycles_tie_later_start_wins(self):
        cyc = query("select c.*, r.start from whoop.stg_cycle_day c join whoop.raw_cycle r on r.id = c.cycle_id "
                    "where c.user_id = %d and c.day = '2025-04-05' order by r.start" % fx.USER_A)
        self.assertEqual([c["is_primary"] for c in cyc], [False, True])
        self.assertEqual(cyc[0]["main_sleep_length"], cyc[1]["main_sleep_length"])

    def test_one_row_per_user_and_day(self):
        for t in ("fact_daily_recovery", "fact_daily_strain"):
            self.assertEqual(scalar("select count(*) - count(distinct (user_id, day)) from whoop.%s" % t), "0")


class Facts(Compare, unittest.TestCase):

    def test_fact_daily_recovery(self):
        n = self.compare("fact_daily_recovery", REF.recovery)
        self.assertGreater(n, 1000)

    def test_fact_daily_strain(self):
        got = {(r["user_id"], day(r["day"])): r for r in query("select * from whoop.fact_daily_strain")}
        self.assertEqual(sorted(got), sorted(REF.strain))
        for k, exp in REF.strain.items():
            row = dict(got[k])
            row["zone_total_minutes"] = sum(row["zone_%d_minutes" % i] for i in range(6))
            for col, val in exp.items():
                self.assertTrue(close(row[col], val), "%s %s: %r vs %r" % (k, col, row[col], val))

    def test_pending_and_unscorable(self):
        s = query("select * from whoop.fact_daily_strain where user_id = %d and day = '2025-01-25'" % fx.USER_A)[0]
        self.assertEqual((s["score_state"], s["day_strain"], s["kcal"]), ("UNSCORABLE", None, None))
        r = query("select * from whoop.fact_daily_recovery where user_id = %d and day = '2025-02-25'" % fx.USER_A)[0]
        self.assertEqual((r["recovery_score_state"], r["recovery_score"]), ("UNSCORABLE", None))
        self.assertIsNotNone(r["hours_asleep"])          # its sleep was scored
        r = query("select * from whoop.fact_daily_recovery where user_id = %d and day = '2025-02-26'" % fx.USER_A)[0]
        self.assertEqual((r["sleep_score_state"], r["hours_asleep"]), ("PENDING_SCORE", None))
        self.assertIsNotNone(r["recovery_score"])
        # The ongoing, pending cycle: visible, not complete, no scores.
        s = query("select * from whoop.fact_daily_strain where user_id = %d and day = '2025-04-19'" % fx.USER_A)[0]
        self.assertEqual((s["cycle_complete"], s["score_state"], s["day_strain"]), (False, "PENDING_SCORE", None))
        # Staging keeps the pending and unscorable records, without scores.
        st = query("select score_state, recovery_score from whoop.stg_recovery where score_state <> 'SCORED'")
        self.assertEqual(sorted(r["score_state"] for r in st), ["PENDING_SCORE", "UNSCORABLE"])
        self.assertTrue(all(r["recovery_score"] is None for r in st))
        w = query("select * from whoop.stg_workout where score_state = 'UNSCORABLE'")
        self.assertEqual(len(w), 1)
        self.assertIsNone(w[0]["strain"])
        s = query("select * from whoop.fact_daily_strain where user_id = %d and day = '2025-03-05'" % fx.USER_A)[0]
        self.assertEqual(s["workout_count"], 1)

    def test_units(self):
        r = query("select kilojoule, kcal from whoop.stg_cycle where kilojoule is not null limit 1")[0]
        self.assertTrue(close(r["kcal"], r["kilojoule"] / 4.184))
        w = query("select * from whoop.stg_workout where distance_km is not null limit 1")[0]
        raw = json.loads(psql("select record from whoop.raw_workout where id = '%s'" % w["workout_id"]))
        self.assertTrue(close(w["distance_km"], raw["score"]["distance_meter"] / 1000))
        self.assertTrue(close(w["zone_3_minutes"], raw["score"]["zone_durations"]["zone_three_milli"] / 60000))


class Metrics(Compare, unittest.TestCase):

    def test_recovery_momentum(self):
        self.compare("recovery_momentum", REF.recovery_momentum())

    def test_strain_recovery_efficiency(self):
        self.compare("strain_recovery_efficiency", REF.strain_recovery_efficiency())

    def test_training_readiness_gap(self):
        self.compare("training_readiness_gap", REF.training_readiness_gap())

    def test_recovery_volatility(self):
        self.compare("recovery_volatility", REF.recovery_volatility())

    def test_autonomic_balance(self):
        self.compare("autonomic_balance", REF.autonomic_balance())

    def test_autonomic_baselines_count_days_without_a_positive_hrv(self):
        # Member A: 25 February an unscorable recovery after a scored sleep,
        # 29 March a scored recovery with HRV 0 and resting HR 73, 31 March
        # one without an HRV, 2 April a scored sleep without a recovery.
        # None of them has a row; each feeds the baselines of what it has.
        facts = {day(r["day"]): r for r in query(
            "select day, hrv_rmssd_milli, resting_heart_rate, respiratory_rate from whoop.fact_daily_recovery "
            "where user_id = %d" % fx.USER_A)}
        has = lambda d: tuple(facts[d][c] is not None for c in
                              ("hrv_rmssd_milli", "resting_heart_rate", "respiratory_rate"))
        self.assertEqual(has(D(2025, 2, 25)), (False, False, True))
        self.assertEqual((facts[D(2025, 3, 29)]["hrv_rmssd_milli"], facts[D(2025, 3, 29)]["resting_heart_rate"]),
                         (0, 73))
        self.assertEqual(has(D(2025, 3, 29)), (True, True, True))
        self.assertEqual(has(D(2025, 3, 31)), (False, True, True))
        self.assertEqual(has(D(2025, 4, 2)), (False, False, True))
        got = {day(r["day"]): r for r in query("select * from whoop.autonomic_balance where user_id = %d"
                                               % fx.USER_A)}
        self.assertFalse({D(2025, 2, 25), D(2025, 3, 29), D(2025, 3, 31), D(2025, 4, 2)} & set(got))
        self.assertEqual(set(got), {d for d, r in facts.items() if (r["hrv_rmssd_milli"] or 0) > 0})

        def baseline(d, column, positive_hrv_only=False):
            vals = [r[column] for x, r in facts.items()
                    if d - dt.timedelta(days=60) <= x <= d - dt.timedelta(days=1) and r[column] is not None
                    and (not positive_hrv_only or (r["hrv_rmssd_milli"] or 0) > 0)]
            return fx.mean(vals), fx.stdev(vals), vals

        # D-1 = 29 March: its resting HR 73 is in 30 March's baseline.
        mean, sd, vals = baseline(D(2025, 3, 30), "resting_heart_rate")
        self.assertIn(73, vals)
        self.assertTrue(close(got[D(2025, 3, 30)]["rhr_baseline"], mean))
        self.assertTrue(close(got[D(2025, 3, 30)]["rhr_baseline_sd"], sd))
        # D-1 = 25 February: its respiratory rate is in 26 February's baseline.
        mean, sd, vals = baseline(D(2025, 2, 26), "respiratory_rate")
        self.assertTrue(close(got[D(2025, 2, 26)]["resp_baseline"], mean))
        self.assertTrue(close(got[D(2025, 2, 26)]["resp_baseline_sd"], sd))
        # 3 April sees all four days, and differs from a baseline over positive-HRV days only.
        for column, prefix, extra in (("resting_heart_rate", "rhr", 2), ("respiratory_rate", "resp", 4)):
            mean, sd, vals = baseline(D(2025, 4, 3), column)
            _, _, narrow = baseline(D(2025, 4, 3), column, positive_hrv_only=True)
            self.assertEqual(len(vals) - len(narrow), extra, column)
            row = got[D(2025, 4, 3)]
            self.assertTrue(close(row[prefix + "_baseline"], mean), (column, row[prefix + "_baseline"], mean))
            self.assertTrue(close(row[prefix + "_baseline_sd"], sd), column)
            self.assertFalse(close(row[prefix + "_baseline"], fx.mean(narrow)), column)
            z = (row[column] - mean) / sd
            self.assertTrue(close(row["z_" + prefix], z), column)

    def test_seasonal_adaptation(self):
        exp = REF.seasonal_adaptation()
        self.compare("seasonal_adaptation", exp, key=("user_id", "year", "season"))
        # The southern member's seasons carry southern names; Dec-Feb counts to the year it ends.
        self.assertIn((fx.USER_B, 2025, "Summer"), exp)
        self.assertIn((fx.USER_B, 2025, "Autumn"), exp)
        self.assertIn((fx.USER_A, 2025, "Winter"), exp)
        got = query("select * from whoop.seasonal_adaptation where user_id = %d order by season_start" % fx.USER_A)
        self.assertIsNone(got[0]["baseline_recovery"])          # no days before winter
        self.assertIsNotNone(got[1]["baseline_recovery"])       # > 30 days before spring
        self.assertIsNotNone(got[1]["adaptation_index"])
        got = query("select * from whoop.seasonal_adaptation where user_id = %d order by season_start" % fx.USER_B)
        self.assertIsNotNone(got[1]["z_recovery"])
        self.assertIsNone(got[1]["adaptation_index"])           # strap without skin temperature

    def test_season_means_need_14_observations(self):
        # Member C: a winter of 57 days (the baselines), a spring with 14 scored recoveries of its
        # 15 days, a summer with 13 of its 14 days.  Each mean counts its own measure.
        got = {r["season"]: r for r in query("select * from whoop.seasonal_adaptation where user_id = %d"
                                             % fx.USER_C)}
        self.assertEqual(sorted(got), ["Spring", "Summer", "Winter"])
        spring, summer = got["Spring"], got["Summer"]
        self.assertEqual((spring["days"], spring["recovery_days"], spring["baseline_days"]), (15, 14, 57))
        self.assertEqual((summer["days"], summer["recovery_days"], summer["baseline_days"]), (14, 13, 72))
        # 14 recoveries: a mean, a deviation, a z-score and a category
        for column in ("avg_recovery", "baseline_recovery", "recovery_deviation", "z_recovery",
                       "avg_ln_rmssd", "z_hrv", "avg_resting_heart_rate", "z_rhr", "adaptation_category"):
            self.assertIsNotNone(spring[column], column)
        # ... but 13 skin temperatures (one day without): no skin mean, hence no index
        for column in ("avg_skin_temp_celsius", "skin_temp_deviation", "z_skin", "adaptation_index"):
            self.assertIsNone(spring[column], column)
        # 13 recoveries, HRVs and resting HRs: nothing built on them, though there is a baseline;
        # the 14 days of strain still have their mean
        self.assertIsNotNone(summer["baseline_recovery"])
        for column in ("avg_recovery", "recovery_deviation", "z_recovery", "avg_ln_rmssd", "hrv_deviation",
                       "z_hrv", "avg_resting_heart_rate", "rhr_deviation", "z_rhr", "adaptation_index",
                       "adaptation_category"):
            self.assertIsNone(summer[column], column)
        self.assertIsNotNone(summer["avg_day_strain"])
        self.assertIsNotNone(summer["strain_deviation"])

    def test_the_report_says_a_season_has_too_few_days(self):
        lines = psql("select * from whoop.report(%d, 14)" % fx.USER_C).split("\n")
        self.assertEqual(lines[3], "season: 2025 Summer, too few days yet (13 days with a scored recovery)")
        page = psql("select whoop.report_html(%d, 120)" % fx.USER_C)
        self.assertRegex(page, r'<td>2025 Summer</td><td class="n">14</td><td class="n">–</td><td class="n">\d+</td>'
                               r'<td class="n">–</td><td class="n">–</td><td>too few days yet</td>')

    def test_training_load(self):
        self.compare("training_load", REF.training_load())

    def test_calendar_windows_with_gaps(self):
        # User A has no data on 5-7 February.  On 8 February the 3-day window
        # (6-8 Feb) holds one observation, so no trend; a ROWS window would
        # have reached back to 4 February.
        m = {day(r["day"]): r for r in query(
            "select * from whoop.recovery_momentum where user_id = %d and day between '2025-02-04' and '2025-02-10'"
            % fx.USER_A)}
        self.assertEqual(sorted(m), [D(2025, 2, 4), D(2025, 2, 8), D(2025, 2, 9), D(2025, 2, 10)])
        self.assertIsNone(m[D(2025, 2, 8)]["change_1d"])
        self.assertIsNone(m[D(2025, 2, 8)]["trend_3d"])
        self.assertTrue(close(m[D(2025, 2, 9)]["trend_3d"],
                              m[D(2025, 2, 9)]["recovery_score"] - m[D(2025, 2, 8)]["recovery_score"]))
        # 7-day volatility on 10 Feb: 4-10 Feb holds 4, 8, 9, 10 Feb.
        v = query("select volatility_7d from whoop.recovery_volatility where user_id = %d and day = '2025-02-10'"
                  % fx.USER_A)[0]["volatility_7d"]
        vals = [m[d]["recovery_score"] for d in (D(2025, 2, 4), D(2025, 2, 8), D(2025, 2, 9), D(2025, 2, 10))]
        self.assertTrue(close(v, fx.stdev(vals)))

    def test_minimum_counts(self):
        rows_ = query("select * from whoop.recovery_volatility where user_id = %d order by day" % fx.USER_A)
        first = rows_[:12]
        # 7 days min 3; 30 days min 10 (the first days are consecutive).
        self.assertEqual([r["volatility_7d"] is None for r in first[:4]], [True, True, False, False])
        self.assertEqual([r["volatility_30d"] is None for r in first[8:11]], [True, False, False])
        mom = query("select * from whoop.recovery_momentum where user_id = %d order by day limit 6" % fx.USER_A)
        self.assertEqual([r["trend_3d"] is None for r in mom[:2]], [True, False])
        self.assertEqual([r["trend_7d"] is None for r in mom[:3]], [True, True, False])
        self.assertEqual([r["trend_14d"] is None for r in mom[:6]], [True] * 4 + [False] * 2)
        # First row: only change_1d could exist and does not: everything NULL.
        self.assertIsNone(mom[0]["momentum_score"])
        self.assertIsNone(mom[0]["momentum_category"])
        # Second row: change_1d and trend_3d (equal: two points a day apart) -> their value.
        self.assertTrue(close(mom[1]["momentum_score"], mom[1]["change_1d"]))

    def test_readiness_gap_at_exact_edges(self):
        got = {day(r["day"]): r for r in query(
            "select * from whoop.training_readiness_gap where user_id = %d" % fx.USER_A)}
        expect = {
            D(2025, 3, 11): ("green", 4.0, "Pushing"),
            D(2025, 3, 12): ("yellow", 1.5, "Aligned"),
            D(2025, 3, 13): ("red", -1.5, "Aligned"),
            D(2025, 3, 15): ("red", -4.0, "Conservative"),
            D(2025, 3, 16): ("green", 4.5, "Overreaching"),
            D(2025, 3, 17): ("yellow", -4.1, "Undertrained"),
            D(2025, 3, 18): ("yellow", 1.625, "Pushing"),
        }
        for d, (z, gap, cat) in expect.items():
            r = got[d]
            self.assertEqual((r["recovery_zone"], r["gap_category"]), (z, cat), d)
            self.assertTrue(close(r["strain_gap"], gap), (d, r["strain_gap"]))
        r = got[D(2025, 4, 14)]
        self.assertEqual((r["recovery_zone"], r["avg_strain_prior_7d"], r["strain_gap"], r["overtraining_risk"]),
                         ("yellow", 17.0, 3.0, True))
        green = [r for r in got.values() if r["recovery_zone"] == "green"]
        self.assertTrue(green and all(r["overtraining_risk"] is False for r in green))
        e = query("select * from whoop.strain_recovery_efficiency where user_id = %d and day = '2025-03-21'"
                  % fx.USER_A)[0]
        self.assertEqual((e["day_strain"], e["efficiency"], e["efficiency_category"]), (0.75, None, None))

    def test_categories_at_their_edges(self):
        def cat(fn, x):
            return scalar("select whoop_internal.%s(%s::float8)" % (fn, x))
        nxt = lambda x: repr(__import__("math").nextafter(x, 1e9))
        prv = lambda x: repr(__import__("math").nextafter(x, -1e9))
        cases = {
            "momentum_category": [(2, "Accelerating"), (prv(2), "Improving"), (0.5, "Improving"),
                                  (prv(0.5), "Stable"), (-0.5, "Declining"), (nxt(-0.5), "Stable"),
                                  (-2, "Deteriorating"), (nxt(-2), "Declining")],
            "efficiency_category": [(1, "Efficient"), (nxt(1), "Highly Efficient"), (0.5, "Moderate"),
                                    (nxt(0.5), "Efficient"), (0, "Poor"), (nxt(0), "Moderate"),
                                    (-0.5, "Very Poor"), (nxt(-0.5), "Poor")],
            "strain_gap_category": [(4, "Pushing"), (nxt(4), "Overreaching"), (1.5, "Aligned"),
                                    (nxt(1.5), "Pushing"), (-1.5, "Aligned"), (prv(-1.5), "Conservative"),
                                    (-4, "Conservative"), (prv(-4), "Undertrained")],
            "volatility_category": [(prv(5), "Very Stable"), (5, "Stable"), (10, "Moderate"),
                                    (prv(10), "Stable"), (15, "Volatile"), (20, "Very Volatile"),
                                    (prv(20), "Volatile")],
            "balance_category": [(80, "Excellent"), (prv(80), "Good"), (60, "Good"), (prv(60), "Moderate"),
                                 (40, "Moderate"), (20, "Poor"), (prv(20), "Very Poor"), (0, "Very Poor")],
            "adaptation_category": [(10, "Well Adapted"), (nxt(10), "Thriving"), (5, "Normal Adaptation"),
                                    (nxt(5), "Well Adapted"), (-5, "Struggling"), (nxt(-5), "Normal Adaptation"),
                                    (-10, "Poorly Adapted"), (nxt(-10), "Struggling")],
            "load_zone": [(prv(0.8), "Detraining"), (0.8, "Optimal"), (1.3, "Optimal"), (nxt(1.3), "Caution"),
                          (1.5, "Caution"), (nxt(1.5), "High Risk")],
            "recovery_zone": [(67, "green"), (prv(67), "yellow"), (34, "yellow"), (prv(34), "red"),
                              (33.5, "red"), (66.9, "yellow"), (100, "green"), (0, "red")],
        }
        for fn, pairs in cases.items():
            for x, want in pairs:
                self.assertEqual(cat(fn, x), want, "%s(%s)" % (fn, x))
            self.assertEqual(scalar("select whoop_internal.%s(null) is null" % fn), "t")
        for args, want in ((("1", "0.5", "1"), "Balanced"), (("0.5", "0.5", "1"), "Balanced"),
                           (("1.0000001", "0.5", "1"), "Parasympathetic"), (("0.4999", "0.5", "1"), "Sympathetic")):
            self.assertEqual(scalar("select whoop_internal.balance_state(%s, %s, %s)" % args), want)

    def test_categories_follow_the_values(self):
        # Every category in every view agrees with its value under the reference thresholds.
        checks = [("recovery_momentum", "momentum_score", "momentum_category", fx.cat_momentum),
                  ("strain_recovery_efficiency", "efficiency", "efficiency_category", fx.cat_efficiency),
                  ("training_readiness_gap", "strain_gap", "gap_category", fx.cat_gap),
                  ("recovery_volatility", "volatility_30d", "volatility_category", fx.cat_volatility),
                  ("autonomic_balance", "balance_score", "balance_category", fx.cat_balance),
                  ("seasonal_adaptation", "recovery_deviation", "adaptation_category", fx.cat_adaptation),
                  ("training_load", "acwr_ewma", "load_zone", fx.cat_load)]
        for view, value, category, fn in checks:
            seen = set()
            for r in query("select %s as v, %s as c from whoop.%s" % (value, category, view)):
                self.assertEqual(r["c"], fn(r["v"]), "%s: %r" % (view, r))
                seen.add(r["c"])
            self.assertGreaterEqual(len(seen), 2, "%s: categories seen %s" % (view, seen))


class PlainSQL(unittest.TestCase):
    """Every metric column recomputed with plain SQL (no windows, no extension aggregates)."""

    def test_metrics_match_plain_sql(self):
        results = warehouse_crosscheck.run(rows)
        self.assertEqual({v for v, _, _, _ in results}, set(METRICS))
        for view, column, n, bad in results:
            self.assertGreater(n, 0, (view, column))
            self.assertEqual(bad, 0, "%s.%s: %d of %d rows differ" % (view, column, bad, n))


class NoLookAhead(unittest.TestCase):
    """Changing day D0 changes nothing before D0 (before D0-1 for the next-day outcome)."""

    D0 = D(2025, 3, 25)

    def snapshot(self):
        snap = {}
        for v in METRICS:
            for r in query("select * from whoop.%s" % v):
                k = (v, r["user_id"], r.get("day") or (r["year"], r["season"]))
                snap[k] = r
        return snap

    def test_future_changes_do_not_reach_back(self):
        before = self.snapshot()
        cid = REF.primary[(fx.USER_A, self.D0)]["id"]
        psql("""update whoop.raw_recovery
                   set record = jsonb_set(jsonb_set(record, '{score,recovery_score}', '1.5'),
                                          '{score,hrv_rmssd_milli}', '250')
                 where cycle_id = %d;
                update whoop.raw_cycle set record = jsonb_set(record, '{score,strain}', '20.9')
                 where id = %d;""" % (cid, cid))
        try:
            refresh()
            after = self.snapshot()
            changed_days = set()
            for k, r in after.items():
                view, user, when = k
                if before.get(k) != r:
                    changed_days.add((view, user, when))
            self.assertTrue(changed_days, "the change had no effect at all")
            for view, user, when in changed_days:
                self.assertEqual(user, fx.USER_A, (view, user, when, before.get(k), r))
                if view == "seasonal_adaptation":
                    self.assertEqual(when, (2025, "Spring"))
                    continue
                d = day(when)
                limit = self.D0 - dt.timedelta(days=1) if view == "strain_recovery_efficiency" else self.D0
                self.assertGreaterEqual(d, limit, "%s changed on %s" % (view, d))
            # ... and the metrics still match the reference on the changed data.
            recs = json.loads(json.dumps(RECS))
            for r in recs["recovery"]:
                if r["cycle_id"] == cid:
                    r["score"]["recovery_score"] = 1.5
                    r["score"]["hrv_rmssd_milli"] = 250
            for c in recs["cycle"]:
                if c["id"] == cid:
                    c["score"]["strain"] = 20.9
            ref = fx.Reference(recs)
            cmp = Compare()
            cmp.assertEqual, cmp.assertTrue, cmp.assertNotIn = self.assertEqual, self.assertTrue, self.assertNotIn
            cmp.compare("recovery_momentum", ref.recovery_momentum())
            cmp.compare("strain_recovery_efficiency", ref.strain_recovery_efficiency())
            cmp.compare("autonomic_balance", ref.autonomic_balance())
        finally:
            psql("delete from whoop.raw_recovery where cycle_id = %d; delete from whoop.raw_cycle where id = %d;"
                 % (cid, cid))
            c = [x for x in RECS["cycle"] if x["id"] == cid]
            r = [x for x in RECS["recovery"] if x["cycle_id"] == cid]
            psql(fx.RAW_INSERT_SQL.replace("@DOC@", json.dumps(
                {"cycle": c, "recovery": r, "sleep": [], "workout": []})))
            refresh()
        final = self.snapshot()
        diff = [(k, before.get(k), final.get(k)) for k in set(before) | set(final) if before.get(k) != final.get(k)]
        self.assertEqual(diff[:3], [])


class DimUser(unittest.TestCase):

    def versions(self, user):
        return query("select * from whoop.dim_user where user_id = %d order by valid_from" % user)

    def test_scd2_versions(self):
        a = self.versions(fx.USER_A)
        # Profile at t0 and measurement a second later form one version; then
        # the weight change, then the e-mail change.
        self.assertEqual([(v["weight_kilogram"], v["email"]) for v in a],
                         [(80.0, "ada@example.org"), (78.5, "ada@example.org"),
                          (78.5, "ada.lovelace@example.org")])
        self.assertEqual([v["is_current"] for v in a], [False, False, True])
        self.assertEqual(a[0]["valid_to"], a[1]["valid_from"])
        self.assertEqual(a[1]["valid_to"], a[2]["valid_from"])
        self.assertIsNone(a[2]["valid_to"])
        self.assertEqual(a[0]["name"], "Ada Lovelace")
        self.assertEqual((a[0]["height_meter"], a[0]["max_heart_rate"]), (1.7, 190))
        b = self.versions(fx.USER_B)
        self.assertEqual(len(b), 1)
        self.assertEqual(b[0]["weight_kilogram"], 72.25)

    def test_facts_carry_the_version_of_their_day(self):
        a = self.versions(fx.USER_A)
        sk = {day(r["day"]): r["user_sk"] for r in query(
            "select day, user_sk from whoop.fact_daily_strain where user_id = %d" % fx.USER_A)}
        self.assertEqual(sk[D(2025, 1, 10)], a[0]["user_sk"])
        self.assertEqual(sk[D(2025, 2, 28)], a[0]["user_sk"])
        self.assertEqual(sk[D(2025, 3, 1)], a[1]["user_sk"])     # weight seen 1 March 08:00Z
        self.assertEqual(sk[D(2025, 3, 31)], a[1]["user_sk"])
        self.assertEqual(sk[D(2025, 4, 1)], a[2]["user_sk"])
        rk = {day(r["day"]): r["user_sk"] for r in query(
            "select day, user_sk from whoop.fact_daily_recovery where user_id = %d" % fx.USER_A)}
        self.assertTrue(all(rk[d] == sk[d] for d in rk))

    def test_user_sk_is_stable(self):
        before = self.versions(fx.USER_A)
        refresh()
        self.assertEqual(self.versions(fx.USER_A), before)
        psql("insert into whoop.raw_body_measurement values (%d, '2025-04-10 06:00Z', 1.7, 77, 190, '{}')"
             % fx.USER_A)
        try:
            refresh()
            after = self.versions(fx.USER_A)
            self.assertEqual(len(after), 4)
            self.assertEqual([v["user_sk"] for v in after[:3]], [v["user_sk"] for v in before])
            self.assertEqual(after[2]["valid_to"], after[3]["valid_from"])
            self.assertEqual(after[3]["weight_kilogram"], 77.0)
            sk = query("select user_sk from whoop.fact_daily_strain where user_id = %d and day = '2025-04-12'"
                       % fx.USER_A)[0]["user_sk"]
            self.assertEqual(sk, after[3]["user_sk"])
        finally:
            psql("delete from whoop.raw_body_measurement where user_id = %d and observed_at = '2025-04-10 06:00Z'"
                 % fx.USER_A)
            refresh()

    def test_unchanged_snapshot_adds_no_version(self):
        psql("insert into whoop.raw_body_measurement values (%d, '2025-04-12 06:00Z', 1.7, 78.5, 190, '{}')"
             % fx.USER_A)
        try:
            refresh()
            self.assertEqual(len(self.versions(fx.USER_A)), 3)
        finally:
            psql("delete from whoop.raw_body_measurement where user_id = %d and observed_at = '2025-04-12 06:00Z'"
                 % fx.USER_A)
            refresh()


class DimDate(unittest.TestCase):

    def test_columns(self):
        r = query("select * from whoop.dim_date where day in ('2024-12-01', '2025-01-01', '2025-03-09', "
                  "'2025-06-15', '2025-09-30') order by day")
        self.assertEqual([x["date_sk"] for x in r], [20241201, 20250101, 20250309, 20250615, 20250930])
        d1 = r[1]
        self.assertEqual((d1["iso_year"], d1["iso_week"], d1["iso_week_name"], d1["iso_day_of_week"],
                          d1["day_name"], d1["month_name"], d1["quarter"], d1["is_weekend"]),
                         (2025, 1, "2025-W01", 3, "Wednesday", "January", 1, False))
        self.assertEqual([x["season"] for x in r], ["Winter", "Winter", "Spring", "Summer", "Autumn"])
        self.assertEqual([x["season_southern"] for x in r], ["Summer", "Summer", "Autumn", "Winter", "Spring"])
        self.assertEqual([x["season_year"] for x in r], [2025, 2025, 2025, 2025, 2025])
        self.assertEqual(r[0]["season_start"], "2024-12-01")
        self.assertEqual(r[1]["season_end"], "2025-02-28")
        self.assertEqual([x["training_period"] for x in r],
                         ["Recovery Phase", "Base Building", "Build Phase", "Peak Season", "Recovery Phase"])
        self.assertTrue(r[2]["is_weekend"])     # a Sunday

    def test_coverage(self):
        lo, hi, n = rows("select min(day), max(day), count(*) from whoop.dim_date")[0]
        self.assertEqual(lo, "2024-01-01")
        self.assertEqual(hi, "%d-12-31" % (dt.date.today().year + 1))
        self.assertEqual(int(n), (D.fromisoformat(hi) - D.fromisoformat(lo)).days + 1)
        self.assertEqual(scalar("select count(*) from (select day from whoop.fact_daily_strain "
                                "union select day from whoop.fact_daily_recovery) f "
                                "where not exists (select from whoop.dim_date d where d.day = f.day)"), "0")


def insert_unreadable_cycle(cycle_id):
    """insert_unreadable_cycle stores a cycle of member 3003 whose strain is
    not a number: fact_daily_strain's definition fails on it (22P02)."""
    bad = {"cycle": [{"id": cycle_id, "user_id": 3003, "created_at": "2025-05-01T00:00:00.000Z",
                      "updated_at": "2025-05-02T00:00:00.000Z", "start": "2025-05-01T00:00:00.000Z",
                      "end": "2025-05-02T00:00:00.000Z", "timezone_offset": "Z",
                      "score_state": "SCORED", "score": {"strain": "not a number"}}],
           "sleep": [], "recovery": [], "workout": []}
    psql(fx.RAW_INSERT_SQL.replace("@DOC@", json.dumps(bad)))


class Refresh(unittest.TestCase):

    def test_order_follows_the_catalog(self):
        plan = {r["view_name"]: r for r in query("select * from whoop.refresh_plan")}
        self.assertEqual(set(plan), {"whoop." + v for v in MARTS + METRICS}
                         | {"whoop_internal.cycle_day", "whoop_internal.cycle_workouts",
                            "whoop_internal.daily_scores"})
        for v, r in plan.items():
            for up in r["upstream"]:
                self.assertLess(plan[up]["refresh_order"], r["refresh_order"], "%s before %s" % (up, v))
        self.assertIn("whoop.fact_daily_recovery", plan["whoop.training_readiness_gap"]["upstream"])
        self.assertIn("whoop.dim_user", plan["whoop.fact_daily_strain"]["upstream"])
        self.assertIn("whoop.dim_date", plan["whoop.seasonal_adaptation"]["upstream"])

    def test_concurrently_and_logged(self):
        res = refresh()
        # the dimensions are materialized views; the facts and metrics are
        # maintained per member (nothing changed: nobody recomputed)
        self.assertEqual({r["mode"] for r in res if r["view_name"] in ("whoop.dim_date", "whoop.dim_user")},
                         {"concurrently"})
        self.assertEqual({(r["mode"], r["members"]) for r in res
                          if r["view_name"] not in ("whoop.dim_date", "whoop.dim_user")}, {("incremental", 0)})
        self.assertEqual(len(res), 14)
        run = scalar("select max(run_id) from whoop.refresh_log")
        logged = query("select * from whoop.refresh_log where run_id = %s order by refresh_order" % run)
        self.assertEqual([r["view_name"] for r in logged], [r["view_name"] for r in res])
        self.assertTrue(all(r["duration"] is not None and r["row_count"] is not None for r in logged))
        n = int(scalar("select count(*) from whoop.fact_daily_strain"))
        self.assertEqual([r["row_count"] for r in logged if r["view_name"] == "whoop.fact_daily_strain"], [n])

    def test_first_population_is_complete(self):
        psql("refresh materialized view whoop.dim_date with no data")
        psql("update whoop_internal.maintained set built = false where name = 'training_load'")
        res = {r["view_name"]: r for r in refresh()}
        self.assertEqual(res["whoop.dim_date"]["mode"], "complete")
        self.assertEqual(res["whoop.dim_user"]["mode"], "concurrently")
        self.assertEqual(res["whoop.training_load"]["mode"], "full")
        self.assertEqual(res["whoop.recovery_momentum"]["mode"], "incremental")
        self.assertEqual(scalar("select relispopulated from pg_class where oid = 'whoop.dim_date'::regclass"), "t")
        self.assertEqual(scalar("select built from whoop_internal.maintained where name = 'training_load'"), "t")

    def test_readers_keep_the_old_rows_during_a_refresh(self):
        """Incremental or full => true over built tables, a refresh that has
        not committed neither locks readers out nor shows them its rows."""
        old = int(scalar("select count(*) from whoop.fact_daily_strain"))
        extra = {"cycle": [{"id": 99000001, "user_id": 3003, "created_at": "2025-05-01T00:00:00.000Z",
                            "updated_at": "2025-05-02T00:00:00.000Z", "start": "2025-05-01T00:00:00.000Z",
                            "end": "2025-05-02T00:00:00.000Z", "timezone_offset": "Z",
                            "score_state": "SCORED", "score": {"strain": 5, "kilojoule": 8000,
                                                               "average_heart_rate": 60, "max_heart_rate": 150}}],
                 "sleep": [], "recovery": [], "workout": []}
        psql(fx.RAW_INSERT_SQL.replace("@DOC@", json.dumps(extra)))
        try:
            for full in ("false", "true"):
                with self.subTest(full=full):
                    proc = start_background("begin; select count(*) from whoop.refresh(full => %s); "
                                            "select pg_sleep(600); commit;" % full, "whoop_refresher")
                    try:
                        self.assertTrue(harness.wait_until(lambda: scalar(
                            "select count(*) from pg_stat_activity where application_name = 'whoop_refresher' "
                            "and wait_event = 'PgSleep'") == "1", timeout=120))
                        # The refresh is done but not committed: readers see
                        # the old rows, without waiting (lock_timeout would
                        # turn a wait into an error).
                        self.assertEqual(int(scalar("set lock_timeout = '10s'; "
                                                    "select count(*) from whoop.fact_daily_strain")), old)
                        self.assertEqual(int(scalar("set lock_timeout = '10s'; "
                                                    "select count(*) from whoop.training_load")) > 0, True)
                    finally:
                        psql("select pg_cancel_backend(pid) from pg_stat_activity "
                             "where application_name = 'whoop_refresher'")
                        finish(proc)
            refresh()
            self.assertEqual(int(scalar("select count(*) from whoop.fact_daily_strain")), old + 1)
        finally:
            psql("delete from whoop.raw_cycle where id = 99000001")
            refresh()

    def test_failure_skips_dependents_and_keeps_old_rows(self):
        old = int(scalar("select count(*) from whoop.training_load"))
        insert_unreadable_cycle(99000002)
        try:
            res = {r["view_name"].split(".")[1]: r for r in query("select * from whoop.refresh()")}
            self.assertEqual(res["fact_daily_strain"]["status"], "failed")
            self.assertIn("22P02", res["fact_daily_strain"]["error"])
            skipped = {v for v, r in res.items() if r["status"] == "skipped"}
            self.assertEqual(skipped, {"training_load", "daily_scores", "strain_recovery_efficiency",
                                       "training_readiness_gap", "autonomic_balance", "seasonal_adaptation"})
            ok = {v for v, r in res.items() if r["status"] == "ok"}
            self.assertEqual(ok, {"dim_date", "dim_user", "cycle_day", "cycle_workouts", "fact_daily_recovery",
                                  "recovery_momentum", "recovery_volatility"})
            self.assertIn("whoop.fact_daily_strain", res["training_load"]["error"])
            self.assertEqual(int(scalar("select count(*) from whoop.training_load")), old)
        finally:
            psql("delete from whoop.raw_cycle where id = 99000002")
            refresh()

    def test_a_failure_in_a_first_build_fails_only_its_object(self):
        """A first build loads fact_daily_recovery and fact_daily_strain side
        by side (whoop_internal.load_rows()); when one of them fails, the other
        is loaded alone, and the failure skips only what depends on it."""
        insert_unreadable_cycle(99000003)
        try:
            psql("do $$ declare m record; begin for m in select name from whoop_internal.maintained loop "
                 "execute format('truncate whoop_internal.%I', m.name || '_rows'); end loop; end $$; "
                 "update whoop_internal.maintained set built = false, row_count = 0")
            res = {r["view_name"].split(".")[1]: r for r in query("select * from whoop.refresh()")}
            self.assertEqual(res["fact_daily_strain"]["status"], "failed")
            self.assertIn("22P02", res["fact_daily_strain"]["error"])
            self.assertEqual({v for v, r in res.items() if r["status"] == "ok"},
                             {"dim_date", "dim_user", "cycle_day", "cycle_workouts", "fact_daily_recovery",
                              "recovery_momentum", "recovery_volatility"})
            self.assertEqual({r["mode"] for r in res.values() if r["status"] == "ok"} - {"concurrently"}, {"full"})
            self.assertGreater(int(scalar("select count(*) from whoop.fact_daily_recovery")), 0)
            self.assertEqual(scalar("select count(*) from whoop_internal.fact_daily_strain_rows"), "0")
            self.assertEqual(scalar("select count(*) from ((select * from whoop.fact_daily_recovery except all "
                                    "select * from whoop_internal.fact_daily_recovery_def) union all "
                                    "(select * from whoop_internal.fact_daily_recovery_def except all "
                                    "select * from whoop.fact_daily_recovery)) d"), "0")
        finally:
            psql("delete from whoop.raw_cycle where id = 99000003")
            refresh()


class Quality(unittest.TestCase):

    def checks(self):
        return query("select * from whoop.check_quality()")

    def test_clean_fixture_passes(self):
        res = self.checks()
        bad = [r for r in res if r["status"] != "pass" and r["check_name"] != "sync_freshness"]
        self.assertEqual(bad, [])
        grains = {r["object_name"] for r in res if r["check_name"] == "unique_grain"}
        self.assertEqual(grains, {"whoop." + v for v in MARTS + METRICS})
        fresh = [r for r in res if r["check_name"] == "sync_freshness"]
        self.assertEqual([(r["status"], r["detail"]) for r in fresh], [("warn", "no sync recorded yet")])
        run = scalar("select max(run_id) from whoop.quality_log")
        self.assertEqual(int(scalar("select count(*) from whoop.quality_log where run_id = %s" % run)), len(res))

    def test_checks_fire_on_bad_rows(self):
        future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)).replace(microsecond=0)
        u = 3003
        bad = {
            "cycle": [
                {"id": 99000010, "user_id": u, "start": "2025-05-01T22:00:00.000Z", "end": "2025-05-02T22:00:00.000Z",
                 "timezone_offset": "Z", "score_state": "SCORED", "created_at": "2025-05-03T00:00:00.000Z",
                 "updated_at": "2025-05-03T00:00:00.000Z",
                 "score": {"strain": 25.5, "kilojoule": 9000, "average_heart_rate": 20, "max_heart_rate": 300}},
                {"id": 99000011, "user_id": u, "start": fx.iso(future), "end": fx.iso(future + dt.timedelta(hours=20)),
                 "timezone_offset": "+01:00", "score_state": "SCORED", "created_at": fx.iso(future),
                 "updated_at": fx.iso(future),
                 "score": {"strain": 5, "kilojoule": 9000, "average_heart_rate": 60, "max_heart_rate": 150}}],
            "sleep": [
                {"id": "00000000-0000-4000-8000-000000000010", "cycle_id": 99000010, "user_id": u,
                 "start": "2025-05-01T22:00:00.000Z", "end": "2025-05-02T07:00:00.000Z", "timezone_offset": "Z",
                 "nap": False, "score_state": "SCORED", "created_at": "2025-05-02T08:00:00.000Z",
                 "updated_at": "2025-05-02T08:00:00.000Z",
                 "score": {"stage_summary": {"total_in_bed_time_milli": 93600000, "total_awake_time_milli": 1800000},
                           "sleep_needed": {"baseline_milli": 28800000}}},
                {"id": "00000000-0000-4000-8000-000000000011", "cycle_id": None, "user_id": u,
                 "start": "2025-04-01T22:00:00.000Z", "end": "2025-04-02T07:00:00.000Z",
                 "timezone_offset": "Europe/Paris", "nap": False, "score_state": "PENDING_SCORE",
                 "created_at": "2025-05-02T08:00:00.000Z", "updated_at": "2025-05-02T08:00:00.000Z"}],
            "recovery": [
                {"cycle_id": 99000010, "sleep_id": "00000000-0000-4000-8000-000000000010", "user_id": u,
                 "score_state": "SCORED", "created_at": "2025-05-02T08:00:00.000Z",
                 "updated_at": "2025-05-02T08:00:00.000Z",
                 "score": {"recovery_score": 150, "resting_heart_rate": 300, "hrv_rmssd_milli": 50}}],
            "workout": [
                {"id": "00000000-0000-4000-8000-000000000012", "user_id": u, "start": "2025-05-02T10:00:00.000Z",
                 "end": "2025-05-02T11:00:00.000Z", "timezone_offset": "Z", "sport_name": "running",
                 "score_state": "SCORED", "created_at": "2025-05-02T12:00:00.000Z",
                 "updated_at": "2025-05-02T12:00:00.000Z",
                 "score": {"strain": 30, "zone_durations": {"zone_one_milli": 90000000}}},
                {"id": "00000000-0000-4000-8000-000000000013", "user_id": u, "start": "2025-05-02T12:00:00.000Z",
                 "end": "2025-05-02T13:00:00.000Z", "timezone_offset": "Z", "sport_name": "yoga",
                 "score_state": "DONE", "created_at": "2025-05-02T14:00:00.000Z",
                 "updated_at": "2025-05-02T14:00:00.000Z"}],
        }
        psql(fx.RAW_INSERT_SQL.replace("@DOC@", json.dumps(bad)))
        try:
            refresh()
            res = {(r["check_name"], r["object_name"]): r for r in self.checks()}
            expect_fail = {
                ("recovery_score_range", "whoop.fact_daily_recovery"): 1,
                ("strain_range", "whoop.fact_daily_strain"): 1,
                ("heart_rate_range", "whoop.fact_daily_recovery"): 1,
                ("heart_rate_range", "whoop.fact_daily_strain"): 1,
                ("zone_minutes_per_day", "whoop.fact_daily_strain"): 1,
                ("hours_asleep_range", "whoop.fact_daily_recovery"): 1,
                ("references_dim_user", "whoop.fact_daily_recovery"): 1,
                ("references_dim_user", "whoop.fact_daily_strain"): 2,
                ("no_future_days", "whoop.fact_daily_strain"): 1,
                ("accepted_score_state", "whoop.raw_workout"): 1,
            }
            for k, n in expect_fail.items():
                self.assertEqual((res[k]["status"], res[k]["failing_rows"]), ("fail", n), k)
            self.assertEqual((res[("timezone_offset_format", "whoop.raw_sleep")]["status"],
                              res[("timezone_offset_format", "whoop.raw_sleep")]["failing_rows"]), ("warn", 1))
            others = [r for k, r in res.items() if k not in expect_fail and r["status"] == "fail"]
            self.assertEqual(others, [])
        finally:
            psql("delete from whoop.raw_cycle where user_id = 3003; delete from whoop.raw_sleep where user_id = 3003;"
                 "delete from whoop.raw_recovery where user_id = 3003; delete from whoop.raw_workout where user_id = 3003;")
            refresh()

    def test_unpopulated_view_fails_its_check(self):
        psql("update whoop_internal.maintained set built = false where name = 'recovery_volatility'")
        try:
            res = [r for r in self.checks() if r["object_name"] == "whoop.recovery_volatility"]
            self.assertTrue(res and all(r["status"] == "fail" for r in res))
            self.assertIn("not populated", res[0]["detail"])
        finally:
            refresh()

    def test_sync_freshness(self):
        def fresh(ages):
            psql("delete from whoop.sync_state;" + "".join(
                "insert into whoop.sync_state (server_name, user_id, endpoint, last_success_at) "
                "values ('s', 1, 'e%d', %s);" % (i, "null" if a is None else "now() - interval '%s hours'" % a)
                for i, a in enumerate(ages)))
            return [r for r in self.checks() if r["check_name"] == "sync_freshness"][0]
        try:
            r = fresh([1, 30])
            self.assertEqual((r["status"], r["failing_rows"]), ("pass", 0))
            r = fresh([1, 49])
            self.assertEqual((r["status"], r["failing_rows"]), ("warn", 1))
            r = fresh([1, 49, 7 * 24 + 1])
            self.assertEqual((r["status"], r["failing_rows"]), ("fail", 2))
            r = fresh([None])
            self.assertEqual(r["status"], "fail")
        finally:
            psql("delete from whoop.sync_state")


class Lineage(unittest.TestCase):

    def test_edges(self):
        got = {(r["object"], r["depends_on"]): r for r in query("select * from whoop.lineage")}
        momentum = [r for (o, d), r in got.items()
                    if o == "whoop.recovery_momentum" and d.startswith("whoop.momentum(")]
        self.assertEqual([r["depends_on_type"] for r in momentum], ["aggregate"])
        self.assertEqual(got[("whoop.training_readiness_gap", "whoop_internal.daily_scores")]["depth"], 1)
        self.assertEqual(got[("whoop.training_readiness_gap", "whoop.fact_daily_strain")]["depth"], 2)
        self.assertEqual(got[("whoop.fact_daily_strain", "whoop.raw_workout")]["depth"], 3)   # through cycle_workouts, stg_workout
        self.assertEqual(got[("whoop.fact_daily_strain", "whoop.raw_workout")]["depends_on_type"], "table")
        self.assertEqual(got[("whoop.fact_daily_strain", "whoop.dim_user")]["depends_on_type"], "materialized view")
        self.assertEqual(got[("whoop.seasonal_adaptation", "whoop.user_settings")]["depth"], 1)
        self.assertNotIn(("whoop.dim_date", "whoop.raw_workout"), got)


class Pipeline(unittest.TestCase):

    def last_run(self):
        run = scalar("select max(run_id) from whoop.run_log where step = 'pipeline'")
        return int(run), {r["step"]: r for r in query("select * from whoop.run_log where run_id = %s" % run)}

    def content_digest(self):
        return psql(" union all ".join(
            "select '%s', md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from whoop.%s t" % (v, v)
            for v in MARTS + METRICS))

    def test_run_log_and_a_second_run_changes_nothing(self):
        psql("call whoop.run_pipeline()")
        run, steps = self.last_run()
        self.assertEqual(set(steps), {"pipeline", "webhooks", "sync", "refresh", "quality"})
        self.assertEqual(steps["webhooks"]["status"], "ok")           # nothing queued
        self.assertEqual(steps["sync"]["status"], "ok")
        self.assertEqual(steps["refresh"]["status"], "ok")
        self.assertEqual(steps["refresh"]["detail"], "14 of 14 views refreshed")
        self.assertGreater(steps["refresh"]["row_count"], 1000)
        self.assertEqual(steps["quality"]["status"], "warn")           # never synced
        self.assertEqual(steps["pipeline"]["status"], "warn")
        for s in steps.values():
            self.assertIsNotNone(s["finished_at"])
            self.assertIsNotNone(s["duration"])
        self.assertEqual(int(scalar("select count(*) from whoop.refresh_log where run_id = %d" % run)), 14)
        self.assertEqual(int(scalar("select count(*) from whoop.quality_log where run_id = %d" % run)),
                         steps["quality"]["row_count"])
        digest = self.content_digest()
        psql("call whoop.run_pipeline()")
        run2, steps2 = self.last_run()
        self.assertEqual(run2, run + 1)
        self.assertEqual(self.content_digest(), digest)

    def test_one_pipeline_at_a_time_and_aborted_runs(self):
        # A session holds the EXCLUSIVE lock of a refresh of dim_date, so the next
        # pipeline's refresh waits for it, with its run marked running.
        holder = start_background("begin; refresh materialized view concurrently whoop.dim_date; "
                                  "select pg_sleep(600);", "whoop_lock_holder")
        first = None
        try:
            self.assertTrue(harness.wait_until(lambda: scalar(
                "select count(*) from pg_stat_activity where application_name = 'whoop_lock_holder' "
                "and wait_event = 'PgSleep'") == "1", timeout=60))
            first = start_background("call whoop.run_pipeline();", "whoop_first_pipeline")
            self.assertTrue(harness.wait_until(lambda: scalar(
                "select count(*) from whoop.run_log where step = 'refresh' and status = 'running'") == "1",
                timeout=120))
            running = int(scalar("select run_id from whoop.run_log where step = 'pipeline' and status = 'running'"))
            rc, out, err = psql_notices("call whoop.run_pipeline();")
            self.assertEqual(rc, 0, err)
            self.assertIn("run %d is still running" % running, err)
            run, steps = self.last_run()
            self.assertEqual(list(steps), ["pipeline"])
            self.assertEqual(steps["pipeline"]["status"], "skipped")
            self.assertIn("pipeline run %d is still running" % running, steps["pipeline"]["error"])
            # Cancel the first run: nothing can catch a cancel, so it stays
            # marked running; the next pipeline finds it dead and marks it aborted.
            psql("select pg_cancel_backend(pid) from pg_stat_activity where application_name = 'whoop_first_pipeline'")
            finish(first)
        finally:
            psql("select pg_terminate_backend(pid) from pg_stat_activity "
                 "where application_name in ('whoop_lock_holder', 'whoop_first_pipeline')")
            finish(holder)
            if first:
                finish(first)
        self.assertEqual(scalar("select status from whoop.run_log where run_id = %d and step = 'pipeline'"
                                % running), "running")
        psql("call whoop.run_pipeline()")
        statuses = dict(rows("select step, status from whoop.run_log where run_id = %d" % running))
        self.assertEqual(statuses, {"pipeline": "aborted", "webhooks": "ok", "sync": "ok", "refresh": "aborted"})
        run, steps = self.last_run()
        self.assertEqual(steps["refresh"]["status"], "ok")

    def test_a_step_failure_is_recorded_and_the_rest_runs(self):
        bad = {"cycle": [{"id": 99000003, "user_id": 3003, "created_at": "2025-05-01T00:00:00.000Z",
                          "updated_at": "2025-05-02T00:00:00.000Z", "start": "2025-05-01T00:00:00.000Z",
                          "end": "2025-05-02T00:00:00.000Z", "timezone_offset": "Z",
                          "score_state": "SCORED", "score": {"strain": "oops"}}],
               "sleep": [], "recovery": [], "workout": []}
        psql(fx.RAW_INSERT_SQL.replace("@DOC@", json.dumps(bad)))
        try:
            psql("call whoop.run_pipeline()")
            run, steps = self.last_run()
            self.assertEqual(steps["refresh"]["status"], "failed")
            self.assertIn("whoop.fact_daily_strain failed", steps["refresh"]["error"])
            self.assertIn(steps["quality"]["status"], ("warn", "failed"))
            self.assertIsNotNone(steps["quality"]["row_count"])
            self.assertEqual(steps["pipeline"]["status"], "failed")
        finally:
            psql("delete from whoop.raw_cycle where id = 99000003")
            refresh()

    def test_bad_server_argument(self):
        with self.assertRaises(harness.SQLError) as cm:
            psql("call whoop.run_pipeline(server => 'no_such_server')")
        self.assertEqual(cm.exception.sqlstate, "42704")


class ReaderRole(unittest.TestCase):

    def test_role(self):
        self.assertEqual(rows("select rolcanlogin, rolsuper from pg_roles where rolname = 'whoop_reader'"),
                         [["f", "f"]])

    def test_outlives_drop_extension(self):
        try:
            install_extension("wh_dropped")
            psql("drop extension whoop_fdw")
            self.assertEqual(scalar("select count(*) from pg_roles where rolname = 'whoop_reader'"), "1")
            psql("create extension whoop_fdw")      # an existing role is reused
            self.assertEqual(scalar("select has_table_privilege('whoop_reader', 'whoop.training_load', 'select')"),
                             "t")
        finally:
            os.environ["WHOOP_TEST_DB"] = DB
            psql("drop database if exists wh_dropped with (force)", dbname="postgres")

    def test_reads_marts_and_metrics(self):
        for v in MARTS + METRICS:
            psql("set role whoop_reader; select count(*) from whoop.%s;" % v)

    def test_nothing_else(self):
        # whoop.daily_summary (90_reports.sql) is the readable view over them
        allowed = {"whoop." + v for v in MARTS + METRICS + ["daily_summary"]}
        rels = [r[0] for r in rows(
            "select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'whoop' and c.relkind in ('r', 'v', 'm', 'f', 'p', 'S')")]
        self.assertIn("whoop.raw_cycle", rels)
        # whoop.accounts (the FDW's) is granted to PUBLIC by design: a
        # security-barrier view showing each role only the accounts it owns,
        # never tokens.  The reader owns none, so it sees no rows.
        # whoop.account_freshness (30_sync.sql) likewise, over whoop.accounts.
        public_by_design = {"whoop.accounts", "whoop.account_freshness"}
        for rel in rels:
            if rel in public_by_design:
                continue
            can = scalar("select has_table_privilege('whoop_reader', '%s', 'select')" % rel)
            self.assertEqual(can, "t" if rel in allowed else "f", rel)
        if "whoop.accounts" in rels:
            self.assertEqual(scalar("set role whoop_reader; select count(*) from whoop.accounts;"), "0")
        if "whoop.account_freshness" in rels:
            self.assertEqual(scalar("set role whoop_reader; "
                                    "select count(*) from whoop.account_freshness;"), "0")
            self.assertEqual(scalar("select count(*) from information_schema.columns where table_schema = 'whoop' "
                                    "and table_name = 'accounts' and column_name ~ 'token'"), "0")
        for rel in ("whoop.raw_recovery", "whoop.sync_state", "whoop.run_log", "whoop.stg_cycle", "whoop.lineage"):
            with self.assertRaises(harness.SQLError) as cm:
                psql("set role whoop_reader; select * from %s limit 1;" % rel)
            self.assertEqual(cm.exception.sqlstate, "42501", rel)
        for call in ("select whoop.refresh()", "select whoop.check_quality()", "call whoop.run_pipeline()",
                     "select whoop.schedule()", "select whoop.unschedule()"):
            with self.assertRaises(harness.SQLError) as cm:
                psql("set role whoop_reader; %s;" % call)
            self.assertEqual(cm.exception.sqlstate, "42501", call)


if __name__ == "__main__":
    unittest.main()
