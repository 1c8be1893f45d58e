"""test_fdw.py -- the foreign data wrapper against the simulator, over real HTTP.

What pg_regress cannot show with stable output lives here: request counts
(from the simulator's /_sim/stats and /_sim/requests), faults, time,
concurrency, memory, and equivalence of results with and without pushdown.
"""

import json
import os
import re
import subprocess
import threading
import time
import unittest

import harness
from harness import psql, rows, scalar, SQLError

from harness import ROOT


def sim_requests(sim, prefix=None):
    log = sim.control("GET", "requests")["requests"]
    if prefix:
        log = [r for r in log if r["path"].startswith(prefix)]
    return log


def api_count(stats, key, status=None):
    entry = stats["requests"].get(key, {})
    if status is None:
        return sum(entry.values())
    return entry.get(str(status), 0)


class ScanTest(harness.SimulatorSuite):
    """Scans, columns and pushdown on two athletes x 120 days."""

    SIM_ARGS = ("--athletes", "2", "--days", "120", "--rate-per-minute", "0", "--rate-per-day", "0")
    DB = "fdw_scan"

    def setUp(self):
        self.sim.reset()

    def test_counts_match_simulator(self):
        for kind, table in (("cycle", "cycle"), ("recovery", "recovery"),
                            ("sleep", "sleep"), ("workout", "workout")):
            served = len(self.sim.control("GET", "records?kind=%s" % kind)["records"])
            self.assertGreater(served, 100, kind)
            self.assertEqual(int(scalar("select count(*) from api.%s" % table)), served, kind)
        self.assertEqual(int(scalar("select count(*) from api.profile")), 2)
        self.assertEqual(int(scalar("select count(*) from api.body_measurement")), 2)

    def test_rows_equal_simulator_records(self):
        served = self.sim.control("GET", "records?kind=cycle")["records"]
        got = rows("select id, user_id, to_char(start at time zone 'UTC', "
                   "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), score_state, strain, raw::text "
                   "from api.cycle")
        by_id = {int(r[0]): r for r in got}
        self.assertEqual(len(by_id), len(served))
        for rec in served:
            row = by_id[rec["id"]]
            self.assertEqual(int(row[1]), rec["user_id"])
            self.assertEqual(row[2], rec["start"])
            self.assertEqual(row[3], rec["score_state"])
            if rec.get("score"):
                self.assertAlmostEqual(float(row[4]), rec["score"]["strain"], places=9)
            else:
                self.assertEqual(row[4], "")
            self.assertEqual(json.loads(row[5]), rec)

    def test_absent_fields_are_null_and_unknown_fields_ignored(self):
        # the ongoing cycle has no end and no score
        ongoing = rows("select count(*) from api.cycle where \"end\" is null "
                       "and score_state = 'PENDING_SCORE' and strain is null")
        self.assertGreaterEqual(int(ongoing[0][0]), 1)
        # records with extra fields WHOOP may add (step_count) still load
        extra = scalar("select count(*) from api.cycle where raw ? 'step_count'")
        self.assertGreaterEqual(int(extra), 0)
        # optional scalar fields absent on some records read as NULL
        n = scalar("select count(*) from api.recovery where score_state = 'SCORED' "
                   "and not (raw->'score' ? 'skin_temp_celsius') and skin_temp_celsius is null")
        self.assertGreaterEqual(int(n), 0)

    def test_body_measurement_carries_account_user_id(self):
        got = sorted(int(r[0]) for r in rows("select user_id from api.body_measurement"))
        self.assertEqual(got, sorted(self.users))

    def test_user_id_narrows_accounts(self):
        user = self.users[0]
        n = int(scalar("select count(*) from api.cycle where user_id = %d" % user))
        self.assertGreater(n, 0)
        asked = {r["bearer_user_id"] for r in sim_requests(self.sim, "/v2/cycle")}
        self.assertEqual(asked, {user})
        self.sim.reset()
        self.assertEqual(scalar("select count(*) from api.cycle where user_id = 42"), "0")
        self.assertEqual(sim_requests(self.sim, "/v2/cycle"), [])
        self.sim.reset()
        both = int(scalar("select count(*) from api.cycle where user_id in (%d, %d, 7)"
                          % tuple(self.users)))
        self.assertEqual(both, int(scalar("select count(*) from api.cycle")))

    def test_only_referenced_columns_are_converted(self):
        cycle = self.sim.control("GET", "records?kind=cycle")["records"][5]
        self.sim.control("POST", "touch", {"kind": "cycle", "id": cycle["id"],
                                           "set": {"score.strain": "not a number"}})
        try:
            self.assertEqual(scalar("select count(id) from api.cycle where id = %d" % cycle["id"]), "1")
            with self.assertRaises(SQLError) as cm:
                psql("select strain from api.cycle where id = %d" % cycle["id"])
            self.assertEqual(cm.exception.sqlstate, "22P02")
            self.assertIn('WHOOP field "score.strain" of a cycle record', cm.exception.output)
        finally:
            self.sim.control("POST", "touch", {"kind": "cycle", "id": cycle["id"],
                                               "set": {"score.strain": cycle["score"]["strain"]}})

    def test_empty_collection_is_zero_rows(self):
        self.assertEqual(scalar("select count(*) from api.workout "
                                "where start >= '2030-01-01'"), "0")
        self.assertEqual(len(sim_requests(self.sim, "/v2/activity/workout")), len(self.users))

    def test_pushdown_results_equal_unpushed(self):
        user = self.users[0]
        # an update window (so updated_at is pushed) and ids declared as text
        psql("create foreign table if not exists api.cycle_window_eq (id bigint, user_id bigint, "
             "start timestamptz, \"end\" timestamptz, updated_at timestamptz, raw jsonb) "
             "server sim options (endpoint 'cycle', update_window '3 days'); "
             "create foreign table if not exists api.cycle_text_id (id text, user_id bigint, "
             "raw jsonb) server sim options (endpoint 'cycle'); "
             "create foreign table if not exists api.sleep_text_id (id text, user_id bigint, "
             "raw jsonb) server sim options (endpoint 'sleep'); "
             # recovery's created_at: pushed as a bound on its sleep (test_backfill)
             "create foreign table if not exists api.recovery_window_eq (cycle_id bigint, "
             "user_id bigint, created_at timestamptz, updated_at timestamptz, raw jsonb) "
             "server sim options (endpoint 'recovery', update_window '3 days')")
        starts = rows("select start, \"end\", id from api.cycle where \"end\" is not null "
                      "order by start limit 40")
        mid, mid_end, mid_id = starts[20]
        sleep_id = scalar("select id from api.sleep order by start limit 1 offset 30")
        cycle_with_recovery = scalar("select cycle_id from api.recovery order by created_at "
                                     "limit 1 offset 10")
        predicates = {
            "cycle": [
                "start >= '%s'" % mid, "start > '%s'" % mid, "start < '%s'" % mid,
                "start <= '%s'" % mid, "start = '%s'" % mid, "'%s' < start" % mid,
                "\"end\" > '%s'" % mid, "\"end\" >= '%s'" % mid_end,
                "\"end\" < '%s'" % mid_end, "\"end\" <= '%s'" % mid_end,
                "start between '%s' and '%s'" % (starts[5][0], mid),
                "start >= date '2026-06-01'",
                "start >= timestamp '2026-06-01 12:00'",
                "start >= '%s' and \"end\" < '%s'" % (starts[3][0], mid_end),
                "start > '%s' and start < '%s'" % (mid, starts[3][0]),
                "start >= now() - interval '30 days'",
                "user_id = %d" % user, "user_id in (%d, 1)" % user,
                "user_id = any(array[%d]::bigint[])" % user,
                "id = %s" % mid_id, "id in (%s, 1, 2)" % mid_id, "id = 1",
                "id = %s and user_id = %d" % (mid_id, user),
                "start > null", "id = any(null::bigint[])",
                "score_state = 'SCORED' and start > '%s'" % mid,
                "updated_at >= '%s'" % mid,
                # infinities: what no row can pass, and what is no bound at all
                "start < 'infinity'", "start <= 'infinity'", "start > 'infinity'",
                "start >= 'infinity'", "start = 'infinity'", "start < '-infinity'",
                "start <= '-infinity'", "start > '-infinity'", "start >= '-infinity'",
                "start = '-infinity'", "\"end\" > 'infinity'", "\"end\" >= 'infinity'",
                "\"end\" < 'infinity'", "\"end\" <= '-infinity'", "\"end\" > '-infinity'",
                "'infinity' > start", "start between '-infinity' and 'infinity'",
                "start >= '%s' and start < 'infinity'" % mid,
                # years ISO-8601 cannot write, and the edges of those it can
                "start >= '0001-01-01'", "start >= '0100-01-01 BC'", "start > '4713-01-01 BC'",
                "start < '10000-01-01'", "start < '9999-12-31 23:59:59.9995'",
                "start <= '9999-12-31 23:59:59.999'", "start > '294276-12-31'",
                "start >= '%s' and start < '12000-01-01'" % mid,
                "start < '0001-01-01'", "\"end\" > '0001-01-01 00:00:00.0005'",
                # ids the by-id path cannot express
                "id = -1", "id = 0", "id in (-1, %s)" % mid_id, "id = any(array[-5, -6])",
                "id = 9223372036854775807", "id = -9223372036854775808",
                "id = -1 and start > '%s'" % mid,
            ],
            "cycle_window_eq": ["updated_at >= 'infinity'", "updated_at > '-infinity'",
                                "updated_at >= '-infinity'", "updated_at >= '12000-01-01'",
                                "updated_at >= '0001-01-02'", "updated_at >= '%s'" % mid,
                                "updated_at > 'infinity' and start > '%s'" % mid],
            "cycle_text_id": ["id = '%s'" % mid_id, "id = '0%s'" % mid_id, "id = '-1'",
                              "id = 'abc'", "id = ''", "id in ('%s', 'x')" % mid_id,
                              "id = '99999999999999999999'", "id = '%s '" % mid_id],
            "sleep_text_id": ["id = '%s'" % sleep_id, "id = upper('%s')" % sleep_id,
                              "id = 'not-a-uuid'", "id = '{%s}'" % sleep_id,
                              "id = replace('%s', '-', '')" % sleep_id],
            "sleep": ["id = '%s'" % sleep_id, "start >= '%s'" % mid, "nap",
                      "\"end\" < '%s'" % mid, "start > 'infinity'", "start < 'infinity'",
                      "\"end\" >= '10000-01-01'"],
            "recovery": ["cycle_id = %s" % cycle_with_recovery, "cycle_id = 1",
                         "cycle_id in (%s, 2)" % cycle_with_recovery,
                         "updated_at >= '%s'" % mid, "user_id = %d" % user,
                         "cycle_id = -1", "cycle_id in (-1, %s)" % cycle_with_recovery,
                         "created_at < '%s'" % mid, "created_at <= '%s'" % mid,
                         "created_at >= '%s'" % mid, "created_at < '-infinity'"],
            "recovery_window_eq": ["created_at >= '%s'" % mid, "created_at > '%s'" % mid,
                                   "created_at = '%s'" % mid,
                                   "created_at >= '%s' and created_at < '%s'"
                                   % (starts[5][0], mid),
                                   "created_at >= '%s' and updated_at >= '%s'" % (mid, mid),
                                   "created_at > 'infinity'", "created_at >= '-infinity'",
                                   "created_at <= '%s'" % starts[0][0]],
            "workout": ["start >= '%s'" % mid, "start < '%s' and sport_name = 'running'" % mid],
        }
        for table, preds in predicates.items():
            for pred in preds:
                with self.subTest(table=table, predicate=pred):
                    # the same query with a fence (offset 0) keeps every qual local
                    pushed = "select raw::text from api.{t} where {p}".format(t=table, p=pred)
                    local = ("select raw::text from (select * from api.{t} offset 0) s "
                             "where {p}".format(t=table, p=pred))
                    diff = scalar("select count(*) from (({a} except all {b}) union all "
                                  "({b} except all {a})) d".format(a=pushed, b=local))
                    self.assertEqual(diff, "0")
                    # quals on columns that are not selected
                    a = scalar("select count(user_id) from api.{t} where {p}".format(t=table, p=pred))
                    b = scalar("select count(user_id) from (select * from api.{t} offset 0) s "
                               "where {p}".format(t=table, p=pred))
                    self.assertEqual(a, b)

    def test_pushdown_of_edge_values_asks_only_what_the_api_can_answer(self):
        def asked(sql):
            self.sim.reset()
            psql(sql)
            return [r for r in sim_requests(self.sim) if r["path"].startswith("/v2/")]

        # nothing can pass: no request at all
        for pred in ("start > 'infinity'", "start < '-infinity'", "\"end\" > 'infinity'"):
            with self.subTest(predicate=pred):
                self.assertEqual(asked("select count(*) from api.cycle where %s" % pred), [])
        # no bound at all, or one ISO-8601 cannot write: not sent
        for pred, start in (("start < 'infinity'", None), ("start >= 'infinity'", None),
                            ("start >= '2026-06-20' and start < '10000-01-01'",
                             "2026-06-20T00:00:00.000Z"),
                            ("start >= '0100-01-01 BC'", None)):
            with self.subTest(predicate=pred):
                reqs = asked("select count(*) from api.cycle where %s" % pred)
                self.assertGreater(len(reqs), 0)
                self.assertTrue(all(r["path"] == "/v2/cycle" and r["status"] == 200
                                    for r in reqs), reqs)
                self.assertEqual({r["query"].get("start") for r in reqs}, {start})
                self.assertEqual({r["query"].get("end") for r in reqs}, {None})
        # ids the by-id path cannot take: the collection is read instead
        for sql in ("select count(*) from api.cycle where id = -1",
                    "select count(*) from api.recovery where cycle_id in (-1, 7)"):
            with self.subTest(sql=sql):
                reqs = asked(sql)
                self.assertGreater(len(reqs), 0)
                self.assertTrue(all(r["status"] == 200 and
                                    r["path"] in ("/v2/cycle", "/v2/recovery")
                                    for r in reqs), reqs)
        # plain EXPLAIN plans the requests without an error
        plan = psql("explain select * from api.cycle where start < 'infinity'")
        self.assertIn("WHOOP request: GET /v2/cycle?limit=25", plan)

    def test_pushdown_sends_fewer_requests(self):
        scalar("select count(*) from api.cycle")
        full = len(sim_requests(self.sim, "/v2/cycle"))
        self.sim.reset()
        scalar("select count(*) from api.cycle where start >= timestamptz '2026-06-30' - interval '7 days'")
        narrow = sim_requests(self.sim, "/v2/cycle")
        self.assertLess(len(narrow), full)
        self.assertEqual(narrow[0]["query"].get("start"), "2026-06-23T00:00:00.000Z")
        self.sim.reset()
        cid = scalar("select id from api.cycle limit 1")
        self.sim.reset()
        self.assertEqual(scalar("select count(*) from api.cycle where id = %s" % cid), "1")
        paths = [r["path"] for r in sim_requests(self.sim, "/v2/cycle")]
        self.assertEqual(paths[-1], "/v2/cycle/%s" % cid)

    def test_by_id_404_is_zero_rows(self):
        self.assertEqual(scalar("select count(*) from api.cycle where id = 123"), "0")
        st = self.sim.stats()
        self.assertEqual(api_count(st, "GET /v2/cycle/{id}", 404), 2)  # asked of both accounts
        self.assertEqual(scalar("select count(*) from api.recovery where cycle_id = 123"), "0")
        self.assertEqual(scalar("select count(*) from api.sleep "
                                "where id = '00000000-0000-0000-0000-000000000000'"), "0")

    def test_recovery_by_cycle_id(self):
        cid = scalar("select cycle_id from api.recovery limit 1 offset 3")
        self.sim.reset()
        self.assertEqual(scalar("select count(*) from api.recovery where cycle_id = %s" % cid), "1")
        paths = {r["path"] for r in sim_requests(self.sim)}
        self.assertIn("/v2/cycle/%s/recovery" % cid, paths)
        self.assertNotIn("/v2/recovery", paths)

    def test_updated_at_pushdown_needs_update_window(self):
        psql("create foreign table api.cycle_windowed (id bigint, user_id bigint, start timestamptz, "
             "updated_at timestamptz) server sim options (endpoint 'cycle', update_window '3 days')")
        since = "2026-06-20 00:00:00+00"
        self.sim.reset()
        exact = scalar("select count(*) from api.cycle where updated_at >= '%s'" % since)
        q = sim_requests(self.sim, "/v2/cycle")[0]["query"]
        self.assertNotIn("start", q)       # no declared window: fetch everything
        self.sim.reset()
        windowed = scalar("select count(*) from api.cycle_windowed where updated_at >= '%s'" % since)
        q = sim_requests(self.sim, "/v2/cycle")[0]["query"]
        self.assertEqual(q.get("start"), "2026-06-17T00:00:00.000Z")
        self.assertEqual(exact, windowed)
        plan = psql("explain verbose select id from api.cycle_windowed where updated_at >= '%s'" % since)
        self.assertIn("WHOOP request: GET /v2/cycle?start=2026-06-17T00:00:00.000Z&limit=25", plan)
        self.assertIn("WHOOP pushed: (updated_at >=", plan)

    def test_recovery_created_at_bounds_its_sleep(self):
        psql("create foreign table api.recovery_windowed (cycle_id bigint, user_id bigint, "
             "created_at timestamptz) server sim options (endpoint 'recovery', "
             "update_window '3 days')")
        lo, hi = "2026-06-10 00:00:00+00", "2026-06-20 00:00:00+00"
        where = "created_at >= '%s' and created_at < '%s'" % (lo, hi)
        self.sim.reset()
        windowed = scalar("select count(*) from api.recovery_windowed where %s" % where)
        q = sim_requests(self.sim, "/v2/recovery")[0]["query"]
        # the sleeps that began up to the window before lo, and before hi
        self.assertEqual((q.get("start"), q.get("end")),
                         ("2026-06-07T00:00:00.000Z", "2026-06-20T00:00:00.000Z"))
        self.assertEqual(windowed, scalar("select count(*) from (select * from api.recovery "
                                          "offset 0) r where %s" % where))
        self.assertGreater(int(windowed), 0)
        psql("drop foreign table api.recovery_windowed")

    def test_explain_shows_exact_requests(self):
        plan = psql("explain verbose select * from api.cycle "
                    "where start >= '2026-06-01T00:00:00Z' and start < '2026-06-15T00:00:00Z'")
        self.assertIn("WHOOP request: GET /v2/cycle?start=2026-06-01T00:00:00.000Z"
                      "&end=2026-06-15T00:00:00.000Z&limit=25", plan)
        self.assertIn("WHOOP accounts: 2", plan)
        self.assertIn("WHOOP pushed:", plan)
        # now() is read before and after: the plan's second lies between them
        week_ago = ("select to_char((now() - interval '7 days') at time zone 'UTC', "
                    "'YYYY-MM-DD\"T\"HH24:MI:SS')")
        before = scalar(week_ago)
        plan = psql("explain verbose select * from api.cycle where start >= now() - interval '7 days'")
        after = scalar(week_ago)
        m = re.search(r"GET /v2/cycle\?start=(\S+)&limit=25", plan)
        self.assertIsNotNone(m, plan)
        self.assertTrue(before[:19] <= m.group(1)[:19] <= after[:19], (before, m.group(1), after))
        self.assertEqual(sim_requests(self.sim), [], "EXPLAIN must not call the API")
        plan = psql("explain (analyze, verbose) select * from api.cycle where start >= '2026-06-20'")
        self.assertRegex(plan, r"WHOOP requests sent: 2")
        # no secrets
        secret = self.sim.accounts()["client_secret"]
        tokens = [r[0] for r in rows("select access_token from whoop_internal.account")]
        for text in (plan, psql("explain verbose select * from api.profile")):
            self.assertNotIn(secret, text)
            for t in tokens:
                self.assertNotIn(t, text)

    def test_limit_pushdown_stops_paging(self):
        self.assertEqual(scalar("select count(*) from (select * from api.cycle limit 3) s"), "3")
        reqs = sim_requests(self.sim, "/v2/cycle")
        self.assertEqual(len(reqs), 1)
        self.assertEqual(reqs[0]["query"]["limit"], "3")
        plan = psql("explain verbose select * from api.cycle limit 30")
        self.assertIn("WHOOP limit: 30", plan)
        # a local qual may reject rows: no limit pushdown
        plan = psql("explain verbose select * from api.cycle where score_state = 'SCORED' limit 3")
        self.assertNotIn("WHOOP limit", plan)
        plan = psql("explain verbose select * from api.cycle order by start limit 3")
        self.assertNotIn("WHOOP limit", plan)

    def test_rescan_with_unchanged_parameters_reuses_rows(self):
        # a nested loop rescans the foreign scan once per outer row
        out = psql("set enable_material = off; set enable_hashjoin = off; "
                   "set enable_mergejoin = off; "
                   "select count(*) from generate_series(1, 5) g cross join api.profile p")
        self.assertEqual(out.strip().splitlines()[-1], "10")
        self.assertEqual(len(sim_requests(self.sim, "/v2/user/profile/basic")), 2)
        self.sim.reset()
        # a correlated subquery whose parameter keeps the same value
        out = scalar("select sum(n) from (select (select count(*) from api.cycle c "
                     "where c.start >= v.t) n from (values (timestamptz '2026-06-25'), "
                     "('2026-06-25'), ('2026-06-25')) v(t)) s")
        self.assertGreater(int(out), 0)
        self.assertEqual(len(sim_requests(self.sim, "/v2/cycle")), 2)
        self.sim.reset()
        # a changed value asks again
        scalar("select sum(n) from (select (select count(*) from api.cycle c "
               "where c.start >= v.t) n from (values (timestamptz '2026-06-25'), "
               "('2026-06-26')) v(t)) s")
        self.assertEqual(len(sim_requests(self.sim, "/v2/cycle")), 4)

    def test_user_agent_keep_alive_and_requests_equal_pages(self):
        psql("select count(*) from api.sleep")
        reqs = sim_requests(self.sim, "/v2/activity/sleep")
        version = re.search(r"default_version = '([^']+)'",
                            open(os.path.join(ROOT, "whoop_fdw.control")).read()).group(1)
        self.assertEqual({r["user_agent"] for r in reqs}, {"whoop_fdw/" + version})
        # one reused connection (keep-alive): every page came over the same socket
        self.assertGreater(len(reqs), 5)
        self.assertEqual(len({r["client_port"] for r in reqs}), 1)
        pages = int(scalar("select count(*) from api.sleep")) // 25
        self.assertLessEqual(pages, len(reqs))
        self.assertEqual(api_count(self.sim.stats(), "GET /v2/activity/sleep"), len(reqs) * 2)
        self.assertTrue(all(r["status"] == 200 for r in reqs))

    def test_column_that_is_not_a_field(self):
        psql("create foreign table api.typo (id bigint, strian float8) server sim "
             "options (endpoint 'cycle')")
        with self.assertRaises(SQLError) as cm:
            psql("select * from api.typo")
        self.assertEqual(cm.exception.sqlstate, "HV005")
        self.assertIn('column "strian"', cm.exception.output)
        psql("create foreign table api.nowhere (id bigint) server sim")
        with self.assertRaises(SQLError) as cm:
            psql("select * from api.nowhere")
        self.assertEqual(cm.exception.sqlstate, "HV00R")

    def test_user_defined_column_types(self):
        psql("create foreign table api.cycle_text (id text, strain text, start text, "
             "score_state text) server sim options (endpoint 'cycle')")
        a = rows("select id, strain::float8, start::timestamptz from api.cycle_text "
                 "where strain is not null order by id limit 5")
        b = rows("select id, strain, start from api.cycle where strain is not null "
                 "order by id::text limit 5")
        self.assertEqual(a, b)


class TextTest(harness.SimulatorSuite):
    """Non-ASCII text, as WHOOP sends it (raw UTF-8, not \\u escapes), arrives
    intact: a profile name and a workout's sport and unknown field with 2-, 3-
    and 4-byte characters, through the foreign tables, the accounts, the raw
    tables, staging and the marts.  json-c 0.18 refused every such string in
    strict mode (see fdw/json.c); make test runs this on 15, 17 and 18."""

    FIRST, LAST = "Zoë", "Ångström"
    SPORT = "pétanque"
    ROUTE = "箱根駅伝コース 🌅"

    SIM_ARGS = ("--athletes", "2", "--days", "30", "--rate-per-minute", "0", "--rate-per-day", "0")
    DB = "fdw_text"
    LINK = None             # linked below, once the simulator holds the text

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = cls.sim.accounts()["athletes"][0]["user_id"]
        cls.sim.touch("profile", cls.user, {"first_name": cls.FIRST, "last_name": cls.LAST})
        cls.workout = [w for w in cls.sim.records("workout", cls.user)
                       if w["score_state"] == "SCORED"][0]["id"]
        cls.sim.touch("workout", cls.workout, {"sport_name": cls.SPORT,
                                               "route_name": cls.ROUTE})
        harness.link_simulator(cls.sim)

    def assertText(self, query, expected):
        """assertText: QUERY's one text value is EXPECTED, character for
        character and byte for byte (whatever the client encoding)."""
        got = rows("select t, encode(convert_to(t, 'UTF8'), 'hex'), length(t) from (%s) q(t)"
                   % query)
        self.assertEqual(got, [[expected, expected.encode("utf-8").hex(), str(len(expected))]])

    def test_foreign_tables(self):
        where = "where user_id = %d" % self.user
        self.assertText("select first_name from api.profile " + where, self.FIRST)
        self.assertText("select last_name from api.profile " + where, self.LAST)
        where = "where id = '%s'" % self.workout
        self.assertText("select sport_name from api.workout " + where, self.SPORT)
        self.assertText("select raw->>'route_name' from api.workout " + where, self.ROUTE)
        served = [w for w in self.sim.records("workout", self.user) if w["id"] == self.workout]
        self.assertEqual(json.loads(scalar("select raw::text from api.workout " + where)),
                         served[0])

    def test_linked_account(self):
        where = "where user_id = %d" % self.user
        self.assertText("select first_name from whoop.accounts " + where, self.FIRST)
        self.assertText("select last_name from whoop.accounts " + where, self.LAST)

    def test_raw_staging_and_marts(self):
        psql("call whoop.sync()")
        self.assertText("select first_name from whoop.raw_profile where user_id = %d "
                        "order by observed_at desc limit 1" % self.user, self.FIRST)
        where = "where id = '%s'" % self.workout
        self.assertText("select sport_name from whoop.raw_workout " + where, self.SPORT)
        self.assertText("select record->>'route_name' from whoop.raw_workout " + where,
                        self.ROUTE)
        self.assertEqual(scalar("select count(*) from whoop.refresh() where status <> 'ok'"), "0")
        self.assertText("select sport_name from whoop.stg_workout where workout_id = '%s'"
                        % self.workout, self.SPORT)
        where = "where user_id = %d and is_current" % self.user
        self.assertText("select name from whoop.dim_user " + where,
                        "%s %s" % (self.FIRST, self.LAST))
        self.assertText("select distinct s from whoop.fact_daily_strain, unnest(sports) s "
                        "where user_id = %d and s = '%s'" % (self.user, self.SPORT), self.SPORT)


class AccountTest(harness.SimulatorSuite):
    """Linking, OAuth rotation, serialized refresh, durable tokens."""

    SIM_ARGS = ("--athletes", "3", "--days", "30", "--rate-per-minute", "0", "--rate-per-day", "0")
    DB = "fdw_accounts"
    # the third athlete is linked only by the disconnect test: revoking
    # access at WHOOP ends every token of that member for the app
    LINK = {"athletes": 2}

    def setUp(self):
        self.sim.reset()

    def test_authorize_then_connect(self):
        url = scalar("select whoop.authorize_url('sim', 'https://localhost/callback')")
        self.assertTrue(url.startswith(self.sim.oauth_url + "/auth?response_type=code&client_id=sim-client"))
        self.assertIn("scope=offline%20read%3Arecovery", url)
        state = re.search(r"state=([^&]+)", url).group(1)
        self.assertEqual(len(state), 8)
        status, headers, _ = self.sim.request("GET", url[len(self.sim.base):])
        self.assertEqual(status, 302)
        code = re.search(r"code=([^&]+)", headers["Location"]).group(1)
        self.assertEqual(re.search(r"state=([^&]+)", headers["Location"]).group(1), state)
        uid = scalar("select whoop.connect_account('sim', '%s', 'https://localhost/callback')" % code)
        self.assertIn(int(uid), self.users)
        # the code is spent
        with self.assertRaises(SQLError) as cm:
            psql("select whoop.connect_account('sim', '%s', 'https://localhost/callback')" % code)
        self.assertEqual(cm.exception.sqlstate, "28000")

    def test_authorize_url_state(self):
        url = scalar("select whoop.authorize_url('sim', 'https://x.example/cb', 'abcdefgh')")
        self.assertTrue(url.endswith("&state=abcdefgh"))
        with self.assertRaises(SQLError) as cm:
            psql("select whoop.authorize_url('sim', 'https://x.example/cb', 'short')")
        self.assertEqual(cm.exception.sqlstate, "22023")

    def test_accounts_view_hides_tokens(self):
        cols = [r[0] for r in rows("select column_name from information_schema.columns "
                                   "where table_schema = 'whoop' and table_name = 'accounts'")]
        self.assertNotIn("refresh_token", cols)
        self.assertNotIn("access_token", cols)
        self.assertEqual(sorted(int(r[0]) for r in rows("select user_id from whoop.accounts")),
                         sorted(self.users))

    def test_add_account_spent_token(self):
        rt = self.sim.accounts()["athletes"][0]["refresh_token"]
        self.assertEqual(int(scalar("select whoop.add_account('sim', '%s')" % rt)), self.users[0])
        with self.assertRaises(SQLError) as cm:
            psql("select whoop.add_account('sim', '%s')" % rt)
        self.assertEqual(cm.exception.sqlstate, "28000")
        self.assertIn("invalid_grant", cm.exception.output)

    def test_expired_token_is_refreshed_once(self):
        self.sim.control("POST", "expire_tokens", {})
        self.assertGreater(int(scalar("select count(*) from api.cycle")), 0)
        st = self.sim.stats()
        self.assertEqual(st["token_grants"]["refresh_token"], 2)   # one per account
        self.assertEqual(api_count(st, "GET /v2/cycle", 401), 2)

    def test_eight_sessions_one_refresh(self):
        self.sim.control("POST", "expire_tokens", {"user_id": self.users[0]})
        procs = [subprocess.Popen(["psql", "-X", "-At", "-d", "fdw_accounts", "-c",
                                   "select count(*) from api.cycle where user_id = %d"
                                   % self.users[0]],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(8)]
        outs = [p.communicate(timeout=120) for p in procs]
        for p, (out, err) in zip(procs, outs):
            self.assertEqual(p.returncode, 0, err)
            self.assertGreater(int(out.strip()), 0)
        self.assertEqual(len({o for o, _ in outs}), 1)
        st = self.sim.stats()
        self.assertEqual(st["token_grants"]["refresh_token"], 1)
        self.assertEqual(st["token_grants"]["failed"], 0)

    def test_rotated_token_survives_rollback(self):
        for ending in ("rollback", "select 1/0"):
            with self.subTest(ending=ending):
                self.sim.control("POST", "expire_tokens", {})
                before = int(scalar("select sum(token_version) from whoop_internal.account"))
                psql("begin; select count(*) from api.profile; %s;" % ending, check=False)
                after = int(scalar("select sum(token_version) from whoop_internal.account"))
                self.assertEqual(after, before + 2)
                self.sim.control("POST", "expire_tokens", {})
                # a new session refreshes again with the stored (rotated) token
                self.assertEqual(scalar("select count(*) from api.profile"), "2")
        self.assertEqual(self.sim.stats()["token_grants"]["failed"], 0)

    def test_401_mid_scan_refreshes_and_retries(self):
        self.sim.fault(path="/v2/cycle", kind="unauthorized", after=1, count=1)
        n = int(scalar("select count(*) from api.cycle where user_id = %d" % self.users[0]))
        self.assertEqual(n, len(self.sim.control("GET", "records?kind=cycle&user_id=%d"
                                                 % self.users[0])["records"]))
        self.assertEqual(self.sim.stats()["token_grants"]["refresh_token"], 1)

    def test_refused_refresh_token_marks_account(self):
        rt = self.sim.accounts()["athletes"][1]["refresh_token"]
        psql("select whoop.add_account('sim', '%s')" % rt)
        stored = scalar("select refresh_token from whoop_internal.account where user_id = %d" % self.users[1])
        # someone else spends the stored refresh token behind our back
        accounts = self.sim.accounts()
        status, _, _ = self.sim.request("POST", "/oauth/oauth2/token", form={
            "grant_type": "refresh_token", "refresh_token": stored,
            "client_id": accounts["client_id"], "client_secret": accounts["client_secret"],
            "scope": "offline"})
        self.assertEqual(status, 200)
        self.sim.control("POST", "expire_tokens", {"user_id": self.users[1]})
        with self.assertRaises(SQLError) as cm:
            psql("select count(*) from api.profile where user_id = %d" % self.users[1])
        self.assertEqual(cm.exception.sqlstate, "28000")
        self.assertIn("whoop.connect_account()", cm.exception.output)
        self.assertEqual(scalar("select status from whoop.accounts where user_id = %d"
                                % self.users[1]), "reauthorization_required")
        with self.assertRaises(SQLError) as cm:
            psql("select count(*) from api.profile where user_id = %d" % self.users[1])
        self.assertIn("must be authorized again", cm.exception.output)
        # linking again repairs it
        rt = self.sim.accounts()["athletes"][1]["refresh_token"]
        psql("select whoop.add_account('sim', '%s')" % rt)
        self.assertEqual(scalar("select count(*) from api.profile where user_id = %d"
                                % self.users[1]), "1")

    def test_disconnect_revokes_and_forgets(self):
        rt = self.sim.accounts()["athletes"][2]["refresh_token"]
        psql("create server sim2 foreign data wrapper whoop_fdw options (api_url '%s', "
             "oauth_url '%s'); create user mapping for current_user server sim2 options "
             "(client_id 'sim-client', client_secret 'sim-secret')"
             % (self.sim.api_url, self.sim.oauth_url))
        uid = scalar("select whoop.add_account('sim2', '%s')" % rt)
        self.sim.reset()
        self.assertEqual(scalar("select whoop.disconnect_account('sim2', %s)" % uid), "t")
        self.assertEqual(api_count(self.sim.stats(), "DELETE /v2/user/access", 204), 1)
        self.assertEqual(scalar("select count(*) from whoop.accounts where server_name = 'sim2'"), "0")
        with self.assertRaises(SQLError) as cm:
            psql("select whoop.disconnect_account('sim2', %s)" % uid)
        self.assertEqual(cm.exception.sqlstate, "42704")
        psql("drop server sim2 cascade")

    def test_zz_no_secrets_in_server_log(self):
        # runs last in this class: everything above has been logged by now
        with open(os.environ["WHOOP_SERVER_LOG"], errors="replace") as f:
            log = f.read()
        self.assertIn("ERROR", log)
        secrets = [self.sim.accounts()["client_secret"]]
        secrets += [t for r in rows("select refresh_token, access_token from whoop_internal.account")
                    for t in r if t]
        for secret in secrets:
            self.assertNotIn(secret, log)

    def extra_server(self, name, api_url=None, oauth_url=None, secret="sim-secret"):
        """extra_server creates server NAME on the simulator (URLs overridable)
        with a user mapping; dropping it later forgets its accounts unrevoked."""
        psql("drop server if exists %s cascade; "
             "create server %s foreign data wrapper whoop_fdw options (api_url '%s', "
             "oauth_url '%s', max_retries '0'); create user mapping for current_user server %s "
             "options (client_id 'sim-client', client_secret '%s')"
             % (name, name, api_url or self.sim.api_url, oauth_url or self.sim.oauth_url,
                name, secret))
        self.addCleanup(psql, "drop server if exists %s cascade" % name)

    def token_requests(self):
        return sim_requests(self.sim, "/oauth/oauth2/token")

    def test_bad_codes_tokens_and_redirect_uris_are_refused_before_sending(self):
        code = self.sim.accounts()["athletes"][0]["code"]
        for sql in ("select whoop.add_account('sim', '')",
                    "select whoop.add_account('sim', E'token\\n')",
                    "select whoop.add_account('sim', 'tökén')",
                    "select whoop.connect_account('sim', '', 'https://localhost/callback')",
                    "select whoop.connect_account('sim', '%s', '')" % code,
                    "select whoop.connect_account('sim', '%s', 'javascript:alert(1)')" % code,
                    "select whoop.connect_account('sim', '%s', 'http://example.com/callback')"
                    % code):
            with self.subTest(sql=sql):
                with self.assertRaises(SQLError) as cm:
                    psql(sql)
                self.assertEqual(cm.exception.sqlstate, "22023", cm.exception.output)
                self.assertIn("HINT:", cm.exception.output)
        self.assertEqual(self.sim.request_log(), [])
        # the code was never sent, so it still links
        self.assertIn(int(scalar("select whoop.connect_account('sim', '%s', "
                                 "'https://localhost/callback')" % code)), self.users)

    def test_authorize_url_accepts_only_https_or_loopback_redirects(self):
        for uri in ("", "javascript:alert(1)", "http://example.com/callback", "ftp://x.example/cb",
                    "https://x.example/cb#fragment", "/callback", "localhost/callback",
                    "https://user:pw@x.example/cb"):
            with self.subTest(refused=uri):
                with self.assertRaises(SQLError) as cm:
                    psql("select whoop.authorize_url('sim', '%s')" % uri)
                self.assertEqual(cm.exception.sqlstate, "22023")
                self.assertIn('invalid redirect_uri: "%s"' % uri, cm.exception.output)
        for uri in ("https://x.example/cb?app=1", "http://localhost:8080/callback",
                    "http://127.0.0.1/cb", "https://localhost/callback"):
            with self.subTest(accepted=uri):
                self.assertIn("redirect_uri=", scalar("select whoop.authorize_url('sim', '%s')"
                                                      % uri))

    def test_wrong_client_secret_says_so_and_spends_nothing(self):
        self.extra_server("sim_secret", secret="not-the-secret")
        rt = self.sim.accounts()["athletes"][0]["refresh_token"]
        with self.assertRaises(SQLError) as cm:
            psql("select whoop.add_account('sim_secret', '%s')" % rt)
        self.assertEqual(cm.exception.sqlstate, "28000")
        self.assertIn("WHOOP refused the app's credentials", cm.exception.output)
        self.assertIn("invalid_client", cm.exception.output)
        self.assertRegex(cm.exception.output,
                         r"HINT:  Check client_id and client_secret in your user mapping "
                         r"for server \"sim_secret\"")
        self.assertNotIn("single-use", cm.exception.output)
        # the refresh token was not used: it links once the secret is right
        psql("alter user mapping for current_user server sim_secret "
             "options (set client_secret 'sim-secret')")
        self.assertEqual(int(scalar("select whoop.add_account('sim_secret', '%s')" % rt)),
                         self.users[0])

    def test_refresh_with_wrong_client_secret_keeps_the_account(self):
        self.extra_server("sim_rotate")
        rt = self.sim.accounts()["athletes"][1]["refresh_token"]
        uid = int(scalar("select whoop.add_account('sim_rotate', '%s')" % rt))
        psql("create foreign table api.rotate_profile (user_id bigint) server sim_rotate "
             "options (endpoint 'profile'); alter user mapping for current_user "
             "server sim_rotate options (set client_secret 'not-the-secret')")
        self.sim.expire_tokens(uid)
        with self.assertRaises(SQLError) as cm:
            psql("select count(*) from api.rotate_profile")
        self.assertEqual(cm.exception.sqlstate, "28000")
        self.assertIn("WHOOP refused the app's credentials when refreshing account %d" % uid,
                      cm.exception.output)
        self.assertIn("refresh token was not used", cm.exception.output)
        self.assertRegex(cm.exception.output, r'HINT:  Check client_id and client_secret in the '
                                              r'user mapping of role "postgres" for server '
                                              r'"sim_rotate"')
        self.assertEqual(scalar("select status from whoop.accounts "
                                "where server_name = 'sim_rotate'"), "active")
        psql("alter user mapping for current_user server sim_rotate "
             "options (set client_secret 'sim-secret')")
        self.assertEqual(scalar("select count(*) from api.rotate_profile"), "1")

    def test_wrong_api_url_is_found_before_the_grant_is_spent(self):
        rt = self.sim.accounts()["athletes"][0]["refresh_token"]
        # a path WHOOP does not serve (404), and a web page answering 200
        self.extra_server("sim_nowhere", api_url=self.sim.base + "/nowhere")
        self.extra_server("sim_webpage")
        self.sim.reset()
        self.sim.fault(path="/v2/user/profile/basic", kind="invalid_json", count=1)
        for server, status in (("sim_nowhere", 404), ("sim_webpage", 200)):
            with self.subTest(server=server):
                with self.assertRaises(SQLError) as cm:
                    psql("select whoop.add_account('%s', '%s')" % (server, rt))
                self.assertEqual(cm.exception.sqlstate, "HV00N")
                self.assertIn('api_url of server "%s" does not answer like the WHOOP API'
                              % server, cm.exception.output)
                self.assertIn("answered HTTP %d" % status, cm.exception.output)
                self.assertRegex(cm.exception.output, r"HINT:  Check the server's api_url")
        self.assertEqual(self.token_requests(), [])
        self.assertEqual(int(scalar("select whoop.add_account('sim', '%s')" % rt)),
                         self.users[0])

    def test_wrong_oauth_url_is_named(self):
        self.extra_server("sim_oauth", oauth_url=self.sim.base + "/oauth")
        with self.assertRaises(SQLError) as cm:
            psql("select whoop.add_account('sim_oauth', '%s')"
                 % self.sim.accounts()["athletes"][0]["refresh_token"])
        self.assertIn('WHOOP token endpoint of server "sim_oauth" gave no OAuth answer',
                      cm.exception.output)
        self.assertRegex(cm.exception.output, r"HINT:  Check the server's oauth_url")
        self.assertNotIn("single-use", cm.exception.output)

    def test_missing_user_mapping_names_role_and_server(self):
        self.extra_server("sim_unmapped")
        rt = self.sim.accounts()["athletes"][1]["refresh_token"]
        uid = int(scalar("select whoop.add_account('sim_unmapped', '%s')" % rt))
        psql("create foreign table api.unmapped_profile (user_id bigint) server sim_unmapped "
             "options (endpoint 'profile'); "
             "drop user mapping for current_user server sim_unmapped")
        for sql in ("select whoop.add_account('sim_unmapped', 'x')",
                    "select whoop.authorize_url('sim_unmapped', 'https://localhost/callback')"):
            with self.subTest(sql=sql):
                with self.assertRaises(SQLError) as cm:
                    psql(sql)
                self.assertEqual(cm.exception.sqlstate, "42704")
                self.assertIn('user mapping for role "postgres" on server "sim_unmapped" '
                              'does not exist', cm.exception.output)
                self.assertIn("HINT:  Create one: CREATE USER MAPPING FOR CURRENT_USER "
                              "SERVER sim_unmapped", cm.exception.output)
        # a refresh needs the mapping of the account's owner
        self.sim.expire_tokens(uid)
        with self.assertRaises(SQLError) as cm:
            psql("select count(*) from api.unmapped_profile")
        self.assertEqual(cm.exception.sqlstate, "42704")
        self.assertIn('on server "sim_unmapped" does not exist', cm.exception.output)

    def test_no_accounts_is_an_error(self):
        psql("create server empty foreign data wrapper whoop_fdw options (api_url '%s'); "
             "create foreign table api.empty_cycle (id bigint) server empty "
             "options (endpoint 'cycle')" % self.sim.api_url)
        with self.assertRaises(SQLError) as cm:
            psql("select * from api.empty_cycle")
        self.assertEqual(cm.exception.sqlstate, "HV00N")
        self.assertIn("whoop.connect_account()", cm.exception.output)
        psql("drop server empty cascade")


class FaultTest(harness.SimulatorSuite):
    """Retries, backoff, timeouts, cancel and bad bodies."""

    # a rate-limit "minute" lasts a second, so a 429 says: retry in ~1 s
    SIM_ARGS = ("--athletes", "1", "--days", "60", "--rate-minute-seconds", "1")
    DB = "fdw_faults"
    LINK = {"options": {"max_retries": "2", "timeout_ms": "2000"}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.total = int(scalar("select count(*) from api.cycle"))

    def setUp(self):
        self.sim.reset()
        psql("alter server sim options (set timeout_ms '2000')")

    def test_5xx_is_retried(self):
        self.sim.fault(path="/v2/cycle", kind="status", status=503, after=1, count=2)
        self.assertEqual(int(scalar("select count(*) from api.cycle")), self.total)
        self.assertEqual(api_count(self.sim.stats(), "GET /v2/cycle", 503), 2)

    def test_5xx_beyond_max_retries_is_an_error(self):
        self.sim.fault(path="/v2/cycle", kind="status", status=502, count=3)
        with self.assertRaises(SQLError) as cm:
            psql("select count(*) from api.cycle")
        self.assertEqual(cm.exception.sqlstate, "HV000")
        self.assertIn("HTTP 502", cm.exception.output)
        self.assertIn("after 3 attempts", cm.exception.output)
        self.assertEqual(int(scalar("select count(*) from api.cycle")), self.total)

    def test_connection_reset_and_cut_body_are_retried(self):
        for kind in ("reset", "partial"):
            with self.subTest(kind=kind):
                self.sim.reset()
                self.sim.fault(path="/v2/cycle", kind=kind, count=1)
                out = psql("select count(*) from api.cycle; "
                           "select pages, retries from whoop.fetch_stats()")
                count, pages, retries = (int(v) for v in out.replace("|", " ").split())
                self.assertEqual(count, self.total)
                # the faulted request was sent again: the simulator saw it once
                # and one cycle request more than there are pages, and whoop
                # counted one retry
                cycle = [r for r in self.sim.request_log() if r["path"] == "/v2/cycle"]
                self.assertEqual([r["fault"] for r in cycle].count(kind), 1, cycle)
                self.assertEqual(len(cycle), pages + 1)
                self.assertEqual(retries, 1)

    def test_truncated_json_names_endpoint_and_offset(self):
        self.sim.fault(path="/v2/cycle", kind="truncate", count=1)
        with self.assertRaises(SQLError) as cm:
            psql("select count(*) from api.cycle")
        self.assertEqual(cm.exception.sqlstate, "HV00A")
        self.assertIn("truncated JSON in WHOOP response from GET /v2/cycle", cm.exception.output)
        self.assertIn("byte offset", cm.exception.output)

    def test_web_page_instead_of_json_points_at_api_url(self):
        # the fault answers 200 with an HTML page, as a wrong api_url would
        self.sim.fault(path="/v2/activity/sleep", kind="invalid_json", count=1)
        with self.assertRaises(SQLError) as cm:
            psql("select count(*) from api.sleep")
        self.assertEqual(cm.exception.sqlstate, "HV00A")
        self.assertIn("WHOOP response from GET /v2/activity/sleep is not JSON",
                      cm.exception.output)
        self.assertIn("answered HTTP 200 with: <!DOCTYPE html>", cm.exception.output)
        self.assertRegex(cm.exception.output, r"HINT:.*server's api_url")

    def test_one_attempt_is_singular(self):
        try:
            psql("alter server sim options (set max_retries '0')")
            for kind, status in (("status", 502), ("reset", None)):
                with self.subTest(kind=kind):
                    self.sim.reset()
                    self.sim.fault(path="/v2/cycle", kind=kind, status=status or 503, count=1)
                    with self.assertRaises(SQLError) as cm:
                        psql("select count(*) from api.cycle")
                    self.assertRegex(cm.exception.output, r"after 1 attempt\b")
                    self.assertNotIn("1 attempts", cm.exception.output)
        finally:
            psql("alter server sim options (set max_retries '2')")

    def test_429_waits_for_reset(self):
        self.sim.fault(path="/v2/cycle", kind="status", status=429, count=2)
        out = psql("select count(*) from api.cycle; select throttled from whoop.fetch_stats()")
        self.assertEqual(out.split(), [str(self.total), "2"])

    def test_timeout_is_retried_then_reported(self):
        self.sim.fault(path="/v2/cycle", kind="slow_body", delay_ms=4000, count=3)
        with self.assertRaises(SQLError) as cm:
            psql("select count(*) from api.cycle")
        self.assertEqual(cm.exception.sqlstate, "HV00N")
        self.assertIn("timeout", cm.exception.output.lower())

    def test_statement_timeout_interrupts_a_slow_request(self):
        self.sim.fault(path="/v2/cycle", kind="delay", delay_ms=30000, count=1)
        started = time.time()
        with self.assertRaises(SQLError) as cm:
            psql("set statement_timeout = '1s'; alter server sim options (set timeout_ms '60000'); "
                 "select count(*) from api.cycle")
        elapsed = time.time() - started
        self.assertEqual(cm.exception.sqlstate, "57014")
        self.assertLess(elapsed, 10)   # a bound, not a benchmark: the request alone takes 30 s

    def test_cancel_interrupts_a_slow_request(self):
        self.sim.fault(path="/v2/activity/workout", kind="delay", delay_ms=30000, count=1)
        psql("alter server sim options (set timeout_ms '60000')")
        result = {}

        def run():
            try:
                psql("select count(*) from api.workout")
            except SQLError as e:
                result["error"] = e
        t = threading.Thread(target=run)
        t.start()
        self.assertTrue(harness.wait_until(lambda: scalar(
            "select count(*) from pg_stat_activity where query like 'select count(*) from api.workout%' "
            "and wait_event_type = 'Extension'") == "1", timeout=10))
        started = time.time()
        scalar("select pg_cancel_backend(pid) from pg_stat_activity "
               "where query like 'select count(*) from api.workout%'")
        t.join(30)
        self.assertLess(time.time() - started, 10)
        self.assertEqual(result["error"].sqlstate, "57014")


class RateLimitTest(harness.SimulatorSuite):
    """Pacing keeps a long scan under the per-minute limit (a minute lasts 1 s here)."""

    SIM_ARGS = ("--athletes", "3", "--days", "1100", "--rate-per-minute", "100",
                "--rate-per-day", "0", "--rate-minute-seconds", "1")
    DB = "fdw_ratelimit"

    def test_long_scan_sees_no_429(self):
        self.sim.reset()
        n = int(scalar("select count(*) from api.cycle"))
        st = self.sim.stats()
        self.assertGreater(api_count(st, "GET /v2/cycle", 200), 120)
        self.assertEqual(api_count(st, "GET /v2/cycle", 429), 0)
        self.assertEqual(n, len(self.sim.control("GET", "records?kind=cycle")["records"]))
        paced = float(scalar("select paced_ms from whoop.fetch_stats()"))
        self.assertEqual(paced, 0.0)   # a fresh session; the pacing was in the other one
        out = psql("select count(*) from api.sleep; select paced_ms > 0 from whoop.fetch_stats()")
        self.assertEqual(out.split()[-1], "t")
        self.assertEqual(api_count(self.sim.stats(), "GET /v2/activity/sleep", 429), 0)


class MemoryTest(harness.SimulatorSuite):
    """No growth per page or per row: a 50,000-record scan stays flat."""

    SIM_ARGS = ("--athletes", "26", "--days", "2000", "--rate-per-minute", "0", "--rate-per-day", "0")
    DB = "fdw_memory"

    def peak_rss_during(self, sql):
        proc = subprocess.Popen(["psql", "-X", "-At", "-d", "fdw_memory"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdin.write("select pg_backend_pid();\n")
        proc.stdin.flush()
        pid = int(proc.stdout.readline())
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                try:
                    for line in open("/proc/%d/status" % pid):
                        if line.startswith("VmRSS:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
                except OSError:
                    pass
                time.sleep(0.02)
        t = threading.Thread(target=sample)
        t.start()
        proc.stdin.write(sql + ";\n")
        proc.stdin.close()
        out = proc.stdout.read()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        done.set()
        t.join()
        return peak[0], out

    def test_scan_memory_is_flat(self):
        small_peak, small = self.peak_rss_during(
            "select count(raw), sum(strain) from api.cycle where user_id = %d" % self.users[0])
        big_peak, big = self.peak_rss_during("select count(raw), sum(strain) from api.cycle")
        n = int(big.split("|")[0])
        print("\n    peak backend RSS: %d kB scanning %s rows, %d kB scanning %d rows"
              % (small_peak, small.split("|")[0], big_peak, n))
        self.assertGreaterEqual(n, 50000)
        # 26x the rows and pages: the peak may not grow with them
        self.assertLess(big_peak - small_peak, 8 * 1024,
                        "peak RSS grew from %d kB to %d kB" % (small_peak, big_peak))


if __name__ == "__main__":
    unittest.main()
