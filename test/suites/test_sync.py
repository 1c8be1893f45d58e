"""test_sync.py -- whoop.sync(): incremental, idempotent, isolated failures.

Runs the sync against the simulator over real HTTP and checks the raw layer
against what the simulator serves, the high-water marks, the update window
(a change 10 days back is picked up, one 40 days back only by a full
resync), and that a failing endpoint or account leaves its rows and mark
exactly as they were while the others advance.
"""

import unittest

import harness
from harness import psql, rows, scalar, SQLError

RAW_TABLES = {"cycle": "raw_cycle", "recovery": "raw_recovery", "sleep": "raw_sleep",
              "workout": "raw_workout"}


def raw_fingerprint(table):
    """raw_fingerprint hashes a raw table's content (what sync wrote, not when)."""
    key = {"raw_recovery": "cycle_id"}.get(table, "id")
    return scalar("select md5(coalesce(string_agg(record::text, '|' order by %s), '')) "
                  "from whoop.%s" % (key, table))


def marks():
    return {(r[0], r[1]): r[2] for r in rows(
        "select user_id, endpoint, coalesce(high_water_mark::text, '') from whoop.sync_state")}


def sync(*args):
    """sync runs CALL whoop.sync(...) and returns its output with any WARNING."""
    return harness.psql_full("call whoop.sync(%s)" % ", ".join(args))


class SyncTest(harness.SimulatorSuite):

    SIM_ARGS = ("--athletes", "2", "--days", "90", "--rate-per-minute", "0", "--rate-per-day", "0")
    DB = "sync_test"
    LINK = {"import_into": None}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.first = sync()

    def setUp(self):
        self.sim.reset()

    def served(self, kind):
        return self.sim.control("GET", "records?kind=%s" % kind)["records"]

    def test_01_first_sync_loads_everything_served(self):
        self.assertNotIn("WARNING", self.first)
        for kind, table in RAW_TABLES.items():
            served = self.served(kind)
            self.assertEqual(int(scalar("select count(*) from whoop.%s" % table)), len(served), kind)
        # the stored record is the API record
        rec = self.served("workout")[3]
        self.assertEqual(scalar("select record = '%s'::jsonb from whoop.raw_workout where id = '%s'"
                                % (harness.json_literal(rec), rec["id"])), "t")
        self.assertEqual(scalar("select count(*) from whoop.raw_profile"), "2")
        self.assertEqual(scalar("select count(*) from whoop.raw_body_measurement"), "2")
        self.assertEqual(scalar("select count(*) from whoop.sync_log where status = 'ok'"), "12")
        self.assertEqual(scalar("select count(*) from whoop.sync_state "
                                "where last_success_at is not null"), "12")

    def test_02_second_sync_changes_nothing(self):
        before = {t: raw_fingerprint(t) for t in RAW_TABLES.values()}
        marks_before = marks()
        extracted = scalar("select max(_extracted_at) from whoop.raw_cycle")
        self.assertNotIn("WARNING", sync())
        self.assertEqual({t: raw_fingerprint(t) for t in RAW_TABLES.values()}, before)
        self.assertEqual(marks(), marks_before)
        self.assertEqual(scalar("select max(_extracted_at) from whoop.raw_cycle"), extracted)
        last = rows("select rows_inserted, rows_updated, fetch_from is not null, requests "
                    "from whoop.sync_log where endpoint in ('cycle', 'sleep') "
                    "order by id desc limit 4")
        for inserted, updated, incremental, requests in last:
            self.assertEqual((inserted, updated, incremental), ("0", "0", "t"))
            self.assertEqual(requests, "1")   # only the recent window is asked for
        self.assertEqual(scalar("select count(*) from whoop.raw_profile"), "2")

    def test_03_change_within_window_is_picked_up(self):
        cycles = [c for c in self.served("cycle") if c["user_id"] == self.users[0]]
        ten_days_back = cycles[10]
        self.sim.control("POST", "touch", {"kind": "cycle", "id": ten_days_back["id"],
                                           "set": {"score.strain": 20.5}})
        sync("user_id => %d" % self.users[0], "endpoint => 'cycle'")
        self.assertEqual(scalar("select (record->'score'->>'strain')::float8 from whoop.raw_cycle "
                                "where id = %d" % ten_days_back["id"]), "20.5")
        self.assertEqual(scalar("select rows_updated from whoop.sync_log order by id desc limit 1"), "1")

    def test_04_change_beyond_window_needs_full_resync(self):
        cycles = [c for c in self.served("cycle") if c["user_id"] == self.users[0]]
        forty_days_back = cycles[40]
        old_strain = scalar("select record->'score'->>'strain' from whoop.raw_cycle where id = %d"
                            % forty_days_back["id"])
        self.sim.control("POST", "touch", {"kind": "cycle", "id": forty_days_back["id"],
                                           "set": {"score.strain": 1.25}})
        sync("endpoint => 'cycle'")
        # documented limit: outside the 14-day update window an incremental sync misses it
        self.assertEqual(scalar("select record->'score'->>'strain' from whoop.raw_cycle "
                                "where id = %d" % forty_days_back["id"]), old_strain)
        sync("endpoint => 'cycle'", "full => true")
        self.assertEqual(scalar("select (record->'score'->>'strain')::float8 from whoop.raw_cycle "
                                "where id = %d" % forty_days_back["id"]), "1.25")
        self.assertEqual(scalar("select full_resync and fetch_from is null from whoop.sync_log "
                                "order by id desc limit 1"), "t")

    def test_05_failing_endpoint_keeps_rows_and_mark(self):
        self.sim.control("POST", "clock", {"advance_seconds": 2 * 86400})
        before_sleep = raw_fingerprint("raw_sleep")
        marks_before = marks()
        cycles_before = int(scalar("select count(*) from whoop.raw_cycle"))
        # a 5xx storm on sleep, a truncated page on workout, for both accounts
        self.sim.fault(path="/v2/activity/sleep", kind="status", status=503, count=1000)
        self.sim.fault(path="/v2/activity/workout", kind="truncate", count=2)
        out = sync()
        # profile and body measurement synced within the day are not due
        self.assertIn("WARNING:  whoop.sync: 4 of 8 account endpoints failed", out)
        self.assertIn("HTTP 503", out)
        self.assertEqual(raw_fingerprint("raw_sleep"), before_sleep)
        after = marks()
        for user in self.users:
            self.assertEqual(after[(str(user), "sleep")], marks_before[(str(user), "sleep")])
            self.assertEqual(after[(str(user), "workout")], marks_before[(str(user), "workout")])
            self.assertGreater(after[(str(user), "cycle")], marks_before[(str(user), "cycle")])
        self.assertGreater(int(scalar("select count(*) from whoop.raw_cycle")), cycles_before)
        failed = rows("select endpoint, error, high_water_mark_before is not distinct from "
                      "high_water_mark_after from whoop.sync_log where status = 'failed' "
                      "order by id desc limit 4")
        self.assertEqual(sorted(r[0] for r in failed), ["sleep", "sleep", "workout", "workout"])
        self.assertTrue(all(r[2] == "t" for r in failed))
        self.assertEqual(scalar("select count(*) from whoop.sync_state where last_error is not null"), "4")
        # the next run completes and catches up
        self.sim.reset()
        self.assertNotIn("WARNING", sync())
        for kind, table in RAW_TABLES.items():
            self.assertEqual(int(scalar("select count(*) from whoop.%s" % table)),
                             len(self.served(kind)), kind)
        self.assertEqual(scalar("select count(*) from whoop.sync_state where last_error is not null"), "0")

    def test_06_401_mid_sync_refreshes(self):
        self.sim.control("POST", "expire_tokens", {})
        self.sim.fault(path="/v2/cycle", kind="unauthorized", count=1)
        self.assertNotIn("WARNING", sync())
        self.assertGreaterEqual(self.sim.stats()["token_grants"]["refresh_token"], 2)

    def test_07_new_days_and_completed_cycle(self):
        ongoing = [c for c in self.served("cycle") if "end" not in c]
        self.assertTrue(ongoing)
        self.sim.control("POST", "clock", {"advance_seconds": 3 * 86400})
        self.assertNotIn("WARNING", sync())
        for c in ongoing:
            self.assertEqual(scalar("select \"end\" is not null and score_state = 'SCORED' "
                                    "from whoop.raw_cycle where id = %d" % c["id"]), "t")
        for kind, table in RAW_TABLES.items():
            self.assertEqual(int(scalar("select count(*) from whoop.%s" % table)),
                             len(self.served(kind)), kind)

    def test_08_profile_and_body_changes_become_snapshots(self):
        self.sim.control("POST", "touch", {"kind": "body", "id": self.users[1],
                                           "set": {"weight_kilogram": 70.5}})
        sync("endpoint => 'body_measurement'")
        sync("endpoint => 'body_measurement'")
        got = rows("select weight_kilogram from whoop.raw_body_measurement where user_id = %d "
                   "order by observed_at" % self.users[1])
        self.assertEqual(len(got), 2)
        self.assertEqual(got[-1][0], "70.5")

    def test_09_failing_account_does_not_stop_others(self):
        stored = scalar("select refresh_token from whoop_internal.account where user_id = %d" % self.users[0])
        accounts = self.sim.accounts()
        self.sim.request("POST", "/oauth/oauth2/token", form={
            "grant_type": "refresh_token", "refresh_token": stored,
            "client_id": accounts["client_id"], "client_secret": accounts["client_secret"],
            "scope": "offline"})
        self.sim.control("POST", "expire_tokens", {})
        self.sim.control("POST", "clock", {"advance_seconds": 86400})
        out = sync()
        # the profile and body measurement of both were synced today: not due
        self.assertIn("4 of 8 account endpoints failed", out)
        self.assertEqual(scalar("select count(distinct user_id) from (select * from whoop.sync_log "
                                "order by id desc limit 8) s where status = 'failed'"), "1")
        self.assertEqual(scalar("select status from whoop.accounts where user_id = %d"
                                % self.users[0]), "reauthorization_required")
        psql("select whoop.add_account('sim', '%s')"
             % self.sim.accounts()["athletes"][0]["refresh_token"])
        self.assertNotIn("WARNING", sync())

    def test_10_bad_arguments(self):
        with self.assertRaises(SQLError) as cm:
            psql("call whoop.sync(endpoint => 'heart_rate')")
        self.assertEqual(cm.exception.sqlstate, "22023")
        with self.assertRaises(SQLError) as cm:
            psql("call whoop.sync(server => 'nope')")
        self.assertEqual(cm.exception.sqlstate, "42704")


if __name__ == "__main__":
    unittest.main()
