"""test_budget.py -- one request budget per WHOOP app, shared by every backend.

WHOOP limits an app (client_id), across all its members, per minute and per
day.  whoop_fdw keeps both windows as token buckets per app (fdw/budget.c),
in shared memory when whoop_fdw is preloaded, through the DSM registry on
PostgreSQL 17 and later without preloading, else per backend; shown by the
view whoop.request_budget.

All but the last class run on a cluster of the module's own with whoop_fdw
in shared_preload_libraries (the staged build's file, so that the library
preloaded is the one the extension's functions load), so that every
session sees the same budget on every version.

  OptionTest      requests_per_minute, requests_per_day and
                  day_budget_reserve are validated (SQLSTATE and hint);
                  whoop_fdw.request_class takes the five class names only;
                  the view before any request: full buckets, no secret
  HeaderTest      the rate-limit headers set the bucket of the window they
                  describe: below the configured capacity, and, with a new
                  limit, up again -- above it when WHOOP says so
  TightMinuteTest a sync against a simulator allowing 10 requests per
                  (2-second) minute makes more than 10 requests and gets no
                  429
  ConcurrentSyncTest two syncs of one app at once (two databases) under a
                  tight minute: no 429, requests in flight counted
  DayReserveTest  with a small day budget, reconciliation and then backfill
                  are deferred (sync_log 'deferred', high-water marks kept,
                  a NOTICE, no WARNING) while cycles, an interactive query
                  and a webhook apply still get through; a refused request
                  is SQLSTATE 53400 with a hint
  MinuteReserveTest with the minute down to 20 of 100 requests, backfill
                  waits (its reserve of the minute is 25) while a webhook
                  apply and reconciliation (reserve 10) are served at once;
                  when WHOOP's minute limit is below the configured one,
                  the reserve is a share of WHOOP's; while WHOOP's headers
                  hold the bucket, the reserve shrinks with the time the
                  window has left; minute_budget_reserve
                  is validated like day_budget_reserve
  ExhaustedDayTest once WHOOP says the day is used up, a webhook apply sends
                  nothing and leaves its events queued, no attempt counted
  PreloadedTest   what one session spends, another session's view shows
  UnpreloadedTest the runner's cluster (no preloading): on PostgreSQL 17+
                  shared through the DSM registry, likewise; on 15, per
                  backend, and the view says shared = false
"""

import os
import unittest

import chaos_lib
import harness
from harness import psql, rows, scalar, SQLError
from test_webhook_apply import deliver, event

RUNNER_ENV = {}
CLUSTER = None

VIEW_COLUMNS = ("server_name", "app", "window", "capacity", "available", "full_at",
                "observed_remaining", "observed_reset_s", "observed_at", "shared")


def preloaded_libraries():
    """preloaded_libraries is shared_preload_libraries with whoop_fdw: the
    staged build's file when the tests run on one."""
    destdir = os.environ.get("WHOOP_EXTENSION_DESTDIR")
    lib = (destdir + os.path.join(harness.pg_config("--pkglibdir"), "whoop_fdw.so")
           if destdir else "whoop_fdw")
    return "'pg_cron,%s'" % lib


def setUpModule():
    global CLUSTER
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
        RUNNER_ENV[key] = os.environ.get(key, "")
    CLUSTER = harness.Cluster(
        settings={"shared_preload_libraries": preloaded_libraries()}).init().start()
    os.environ.update(CLUSTER.env())


def tearDownModule():
    for key, value in RUNNER_ENV.items():
        os.environ[key] = value
    if CLUSTER is not None:
        CLUSTER.destroy()


def budget(window, server="sim", query=None):
    """budget is the row of whoop.request_budget for SERVER and WINDOW, as a dict."""
    sql = ("select %s from whoop.request_budget where server_name = '%s' and \"window\" = '%s'"
           % (", ".join('"window"' if c == "window" else c for c in VIEW_COLUMNS), server, window))
    return dict(zip(VIEW_COLUMNS, (query or rows)(sql)[-1]))


def spend_until(sim, left, **limits):
    """spend_until sets the simulator's rate LIMITS and spends from them, as
    another client of the app would, until LEFT requests or fewer remain."""
    sim.control("POST", "ratelimit", limits)
    token = sim.token()
    while True:
        _, headers, _ = sim.api("/v2/user/profile/basic", token)
        if int(headers["X-RateLimit-Remaining"]) <= left:
            return


def sim_requests(sim):
    """sim_requests counts every request the simulator answered, by status."""
    counts = {}
    for statuses in sim.stats()["requests"].values():
        for status, n in statuses.items():
            counts[status] = counts.get(status, 0) + n
    return counts


class OptionTest(harness.SimulatorSuite):

    SIM_ARGS = ("--athletes", "1", "--days", "10", "--rate-per-minute", "0",
                "--rate-per-day", "0")
    DB = "budget_options"
    LINK = {"import_into": None}

    def refused(self, options):
        with self.assertRaises(SQLError) as cm:
            psql("create server bad foreign data wrapper whoop_fdw options (%s)" % options)
        self.assertEqual(cm.exception.sqlstate, "HV024", cm.exception.output)
        self.assertIn("HINT:", cm.exception.output)
        return cm.exception.output

    def test_capacities_are_positive_integers(self):
        for option in ("requests_per_minute", "requests_per_day"):
            for value in ("0", "-5", "ten", "1.5", ""):
                out = self.refused("%s '%s'" % (option, value))
                self.assertIn('invalid value for option "%s"' % option, out)
        psql("create server good foreign data wrapper whoop_fdw "
             "options (requests_per_minute '1000', requests_per_day '200000');"
             "drop server good")

    def test_day_reserve_is_checked(self):
        for value in ("backfill", "webhook=5", "interactive=1", "cycle=10,reconcile=abc",
                      "backfill=100", "cycle=-1", "cycle=30,reconcile=20", "backfill=5"):
            out = self.refused("day_budget_reserve '%s'" % value)
            self.assertIn('invalid value for option "day_budget_reserve"', out)
            self.assertIn("cycle=10,reconcile=25,backfill=40", out)
        for value in ("backfill=50", "cycle=0,reconcile=0,backfill=0",
                      "cycle = 5, reconcile = 30, backfill = 60"):
            psql("create server good foreign data wrapper whoop_fdw "
                 "options (day_budget_reserve '%s'); drop server good" % value)

    def test_minute_reserve_is_checked(self):
        for value in ("backfill", "webhook=5", "cycle=10,reconcile=abc", "backfill=100",
                      "cycle=30,reconcile=20", "backfill=5"):
            out = self.refused("minute_budget_reserve '%s'" % value)
            self.assertIn('invalid value for option "minute_budget_reserve"', out)
            self.assertIn("requests_per_minute", out)
            self.assertIn("cycle=0,reconcile=10,backfill=25", out)
        for value in ("backfill=50", "cycle=0,reconcile=0,backfill=0"):
            psql("create server good foreign data wrapper whoop_fdw "
                 "options (minute_budget_reserve '%s'); drop server good" % value)

    def test_request_class_setting(self):
        self.assertIn("whoop_fdw", scalar("show shared_preload_libraries"))
        self.assertEqual(scalar("show whoop_fdw.request_class"), "interactive")
        for name in ("interactive", "webhook", "cycle", "reconcile", "backfill"):
            self.assertEqual(scalar("set whoop_fdw.request_class = %s; "
                                    "show whoop_fdw.request_class" % name), name)
        with self.assertRaises(SQLError) as cm:
            psql("set whoop_fdw.request_class = history")
        self.assertEqual(cm.exception.sqlstate, "22023")

    def test_view_before_any_request_and_without_secret(self):
        psql("create server unused foreign data wrapper whoop_fdw "
             "options (api_url 'http://127.0.0.1:9/developer', requests_per_minute '7', "
             "requests_per_day '70')")
        self.addCleanup(psql, "drop server unused")
        minute, day = budget("minute", "unused"), budget("day", "unused")
        self.assertEqual((minute["capacity"], float(minute["available"])), ("7", 7.0))
        self.assertEqual((day["capacity"], float(day["available"])), ("70", 70.0))
        self.assertEqual(minute["app"], "@http://127.0.0.1:9/developer")
        self.assertEqual(minute["observed_remaining"], "")
        accounts = self.sim.accounts()
        app = budget("minute")["app"]
        self.assertEqual(app, accounts["client_id"] + "@" + self.sim.api_url)
        self.assertNotIn(accounts["client_secret"], psql("select * from whoop.request_budget"))
        self.assertIsNotNone(scalar("select obj_description('whoop.request_budget'::regclass)"))


class HeaderTest(harness.SimulatorSuite):

    SIM_ARGS = ("--athletes", "1", "--days", "10", "--rate-per-minute", "0")
    DB = "budget_headers"
    LINK = {"import_into": "api"}

    def ask(self):
        """ask sends one API request in a session of its own."""
        psql("select count(*) from api.profile")

    def test_headers_lower_the_bucket_and_raise_it_again(self):
        self.sim.control("POST", "ratelimit", {"per_minute": 10, "per_day": 10000,
                                               "minute_seconds": 60})
        self.ask()
        low = budget("minute")
        self.assertEqual(low["capacity"], "100")
        self.assertEqual(low["observed_remaining"], "9")
        self.assertEqual(float(low["available"]), 9.0)
        self.assertGreater(int(low["observed_reset_s"]), 0)

        # WHOOP raised the limit (new windows): the bucket follows it up
        self.sim.control("POST", "ratelimit", {"per_minute": 50, "per_day": 10000,
                                               "minute_seconds": 60})
        self.ask()
        high = budget("minute")
        self.assertEqual(high["observed_remaining"], "49")
        self.assertEqual(float(high["available"]), 49.0)

        # ... also above what the server says the app may spend
        psql("alter server sim options (add requests_per_minute '20')")
        self.addCleanup(psql, "alter server sim options (drop requests_per_minute)")
        self.sim.control("POST", "ratelimit", {"per_minute": 60, "per_day": 10000,
                                               "minute_seconds": 60})
        self.ask()
        above = budget("minute")
        self.assertEqual(above["capacity"], "20")
        self.assertEqual(above["observed_remaining"], "59")
        self.assertEqual(float(above["available"]), 59.0)


class TightMinuteTest(harness.SimulatorSuite):

    # a "minute" of 2 s that allows 10 requests; the server keeps the default
    # capacity (100): the headers alone must keep the sync under the limit
    SIM_ARGS = ("--athletes", "1", "--days", "200", "--rate-per-minute", "10",
                "--rate-minute-seconds", "2")
    DB = "budget_tight"
    LINK = {"import_into": None}

    def test_sync_makes_no_429(self):
        self.sim.reset()
        out = harness.psql_full("call whoop.sync()")
        self.assertNotIn("WARNING", out)
        counts = sim_requests(self.sim)
        self.assertGreater(sum(counts.values()), 20)
        self.assertNotIn("429", counts)
        self.assertEqual(rows("select distinct status from whoop.sync_log"), [["ok"]])
        self.assertEqual(scalar("select sum(requests) from whoop.sync_log"),
                         str(sum(counts.values())))


class ConcurrentSyncTest(unittest.TestCase):

    def test_two_syncs_of_one_app_make_no_429(self):
        """Two databases link one athlete each of one app (10 requests per
        2-second minute) and sync at once: the shared budget keeps them both
        under the limit, requests in flight included."""
        sim = harness.Simulator("--athletes", "2", "--days", "200", "--rate-per-minute", "10",
                                "--rate-minute-seconds", "2", "--quiet").start()
        self.addCleanup(sim.stop)
        accounts = sim.accounts()
        dbs = []
        for i in range(2):
            db = chaos_lib.DB("budget_pair%d" % i).create()
            self.addCleanup(db.drop)
            db.psql("create server sim foreign data wrapper whoop_fdw options (api_url %s, "
                    "oauth_url %s); create user mapping for current_user server sim "
                    "options (client_id %s, client_secret %s)"
                    % tuple(harness.quote_literal(v) for v in (
                        sim.api_url, sim.oauth_url, accounts["client_id"],
                        accounts["client_secret"])))
            db.add_account(accounts["athletes"][i]["refresh_token"])
            dbs.append(db)
        sim.reset()
        procs = [db.background("call whoop.sync()") for db in dbs]
        for proc in procs:
            _, err = proc.communicate(timeout=600)
            self.assertEqual(proc.returncode, 0, err)
            self.assertNotIn("WARNING", err)
        counts = sim_requests(sim)
        self.assertGreater(counts.get("200", 0), 40)
        self.assertNotIn("429", counts)
        for db in dbs:
            self.assertEqual(db.rows("select distinct status from whoop.sync_log"), [["ok"]])


class DayReserveTest(harness.SimulatorSuite):

    # reserves of a 20-request day: cycle 2, reconcile 10, backfill 18
    SIM_ARGS = ("--athletes", "1", "--days", "30", "--rate-per-minute", "0",
                "--rate-per-day", "0", "--quiet")
    DB = "budget_day"
    LINK = {"import_into": "api",
            "options": {"day_budget_reserve": "cycle=10,reconcile=50,backfill=90"}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        psql("call whoop.sync()")
        # WHOOP's day now holds 20 requests, and so does the server's budget;
        # others (this test) spend until 8 are left
        psql("alter server sim options (add requests_per_day '20')")
        spend_until(cls.sim, 8, per_minute=0, per_day=20, minute_seconds=60)

    def test_lower_classes_deferred_higher_served(self):
        marks = rows("select endpoint, coalesce(high_water_mark::text, '') "
                     "from whoop.sync_state order by endpoint")

        # incremental: cycles (class cycle) are fetched; sleeps and workouts
        # (reconcile) are deferred
        out = harness.psql_full("call whoop.sync(run_id => 1)")
        self.assertNotIn("WARNING", out)
        self.assertIn("NOTICE:  whoop.sync: deferred 2 account endpoints", out)
        self.assertEqual(rows("select endpoint, status from whoop.sync_log where run_id = 1 "
                              "order by endpoint"),
                         [["cycle", "ok"], ["recovery", "ok"], ["sleep", "deferred"],
                          ["workout", "deferred"]])
        self.assertIn("reserved for higher-priority requests",
                      scalar("select error from whoop.sync_log where run_id = 1 "
                             "and endpoint = 'sleep'"))

        # full: everything is history (backfill), so everything is deferred
        out = harness.psql_full("call whoop.sync(full => true, run_id => 2)")
        self.assertNotIn("WARNING", out)
        self.assertIn("deferred 6 account endpoints", out)
        self.assertEqual(rows("select distinct status, requests from whoop.sync_log "
                              "where run_id = 2"), [["deferred", "0"]])
        # no high-water mark moved
        self.assertEqual(rows("select endpoint, coalesce(high_water_mark::text, '') "
                              "from whoop.sync_state order by endpoint"), marks)

        # a request of a deferred class, asked for directly
        with self.assertRaises(SQLError) as cm:
            psql("set whoop_fdw.request_class = backfill; select count(*) from api.profile")
        self.assertEqual(cm.exception.sqlstate, "53400")
        self.assertIn("whoop request budget: the rest of the day is reserved for "
                      "higher-priority requests", cm.exception.output)
        self.assertIn('class "backfill"', cm.exception.output)
        self.assertIn("HINT:", cm.exception.output)

        # interactive queries and webhook applies are served
        self.assertEqual(scalar("select count(*) from api.profile"), "1")
        sleep = self.sim.records("sleep", self.users[0])[0]
        trace = deliver(self.sim.accounts()["client_secret"], self.users[0], "sleep.updated",
                        sleep["id"])
        out = harness.psql_full("call whoop.apply_webhooks()")
        self.assertNotIn("WARNING", out)
        self.assertEqual(event(trace)["status"], "applied")
        self.assertNotIn("429", sim_requests(self.sim))


class MinuteReserveTest(harness.SimulatorSuite):

    # WHOOP's minute (a long one: 10 real minutes) holds 100 requests; others (this test)
    # spend until 20 are left: below backfill's reserve of the minute (25),
    # above reconcile's (10)
    SIM_ARGS = ("--athletes", "1", "--days", "10", "--rate-per-minute", "0",
                "--rate-per-day", "0", "--quiet")
    DB = "budget_minute"
    LINK = {"import_into": "api"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        spend_until(cls.sim, 21, per_minute=100, per_day=0, minute_seconds=600)

    @staticmethod
    def profile_as(request_class, timeout="3s"):
        """profile_as reads api.profile (one request) as REQUEST_CLASS, giving
        up after TIMEOUT; returns the row count."""
        return scalar("set statement_timeout = '%s'; set whoop_fdw.request_class = %s; "
                      "select count(*) from api.profile" % (timeout, request_class))

    def test_lower_classes_wait_for_the_minute_higher_ones_are_served(self):
        # the answer's headers tell the budget that 20 are left
        self.assertEqual(scalar("select count(*) from api.profile"), "1")
        self.assertLessEqual(float(budget("minute")["available"]), 20)
        # backfill waits for the minute to refill past its reserve
        with self.assertRaises(SQLError) as cm:
            self.profile_as("backfill")
        self.assertEqual(cm.exception.sqlstate, "57014", cm.exception.output)
        # webhook applies and reconciliation are served at once
        for request_class in ("webhook", "reconcile"):
            self.assertEqual(self.profile_as(request_class), "1")
        # without a minute reserve backfill is served too
        psql("alter server sim options (add minute_budget_reserve 'backfill=0,reconcile=0')")
        self.addCleanup(psql, "alter server sim options (drop minute_budget_reserve)")
        self.assertEqual(self.profile_as("backfill"), "1")
        self.assertNotIn("429", sim_requests(self.sim))

    def test_the_reserve_is_a_share_of_whoops_limit_when_that_is_lower(self):
        # WHOOP grants 10 a minute, not the configured 100: backfill's reserve
        # is 2 of them (not 25 of 100, which the bucket would never reach)
        spend_until(self.sim, 6, per_minute=10, per_day=0, minute_seconds=120)
        self.assertEqual(scalar("select count(*) from api.profile"), "1")
        self.assertEqual(self.profile_as("backfill"), "1")
        self.assertNotIn("429", sim_requests(self.sim))

    def test_the_reserve_shrinks_as_a_held_window_runs_out(self):
        # a 40-second window with 20 of 100 left: backfill's reserve (25)
        # is down to 19 once less than 20/25 of the window is left, about
        # 8 s in -- long before the window resets
        spend_until(self.sim, 21, per_minute=100, per_day=0, minute_seconds=40)
        self.assertEqual(scalar("select count(*) from api.profile"), "1")
        self.assertEqual(self.profile_as("backfill", timeout="15s"), "1")
        self.assertNotIn("429", sim_requests(self.sim))


class ExhaustedDayTest(harness.SimulatorSuite):

    SIM_ARGS = ("--athletes", "1", "--days", "30", "--rate-per-minute", "0",
                "--rate-per-day", "0", "--quiet")
    DB = "budget_exhausted"
    LINK = {"import_into": "api"}

    def test_webhook_events_stay_queued_when_the_day_is_used_up(self):
        # others (this test) use up WHOOP's day; the next answer is a 429
        # that says so, until the day's reset hours away
        self.sim.control("POST", "ratelimit", {"per_minute": 0, "per_day": 5,
                                               "minute_seconds": 60})
        token = self.sim.token()
        while self.sim.api("/v2/user/profile/basic", token)[0] != 429:
            pass
        with self.assertRaises(SQLError) as cm:
            psql("select count(*) from api.profile")
        self.assertIn("WHOOP rate limit exhausted", cm.exception.output)
        self.assertEqual(float(budget("day")["available"]), 0.0)

        sleep = self.sim.records("sleep", self.users[0])[0]
        trace = deliver(self.sim.accounts()["client_secret"], self.users[0], "sleep.updated",
                        sleep["id"])
        before = sim_requests(self.sim)
        out = harness.psql_full("call whoop.apply_webhooks()")
        self.assertNotIn("WARNING", out)
        self.assertIn("the day's request budget is used up; 1 events stay queued", out)
        queued = event(trace)
        self.assertEqual((queued["status"], queued["attempts"], queued["waiting"]),
                         ("queued", 0, False))
        self.assertEqual(sim_requests(self.sim), before)


class SharingMixin:
    """What one session spends, another session's view shows (when shared)."""

    def session_spends_other_sees(self, db, shared):
        spend = db.psql("select count(*) from api.cycle; "
                        "select requests from whoop.fetch_stats()").split()
        self.assertGreater(int(spend[-1]), 1)
        spent = sum(sim_requests(self.sim).values())
        day = budget("day", query=db.rows)
        minute = budget("minute", query=db.rows)
        self.assertEqual(day["shared"], "t" if shared else "f")
        if shared:
            # every request so far (linking included), less a trickle of refill
            self.assertGreaterEqual(float(day["available"]), 10000 - spent)
            self.assertLess(float(day["available"]), 10000 - spent + 2)
            self.assertEqual(float(minute["available"]), float(minute["observed_remaining"]))
            self.assertLess(float(minute["available"]), 100)
        else:
            self.assertEqual(float(day["available"]), 10000.0)
            self.assertEqual(minute["observed_remaining"], "")


class PreloadedTest(SharingMixin, harness.SimulatorSuite):

    SIM_ARGS = ("--athletes", "1", "--days", "60")
    DB = "budget_preloaded"
    LINK = {"import_into": "api"}

    def test_two_sessions_share_one_budget(self):
        self.assertIn("whoop_fdw", scalar("show shared_preload_libraries"))
        self.session_spends_other_sees(chaos_lib.DB(self.DB), shared=True)


class UnpreloadedTest(SharingMixin, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.sim = harness.Simulator("--athletes", "1", "--days", "60").start()
        cls.addClassCleanup(cls.sim.stop)
        cls.db = chaos_lib.DB("budget_unpreloaded", RUNNER_ENV)
        cls.addClassCleanup(cls.db.drop)
        cls.db.create()
        cls.db.link(cls.sim, import_into="api")

    def test_dsm_registry_from_17_else_per_backend(self):
        self.assertNotIn("whoop_fdw", self.db.scalar("show shared_preload_libraries"))
        self.session_spends_other_sees(self.db, shared=harness.PG_MAJOR >= 17)


if __name__ == "__main__":
    unittest.main()
