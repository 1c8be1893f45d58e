"""test_chaos.py -- reliability: chaos sync, crash safety, concurrency.

The promise: whatever WHOOP, the network or the machine does, the warehouse
never loses or duplicates data and a token is never lost.  Every test here
compares against a fault-free twin: a database synced from the same
simulator (three athletes, two years) without faults.  Warehouses are
compared by content hashes of every raw table, the sync marks, every
materialized view and daily_scores, leaving out only load timestamps
(chaos_lib.digest), and the raw tables record by record against what the
simulator serves (/_sim/records).

1. Chaos sync: a seeded fault schedule (5xx, timeouts, truncated and cut
   bodies, resets, 429 bursts, 401s mid-scan, token requests answered
   after the client gave up) over the whole backfill; the pipeline runs
   until it reports ok (bounded rounds); an account whose rotation was lost
   is linked again, as its user would.  The result equals the twin.
2. Crash safety, on a private cluster: kill -9 of the backend running the
   sync, and an immediate-mode stop, mid-sync, each after the run rotated
   the tokens; the next pipeline marks the dead run aborted and completes,
   equal to the twin, the accounts still work.  Two pipelines started
   together: one runs, one is recorded skipped.  Token rotations survive an
   immediate stop with synchronous_commit = off.
3. Concurrency: 16 sessions scan foreign tables while every access token is
   expired again and again: one refresh per account per expiry, no failed
   query.  Readers sample every materialized view while syncs (foreign
   scans) and whoop.refresh() run and data changes: every sample is a whole
   state, before or after a refresh, never empty or mixed.

Figures go to stdout (lines starting "FIGURE") for the README.
"""

import os
import signal
import threading
import time
import unittest

import harness
from chaos_lib import DB, Session, digest_differences

SIM_ARGS = ("--athletes", "3", "--days", "730", "--rate-per-minute", "0",
            "--rate-per-day", "0", "--seed", "42")

CHAOS_SEED = 7
CHAOS_RATES = {"status_5xx": .10, "timeout": .02, "truncate": .01, "reset": .01,
               "burst_429": .01, "unauthorized": .01, "partial": .005}
CHAOS_TOKEN_RATES = {"accept_then_timeout": .10, "status_5xx": .10}
CHAOS_TIMEOUT_MS = 2000         # a timeout fault answers after this
FDW_TIMEOUT_MS = 1000           # and the FDW gives up after this
MAX_ROUNDS = 8
MAX_LINK_ATTEMPTS = 5

SIM = None
TWIN = None
TWIN_DIGEST = None
TWIN_STEPS = None      # sync_log rows of the twin's fault-free pipeline
FIGURES = []
TIMES = []


class Timed(unittest.TestCase):
    """Timed notes how long each test took, for the figures."""

    def run(self, result=None):
        started = time.time()
        try:
            return super().run(result)
        finally:
            TIMES.append("%s %.0f s" % (self._testMethodName, time.time() - started))


def figure(text):
    FIGURES.append(text)
    print("FIGURE " + text, flush=True)


def setUpModule():
    global SIM, TWIN, TWIN_DIGEST, TWIN_STEPS
    SIM = harness.Simulator(*SIM_ARGS).start()
    TWIN = DB("chaos_twin").create()
    TWIN.link(SIM)
    started = time.time()
    run, steps, out = TWIN.pipeline()
    assert steps["pipeline"]["status"] == "ok", (steps, out)
    TWIN_DIGEST = TWIN.digest()
    # 18 account endpoints and the history chunks (test_backfill)
    TWIN_STEPS = int(TWIN.scalar("select count(*) from whoop.sync_log where run_id = %d" % run))
    problems = TWIN.raw_matches_simulator(SIM)
    assert not problems, problems
    figure("twin: fault-free pipeline %.1f s, %s" % (time.time() - started,
                                                     steps["sync"]["detail"]))


def tearDownModule():
    if SIM:
        SIM.stop()
    if TWIN:
        TWIN.drop()
    if FIGURES:
        print("---- reliability figures\n" + "\n".join(FIGURES), flush=True)
        print("time: " + ", ".join(TIMES), flush=True)


def failure_cause(error):
    """failure_cause classifies a failed endpoint sync by its error text."""
    for text, cause in (("truncated JSON", "truncated body"),
                        ("refused the refresh token", "lost rotation"),
                        ("must be authorized again", "awaiting re-link"),
                        ("rejected the access token", "401 after refresh"),
                        ("could not reach the WHOOP", "retries exhausted"),
                        ("failed with HTTP", "retries exhausted"),
                        ("rate limit exhausted", "retries exhausted")):
        if text in error:
            return cause
    return "other: " + error[:200]


def wait_for(predicate, timeout, what):
    if not harness.wait_until(predicate, timeout=timeout, interval=0.1):
        raise AssertionError("timed out after %d s waiting for %s" % (timeout, what))


class Test1ChaosSync(Timed):
    """A two-year backfill of three athletes through a seeded fault schedule."""

    def setUp(self):
        self.db = DB("chaos_sync").create()
        self.users = self.db.link(SIM, options={"timeout_ms": str(FDW_TIMEOUT_MS)})

    def tearDown(self):
        SIM.control("POST", "chaos", {"off": True})
        SIM.reset()
        self.db.drop()

    def relink(self, user_id):
        """relink plays the member: authorize again, hand the new refresh
        token to whoop.add_account() (which may itself meet a fault)."""
        for attempt in range(1, MAX_LINK_ATTEMPTS + 1):
            token = [a for a in SIM.accounts()["athletes"]
                     if a["user_id"] == user_id][0]["refresh_token"]
            try:
                self.assertEqual(self.db.add_account(token), user_id)
                return attempt
            except harness.SQLError as e:
                last = e.output
        self.fail("account %d could not be linked again in %d attempts: %s"
                  % (user_id, MAX_LINK_ATTEMPTS, last))

    def test_chaos_backfill_converges_to_the_fault_free_warehouse(self):
        SIM.reset()
        SIM.chaos(seed=CHAOS_SEED, rates=CHAOS_RATES, token_rates=CHAOS_TOKEN_RATES,
                  timeout_ms=CHAOS_TIMEOUT_MS, burst_len=3)
        # and for certain once: the first refresh is accepted, its answer lost
        SIM.fault(path="/oauth/oauth2/token", kind="delay", delay_ms=CHAOS_TIMEOUT_MS, count=1)

        started = time.time()
        rounds = []
        causes = {}
        relinks = link_attempts = 0
        lost_rotation_explained = 0
        for n in range(1, MAX_ROUNDS + 1):
            t0 = time.time()
            run, steps, out = self.db.pipeline()
            failed = self.db.query(
                "select user_id, endpoint, error from whoop.sync_log "
                "where run_id = %d and status = 'failed' order by id" % run)
            rounds.append((n, steps["pipeline"]["status"], len(failed), time.time() - t0))
            for f in failed:
                cause = failure_cause(f["error"])
                causes[cause] = causes.get(cause, 0) + 1
            # An account whose refresh token was spent without us getting the
            # new one must say so, and what to do; then its user links it again.
            for acc in self.db.query("select user_id, status, last_error from whoop.accounts "
                                     "where status <> 'active'"):
                self.assertEqual(acc["status"], "reauthorization_required")
                self.assertIn("invalid_grant", acc["last_error"])
                if "answer with the new tokens was lost" in acc["last_error"]:
                    lost_rotation_explained += 1
                errors = [f["error"] for f in failed if f["user_id"] == acc["user_id"]
                          and ("refused the refresh token" in f["error"]
                               or "must be authorized again" in f["error"])]
                self.assertTrue(errors, acc)
                self.assertTrue(all("HINT: Link" in e for e in errors), errors)
                relinks += 1
                link_attempts += self.relink(acc["user_id"])
            if steps["pipeline"]["status"] == "ok":
                break
            # a failing endpoint fails only the sync step: the rest still ran
            self.assertEqual(steps["refresh"]["status"], "ok", steps["refresh"])
        elapsed = time.time() - started
        injected = SIM.control("GET", "chaos")["injected"]
        SIM.control("POST", "chaos", {"off": True})
        stats = SIM.stats()
        log = SIM.request_log()

        self.assertEqual(rounds[-1][1], "ok", "no successful pipeline in %d rounds: %s"
                         % (MAX_ROUNDS, rounds))
        # endpoints failed only for reasons no retry within the request can
        # cure (a cut body that is valid HTTP, a spent token, a second 401, more
        # faults in a row than max_retries): never for a wrong or partial answer
        self.assertEqual(set(causes) - {"truncated body", "lost rotation",
                                        "awaiting re-link", "401 after refresh",
                                        "retries exhausted"}, set(),
                         causes)
        for kind in ("status_5xx", "timeout", "truncate", "reset", "burst_429",
                     "unauthorized", "accept_then_timeout"):
            self.assertGreater(injected.get(kind, 0), 0, "no %s fault was injected" % kind)
        queued_lost = sum(1 for r in log if r["fault"] == "delay")
        self.assertEqual(queued_lost, 1)
        self.assertGreaterEqual(relinks, 1)
        self.assertGreaterEqual(lost_rotation_explained, 1)

        # Row for row the fault-free warehouse; raw = what WHOOP serves.
        self.assertEqual(digest_differences(self.db.digest(), TWIN_DIGEST), [])
        self.assertEqual(self.db.raw_matches_simulator(SIM), [])
        # no token lost: every account works, a fault-free run changes nothing
        self.assertEqual(self.db.scalar("select count(*) from whoop.accounts "
                                        "where status = 'active'"), str(len(self.users)))
        run, steps, out = self.db.pipeline()
        self.assertEqual(steps["pipeline"]["status"], "ok", steps)
        self.assertEqual(steps["sync"]["row_count"], 0)
        self.assertEqual(digest_differences(self.db.digest(), TWIN_DIGEST), [])

        requests = sum(sum(v.values()) for k, v in stats["requests"].items())
        figure("chaos: seed %d, %d HTTP requests, faults injected %s (+1 queued lost rotation)"
               % (CHAOS_SEED, requests, ", ".join("%s %d" % kv for kv in sorted(injected.items()))))
        figure("chaos: token requests: %d granted, %d refused (lost rotations: %d chaos "
               "accept_then_timeout + 1 queued) -> %d re-links by the user (%d add_account calls)"
               % (stats["token_grants"]["refresh_token"], stats["token_grants"]["failed"],
                  injected.get("accept_then_timeout", 0), relinks, link_attempts))
        figure("chaos: %d rounds to ok in %.0f s: %s" % (len(rounds), elapsed, "; ".join(
            "round %d %s, %d endpoint failures, %.0f s" % r for r in rounds)))
        figure("chaos: failed endpoint syncs by cause (retried by the next round): %s; all "
               "other faults absorbed by retries within the request"
               % ", ".join("%s %d" % kv for kv in sorted(causes.items())))
        figure("chaos: final warehouse = twin on %d relations; raw = /_sim/records"
               % len(TWIN_DIGEST))


class Test2CrashSafety(Timed):
    """Crashes mid-sync on a private cluster that is killed and restarted."""

    @classmethod
    def setUpClass(cls):
        # the production default; test_4 turns it off for one database
        cls.cluster = harness.Cluster(settings={"synchronous_commit": "on"}).init().start()
        cls.env = cls.cluster.env()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.destroy()

    def setUp(self):
        SIM.reset()

    def tearDown(self):
        SIM.reset()

    def wait_until_up(self, db):
        def up():
            try:
                return db.scalar("select 1", timeout=10) == "1"
            except Exception:
                return False
        wait_for(up, 90, "the cluster to accept connections")

    def start_pipeline_held_mid_sync(self, db, path, after):
        """start_pipeline_held_mid_sync expires the access tokens (so the run
        rotates every account's refresh token first), holds the request AFTER
        + 1 on PATH for a while, starts the pipeline in the background and
        waits until the sync is there; returns (Popen, pid, run_id)."""
        SIM.expire_tokens()
        SIM.fault(path=path, kind="delay", delay_ms=20000, after=after, count=1)
        proc = db.background("call whoop.run_pipeline()")
        wait_for(lambda: any(r["fault"] == "delay" for r in SIM.request_log()), 120,
                 "the sync to reach the held request")
        pid = int(db.scalar("select pid from pg_stat_activity where query ilike "
                            "'call whoop.run_pipeline%' and state = 'active'"))
        run = int(db.scalar("select run_id from whoop.run_log where step = 'pipeline' "
                            "and status = 'running'"))
        return proc, pid, run

    def check_recovery(self, db, run, versions_before, how):
        """After the crash: the dead run is still 'running'; the rotated tokens
        were kept; the next pipeline aborts the dead run and completes, equal
        to the twin; no refresh token was ever refused."""
        synced = int(db.scalar("select count(*) from whoop.sync_log where run_id = %d "
                               "and status = 'ok'" % run))
        self.assertGreater(synced, 0)
        self.assertLess(synced, TWIN_STEPS)
        self.assertEqual(db.scalar("select status from whoop.run_log where run_id = %d "
                                   "and step = 'pipeline'" % run), "running")
        versions = dict(db.rows("select user_id, token_version from whoop_internal.account"))
        rotated = sum(1 for u in versions if int(versions[u]) > int(versions_before[u]))
        self.assertGreaterEqual(rotated, 1, "no rotation before the crash: %s" % versions)
        next_run, steps, out = db.pipeline()
        self.assertEqual(steps["pipeline"]["status"], "ok", (steps, out))
        dead = dict(db.rows("select step, status from whoop.run_log where run_id = %d" % run))
        # the webhooks step (nothing queued) had finished before the sync crashed
        self.assertEqual(dead.pop("webhooks"), "ok")
        self.assertEqual(set(dead.values()), {"aborted"}, dead)
        self.assertEqual(digest_differences(db.digest(), TWIN_DIGEST), [])
        self.assertEqual(db.raw_matches_simulator(SIM), [])
        grants = SIM.stats()["token_grants"]
        self.assertEqual(grants["failed"], 0, grants)
        self.assertEqual(db.scalar("select count(*) from whoop.accounts where status = 'active'"),
                         "3")
        figure("crash (%s): killed run %d after %d of %d sync steps, %d of 3 tokens rotated "
               "before; next run %d: dead run aborted, result = twin, refused refreshes %d"
               % (how, run, synced, TWIN_STEPS, rotated, next_run, grants["failed"]))

    def test_1_kill_9_of_the_syncing_backend(self):
        db = DB("crash_kill", self.env).create()
        db.link(SIM)
        versions = dict(db.rows("select user_id, token_version from whoop_internal.account"))
        # athlete 1 has about 29 pages of cycles: hold a page of athlete 2's
        proc, pid, run = self.start_pipeline_held_mid_sync(db, "/v2/cycle", 40)
        self.assertEqual(db.scalar("select wait_event_type from pg_stat_activity "
                                   "where pid = %d" % pid), "Extension")
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.wait_until_up(db)
        with open(self.cluster.log, errors="replace") as f:
            log = f.read()
        self.assertIn("was terminated by signal 9", log)
        self.check_recovery(db, run, versions, "kill -9 of the backend")
        db.drop()

    def test_2_immediate_stop_mid_sync(self):
        db = DB("crash_stop", self.env).create()
        db.link(SIM)
        versions = dict(db.rows("select user_id, token_version from whoop_internal.account"))
        # the sleep of athlete 2 (athlete 1 has about 31 pages)
        proc, pid, run = self.start_pipeline_held_mid_sync(db, "/v2/activity/sleep", 40)
        self.cluster.stop("immediate")
        proc.communicate(timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.cluster.start()
        self.wait_until_up(db)
        self.check_recovery(db, run, versions, "immediate stop of the cluster")
        db.drop()

    def test_3_two_pipelines_at_once(self):
        db = DB("crash_pair", self.env).create()
        db.link(SIM)
        # hold the first request of the sync, so the runs surely overlap
        SIM.fault(path="/v2/user/profile/basic", kind="delay", delay_ms=3000, count=1)
        procs = [db.background("call whoop.run_pipeline()") for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outs):
            self.assertEqual(p.returncode, 0, err)
        runs = db.query("select run_id, status, error from whoop.run_log "
                        "where step = 'pipeline' order by run_id")
        self.assertEqual(len(runs), 2, runs)
        self.assertEqual(sorted(r["status"] for r in runs), ["ok", "skipped"], runs)
        ran = [r for r in runs if r["status"] == "ok"][0]
        skipped = [r for r in runs if r["status"] == "skipped"][0]
        self.assertIn("pipeline run %d is still running" % ran["run_id"], skipped["error"])
        notices = "".join(err for _, err in outs)
        self.assertIn("run %d is still running" % ran["run_id"], notices)
        self.assertEqual(db.scalar("select count(*) from whoop.run_log where run_id = %d"
                                   % skipped["run_id"]), "1")
        self.assertEqual(digest_differences(db.digest(), TWIN_DIGEST), [])
        figure("crash: two pipelines started together: run %d ok, run %d skipped (NOTICE, "
               "run_log), result = twin" % (ran["run_id"], skipped["run_id"]))
        db.drop()

    def test_4_rotations_survive_immediate_stop_with_async_commit(self):
        db = DB("crash_async", self.env).create()
        db.psql("alter database crash_async set synchronous_commit = off; "
                "alter system set wal_writer_delay = '10s'; select pg_reload_conf()")
        try:
            db.link(SIM, import_into="api")
            db.psql("checkpoint")
            linked = SIM.stats()["token_grants"]["refresh_token"]
            rounds = 3
            for i in range(rounds):
                SIM.expire_tokens()
                self.assertEqual(db.scalar("select count(*) from api.profile"), "3")
                versions = db.rows("select user_id, token_version from whoop_internal.account "
                                   "order by user_id")
                self.cluster.stop("immediate")
                self.cluster.start()
                self.wait_until_up(db)
                self.assertEqual(db.rows("select user_id, token_version from whoop_internal.account "
                                         "order by user_id"), versions, "round %d" % i)
                self.assertEqual(db.scalar("select count(*) from api.profile"), "3")
            grants = SIM.stats()["token_grants"]
            self.assertEqual(grants["refresh_token"] - linked, 3 * rounds)
            self.assertEqual(grants["failed"], 0)
            figure("crash: %d refreshes each followed by an immediate stop with "
                   "synchronous_commit = off: all %d rotations kept" % (rounds, 3 * rounds))
        finally:
            db.psql("alter system reset wal_writer_delay; select pg_reload_conf()",
                    dbname="postgres")
            db.drop()

    def test_5_terminate_during_token_refresh_keeps_the_rotation(self):
        db = DB("crash_terminate", self.env).create()
        db.link(SIM, import_into="api")
        linked = SIM.stats()["token_grants"]["refresh_token"]
        versions = dict(db.rows("select user_id, token_version from whoop_internal.account"))
        # WHOOP takes 3 s to answer the refresh: terminate the session meanwhile
        SIM.expire_tokens()
        SIM.fault(path="/oauth/oauth2/token", kind="delay", delay_ms=3000, count=1)
        proc = db.background("select count(*) from api.profile")
        wait_for(lambda: any(r["fault"] == "delay" for r in SIM.request_log()), 60,
                 "the token request")
        self.assertEqual(db.scalar("select pg_terminate_backend(pid) from pg_stat_activity "
                                   "where query = 'select count(*) from api.profile'"), "t")
        out, err = proc.communicate(timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("terminating connection due to administrator command", err)
        after = dict(db.rows("select user_id, token_version from whoop_internal.account"))
        rotated = [u for u in after if int(after[u]) > int(versions[u])]
        self.assertEqual(len(rotated), 1, after)
        self.assertEqual(db.scalar("select count(*) from api.profile"), "3")
        grants = SIM.stats()["token_grants"]
        self.assertEqual(grants["failed"], 0)
        self.assertEqual(grants["refresh_token"] - linked, 3)
        figure("crash: session terminated while WHOOP was answering its refresh: the answer "
               "was awaited (interrupts held), the rotation saved, the account kept working")
        db.drop()


class Test3Concurrency(Timed):
    """Many sessions at once, on a simulator of its own (test 2 changes data)."""

    SESSIONS = 16
    EXPIRIES = 10
    READERS = 4
    SCANNERS = 2
    CHANGES = 3

    @classmethod
    def setUpClass(cls):
        cls.sim = harness.Simulator(*SIM_ARGS).start()
        cls.db = DB("chaos_concurrency").create()
        cls.users = cls.db.link(cls.sim, import_into="api")
        run, steps, out = cls.db.pipeline()
        assert steps["pipeline"]["status"] == "ok", (steps, out)

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        cls.db.drop()

    def test_1_sixteen_sessions_while_tokens_expire(self):
        queries = ["select count(*) from api.cycle where start >= '2026-05-01'",
                   "select count(*) from api.sleep where start >= '2026-05-01'",
                   "select count(*), min(user_id) from api.profile"]
        expected = {q: self.db.rows(q)[0] for q in queries}
        self.assertEqual(int(expected[queries[0]][0]),
                         sum(1 for c in self.sim.records("cycle") if c["start"] >= "2026-05-01"))
        sessions = [Session(self.db) for _ in range(self.SESSIONS)]
        done = [0] * self.SESSIONS
        failures = []
        stop = threading.Event()

        def work(i):
            n = i
            while not stop.is_set():
                q = queries[n % len(queries)]
                n += 1
                ok, out = sessions[i].run(q)
                if not ok or [line.split("|") for line in out] != [expected[q]]:
                    failures.append((i, q, out))
                done[i] += 1

        self.sim.reset()
        threads = [threading.Thread(target=work, args=(i,)) for i in range(self.SESSIONS)]
        for t in threads:
            t.start()
        try:
            grants = lambda: self.sim.stats()["token_grants"]["refresh_token"]  # noqa: E731
            for e in range(self.EXPIRIES):
                # every session has queried since the last refresh: all hold
                # (or have cached) the current token when it expires
                seen = list(done)
                wait_for(lambda: all(d > s for d, s in zip(done, seen)), 120,
                         "every session to run a query")
                self.sim.expire_tokens()
                wait_for(lambda: grants() >= len(self.users) * (e + 1), 120,
                         "every account to be refreshed after expiry %d" % (e + 1))
            seen = list(done)
            wait_for(lambda: all(d > s for d, s in zip(done, seen)), 120,
                     "every session to run a query")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=300)
            for s in sessions:
                s.close()
        stats = self.sim.stats()
        self.assertEqual(failures, [])
        self.assertEqual(stats["token_grants"]["refresh_token"], len(self.users) * self.EXPIRIES,
                         stats["token_grants"])
        self.assertEqual(stats["token_grants"]["failed"], 0)
        rejected = sum(v.get("401", 0) for k, v in stats["requests"].items())
        requests = sum(sum(v.values()) for k, v in stats["requests"].items())
        figure("concurrency: %d sessions, %d queries (%d HTTP requests, %d answered 401) over "
               "%d expiries of %d accounts: %d refreshes (exactly one per account and expiry), "
               "0 failures" % (self.SESSIONS, sum(done), requests, rejected, self.EXPIRIES,
                               len(self.users), stats["token_grants"]["refresh_token"]))

    def sample_sql(self):
        views = [r[0] for r in self.db.rows("select view_name from whoop.refresh_plan "
                                            "order by refresh_order")]
        return ("select " + " || ' ' || ".join(
            "(select count(*) || ':' || md5(coalesce(string_agg(t::text, '|' order by t::text), ''))"
            " from %s t)" % v for v in views)), len(views)

    def test_2_readers_never_see_a_half_built_view(self):
        sql, nviews = self.sample_sql()
        states = [self.db.scalar(sql)]
        samples = [[] for _ in range(self.READERS)]
        refreshes = []
        scans = [0]
        failures = []
        stop = threading.Event()
        readers = [Session(self.db) for _ in range(self.READERS)]
        scanners = [Session(self.db) for _ in range(self.SCANNERS)]

        def read(i):
            while not stop.is_set():
                t0 = time.time()
                ok, out = readers[i].run(sql)
                if not ok:
                    failures.append(("reader", i, out))
                else:
                    samples[i].append((t0, time.time(), out[0]))

        def scan(i):
            q = ["select count(*) from api.cycle where start >= '2026-03-01'",
                 "select count(*) from api.workout where start >= '2026-03-01'"][i % 2]
            while not stop.is_set():
                ok, out = scanners[i].run(q)
                scans[0] += 1
                if not ok:
                    failures.append(("scanner", i, out))

        threads = ([threading.Thread(target=read, args=(i,)) for i in range(self.READERS)]
                   + [threading.Thread(target=scan, args=(i,)) for i in range(self.SCANNERS)])
        for t in threads:
            t.start()
        try:
            time.sleep(1)
            for k in range(self.CHANGES):
                # new days arrive and old recoveries are re-scored at WHOOP
                self.sim.clock(advance_seconds=8 * 3600)
                for j, rec in enumerate(self.sim.records("recovery")[10:40:10]):
                    self.sim.touch("recovery", rec["cycle_id"],
                                   set={"score.recovery_score": 11.0 + k + j})
                self.db.psql("call whoop.sync()")
                t0 = time.time()
                bad = self.db.rows("select view_name, status from whoop.refresh() "
                                   "where status <> 'ok'")
                refreshes.append((t0, time.time()))
                self.assertEqual(bad, [])
                states.append(self.db.scalar(sql))
                time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=300)
            for s in readers + scanners:
                s.close()

        self.assertEqual(failures, [])
        self.assertEqual(len(set(states)), len(states), "a change did not change the views")
        for state in states:
            parts = state.split()
            self.assertEqual(len(parts), nviews)
            self.assertTrue(all(int(p.split(":")[0]) > 0 for p in parts), state)
        index = {s: i for i, s in enumerate(states)}
        during = 0
        for i, got in enumerate(samples):
            self.assertTrue(got, "reader %d took no sample" % i)
            seen = [index.get(v) for _, _, v in got]
            self.assertNotIn(None, seen, "reader %d saw a state that is neither before nor "
                             "after a refresh" % i)
            self.assertEqual(seen, sorted(seen), "reader %d went back in time" % i)
            during += sum(1 for t0, t1, _ in got
                          if any(t0 < r1 and t1 > r0 for r0, r1 in refreshes))
        self.assertGreater(during, 0, "no sample overlapped a refresh")
        total = sum(len(s) for s in samples)
        figure("concurrency: %d readers took %d samples of all %d materialized views (%d while "
               "one of %d whoop.refresh() ran), %d foreign scans alongside; every sample a whole "
               "before/after state, none empty, none going back"
               % (self.READERS, total, nviews, during, self.CHANGES, scans[0]))


if __name__ == "__main__":
    unittest.main()
