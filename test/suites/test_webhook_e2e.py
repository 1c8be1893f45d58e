"""test_webhook_e2e.py -- WHOOP's webhooks end to end: the simulator's changes
posted over real HTTPS to whoop-webhookd, queued by whoop.receive_webhook(),
applied by whoop.apply_webhooks().

The suite runs its own cluster (it stops and starts it), makes a self-signed
certificate with openssl, and for each test a world of its own: a simulator
(3 athletes x 60 days, no rate limit), a database with the simulator linked
as server "sim", and the receiver built by make (webhookd/whoop-webhookd)
over HTTPS, logging in as a role only granted whoop_webhook.  The simulator
is subscribed to the receiver with the certificate as its CA and
RETRY_SCALE, so WHOOP's hour of retries takes seconds.  Changes are the
simulator's own: its clock moved forward (new records, scores), touches
(re-scores), deletions of workouts and of sleeps (their recoveries with
them) and a nap merged into a sleep; its knobs duplicate, reorder and drop
deliveries.

  test_1  no drops: webhooks alone (apply_webhooks, no sync) make every
          live sleep, workout and recovery in raw equal what the simulator
          serves, every deleted one stored a tombstone, none resurrected,
          every delivered event (duplicates too) stored once
  test_2  a third of the events dropped: apply_webhooks, one incremental
          whoop.sync() and whoop.refresh() make the warehouse equal a twin
          database that did a fresh full load of the same simulator: raw
          tables without tombstones and every materialized view, by digest
  test_3  the database stopped and started while events flow: the receiver
          answers 503 meanwhile, WHOOP's retries deliver every event, each
          stored exactly once
  test_4  kill -9 of the receiver while events flow, started again on its
          port: every event delivered and stored exactly once

Nothing is asserted about time: waits are bounded loops on a condition.
Each test prints what it measured (events, retries, 503s, time to converge).
"""

import calendar
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import chaos_lib
import harness

ROOT = harness.ROOT
BINARY = os.path.join(ROOT, "webhookd", "whoop-webhookd")
ROLE = "whoop_test_webhook_e2e"
# WHOOP retries after 1, 5, 10, 20 and 30 minutes; / 300: 0.2 to 6 s, about
# 13 s in all before an event is dropped -- longer than a restart takes
RETRY_SCALE = 300
KNOBS = {"duplicate_rate": 0.3, "reorder_rate": 0.3, "duplicate_ms": 100, "reorder_ms": 300}
SIM_ARGS = ("--athletes", "3", "--days", "60", "--rate-per-minute", "0", "--rate-per-day", "0",
            "--quiet")
# a seed whose athletes have a nap in the last days (merged in tests 1 and 2)
SEED = "11"
DAY = 86400
# the changes touch and delete records that start within this many days
# before the simulator's now: inside whoop.sync()'s update window (14 days
# back from the last sync), where it reconciles what a dropped event missed
RECENT_DAYS = 8

CLUSTER = None
TMP = None
CERT = None


def setUpModule():
    global CLUSTER, TMP, CERT
    if not os.access(BINARY, os.X_OK):
        raise unittest.SkipTest("%s is not built (make builds it)" % BINARY)
    TMP = tempfile.mkdtemp(prefix="whoop_webhook_e2e.")
    CERT = os.path.join(TMP, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", os.path.join(TMP, "key.pem"), "-out", CERT],
                   check=True, capture_output=True)
    CLUSTER = harness.Cluster().init().start()


def tearDownModule():
    if CLUSTER:
        CLUSTER.destroy()
    if TMP:
        subprocess.run(["rm", "-rf", TMP])


def epoch(iso):
    """epoch: the seconds since 1970 of the simulator's ISO UTC time ISO."""
    return calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))


def figure(text):
    print("\n    " + text, end=" ")


class Daemon:
    """Daemon is a whoop-webhookd of database DBNAME on the suite's cluster,
    on a port of its own that it keeps when started again."""

    def __init__(self, name, dbname):
        self.port = harness.free_port()
        self.log = os.path.join(TMP, name + ".log")
        self.config = os.path.join(TMP, name + ".conf")
        conf = {
            "listen_address": "127.0.0.1",
            "port": self.port,
            "tls_cert": CERT,
            "tls_key": os.path.join(TMP, "key.pem"),
            "conninfo": "host=127.0.0.1 port=%d dbname=%s user=%s connect_timeout=5"
                        % (CLUSTER.port, dbname, ROLE),
            "servers": "sim",
            "max_connections": 16,
            "request_timeout": 10,
            "db_connections": 4,
        }
        with open(self.config, "w") as f:
            f.write("# written by test_webhook_e2e.py\n")
            for key, value in conf.items():
                f.write("%s = %s\n" % (key, value))
        self.proc = None

    @property
    def url(self):
        return "https://127.0.0.1:%d/whoop/sim" % self.port

    def start(self):
        before = self.read_log().count("listening on")
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([BINARY, self.config], stderr=log,
                                         stdout=subprocess.DEVNULL)
        started = harness.wait_until(lambda: self.read_log().count("listening on") > before
                                     or self.proc.poll() is not None, timeout=30)
        if not started or self.proc.poll() is not None:
            raise RuntimeError("whoop-webhookd did not start:\n" + self.read_log())
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def read_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


class World:
    """World is one test's simulator, database (server "sim", the athletes
    linked) and receiver; subscribe() points the simulator's webhooks at it."""

    def __init__(self, test, name, seed=SEED):
        self.sim = harness.Simulator(*(SIM_ARGS + ("--seed", seed))).start()
        test.addCleanup(self.sim.stop)
        self.db = chaos_lib.DB(name, CLUSTER.env()).create()
        test.addCleanup(self.db.drop)
        self.users = self.db.link(self.sim)
        # whoop_webhook comes with the extension: the first world makes the role
        self.db.psql("do $$ begin if not exists (select from pg_roles where rolname = '%s') "
                     "then create role %s login in role whoop_webhook; end if; end $$"
                     % (ROLE, ROLE))
        self.daemon = Daemon(name, name).start()
        test.addCleanup(self.daemon.stop)
        self.rng = random.Random(name)

    def subscribe(self, **knobs):
        spec = dict(url=self.daemon.url, ca_file=CERT, retry_scale=RETRY_SCALE, seed=7,
                    timeout_ms=5000)
        spec.update(knobs)
        return self.sim.control("POST", "webhooks", spec)

    def hooks(self):
        return self.sim.control("GET", "webhooks")

    def flush(self, timeout_s=120):
        return self.sim.control("POST", "flush_webhooks", {"timeout_ms": timeout_s * 1000})

    def apply(self):
        """apply calls whoop.apply_webhooks() for server sim; returns its seconds."""
        t0 = time.monotonic()
        self.db.psql("call whoop.apply_webhooks('sim', 100000)")
        return time.monotonic() - t0

    def recent(self, kind, **match):
        """recent: records of KIND starting in the last RECENT_DAYS days that
        match every field given (score_state, nap ...), newest first."""
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%S",
                               time.gmtime(epoch(self.sim.clock()) - RECENT_DAYS * DAY))
        return [r for r in self.sim.records(kind) if r["start"][:19] >= cutoff
                and all(r.get(k) == v for k, v in match.items())]

    def change(self):
        """change makes the simulator's kinds of change, each emitting its
        events: the clock two days forward (new records, scores), touches
        (re-scores), deletions (workouts; sleeps with their recoveries; a
        workout touched and then deleted) and a nap merged into the member's
        closest main sleep; returns what it did, counted."""
        done = {"touched": 0, "deleted workouts": 0, "deleted sleeps": 0, "merged naps": 0}
        self.sim.clock(advance_seconds=2 * DAY)
        workouts = self.recent("workout", score_state="SCORED")
        sleeps = self.recent("sleep", score_state="SCORED", nap=False)
        naps = self.recent("sleep", nap=True)
        self.rng.shuffle(workouts)
        self.rng.shuffle(sleeps)
        picked_sleeps = {}
        for s in sleeps:
            picked_sleeps.setdefault(s["user_id"], []).append(s)
        nap = naps[0] if naps else None
        # the sleep the nap goes into is neither touched nor deleted before
        into = None
        if nap is not None:
            mains = [s for s in self.sim.records("sleep", user_id=nap["user_id"])
                     if not s["nap"]]
            into = min(mains, key=lambda s: abs(epoch(s["start"]) - epoch(nap["start"])))
        for w in workouts[:6]:
            self.sim.touch("workout", w["id"],
                           set={"score.strain": round(w["score"]["strain"] + 1.5, 4)})
            done["touched"] += 1
        for uid, mine in picked_sleeps.items():
            mine = [s for s in mine if into is None or s["id"] != into["id"]]
            for s in mine[:2]:
                self.sim.touch("sleep", s["id"], set={"score.sleep_efficiency_percentage": 77.5})
                done["touched"] += 1
            # a recovery re-scored on its own
            if mine[2:3]:
                self.sim.touch("recovery", mine[2]["cycle_id"], set={"score.recovery_score": 42})
                done["touched"] += 1
            if mine[3:4]:
                self.sim.control("POST", "delete", {"kind": "sleep", "id": mine[3]["id"]})
                done["deleted sleeps"] += 1
        for w in workouts[6:9]:
            self.sim.control("POST", "delete", {"kind": "workout", "id": w["id"]})
            done["deleted workouts"] += 1
        # an update and then a deletion of the same record
        w = workouts[9]
        self.sim.touch("workout", w["id"], set={"score.strain": 3.25})
        self.sim.control("POST", "delete", {"kind": "workout", "id": w["id"]})
        done["touched"] += 1
        done["deleted workouts"] += 1
        if nap is not None:
            self.sim.control("POST", "delete", {"kind": "sleep", "id": nap["id"],
                                                "merge_into": into["id"]})
            done["merged naps"] += 1
        return done

    def stream(self, count):
        """stream touches COUNT recent workouts and sleeps one after another
        from a thread of its own (each touch posts one event, or two for a
        sleep with a recovery); returns the started thread."""
        records = ([("workout", r["id"]) for r in self.recent("workout", score_state="SCORED")]
                   + [("sleep", r["id"]) for r in self.recent("sleep", score_state="SCORED")])

        def run():
            for i in range(count):
                kind, rid = records[i % len(records)]
                field = "score.strain" if kind == "workout" else "score.sleep_efficiency_percentage"
                self.sim.touch(kind, rid, set={field: 50 + (i % 40)})
                time.sleep(0.01)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def stored_traces(self):
        """stored_traces: {trace_id: rows} of whoop.webhook_events."""
        return {t: int(n) for t, n in self.db.rows(
            "select trace_id, count(*) from whoop.webhook_events group by trace_id")}

    def queued(self):
        return int(self.db.scalar("select count(*) from whoop.webhook_events"))


class WebhookEndToEndTest(unittest.TestCase):

    def assertEveryEventStoredOnce(self, world, report):
        """assertEveryEventStoredOnce: every delivered trace_id (a duplicate's
        too) is in webhook_events exactly once, and nothing else is."""
        delivered = {d["trace_id"] for d in report["deliveries"] if d["status"] == "delivered"}
        knob_dropped = {d["trace_id"] for d in report["deliveries"]
                        if d["status"] == "dropped_by_knob"}
        stored = world.stored_traces()
        self.assertEqual(set(stored.values()) or {1}, {1})
        self.assertEqual(set(stored), delivered)
        self.assertEqual(len(stored), report["counters"]["events"] - len(knob_dropped))

    def converge(self, world, drop_rate):
        """converge: the initial full load, the subscription, the changes
        (with an apply while their events are still arriving), the flush and
        the final apply; returns (report, changes, figures, loaded), loaded
        being the keys the full load stored: {kind: set of ids} (a recovery
        by its sleep's id)."""
        t0 = time.monotonic()
        world.db.psql("call whoop.sync('sim', full => true)")
        load = time.monotonic() - t0
        loaded = {kind: {r[0] for r in world.db.rows("select %s from whoop.raw_%s"
                                                     % (key, kind))}
                  for kind, key in (("sleep", "id"), ("workout", "id"), ("recovery", "sleep_id"))}
        world.subscribe(drop_rate=drop_rate, **KNOBS)
        t0 = time.monotonic()
        changes = world.change()
        self.assertEqual(changes["merged naps"], 1, changes)
        # some events applied while others (held back, duplicated) arrive
        mid = world.apply()
        flushed = world.flush()
        self.assertTrue(flushed["idle"], flushed)
        flush_s = time.monotonic() - t0
        apply_s = world.apply()
        report = world.hooks()
        return report, changes, {"load": load, "mid": mid, "flush": flush_s, "apply": apply_s,
                                 "converge": time.monotonic() - t0}, loaded

    def assertLoadedDeletionsAreTombstones(self, world, loaded):
        """assertLoadedDeletionsAreTombstones: each record the simulator deleted
        that the full load had stored is there as a tombstone (never
        removed, never live); returns how many."""
        deleted = world.sim.control("GET", "deleted")["deleted"]
        problems, _ = world.db.tombstone_problems(world.sim)
        self.assertEqual(problems, [])
        expected = 0
        for kind, key in (("sleep", "id"), ("workout", "id"), ("recovery", "sleep_id")):
            ids = [d[key] for d in deleted.get(kind, []) if d[key] in loaded[kind]]
            expected += len(ids)
            if ids:
                found = int(world.db.scalar(
                    "select count(*) from whoop.raw_%s where deleted_at is not null and %s = any "
                    "(array[%s]::uuid[])" % (kind, key, ", ".join("'%s'" % i for i in ids))))
                self.assertEqual(found, len(ids), kind)
        self.assertGreater(expected, 0)
        return expected

    def print_figures(self, label, report, changes, figures):
        c = report["counters"]
        figure("%s: %s; %d events (%d duplicated, %d reordered, %d dropped by the knob), "
               "%d posts, %d retries; full load %.1f s, changes to flushed %.1f s, "
               "apply %.2f s (mid-stream %.2f s), converged in %.1f s"
               % (label, ", ".join("%d %s" % (n, k) for k, n in changes.items()), c["events"],
                  c["duplicates"], c["reordered"], c["dropped_by_knob"], c["posts"],
                  c["retries"], figures["load"], figures["flush"], figures["apply"],
                  figures["mid"], figures["converge"]))

    def test_1_converges_without_drops_by_webhooks_alone(self):
        world = World(self, "webhook_e2e_1")
        report, changes, figures, loaded = self.converge(world, drop_rate=0)
        c = report["counters"]
        self.assertGreater(c["duplicates"], 0)
        self.assertGreater(c["reordered"], 0)
        self.assertEqual((c["dropped"], c["dropped_by_knob"], c["failed"]), (0, 0, 0))
        self.assertEqual(c["delivered"], c["events"] + c["duplicates"])
        self.assertEveryEventStoredOnce(world, report)
        # every event applied, none waiting or dead
        self.assertEqual(world.db.rows("select status, count(*) from whoop.webhook_events "
                                       "group by status"), [["applied", str(c["events"])]])
        self.assertEqual(world.db.live_raw_matches_simulator(
            world.sim, ("sleep", "workout", "recovery")), [])
        tombstones = self.assertLoadedDeletionsAreTombstones(world, loaded)
        outcomes = dict((k, int(n)) for k, n in world.db.rows(
            "select outcome, count(*) from whoop.webhook_events group by outcome order by 1"))
        self.print_figures("no drops", report, changes, figures)
        figure("outcomes %s; %d tombstones" % (outcomes, tombstones))

    def test_2_converges_with_drops_to_a_fresh_full_load(self):
        world = World(self, "webhook_e2e_2")
        report, changes, figures, loaded = self.converge(world, drop_rate=0.3)
        c = report["counters"]
        self.assertGreater(c["dropped_by_knob"], 0)
        self.assertEqual((c["dropped"], c["failed"]), (0, 0))
        # a dropped event is never sent, so never duplicated either
        self.assertEqual(c["delivered"], c["events"] + c["duplicates"] - c["dropped_by_knob"])
        self.assertEveryEventStoredOnce(world, report)
        # the dropped events left something for the sync to repair
        missed = world.db.live_raw_matches_simulator(world.sim, ("sleep", "workout", "recovery"))
        self.assertNotEqual(missed, [])
        t0 = time.monotonic()
        world.db.psql("call whoop.sync('sim')")
        sync_s = time.monotonic() - t0
        world.db.psql("select whoop.refresh()")
        self.assertEqual(world.db.live_raw_matches_simulator(world.sim), [])
        tombstones = self.assertLoadedDeletionsAreTombstones(world, loaded)

        twin = chaos_lib.DB("webhook_e2e_2_twin", CLUSTER.env()).create()
        self.addCleanup(twin.drop)
        twin.link(world.sim)
        t0 = time.monotonic()
        twin.psql("call whoop.sync('sim', full => true)")
        twin_s = time.monotonic() - t0
        twin.psql("select whoop.refresh()")
        self.assertEqual(twin.live_raw_matches_simulator(world.sim), [])
        got, want = world.db.live_digest(), twin.live_digest()
        self.assertEqual(chaos_lib.digest_differences(got, want), [])
        # the comparison is of something: the facts have rows
        for fact in ("whoop.fact_daily_recovery", "whoop.fact_daily_strain"):
            self.assertNotEqual(got[fact].split(":")[0], "0", fact)
        filled = sum(1 for v in got.values() if not v.startswith("0:"))
        self.print_figures("drops", report, changes, figures)
        figure("raw after the webhooks alone: %s; then one incremental sync %.1f s and a "
               "refresh: %d relations (%d not empty) equal the twin's fresh full load (%.1f s); "
               "%d loaded deletions are tombstones"
               % ("; ".join(missed), sync_s, len(got), filled, twin_s, tombstones))

    def flowing(self, world, interrupt, resume, label, errors):
        """flowing streams changes, calls INTERRUPT once events are stored,
        waits until the simulator saw ERRORS (a response key) at least 5
        times, calls RESUME, flushes and checks nothing was lost."""
        world.subscribe(duplicate_rate=0.2, reorder_rate=0.2, duplicate_ms=100, reorder_ms=300)
        t0 = time.monotonic()
        thread = world.stream(400)
        interrupted = False
        try:
            self.assertTrue(harness.wait_until(lambda: world.queued() >= 60, timeout=120))
            interrupt()
            interrupted = True
            seen = harness.wait_until(
                lambda: world.hooks()["counters"]["responses"].get(errors, 0) >= 5, timeout=60)
            outstanding = world.hooks()["outstanding"]
        finally:
            if interrupted:
                resume()
            thread.join()
        self.assertTrue(seen, "no %s answer while interrupted: %s"
                        % (errors, world.hooks()["counters"]["responses"]))
        flushed = world.flush()
        converge = time.monotonic() - t0
        self.assertTrue(flushed["idle"], flushed)
        report = world.hooks()
        c = report["counters"]
        self.assertEqual((c["dropped"], c["dropped_by_knob"], c["failed"]), (0, 0, 0))
        self.assertEqual(c["delivered"], c["events"] + c["duplicates"])
        self.assertEveryEventStoredOnce(world, report)
        figure("%s: %d events (%d duplicated, %d reordered), %d posts, %d retries, "
               "responses %s, %d outstanding when it came back; all delivered and stored once "
               "%.1f s after the stream began"
               % (label, c["events"], c["duplicates"], c["reordered"], c["posts"], c["retries"],
                  c["responses"], outstanding, converge))

    def test_3_database_restart_mid_stream_loses_no_event(self):
        world = World(self, "webhook_e2e_3")
        self.flowing(world, lambda: CLUSTER.stop("fast"), CLUSTER.start, "database restart",
                     "503")
        self.assertIn("503", world.daemon.read_log())

    def test_4_kill_9_of_the_receiver_mid_stream_loses_no_event(self):
        world = World(self, "webhook_e2e_4")
        self.flowing(world, world.daemon.kill9, world.daemon.start, "kill -9 of the receiver",
                     "connection")


if __name__ == "__main__":
    unittest.main()
