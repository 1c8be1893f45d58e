"""test_backfill.py -- a member's history loaded newest first, resumable.

BackfillTest runs whoop.sync() against a simulator with three athletes and
400 days of history.  Two members are linked first; server option
backfill_max_chunks_per_sync stands in for a request budget that is spent
(0: no chunk at all, 4: one account's round of chunks per sync).  The
first sync leaves exactly the newest backfill_first_days (60) of each
member -- every record starting in them, a recovery created in them -- and
the metrics for those days; later syncs extend each history newest first,
one chunk of backfill_chunk_days (180) per endpoint, each chunk's window
right below the one before (sync_log), the raw rows always exactly what the
simulator serves from history_from on, until every history is complete and
the raw layer equals the simulator.  A third member linked meanwhile gets
its first load only after the members synced before got their incremental
fetch, and chunks only after that (sync_log order).  A failed chunk (a
simulator fault) leaves history_from as it was and the next sync resumes
there.  Reconciliation never tombstones a stored record older than what
the partial history has listed, and a chunk reconciles its own window.
full => true marks the history complete.  whoop.account_freshness says why
for each state, and a role sees only its own accounts there.

BudgetTest: a 53400 from the request budget ends the run's chunks quietly;
the next run resumes.  The new server options are validated.

InactiveMemberTest: a member whose newest 240 days are empty still gets
the history before them.

TokenTest: WHOOP's clock is the real one.  The simulator's data clock
moving days ahead does not expire an access token (no 401, no refresh),
and once a token's real life has passed, a sync refreshes first and gets
no 401.
"""

import datetime
import time
import unittest

import chaos_lib
import harness
from harness import psql, rows, scalar

DATED = ("cycle", "recovery", "sleep", "workout")
TABLES = {"cycle": ("raw_cycle", "id"), "recovery": ("raw_recovery", "cycle_id"),
          "sleep": ("raw_sleep", "id"), "workout": ("raw_workout", "id")}
# the column history_from bounds: a recovery has no start
BOUND = {"cycle": "start", "recovery": "created_at", "sleep": "start", "workout": "start"}


def sync(*args):
    """sync runs CALL whoop.sync(...) and returns its output with any NOTICE or WARNING."""
    return harness.psql_full("call whoop.sync(%s)" % ", ".join(args))


def parse(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def history(user_id):
    """history returns {endpoint: history_from as text} of one account."""
    return {r[0]: r[1] for r in rows(
        "select endpoint, coalesce(history_from::text, '') from whoop.sync_state "
        "where user_id = %d and endpoint in ('cycle', 'recovery', 'sleep', 'workout')" % user_id)}


def history_ts(user_id):
    """history_ts returns {endpoint: history_from as an aware datetime, or '-infinity'}."""
    out = {}
    for r in rows("select endpoint, case when history_from = '-infinity' then '-infinity' "
                  "else to_char(history_from at time zone 'UTC', "
                  "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') end "
                  "from whoop.sync_state where user_id = %d "
                  "and endpoint in ('cycle', 'recovery', 'sleep', 'workout')" % user_id):
        out[r[0]] = r[1] if r[1] == "-infinity" else datetime.datetime.fromisoformat(r[1])
    return out


def real_now():
    """real_now: the simulator's data clock set to the real time (WHOOP's
    clock is the real one; the newest days are counted on the database's)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class BackfillTest(harness.SimulatorSuite):

    SIM_ARGS = ("--athletes", "3", "--days", "400", "--rate-per-minute", "0",
                "--rate-per-day", "0", "--now", real_now())
    DB = "backfill_test"
    LINK = {"import_into": None, "athletes": 2,
            "options": {"backfill_max_chunks_per_sync": "0"}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.db = chaos_lib.DB(cls.DB)
        cls.all_users = [a["user_id"] for a in cls.sim.accounts()["athletes"]]
        cls.first = sync()

    def setUp(self):
        self.sim.reset()

    def served_since(self, kind, user_id):
        """served_since: the keys of the records of KIND the simulator serves
        from the account's history_from on."""
        bound = history_ts(user_id)[kind]
        key = TABLES[kind][1]
        return {str(r[key]) for r in self.sim.records(kind, user_id)
                if bound == "-infinity" or parse(r[BOUND[kind]]) >= bound} - self.planted

    # the sleeps test_04 stores below the loaded history
    planted = set()

    def stored(self, kind, user_id):
        table, key = TABLES[kind]
        return {r[0] for r in rows("select %s from whoop.%s where user_id = %d "
                                   "and (%s is null)" % (key, table, user_id,
                                                          "null" if kind == "cycle"
                                                          else "deleted_at"))} - self.planted

    def assert_exactly_history(self, user_id):
        for kind in DATED:
            self.assertEqual(self.stored(kind, user_id), self.served_since(kind, user_id),
                             "%s of %d" % (kind, user_id))

    def test_01_first_sync_loads_the_newest_60_days(self):
        self.assertNotIn("WARNING", self.first)
        now = datetime.datetime.now(datetime.timezone.utc)
        for user in self.users:
            bounds = history_ts(user)
            self.assertEqual(set(bounds), set(DATED))
            for kind, bound in bounds.items():
                self.assertNotEqual(bound, "-infinity")
                age = (now - bound).total_seconds() / 86400
                self.assertTrue(60 <= age < 60.1, (kind, age))
            self.assert_exactly_history(user)
            # less than the whole history: there are older records
            self.assertGreater(len(self.sim.records("cycle", user)),
                               len(self.stored("cycle", user)) + 200)
        # one first-load row per dated endpoint, no chunk
        self.assertEqual(rows("select endpoint, count(*), bool_and(chunk_from is not null "
                              "and chunk_to is null), bool_and(status = 'ok') "
                              "from whoop.sync_log where endpoint in "
                              "('cycle', 'recovery', 'sleep', 'workout') group by 1 order by 1"),
                         [[k, "2", "t", "t"] for k in sorted(DATED)])
        # the first load's requests: a few pages, not 400 days
        self.assertLessEqual(int(scalar("select max(requests) from whoop.sync_log")), 4)

    def test_02_metrics_for_the_loaded_days(self):
        psql("select whoop.refresh()")
        for user in self.users:
            days, first = rows("select count(*), min(day) from whoop.fact_daily_recovery "
                               "where user_id = %d" % user)[0]
            self.assertGreaterEqual(int(days), 50)
            self.assertLessEqual(int(days), 61)
            # the 60-day baselines have what they need on the newest days
            self.assertGreater(int(scalar(
                "select count(*) from whoop.autonomic_balance where user_id = %d "
                "and balance_score is not null" % user)), 0)

    def test_03_freshness_while_history_loads(self):
        got = {(int(r[0]), r[1]): r[2] for r in rows(
            "select user_id, endpoint, why from whoop.account_freshness")}
        self.assertEqual(len(got), 12)
        for user in self.users:
            self.assertEqual(got[(user, "profile")], "fresh")
            for kind in DATED:
                self.assertTrue(got[(user, kind)].startswith("history loading (from "),
                                got[(user, kind)])
        self.assertEqual(scalar("select count(*) from whoop.account_freshness "
                                "where history_complete"), "0")
        self.assertEqual(scalar("select count(*) from whoop.account_freshness "
                                "where history_complete is null"), "4")

    def test_04_reconciliation_spares_records_before_the_loaded_history(self):
        user = self.users[0]
        bound = history_ts(user)["sleep"]
        # a sleep WHOOP has, stored as the webhook applier would, and one it
        # never had: both older than the loaded history
        old = [r for r in self.sim.records("sleep", user) if parse(r["start"]) < bound][0]
        psql("""insert into whoop.raw_sleep (id, cycle_id, user_id, start, "end", timezone_offset,
                    nap, score_state, created_at, updated_at, record, _extracted_at)
                select (r->>'id')::uuid, (r->>'cycle_id')::bigint, (r->>'user_id')::bigint,
                       (r->>'start')::timestamptz - interval %s, (r->>'end')::timestamptz - interval %s,
                       r->>'timezone_offset', (r->>'nap')::boolean, r->>'score_state',
                       (r->>'created_at')::timestamptz, (r->>'updated_at')::timestamptz,
                       r || jsonb_build_object('id', %s), now()
                from (select %s::jsonb as r) x"""
             % ("'0'", "'0'", "(r->>'id')", harness.quote_literal(harness.json_literal(old))))
        fake = "00000000-0000-4000-8000-0000000000bf"
        psql("""insert into whoop.raw_sleep (id, cycle_id, user_id, start, "end", timezone_offset,
                    nap, score_state, created_at, updated_at, record, _extracted_at)
                values ('%s', 1, %d, %s::timestamptz - interval '3 days',
                        %s::timestamptz - interval '3 days' + interval '8 hours', 'Z', false,
                        'SCORED', now(), now(), '{}', now())"""
             % (fake, user, harness.quote_literal(bound.isoformat()),
                harness.quote_literal(bound.isoformat())))
        out = sync()
        self.assertNotIn("WARNING", out)
        self.assertEqual(rows("select id, deleted_at is null from whoop.raw_sleep "
                              "where id in ('%s', '%s') order by id" % (fake, old["id"])),
                         sorted([[fake, "t"], [old["id"], "t"]]))
        self.__class__.fake_sleep = fake
        self.__class__.planted = {fake, old["id"]}

    def test_05_members_synced_before_come_first(self):
        new = self.all_users[2]
        psql("select whoop.add_account('sim', %s)"
             % harness.quote_literal(self.sim.accounts()["athletes"][2]["refresh_token"]))
        self.assertEqual({r[0]: r[1] for r in rows(
            "select endpoint, why from whoop.account_freshness where user_id = %d" % new)},
            {e: "never synced" for e in ("profile", "body_measurement") + DATED})
        psql("alter server sim options (set backfill_max_chunks_per_sync '4')")
        before = scalar("select max(id) from whoop.sync_log")
        out = sync()
        self.assertNotIn("WARNING", out)
        log = rows("select user_id, endpoint, chunk_from is not null, chunk_to is not null "
                   "from whoop.sync_log where id > %s order by id" % before)
        kinds = []
        for user_id, endpoint, first_or_chunk, chunk in log:
            if int(user_id) != new and first_or_chunk == "f":
                kinds.append("incremental")
            elif int(user_id) == new and chunk == "f":
                kinds.append("first load")
            else:
                self.assertEqual(chunk, "t")
                kinds.append("chunk")
        # every incremental fetch, then the new member's first load, then chunks
        self.assertEqual(kinds, sorted(kinds, key=["incremental", "first load", "chunk"].index))
        self.assertEqual(kinds.count("first load"), 6)
        self.assertEqual(kinds.count("chunk"), 4)
        self.__class__.users = self.all_users
        self.assert_exactly_history(new)

    def test_06_failed_chunk_resumes_where_it_stopped(self):
        before = {u: history(u) for u in self.users}
        self.sim.fault(path="/v2/activity/workout", kind="status", status=503, count=1000)
        try:
            out = sync("endpoint => 'workout'")
        finally:
            self.sim.reset()
            psql("select 1")
        self.assertIn("history chunks failed", out)
        for u in self.users:
            self.assertEqual(history(u)["workout"], before[u]["workout"])
        failed = rows("select chunk_from is not null, chunk_to::text, error from whoop.sync_log "
                      "where status = 'failed' and chunk_to is not null order by id desc limit 1")
        self.assertEqual(len(failed), 1)
        self.assertIn("503", failed[0][2])
        why = scalar("select why from whoop.account_freshness f join whoop.sync_log l "
                     "on l.user_id = f.user_id and l.endpoint = f.endpoint "
                     "where l.status = 'failed' and l.chunk_to is not null "
                     "order by l.id desc limit 1")
        self.assertTrue(why.startswith("last sync failed: "), why)
        # the next sync resumes right there: its chunk ends where the history was
        resumed_to = failed[0][1]
        sync("endpoint => 'workout'")
        self.assertEqual(scalar("select count(*) from whoop.sync_log where status = 'ok' "
                                "and endpoint = 'workout' and chunk_to = '%s'" % resumed_to), "1")

    def test_07_later_syncs_extend_history_newest_first(self):
        for _ in range(30):
            complete = scalar("select bool_and(history_from = '-infinity') from whoop.sync_state "
                              "where endpoint in ('cycle', 'recovery', 'sleep', 'workout')")
            if complete == "t":
                break
            before = {u: history_ts(u) for u in self.users}
            out = sync()
            self.assertNotIn("WARNING", out)
            for u in self.users:
                after = history_ts(u)
                for kind in DATED:
                    if before[u][kind] != "-infinity" and after[kind] != "-infinity":
                        self.assertLessEqual(after[kind], before[u][kind])
                self.assert_exactly_history(u)
        self.assertEqual(complete, "t")
        # each endpoint's chunks: newest first, each right below the one before
        for u in self.users:
            for kind in DATED:
                windows = rows("select chunk_from::text, coalesce(chunk_to::text, '') "
                               "from whoop.sync_log where user_id = %d and endpoint = '%s' "
                               "and status = 'ok' and chunk_from is not null order by id"
                               % (u, kind))
                self.assertEqual(windows[0][1], "")
                for prev, cur in zip(windows, windows[1:]):
                    self.assertEqual(cur[1], prev[0])
        # the sleep WHOOP never had, below the history loaded then, is
        # tombstoned by the chunk that listed its window; the one WHOOP has
        # stays
        self.assertEqual(scalar("select deleted_at is not null from whoop.raw_sleep "
                                "where id = '%s'" % self.fake_sleep), "t")
        psql("delete from whoop.raw_sleep where id = '%s'" % self.fake_sleep)
        self.assertEqual(self.db.raw_matches_simulator(self.sim), [])
        self.assertEqual(scalar("select count(*) from whoop.account_freshness "
                                "where why <> 'fresh'"), "0")
        first, chunks = rows("select sum(requests) filter (where chunk_to is null), "
                             "sum(requests) filter (where chunk_to is not null) "
                             "from whoop.sync_log where status = 'ok' and chunk_from is not null")[0]
        print("FIGURE backfill: 3 members x 400 days: first loads (newest 60 days) %s requests, "
              "older history %s requests in chunks" % (first, chunks), flush=True)
        # nothing more to load: a sync sends only the incremental requests
        before = scalar("select max(id) from whoop.sync_log")
        sync()
        self.assertEqual(scalar("select count(*) from whoop.sync_log where id > %s "
                                "and chunk_from is not null" % before), "0")

    def test_08_freshness_why_for_each_state(self):
        user = self.users[0]
        psql("update whoop.sync_state set pending_since = now() "
             "where user_id = %d and endpoint = 'cycle'" % user)
        self.assertEqual(scalar("select why from whoop.account_freshness where user_id = %d "
                                "and endpoint = 'cycle'" % user),
                         "webhook change waiting for the next sync")
        self.assertEqual(scalar("select next_poll_due <= now() from whoop.account_freshness "
                                "where user_id = %d and endpoint = 'cycle'" % user), "t")
        self.assertEqual(scalar("select next_poll_due > now() from whoop.account_freshness "
                                "where user_id = %d and endpoint = 'profile'" % user), "t")
        sync("user_id => %d" % user, "endpoint => 'cycle'")
        self.assertEqual(scalar("select why from whoop.account_freshness where user_id = %d "
                                "and endpoint = 'cycle'" % user), "fresh")
        # a role sees only its own accounts
        psql("drop role if exists backfill_other; create role backfill_other; "
             "grant usage on schema whoop to backfill_other")
        self.assertEqual(scalar("set role backfill_other; "
                                "select count(*) from whoop.account_freshness"), "0")
        self.assertEqual(scalar("select count(*) from whoop.account_freshness"), "18")

    def test_09_full_sync_marks_history_complete(self):
        user = self.users[1]
        psql("update whoop.sync_state set history_from = now() - interval '60 days' "
             "where user_id = %d and endpoint in ('cycle', 'recovery', 'sleep', 'workout')"
             % user)
        sync("user_id => %d" % user, "full => true")
        self.assertEqual(set(history(user).values()), {"-infinity"})


class BudgetTest(harness.SimulatorSuite):
    """The request budget refusing a backfill fetch (SQLSTATE 53400) ends the
    history chunks of the run: no WARNING, what was committed stays, the
    members after it get no chunk, and the next run resumes.  The refusal is
    made in SQL -- the recoveries' foreign table behind a view that raises 53400
    for a fetch of class backfill while a flag is set -- so that it comes at a
    known step; test_budget has the C budget refusing real requests."""

    SIM_ARGS = ("--athletes", "2", "--days", "400", "--rate-per-minute", "0",
                "--rate-per-day", "0", "--now", real_now())
    DB = "backfill_budget_test"
    LINK = {"import_into": None, "options": {"backfill_max_chunks_per_sync": "0"}}

    def test_01_budget_refusal_ends_the_chunks_of_the_run(self):
        self.assertNotIn("WARNING", sync())
        psql("""create table public.budget (spent boolean not null);
                insert into public.budget values (true);
                create function public.budget_allows() returns boolean
                language plpgsql volatile as $$
                begin
                    if current_setting('whoop_fdw.request_class', true) = 'backfill'
                       and (select spent from public.budget) then
                        raise exception 'the day''s budget is kept for other requests'
                            using errcode = '53400';
                    end if;
                    return true;
                end $$;
                alter foreign table whoop_source.sim__recovery rename to sim__recovery_fdw;
                create view whoop_source.sim__recovery as
                    select * from whoop_source.sim__recovery_fdw where public.budget_allows();
                alter server sim options (drop backfill_max_chunks_per_sync);""")
        before = {u: history(u) for u in self.users}
        first = max(self.users, key=lambda u: max(history_ts(u).values()))
        last = scalar("select max(id) from whoop.sync_log")
        out = sync()
        self.assertNotIn("WARNING", out)
        self.assertIn("NOTICE:  whoop.sync: the request budget defers the rest of the history",
                      out)
        # the account with the least history went first: its cycles and
        # sleeps got their chunk, then its recoveries were refused (logged
        # as deferred, and the freshness view says why)
        log = rows("select user_id, endpoint, status from whoop.sync_log where id > %s "
                   "and chunk_to is not null order by id" % last)
        self.assertEqual(log, [[str(first), "cycle", "ok"], [str(first), "sleep", "ok"],
                               [str(first), "recovery", "deferred"]])
        self.assertEqual(scalar("select why from whoop.account_freshness where user_id = %s "
                                "and endpoint = 'recovery'" % first),
                         "deferred by the request budget")
        self.assertNotEqual(history(first)["cycle"], before[first]["cycle"])
        for u in self.users:
            self.assertEqual(history(u)["recovery"], before[u]["recovery"])
        other = [u for u in self.users if u != first][0]
        self.assertEqual(history(other), before[other])
        # the budget allows again: the next run resumes and completes
        psql("update public.budget set spent = false")
        self.assertNotIn("WARNING", sync())
        for u in self.users:
            self.assertEqual(set(history(u).values()), {"-infinity"})
        psql("drop view whoop_source.sim__recovery; "
             "alter foreign table whoop_source.sim__recovery_fdw rename to sim__recovery")
        self.assertEqual(chaos_lib.DB(self.DB).raw_matches_simulator(self.sim), [])

    def test_02_options_are_validated(self):
        for option, value, hint in (("backfill_first_days", "0", "from 1 to 36500"),
                                    ("backfill_chunk_days", "x", "from 1 to 36500"),
                                    ("backfill_max_chunks_per_sync", "-1", "from 0 to 1000000")):
            with self.assertRaises(harness.SQLError) as cm:
                psql("alter server sim options (add %s '%s')" % (option, value))
            self.assertEqual(cm.exception.sqlstate, "HV024")
            self.assertIn(hint, str(cm.exception))
        psql("alter server sim options (add backfill_first_days '30', "
             "add backfill_chunk_days '90', add backfill_max_chunks_per_sync '7')")
        try:
            self.assertEqual(rows("select backfill_first_days, backfill_chunk_days, "
                                  "backfill_max_chunks_per_sync "
                                  "from whoop_internal.sync_settings('sim')"), [["30", "90", "7"]])
        finally:
            psql("alter server sim options (drop backfill_first_days, "
                 "drop backfill_chunk_days, drop backfill_max_chunks_per_sync)")
        self.assertEqual(rows("select backfill_first_days, backfill_chunk_days, "
                              "backfill_max_chunks_per_sync is null "
                              "from whoop_internal.sync_settings('sim')"), [["60", "180", "t"]])


class InactiveMemberTest(harness.SimulatorSuite):
    """A member whose strap lay unused for the last 300 days: the newest 60
    days and the chunk below them are empty, and still the history is
    found and loaded whole by one sync."""

    SIM_ARGS = ("--athletes", "1", "--days", "200", "--rate-per-minute", "0",
                "--rate-per-day", "0", "--now",
                (datetime.datetime.now(datetime.timezone.utc)
                 - datetime.timedelta(days=300)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    DB = "backfill_inactive_test"
    LINK = {"import_into": None}

    def test_01_history_behind_a_long_gap_is_loaded(self):
        out = sync()
        self.assertNotIn("WARNING", out)
        self.assertEqual(chaos_lib.DB(self.DB).raw_matches_simulator(self.sim), [])
        self.assertEqual(set(history(self.users[0]).values()), {"-infinity"})
        # the empty first load and chunk, then the chunks with the history
        self.assertEqual(rows("select rows_seen from whoop.sync_log where endpoint = 'cycle' "
                              "order by id")[:2], [["0"], ["0"]])


class TokenTest(harness.SimulatorSuite):

    SIM_ARGS = ("--athletes", "1", "--days", "30", "--rate-per-minute", "0",
                "--rate-per-day", "0", "--token-ttl", "2")
    DB = "backfill_token_test"
    LINK = {"import_into": None}

    def api_log(self):
        return [(r["method"], r["path"], r["status"]) for r in self.sim.request_log()]

    def test_01_expired_token_is_refreshed_before_use(self):
        sync()
        # the token's life (2 s) has passed
        time.sleep(2.5)
        self.sim.reset()
        out = sync("endpoint => 'cycle'")
        self.assertNotIn("WARNING", out)
        log = self.api_log()
        self.assertEqual([s for _, _, s in log], [200] * len(log), log)
        self.assertEqual(log[0][0], "POST")
        self.assertTrue(log[0][1].endswith("/oauth2/token"), log[0])
        self.assertIn("/v2/cycle", log[1][1])

    def test_02_short_lived_token_is_used_more_than_once(self):
        # a 2 s token is refreshed a tenth of its life (not a minute) early:
        # a fetch right after the one that refreshed it uses it again
        time.sleep(2.5)
        sync("endpoint => 'cycle'")
        self.sim.reset()
        out = sync("endpoint => 'sleep'")
        self.assertNotIn("WARNING", out)
        log = self.api_log()
        self.assertEqual([(m, s) for m, _, s in log], [("GET", 200)] * len(log), log)
        # the lifetime it is judged by: expires_in less the time the request took
        self.assertEqual(scalar("select access_expires_at - last_refresh_at "
                                "between interval '1 second' and interval '2 seconds' "
                                "from whoop_internal.account"), "t")


class TokenClockTest(harness.SimulatorSuite):

    SIM_ARGS = ("--athletes", "1", "--days", "30", "--rate-per-minute", "0",
                "--rate-per-day", "0")
    DB = "backfill_clock_test"
    LINK = {"import_into": None}

    def test_01_data_clock_does_not_expire_tokens(self):
        sync()
        self.sim.clock(advance_seconds=3 * 86400)
        self.sim.reset()
        out = sync("endpoint => 'cycle'")
        self.assertNotIn("WARNING", out)
        log = [(r["method"], r["path"], r["status"]) for r in self.sim.request_log()]
        self.assertEqual(log, [("GET", log[0][1], 200)])
        self.assertIn("/v2/cycle", log[0][1])


if __name__ == "__main__":
    unittest.main()
