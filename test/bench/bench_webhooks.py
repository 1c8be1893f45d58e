"""bench_webhooks.py -- webhooks against polling: how soon a change reaches
the raw layer, and how many WHOOP requests a member's day costs.

1. Lag.  The whole path in real time: a simulator whose clock runs in real
   time sends its signed webhooks over HTTPS (a self-signed certificate) to
   whoop-webhookd, which queues them through whoop.receive_webhook(); the
   pg_cron job of whoop.schedule_webhooks('* * * * *') runs
   whoop.apply_webhooks(), which fetches by id into the raw tables or
   tombstones.  For a few real minutes the benchmark re-scores sleeps,
   workouts and recoveries, deletes sleeps and workouts, and moves the
   simulator's clock an hour or three ahead (records appear and are
   scored), across several athletes.  The lag of a change is the raw
   row's _extracted_at (deleted_at for a deletion) minus the wall-clock
   moment the simulator changed the record (changed_at_real_ms), for the
   last change of each record whose event wrote the row; the split per
   event: simulator -> queue (webhook_events.received_at) and queue ->
   applied (applied_at).  pg_cron 1.5 and later also take '20 seconds':
   when this cluster's pg_cron accepts it, a second, shorter run uses it.

2. Requests per member-day.  Two simulators with the same seed and the
   same athletes, two databases, one simulated day in 24 hourly steps
   (the athletes' own sleeps, workouts and recoveries, plus the same
   re-scores and deletions in both):
     polling   whoop.run_pipeline() every 3 hours (8 runs),
               profile_poll_interval '0', no cycle_poll_interval (1.0);
     webhooks  the deliveries through whoop-webhookd, whoop.apply_webhooks()
               after each hourly step, and whoop.run_pipeline() every 6
               hours (4 runs, for reconciliation) with cycle_poll_interval
               '6 hours' and the default profile_poll_interval '1 day'.
   The database's clock does not run with the simulator's: after each
   simulated hour sync_state.last_success_at is moved an hour back, so the
   poll intervals see the day go by.  Requests are counted by the
   simulator per route (token refreshes apart: the tokens outlive the
   day) and by the database (whoop.fetch_stats() of every session);
   at the end each warehouse's live raw rows are compared with what its
   simulator serves.

Prints tables; asserts nothing about time.  Returns 1 if an event was lost
or a warehouse ends different from its simulator.
"""

import collections
import os
import random
import subprocess
import sys
import tempfile
import time

import harness
from harness import psql, quote_literal, rows, scalar
from webhook_lib import (BINARY, KINDS, Receiver, effects, make_certificate, parse_iso,
                         realtime_simulator, receiver_role, session_requests, summary_row)

# tokens outlive the benchmark: a clock moved hours ahead would otherwise
# expire them in the simulator while the database still trusts them
TOKEN_TTL = str(14 * 86400)

LAG_ATHLETES = 6
LAG_DRIVE_SECONDS = 240         # the one-minute schedule's run
LAG_DRIVE_SECONDS_FAST = 120    # the '20 seconds' run, if pg_cron takes it
LAG_TICK_SECONDS = 3            # one change every TICK
LAG_DRAIN_SECONDS = 150         # after the last change: the last job runs

DAY_ATHLETES = 20
DAY_DAYS = 30
POLL_EVERY = 3                  # hours between polling pipelines
PUSH_SYNC_EVERY = 6             # hours between reconciling pipelines with webhooks


# -- 1. lag -------------------------------------------------------------------

class Driver:
    """Driver changes the simulator's records, each record at most once, in a
    fixed rotation of re-scores, deletions and clock moves."""

    PLAN = ("touch sleep", "touch workout", "touch recovery", "delete workout",
            "touch workout", "advance", "touch sleep", "delete sleep",
            "touch recovery", "touch workout", "advance", "delete workout")

    def __init__(self, sim, seed):
        self.sim = sim
        self.rng = random.Random(seed)
        self.pool = {}
        for kind in KINDS:
            recs = [r for r in sim.records(kind) if r.get("score_state") == "SCORED"]
            self.rng.shuffle(recs)
            self.pool[kind] = recs
        # naps first among the sleeps to delete: a main sleep takes its recovery with it
        self.pool["sleep"].sort(key=lambda r: not r.get("nap"))
        self.used_sleeps = set()
        self.done = collections.Counter()
        self.step = 0

    def _take(self, kind, first=False):
        while self.pool[kind]:
            rec = self.pool[kind].pop(0 if first else self.rng.randrange(len(self.pool[kind])))
            sleep_id = rec["id"] if kind == "sleep" else rec.get("sleep_id")
            if kind == "workout" or sleep_id not in self.used_sleeps:
                if sleep_id is not None:
                    self.used_sleeps.add(sleep_id)
                return rec
        return None

    def next(self):
        action = self.PLAN[self.step % len(self.PLAN)]
        self.step += 1
        verb, _, kind = action.partition(" ")
        if verb == "advance":
            self.sim.clock(advance_seconds=self.rng.choice((3600, 7200, 10800)))
        else:
            rec = self._take(kind, first=verb == "delete")
            if rec is None:
                return
            if verb == "delete":
                self.sim.control("POST", "delete", {"kind": kind, "id": rec["id"]})
            elif kind == "sleep":
                self.sim.touch("sleep", rec["id"],
                               {"score.sleep_performance_percentage": self.rng.randint(40, 100)})
            elif kind == "workout":
                self.sim.touch("workout", rec["id"],
                               {"score.strain": round(self.rng.uniform(2, 20), 4)})
            else:
                self.sim.touch("recovery", rec["cycle_id"],
                               {"score.recovery_score": self.rng.randint(1, 99)})
        self.done[action] += 1


def lag_run(cluster, tmp, schedule, seconds):
    """lag_run measures one schedule's lag; returns False if an event was lost."""
    db = "bench_webhooks_lag"
    harness.fresh_database(db, ("whoop_fdw", "dblink"))
    receiver_role()
    sim = realtime_simulator("--athletes", str(LAG_ATHLETES), "--days", "30",
                             "--rate-per-minute", "0", "--rate-per-day", "0",
                             "--token-ttl", TOKEN_TTL, "--quiet")
    rx = None
    scheduled = False
    try:
        harness.link_simulator(sim, import_into=None)
        psql("call whoop.sync()", dbname=db)
        rx = Receiver(tmp, "lag", cluster.port, db).start()
        sim.control("POST", "webhooks", {"url": rx.url, "ca_file": rx.cert})
        psql("select whoop.schedule_webhooks(%s)" % quote_literal(schedule), dbname=db)
        scheduled = True

        driver = Driver(sim, seed=7)
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            tick = time.monotonic()
            driver.next()
            time.sleep(max(0.0, LAG_TICK_SECONDS - (time.monotonic() - tick)))
        drive = time.monotonic() - started
        flushed = sim.control("POST", "flush_webhooks", {"timeout_ms": 60000})
        report = sim.control("GET", "webhooks")
        delivered = {d["trace_id"]: d for d in report["deliveries"] if d["status"] == "delivered"}
        wanted = len(delivered)
        harness.wait_until(lambda: int(scalar(
            "select count(*) from whoop.webhook_events where status = 'applied'",
            dbname=db)) >= wanted, timeout=LAG_DRAIN_SECONDS, interval=2)
        drained = time.monotonic() - started

        events = {r[0]: r for r in rows(
            "select trace_id, status, coalesce(outcome, ''), "
            "extract(epoch from received_at) * 1000, "
            "coalesce(extract(epoch from applied_at) * 1000, 0) from whoop.webhook_events",
            dbname=db)}
        to_queue, to_apply, total = [], [], []
        outcomes = collections.Counter()
        for trace, d in delivered.items():
            e = events.get(trace)
            if e is None or e[1] != "applied":
                continue
            outcomes[e[2]] += 1
            received, applied = float(e[3]), float(e[4])
            to_queue.append(received - d["changed_at_real_ms"])
            to_apply.append(applied - received)
            total.append(applied - d["changed_at_real_ms"])
        lost = wanted - len(total)

        # the last change of each record, where its event wrote the raw row
        last = {}
        for d in sorted(delivered.values(), key=lambda d: d["seq"]):
            last[(d["type"].split(".")[0], d["id"])] = d
        written = {k: d for k, d in last.items()
                   if events.get(d["trace_id"], (0, 0, ""))[2] in ("upserted", "tombstoned")}
        raw = effects(db, written)
        change_lag = []
        for key, d in written.items():
            extracted, deleted = raw.get(key, (None, None))
            effect = deleted if d["type"].endswith(".deleted") else extracted
            if effect is not None:
                change_lag.append(effect - d["changed_at_real_ms"])

        types = collections.Counter(d["type"] for d in delivered.values())
        print("schedule %r: %d athletes, changes for %.0f s (%s), all applied %.0f s after "
              "the first" % (schedule, LAG_ATHLETES, drive,
                             ", ".join("%s %d" % kv for kv in sorted(driver.done.items())),
                             drained))
        print("  deliveries: %d events, %d delivered (%s), %d retries, flush idle: %s"
              % (report["counters"]["events"], report["counters"]["delivered"],
                 ", ".join("%s %d" % kv for kv in sorted(types.items())),
                 report["counters"]["retries"], flushed["idle"]))
        print("  outcomes: %s; events not applied: %d"
              % (", ".join("%s %d" % kv for kv in sorted(outcomes.items())), lost))
        print("  %-34s %5s %8s %8s %8s %8s" % ("lag (seconds)", "n", "median", "p90", "p99", "max"))
        print(summary_row("change -> raw row (last per record)", change_lag))
        print(summary_row("event: simulator -> queue", to_queue))
        print(summary_row("event: queue -> applied", to_apply))
        print(summary_row("event: simulator -> applied", total))
        return lost == 0 and len(change_lag) == len(written)
    finally:
        if scheduled:
            psql("select whoop.unschedule_webhooks()", dbname=db)
        if rx is not None:
            rx.stop()
        sim.stop()
        psql("drop database if exists %s with (force)" % db, dbname="postgres")


def seconds_schedules():
    """seconds_schedules says whether this cluster's pg_cron takes '20 seconds',
    and its version."""
    version = scalar("select extversion from pg_extension where extname = 'pg_cron'",
                     dbname="postgres")
    try:
        psql("select cron.unschedule(cron.schedule('whoop_bench_probe', '20 seconds', 'select 1'))",
             dbname="postgres")
        return True, version
    except harness.SQLError:
        return False, version


# -- 2. requests per member-day -------------------------------------------------

def live_rows(db, kind):
    """live_rows: {id: updated_at epoch ms} of the raw table's rows without a tombstone."""
    key = "cycle_id" if kind == "recovery" else "id"
    return {r[0]: round(float(r[1])) for r in rows(
        "select %s, extract(epoch from updated_at) * 1000 from whoop.raw_%s "
        "where %s" % (key, kind, "true" if kind == "cycle" else "deleted_at is null"),
        dbname=db)}


def served(sim, kind):
    key = "cycle_id" if kind == "recovery" else "id"
    return {str(r[key]): parse_iso(r["updated_at"]) for r in sim.records(kind)}


def differences(sim, db):
    """differences: per kind, records missing, extra or stale in DB against SIM."""
    out = {}
    for kind in ("cycle", "sleep", "workout", "recovery"):
        want, have = served(sim, kind), live_rows(db, kind)
        out[kind] = (len(set(want) - set(have)), len(set(have) - set(want)),
                     sum(1 for k in set(want) & set(have) if want[k] != have[k]))
    return out


def scripted_changes(hour, sims, rng):
    """scripted_changes makes the day's re-scores and deletions at HOUR, the
    same in every simulator (same seed, same clock: the same records): each
    on a record of the last three days, of athletes picked among those who
    have one."""
    now = parse_iso(sims[0].clock())
    recent = lambda r: parse_iso(r.get("start") or r["created_at"]) >= now - 3 * 86400 * 1000
    done = []

    def pick(kind, n, want=lambda r: True):
        by_user = collections.defaultdict(list)
        for r in sims[0].records(kind):
            if recent(r) and want(r) and r.get("score_state") == "SCORED":
                by_user[r["user_id"]].append(r)
        users = sorted(by_user)
        return [rng.choice(by_user[u]) for u in rng.sample(users, min(n, len(users)))]

    def each(fn):
        for sim in sims:
            fn(sim)

    if hour in (2, 7, 13, 19):
        for rec in pick("sleep", 2):
            each(lambda sim: sim.touch("sleep", rec["id"],
                                       {"score.sleep_performance_percentage": 77}))
            done.append("re-score sleep")
        for rec in pick("workout", 1):
            each(lambda sim: sim.touch("workout", rec["id"], {"score.strain": 12.5}))
            done.append("re-score workout")
    if hour in (9, 21):
        for rec in pick("recovery", 1):
            each(lambda sim: sim.touch("recovery", rec["cycle_id"], {"score.recovery_score": 55}))
            done.append("re-score recovery")
    if hour in (5, 17):
        for rec in pick("workout", 1):
            each(lambda sim: sim.control("POST", "delete", {"kind": "workout", "id": rec["id"]}))
            done.append("delete workout")
    if hour == 11:
        # a nap if there is one; a main sleep takes its recovery with it
        for rec in (pick("sleep", 1, lambda r: r["nap"]) or pick("sleep", 1))[:1]:
            each(lambda sim: sim.control("POST", "delete", {"kind": "sleep", "id": rec["id"]}))
            done.append("delete nap" if rec["nap"] else "delete sleep")
    return done


def member_day(cluster, tmp):
    """member_day counts one simulated day's requests, polling against webhooks;
    returns False if a warehouse ends different from its simulator."""
    args = ("--athletes", str(DAY_ATHLETES), "--days", str(DAY_DAYS),
            "--rate-per-minute", "0", "--rate-per-day", "0", "--token-ttl", TOKEN_TTL, "--quiet")
    poll_db, push_db = "bench_webhooks_poll", "bench_webhooks_push"
    sims = {poll_db: harness.Simulator(*args).start()}
    rx = None
    try:
        sims[push_db] = harness.Simulator(*args).start()
        for db, options in ((poll_db, {"profile_poll_interval": "0"}),
                            (push_db, {"cycle_poll_interval": "6 hours"})):
            harness.fresh_database(db)
            harness.link_simulator(sims[db], options=options, import_into=None)
            psql("call whoop.sync()", dbname=db)
        receiver_role()
        rx = Receiver(tmp, "day", cluster.port, push_db).start()
        push = sims[push_db]
        push.control("POST", "webhooks", {"url": rx.url, "ca_file": rx.cert})
        for sim in sims.values():
            sim.reset()
        since = scalar("select now()", dbname="postgres")

        rng = random.Random(11)
        db_requests = collections.Counter()
        apply_requests = 0
        changes = collections.Counter()
        started = time.monotonic()
        for hour in range(1, 25):
            for sim in sims.values():
                sim.clock(advance_seconds=3600)
            changes.update(scripted_changes(hour, list(sims.values()), rng))
            for db in sims:
                psql("update whoop.sync_state set last_success_at = last_success_at - "
                     "interval '1 hour'", dbname=db)
            push.control("POST", "flush_webhooks", {"timeout_ms": 60000})
            n = session_requests("call whoop.apply_webhooks()", push_db)
            apply_requests += n
            db_requests[push_db] += n
            if hour % PUSH_SYNC_EVERY == 0:
                db_requests[push_db] += session_requests("call whoop.run_pipeline()", push_db)
            if hour % POLL_EVERY == 0:
                db_requests[poll_db] += session_requests("call whoop.run_pipeline()", poll_db)
        elapsed = time.monotonic() - started

        hooks = push.control("GET", "webhooks")
        queue = rows("select status, count(*) from whoop.webhook_events where received_at >= %s "
                     "group by 1 order by 1" % quote_literal(since), dbname=push_db)
        stats = {db: sim.stats() for db, sim in sims.items()}
        routes = sorted({r for s in stats.values() for r in s["requests"]})
        per_day = lambda n: n / DAY_ATHLETES
        api = {db: sum(sum(v.values()) for r, v in s["requests"].items()
                       if not r.startswith("POST /oauth"))
               for db, s in stats.items()}
        sync_logged = {db: int(scalar("select coalesce(sum(requests), 0) from whoop.sync_log "
                                      "where started_at >= %s" % quote_literal(since), dbname=db))
                       for db in sims}

        print("one simulated day, %d athletes (24 hourly steps, %.0f s): %s"
              % (DAY_ATHLETES, elapsed,
                 ", ".join("%s %d" % kv for kv in sorted(changes.items()))))
        print("  webhooks: %d events, %d delivered through whoop-webhookd; queue: %s"
              % (hooks["counters"]["events"], hooks["counters"]["delivered"],
                 ", ".join("%s %s" % tuple(r) for r in queue)))
        print("  %-40s %12s %12s" % ("requests per member-day", "polling", "webhooks"))
        for route in routes:
            counts = [sum(stats[db]["requests"].get(route, {}).values()) for db in sims]
            print("  %-40s %12.2f %12.2f" % (route, per_day(counts[0]), per_day(counts[1])))
        print("  %-40s %12.2f %12.2f" % ("all API requests", per_day(api[poll_db]),
                                         per_day(api[push_db])))
        print("  %-40s %12d %12d" % ("  counted by the simulator", api[poll_db], api[push_db]))
        print("  %-40s %12d %12d" % ("  counted by whoop.fetch_stats()", db_requests[poll_db],
                                     db_requests[push_db]))
        print("  %-40s %12d %12d" % ("  of which sync_log.requests", sync_logged[poll_db],
                                     sync_logged[push_db]))
        print("  %-40s %12s %12d" % ("  of which apply_webhooks()", "", apply_requests))
        print("  %-40s %12s %12s" % ("token refreshes", *(
            str(stats[db]["token_grants"]["refresh_token"]) for db in sims)))
        print("  ratio polling / webhooks: %.1fx" % (api[poll_db] / max(1, api[push_db])))

        equal = True
        for db in sims:
            diff = differences(sims[db], db)
            same = all(v == (0, 0, 0) for v in diff.values())
            equal = equal and same
            print("  %s vs its simulator: %s" % (
                "polling " if db == poll_db else "webhooks", "equal (cycle, sleep, workout, "
                "recovery: live raw rows = served records, same updated_at)" if same else
                "; ".join("%s %d missing %d extra %d stale" % ((k,) + v) for k, v in diff.items())))
        return equal and all(api[db] == db_requests[db] for db in sims)
    finally:
        if rx is not None:
            rx.stop()
        for sim in sims.values():
            sim.stop()
        for db in sims:
            psql("drop database if exists %s with (force)" % db, dbname="postgres")


def main(cluster):
    if not os.access(BINARY, os.X_OK):
        print("%s is not built (make builds it)" % BINARY)
        return 1
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="whoop_bench_webhooks.")
    ok = True
    try:
        make_certificate(tmp)
        psql("create extension if not exists pg_cron", dbname="postgres")
        print("-- 1. lag: simulator (real-time clock) -> HTTPS -> whoop-webhookd -> queue -> "
              "pg_cron -> apply_webhooks() -> raw")
        ok = lag_run(cluster, tmp, "* * * * *", LAG_DRIVE_SECONDS) and ok
        seconds, version = seconds_schedules()
        if seconds:
            ok = lag_run(cluster, tmp, "20 seconds", LAG_DRIVE_SECONDS_FAST) and ok
        else:
            print("pg_cron %s refuses '20 seconds' (interval schedules need pg_cron 1.5): "
                  "a minute is the shortest schedule here" % version)
        print("-- 2. WHOOP requests per member-day: polling against webhooks")
        ok = member_day(cluster, tmp) and ok
    finally:
        subprocess.run(["rm", "-rf", tmp])
    print("bench_webhooks took %.0f s" % (time.monotonic() - started))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(None))
