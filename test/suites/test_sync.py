"""test_sync.py -- whoop.sync(): incremental, idempotent, isolated failures.

Runs the sync against the simulator over real HTTP and checks the raw layer
against what the simulator serves, the high-water marks, the update window
(a change 10 days back is picked up, one 40 days back only by a full
resync), and that a failing endpoint or account leaves its rows and mark
exactly as they were while the others advance.

ReconcileTest: sleeps and workouts WHOOP no longer lists get tombstones --
within the update window by every sync, all history by full => true -- a
sleep's recovery with them, none when more than max_sync_deletions vanish
at once, and the listing costs no extra request.  Two ways make a record
vanish: the simulator's clock set back (records created since disappear
from every list), and a raw row WHOOP never had (as a deleted record looks
to the sync).  PollingTest: cycle_poll_interval and profile_poll_interval.
"""

import datetime
import math
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
        # one row per account endpoint, besides the history chunks (test_backfill)
        self.assertEqual(scalar("select count(*) from whoop.sync_log where status = 'ok' "
                                "and chunk_to is null"), "12")
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



def fake_copy(sim, table, real_id, days_back):
    """fake_copy stores a raw row WHOOP never had: a copy of a stored record
    under a new id, moved to start days_back before the simulator's now;
    returns its id."""
    cols = {"raw_sleep": "cycle_id, user_id, start, \"end\", timezone_offset, nap, score_state, "
                         "created_at, updated_at",
            "raw_workout": "user_id, start, \"end\", timezone_offset, sport_name, score_state, "
                           "created_at, updated_at"}[table]
    shift = "('%s'::timestamptz - interval '%d days') - start" % (sim.clock(), days_back)
    return scalar("""
        with src as (select gen_random_uuid() as new_id, %(shift)s as shift, r.*
                     from whoop.%(t)s r where id = '%(id)s')
        insert into whoop.%(t)s (id, %(cols)s, record)
        select new_id, %(moved)s, record || jsonb_build_object('id', new_id)
        from src returning id""" % {
        "t": table, "id": real_id, "cols": cols, "shift": shift,
        "moved": cols.replace("start, \"end\"", "start + shift, \"end\" + shift")})


def last_log(user_id, endpoint, column):
    return scalar("select %s from whoop.sync_log where user_id = %d and endpoint = '%s' "
                  "order by id desc limit 1" % (column, user_id, endpoint))


class ReconcileTest(harness.SimulatorSuite):

    SIM_ARGS = ("--athletes", "2", "--days", "60", "--rate-per-minute", "0", "--rate-per-day", "0")
    DB = "sync_reconcile_test"
    LINK = {"import_into": None}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.t0 = cls.sim.clock()
        # two days of records, stored, then gone from WHOOP: the clock goes back
        cls.sim.clock(advance_seconds=2 * 86400)
        cls.before = {k: {r["id"]: r for r in cls.sim.records(k)} for k in ("sleep", "workout")}
        cls.recoveries = cls.sim.records("recovery")
        cls.synced = sync()
        cls.sim.clock(now=cls.t0)
        cls.vanished = {k: [i for i in cls.before[k] if i not in {r["id"] for r in cls.sim.records(k)}]
                        for k in cls.before}

    def setUp(self):
        self.sim.reset()

    def test_01_vanished_records_get_tombstones(self):
        self.assertNotIn("WARNING", self.synced)
        self.assertTrue(self.vanished["sleep"] and self.vanished["workout"])
        out = sync()
        self.assertNotIn("WARNING", out)
        for kind in ("sleep", "workout"):
            gone = "array[%s]::uuid[]" % ",".join("'%s'" % i for i in self.vanished[kind])
            # the raw rows stay, marked
            self.assertEqual(scalar("select count(*) from whoop.raw_%s where id = any(%s) "
                                    "and deleted_at is not null" % (kind, gone)),
                             str(len(self.vanished[kind])), kind)
            # everything WHOOP still has is untouched
            self.assertEqual(int(scalar("select count(*) from whoop.raw_%s where deleted_at is null"
                                        % kind)), len(self.sim.records(kind)), kind)
            for user in self.users:
                mine = [i for i in self.vanished[kind] if self.before[kind][i]["user_id"] == user]
                self.assertEqual(last_log(user, kind, "rows_deleted"), str(len(mine)))
                self.assertEqual(last_log(user, kind, "deletions_refused"), "0")
        self.assertIsNone(last_log(self.users[0], "cycle", "rows_deleted"))
        # a vanished sleep takes its recovery along
        recovered = [r["cycle_id"] for r in self.recoveries
                     if r.get("sleep_id") in self.vanished["sleep"]]
        self.assertTrue(recovered)
        self.assertEqual(scalar("select bool_and(deleted_at is not null) from whoop.raw_recovery "
                                "where cycle_id = any(array[%s])" % ",".join(map(str, recovered))), "t")
        # and the models forget them
        psql("select whoop.refresh()")
        sleeps = "array[%s]::uuid[]" % ",".join("'%s'" % i for i in self.vanished["sleep"])
        self.assertEqual(scalar("select count(*) from whoop.stg_sleep where sleep_id = any(%s)" % sleeps), "0")
        self.assertEqual(scalar("select count(*) from whoop.fact_daily_recovery "
                                "where sleep_id = any(%s)" % sleeps), "0")
        self.assertEqual(scalar("select count(*) from whoop.stg_recovery where cycle_id = any(array[%s])"
                                % ",".join(map(str, recovered))), "0")
        self.assertEqual(scalar("select count(*) from whoop.stg_workout where workout_id = any(array[%s]::uuid[])"
                                % ",".join("'%s'" % i for i in self.vanished["workout"])), "0")

    def test_02_tombstone_is_never_brought_back(self):
        deleted = scalar("select string_agg(id::text || deleted_at::text, ',' order by id) "
                         "from whoop.raw_sleep where deleted_at is not null")
        self.assertTrue(deleted)
        # the same records listed again (the clock forward) and a full refetch
        self.sim.clock(advance_seconds=2 * 86400)
        self.assertNotIn("WARNING", sync())
        self.assertNotIn("WARNING", sync("full => true"))
        self.assertEqual(scalar("select string_agg(id::text || deleted_at::text, ',' order by id) "
                                "from whoop.raw_sleep where deleted_at is not null"), deleted)
        self.assertEqual(last_log(self.users[0], "sleep", "rows_deleted"), "0")

    def test_03_before_the_window_only_full_sync_reconciles(self):
        user = self.users[0]
        real = scalar("select id from whoop.raw_sleep where user_id = %d and deleted_at is null "
                      "order by start desc offset 5 limit 1" % user)
        old = fake_copy(self.sim, "raw_sleep", real, 40)
        recent = fake_copy(self.sim, "raw_sleep", real, 3)
        self.assertNotIn("WARNING", sync())
        self.assertEqual(scalar("select deleted_at is null from whoop.raw_sleep where id = '%s'" % old), "t")
        self.assertEqual(scalar("select deleted_at is not null from whoop.raw_sleep where id = '%s'"
                                % recent), "t")
        self.assertEqual(last_log(user, "sleep", "rows_deleted"), "1")
        self.assertNotIn("WARNING", sync("endpoint => 'sleep'", "full => true"))
        self.assertEqual(scalar("select deleted_at is not null from whoop.raw_sleep where id = '%s'"
                                % old), "t")
        self.assertEqual(last_log(user, "sleep", "full_resync::text || '/' || rows_deleted"), "true/1")
        # nothing else was touched: what WHOOP lists is live, but for test_01's
        # tombstones, which WHOOP lists again since test_02
        self.assertEqual(int(scalar("select count(*) from whoop.raw_sleep where deleted_at is null")),
                         len(self.sim.records("sleep")) - len(self.vanished["sleep"]))

    def test_04_too_many_vanished_at_once_are_refused(self):
        user = self.users[0]
        psql("alter server sim options (add max_sync_deletions '2')")
        try:
            real = scalar("select id from whoop.raw_sleep where user_id = %d and deleted_at is null "
                          "order by start desc offset 3 limit 1" % user)
            fakes = [fake_copy(self.sim, "raw_sleep", real, d) for d in (2, 4, 6)]
            ids = "array[%s]::uuid[]" % ",".join("'%s'" % f for f in fakes)
            mark = scalar("select high_water_mark from whoop.sync_state where user_id = %d "
                          "and endpoint = 'sleep'" % user)
            before = int(scalar("select count(*) from whoop.raw_sleep where user_id = %d" % user))
            self.sim.clock(advance_seconds=86400)
            out = sync()
            self.assertIn("WARNING:  whoop.sync: tombstoned none of the records that vanished "
                          "from 1 account endpoints", out)
            self.assertIn("sim/%d/sleep: 3 records vanished, max_sync_deletions is 2" % user, out)
            self.assertIn("raise max_sync_deletions", out)
            self.assertEqual(scalar("select count(*) from whoop.raw_sleep where id = any(%s) "
                                    "and deleted_at is null" % ids), "3")
            self.assertEqual(last_log(user, "sleep", "status || '/' || rows_deleted || '/' || "
                                      "deletions_refused"), "ok/0/3")
            # the listing's new records still arrive and the mark advances
            self.assertGreater(scalar("select high_water_mark from whoop.sync_state where user_id = %d "
                                      "and endpoint = 'sleep'" % user), mark)
            self.assertGreater(int(scalar("select count(*) from whoop.raw_sleep where user_id = %d"
                                          % user)), before)
            # the other account is reconciled as usual
            self.assertEqual(last_log(self.users[1], "sleep", "deletions_refused"), "0")
            # genuine: raise the limit, and the next sync lets them through
            psql("alter server sim options (set max_sync_deletions '3')")
            self.assertNotIn("WARNING", sync())
            self.assertEqual(scalar("select count(*) from whoop.raw_sleep where id = any(%s) "
                                    "and deleted_at is not null" % ids), "3")
            self.assertEqual(last_log(user, "sleep", "rows_deleted || '/' || deletions_refused"), "3/0")
        finally:
            psql("alter server sim options (drop max_sync_deletions)")

    def test_05_the_listing_costs_no_extra_request(self):
        user = self.users[1]
        self.assertNotIn("WARNING", sync("user_id => %d" % user, "endpoint => 'sleep'"))
        requests = int(last_log(user, "sleep", "requests"))
        fetch_from = last_log(user, "sleep", "fetch_from")
        self.assertTrue(fetch_from)
        # what the sync asked is what the updated_at bound asks
        asked = [r for r in self.sim.request_log() if r["path"] == "/v2/activity/sleep"]
        self.assertEqual(len(asked), requests)
        self.sim.reset()
        psql("select whoop_internal.sync_source('sim', 'sleep')")
        self.assertEqual(scalar("""
            create temp table before as select requests from whoop.fetch_stats();
            select count(*) from whoop_source.sim__sleep where user_id = %d and updated_at >= '%s';
            select f.requests - b.requests from whoop.fetch_stats() f, before b;
            """ % (user, fetch_from)), str(requests))
        again = [r for r in self.sim.request_log() if r["path"] == "/v2/activity/sleep"]
        self.assertEqual([r["query"].get("start") for r in again],
                         [r["query"].get("start") for r in asked])


    def test_06_without_an_update_window_all_history_is_reconciled(self):
        user = self.users[1]
        real = scalar("select id from whoop.raw_workout where user_id = %d and deleted_at is null "
                      "order by start desc offset 2 limit 1" % user)
        old = fake_copy(self.sim, "raw_workout", real, 40)
        # a table imported while the server had a window the server then dropped
        psql("alter foreign table whoop_source.sim__workout options (drop update_window)")
        try:
            self.assertNotIn("WARNING", sync("user_id => %d" % user, "endpoint => 'workout'"))
        finally:
            psql("alter foreign table whoop_source.sim__workout options (add update_window '14 days')")
        self.assertEqual(scalar("select deleted_at is not null from whoop.raw_workout where id = '%s'"
                                % old), "t")
        self.assertEqual(last_log(user, "workout", "rows_deleted"), "1")
        self.assertEqual(int(last_log(user, "workout", "rows_seen")),
                         len(self.sim.records("workout", user)))

class PollingTest(harness.SimulatorSuite):

    SIM_ARGS = ("--athletes", "2", "--days", "30", "--rate-per-minute", "0", "--rate-per-day", "0")
    DB = "sync_polling_test"
    LINK = {"import_into": None}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.first = sync()

    def setUp(self):
        self.sim.reset()

    def logged(self, since):
        return rows("select user_id, endpoint from whoop.sync_log where id > %d order by id" % since)

    def last_id(self):
        return int(scalar("select coalesce(max(id), 0) from whoop.sync_log"))

    def test_01_cycles_every_sync_by_default(self):
        self.assertNotIn("WARNING", self.first)
        start = self.last_id()
        sync()
        self.assertEqual(sorted(e for _, e in self.logged(start)),
                         sorted(["cycle", "recovery", "sleep", "workout"] * 2))

    def test_02_cycle_poll_interval_skips_unmarked_members(self):
        u0, u1 = self.users
        psql("alter server sim options (add cycle_poll_interval '1 day')")
        try:
            start = self.last_id()
            self.sim.clock(advance_seconds=86400)
            self.assertNotIn("WARNING", sync())
            self.assertNotIn("cycle", [e for _, e in self.logged(start)])
            self.assertFalse([r for r in self.sim.request_log() if r["path"] == "/v2/cycle"])
            # a webhook marked u0's cycles: only u0's are fetched, and the mark is cleared
            psql("update whoop.sync_state set pending_since = now() "
                 "where user_id = %d and endpoint = 'cycle'" % u0)
            start = self.last_id()
            self.assertNotIn("WARNING", sync())
            self.assertEqual([(int(u), e) for u, e in self.logged(start) if e == "cycle"], [(u0, "cycle")])
            self.assertEqual(last_log(u0, "cycle", "status"), "ok")
            self.assertEqual(scalar("select count(*) from whoop.sync_state "
                                    "where pending_since is not null"), "0")
            self.assertEqual(int(scalar("select count(*) from whoop.raw_cycle where user_id = %d"
                                        % u0)), len(self.sim.records("cycle", u0)))
            # a mark newer than the sync's start survives it
            psql("update whoop.sync_state set pending_since = now() + interval '1 hour' "
                 "where user_id = %d and endpoint = 'cycle'" % u1)
            start = self.last_id()
            sync()
            self.assertIn([str(u1), "cycle"], self.logged(start))
            self.assertEqual(scalar("select pending_since > now() from whoop.sync_state "
                                    "where user_id = %d and endpoint = 'cycle'" % u1), "t")
            psql("update whoop.sync_state set pending_since = null")
            # not synced for longer than the interval: due again
            psql("update whoop.sync_state set last_success_at = now() - interval '25 hours' "
                 "where user_id = %d and endpoint = 'cycle'" % u1)
            start = self.last_id()
            sync()
            self.assertEqual([(int(u), e) for u, e in self.logged(start) if e == "cycle"], [(u1, "cycle")])
            # an explicit endpoint and full => true always fetch
            start = self.last_id()
            sync("endpoint => 'cycle'")
            self.assertEqual(len(self.logged(start)), 2)
            start = self.last_id()
            sync("full => true")
            self.assertEqual(sorted(e for _, e in self.logged(start) if e == "cycle"), ["cycle", "cycle"])
        finally:
            psql("alter server sim options (drop cycle_poll_interval)")

    def test_04_cycles_polled_an_hour_after_the_usual_wake_time(self):
        u0, u1 = self.users
        # learned from the sleeps: the median local end of the last 28 main
        # sleeps (percentile_disc: the 14th of 28), plus an hour
        sleeps = sorted((r for r in self.sim.records("sleep", u0) if not r["nap"]),
                        key=lambda r: r["end"], reverse=True)[:28]
        local_ends = []
        for r in sleeps:
            end = datetime.datetime.fromisoformat(r["end"].replace("Z", "+00:00"))
            sign = -1 if r["timezone_offset"].startswith("-") else 1
            hh, mm = r["timezone_offset"][1:].split(":")
            offset = datetime.timedelta(hours=int(hh), minutes=int(mm)) * sign
            local_ends.append((end + offset).time())
        usual = sorted(local_ends)[math.ceil(len(local_ends) / 2) - 1]
        tz = sleeps[0]["timezone_offset"]
        poll_local = scalar("select ((whoop_internal.wake_poll_after(%d, now()) at time zone 'UTC') "
                            "+ whoop_internal.utc_offset('%s'))::time" % (u0, tz))
        expected = (datetime.datetime.combine(datetime.date(2000, 1, 1), usual)
                    + datetime.timedelta(hours=1)).time()
        self.assertEqual(poll_local[:8], expected.strftime("%H:%M:%S"))
        self.assertEqual(scalar("select w > now() and w <= now() + interval '1 day' "
                                "from whoop_internal.wake_poll_after(%d, now()) w" % u0), "t")
        psql("alter server sim options (add cycle_poll_interval '2 days')")
        try:
            # u0 last polled a minute before its wake poll of the last day:
            # due, although the interval has not passed; u1 polled a minute
            # ago (and its wake poll is still to come): not due
            psql("update whoop.sync_state set last_success_at = "
                 "whoop_internal.wake_poll_after(%d, now() - interval '25 hours') - interval '1 minute' "
                 "where user_id = %d and endpoint = 'cycle'" % (u0, u0))
            psql("update whoop.sync_state set last_success_at = now() - interval '1 minute' "
                 "where user_id = %d and endpoint = 'cycle'" % u1)
            self.assertEqual(scalar("select whoop_internal.wake_poll_after(%d, last_success_at) > now() "
                                    "from whoop.sync_state where user_id = %d and endpoint = 'cycle'"
                                    % (u1, u1)), "t")
            start = self.last_id()
            self.assertNotIn("WARNING", sync())
            self.assertEqual([(int(u), e) for u, e in self.logged(start) if e == "cycle"],
                             [(u0, "cycle")])
            # polled now, u0's next poll is the next wake poll, well before the interval
            self.assertEqual(scalar("select f.next_poll_due = whoop_internal.wake_poll_after(f.user_id, "
                                    "f.last_success_at) and f.next_poll_due < f.last_success_at "
                                    "+ interval '2 days' from whoop.account_freshness f "
                                    "where f.user_id = %d and f.endpoint = 'cycle'" % u0), "t")
        finally:
            psql("alter server sim options (drop cycle_poll_interval)")

    def test_05_reconcile_interval_spaces_out_the_listings(self):
        u0, u1 = self.users
        listed = ("recovery", "sleep", "workout")
        psql("alter server sim options (add reconcile_interval '1 day')")
        try:
            start = self.last_id()
            self.assertNotIn("WARNING", sync())
            self.assertFalse(set(listed) & {e for _, e in self.logged(start)})
            self.assertFalse([r for r in self.sim.request_log()
                              if r["path"] in ("/v2/recovery", "/v2/activity/sleep",
                                               "/v2/activity/workout")])
            # the freshness view says when they are due
            self.assertEqual(rows("select distinct f.next_poll_due = f.last_success_at + interval '1 day' "
                                  "from whoop.account_freshness f where f.endpoint in "
                                  "('recovery', 'sleep', 'workout')"), [["t"]])
            # u1 last listed longer ago than the interval: only u1's are listed
            psql("update whoop.sync_state set last_success_at = now() - interval '25 hours' "
                 "where user_id = %d and endpoint in ('recovery', 'sleep', 'workout')" % u1)
            start = self.last_id()
            self.assertNotIn("WARNING", sync())
            self.assertEqual(sorted((int(u), e) for u, e in self.logged(start) if e in listed),
                             [(u1, e) for e in listed])
            # an explicit endpoint and full => true always list
            start = self.last_id()
            sync("endpoint => 'sleep'")
            self.assertEqual(len(self.logged(start)), 2)
            start = self.last_id()
            sync("full => true")
            self.assertEqual(sorted(e for _, e in self.logged(start) if e in listed),
                             sorted(listed * 2))
        finally:
            psql("alter server sim options (drop reconcile_interval)")
        # without it every sync lists them again
        start = self.last_id()
        sync()
        self.assertEqual(sorted(e for _, e in self.logged(start) if e in listed), sorted(listed * 2))

    def test_03_profile_and_body_at_most_daily(self):
        u0 = self.users[0]
        snapshots = "select count(*) from whoop.raw_body_measurement where user_id = %d" % u0
        before = int(scalar(snapshots))
        self.sim.touch("body", u0, {"weight_kilogram": 81.25})
        start = self.last_id()
        self.assertNotIn("WARNING", sync())
        self.assertFalse({"profile", "body_measurement"} & {e for _, e in self.logged(start)})
        self.assertFalse([r for r in self.sim.request_log()
                          if r["path"] in ("/v2/user/profile/basic", "/v2/user/measurement/body")])
        self.assertEqual(int(scalar(snapshots)), before)
        # an explicit endpoint fetches
        sync("endpoint => 'body_measurement'")
        self.assertEqual(int(scalar(snapshots)), before + 1)
        # full => true fetches
        self.sim.touch("body", u0, {"weight_kilogram": 82.5})
        sync("full => true")
        self.assertEqual(int(scalar(snapshots)), before + 2)
        # a day after the last success a plain sync fetches again
        self.sim.touch("body", u0, {"weight_kilogram": 83.75})
        psql("update whoop.sync_state set last_success_at = now() - interval '1 day 1 minute' "
             "where endpoint in ('profile', 'body_measurement')")
        start = self.last_id()
        sync()
        self.assertEqual(sorted(e for _, e in self.logged(start) if e in ("profile", "body_measurement")),
                         ["body_measurement", "body_measurement", "profile", "profile"])
        self.assertEqual(scalar("select weight_kilogram from whoop.raw_body_measurement "
                                "where user_id = %d order by observed_at desc limit 1" % u0), "83.75")
        # profile_poll_interval '0': every sync
        psql("alter server sim options (add profile_poll_interval '0')")
        try:
            start = self.last_id()
            sync()
            self.assertEqual(len([e for _, e in self.logged(start) if e == "profile"]), 2)
        finally:
            psql("alter server sim options (drop profile_poll_interval)")

    def test_04_option_validation(self):
        bad = [("max_sync_deletions", "-1", "HV024", "must be an integer from 0 to 1000000"),
               ("max_sync_deletions", "ten", "HV024", "must be an integer from 0 to 1000000"),
               ("max_sync_deletions", "1000001", "HV024", "must be an integer from 0 to 1000000"),
               ("cycle_poll_interval", "-1 hour", "HV024", "must not be negative"),
               ("cycle_poll_interval", "soon", "22007", "option \"cycle_poll_interval\""),
               ("profile_poll_interval", "-1 day", "HV024", "must not be negative"),
               ("reconcile_interval", "-1 day", "HV024", "must not be negative"),
               ("reconcile_interval", "daily", "22007", "option \"reconcile_interval\"")]
        for option, value, state, text in bad:
            with self.assertRaises(SQLError, msg=option + " " + value) as cm:
                psql("alter server sim options (add %s '%s')" % (option, value))
            self.assertEqual(cm.exception.sqlstate, state, value)
            self.assertIn(text, str(cm.exception))
        # server options, not table ones
        psql("select whoop_internal.sync_source('sim', 'cycle')")
        with self.assertRaises(SQLError) as cm:
            psql("alter foreign table whoop_source.sim__cycle options (add cycle_poll_interval '1 day')")
        self.assertEqual(cm.exception.sqlstate, "HV00D")
        psql("alter server sim options (add max_sync_deletions '0', add cycle_poll_interval '6 hours', "
             "add profile_poll_interval '7 days', add reconcile_interval '12 hours')")
        self.assertEqual(rows("select max_sync_deletions, extract(epoch from cycle_poll_interval), "
                              "extract(epoch from profile_poll_interval), "
                              "extract(epoch from reconcile_interval) "
                              "from whoop_internal.sync_settings('sim')"),
                         [["0", "21600.000000", "604800.000000", "43200.000000"]])
        psql("alter server sim options (drop max_sync_deletions, drop cycle_poll_interval, "
             "drop profile_poll_interval, drop reconcile_interval)")
        self.assertEqual(rows("select max_sync_deletions, cycle_poll_interval is null, "
                              "extract(epoch from profile_poll_interval), reconcile_interval is null "
                              "from whoop_internal.sync_settings('sim')"),
                         [["10", "t", "86400.000000", "t"]])


if __name__ == "__main__":
    unittest.main()
