"""bench_scale.py -- one app at team scale (issue 13): 2,000 members for one
simulated day under WHOOP's limits, and a team of 200 linked mid-day.

Setup (not measured; the simulator's limits off): one simulator of
MEMBERS + TEAM athletes with 60 days of history, its clock started at the
real now (so simulated days line up with the database's); a cluster of its
own with whoop_fdw preloaded (one request budget for every backend, as in a
deployment); the MEMBERS linked with whoop.add_account() (the refresh-token
grant through the simulator's OAuth) and loaded by whoop.sync() and
whoop.refresh(); whoop-webhookd over HTTPS (webhook_lib) subscribed with
drop_rate DROP: a few percent of the events never arrive, so the
reconciling syncs matter.

The measured day: the simulator's limits set to WHOOP's (100 a minute,
10,000 a day) with windows of 60/X real seconds and a day of 1,440 of them
(the X-RateLimit headers carry those lengths, which fdw/budget.c adopts),
the clock running X simulated seconds a real second (--clock-rate), tokens
living 3600/X real seconds.  The members' own sleeps, recoveries and
workouts appear and are scored as the clock passes; on top the bench
re-scores (/_sim/touch) MEMBERS/200 recent records and deletes MEMBERS/1000
workouts or naps (/_sim/delete) per simulated hour.  Driven like a
deployment, on simulated schedules:
  applier   CALL whoop.apply_webhooks() every APPLY simulated minutes;
  pipeline  CALL whoop.sync() every SYNC simulated hours (the reconciling
            sync), whoop.refresh() every REFRESH simulated hours;
  team      at TEAM_AT hours TEAM members are linked (whoop.add_account),
            then synced and refreshed every simulated hour until each has a
            fact_daily_recovery row for the days the simulator has a cycle
            in their last 60 days (one day of slack at the window's edge).

The database's clock is real time.  What the extension decides by now():
  - sync_state.last_success_at against cycle_poll_interval and
    profile_poll_interval: every tick the bench moves every
    last_success_at back by (X - 1) times the real seconds since the last
    tick, so now() - last_success_at is the simulated time since that
    success (as bench_webhooks moves it an hour back per simulated hour);
  - tokens (expires_in real seconds, --token-ttl 3600/X) and the request
    budget (headers with scaled window lengths): real time, consistent
    with the simulator without a shift;
  - whoop_internal.wake_poll_after() compares a member's wake time (from
    simulated sleeps, running up to a day ahead of now()) with
    clock_timestamp(): not shifted, so the once-a-day wake-time cycle poll
    fires late or not at all here; the cycle_poll_interval bound stands.

Measured and printed: requests in the day (the simulator's count per route,
429s), requests per member-day by kind (by-id webhook applies from the
applier's whoop.fetch_stats(); cycle polls, reconciling syncs, profile+body
and backfill from whoop.sync_log; tokens from the simulator's grants),
sync_log rows 'deferred' per endpoint, whoop.request_budget, how long the
applier waited for the request budget (its sessions' fetch_stats paced_ms, in
all and while the team loaded), and the lag
from a change at WHOOP (a delivery's changed_at_real_ms, every emitted
event incl. the dropped ones, last change per record) to the raw row's
_extracted_at (deleted_at for a deletion), times X: simulated seconds.  A
change not in the raw tables by the end counts with the end as its effect
(a lower bound) and is listed, unless it altered nothing the warehouse
keeps: the raw row, written before the change, holds the version the
simulator serves at the end (same updated_at; a re-scored sleep announces
its unchanged recovery too), or a deleted record was never stored (its
deletion overtook its first fetch).  Those are left out of the lags and
counted, and so are the records changed again after the day (in the drain
the simulator's clock still runs): their raw rows show the later change.
At the day's end the pipeline starts nothing new; the applier keeps its
schedule until the pipeline's last run is done, as in a deployment, so the
day's last events do not wait for the drain.
For the five longest delivered lags it prints where the time went (see
slowest_delivered).
With --hours < 24 the per-member-day figures are extrapolated (x 24/hours)
and say so.

Options (BENCH_SCALE="--members 200 --hours 6" in the environment, or the
command line when run as a script): --members, --team, --team-at,
--clock-rate, --hours, --apply-minutes, --sync-hours, --refresh-hours,
--drop-rate, --cycle-poll-interval, --reconcile-interval (server options;
'1 day' reconciles each member's recoveries, sleeps and workouts once a
simulated day), --recovery-follow-up (simulated minutes, 5: the server
option recovery_follow_up, set to that over X in real time), --per-minute and --per-day (the app's limits, WHOOP's 100
and 10,000 unless given: WHOOP raises them on request; the simulator and
the server's requests_per_minute/requests_per_day both follow).

Asserts nothing about time; returns 1 only if data was lost: a delivered
event's change (of a linked member) missing from the raw tables at the end.
"""

import argparse
import collections
import datetime
import os
import random
import shlex
import subprocess
import sys
import tempfile
import threading
import time

import harness
from harness import psql, quote_literal, rows, scalar
from webhook_lib import (BINARY, KINDS, Receiver, effects, make_certificate, parse_iso,
                         receiver_role, summary_row)

DB = "bench_scale"
DAYS = 60
SEED = 42
SETUP_SESSIONS = 2


def options(argv):
    p = argparse.ArgumentParser(prog="bench_scale")
    p.add_argument("--members", type=int, default=2000)
    p.add_argument("--team", type=int, default=200)
    p.add_argument("--team-at", type=float, default=None,
                   help="simulated hour the team is linked (default: the middle)")
    p.add_argument("--clock-rate", type=float, default=96.0)
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--apply-minutes", type=float, default=1.0)
    p.add_argument("--sync-hours", type=float, default=6.0)
    p.add_argument("--refresh-hours", type=float, default=1.0)
    p.add_argument("--drop-rate", type=float, default=0.03)
    p.add_argument("--cycle-poll-interval", default="6 hours")
    p.add_argument("--reconcile-interval", default="1 day")
    p.add_argument("--recovery-follow-up", type=float, default=5.0,
                   help="simulated minutes the applier awaits a scored sleep's recovery event")
    p.add_argument("--per-minute", type=int, default=100,
                   help="the app's limit a minute (WHOOP's default; raised on request)")
    p.add_argument("--per-day", type=int, default=10000,
                   help="the app's limit a day (WHOOP's default; raised on request)")
    a = p.parse_args(argv)
    if a.team_at is None:
        a.team_at = a.hours / 2
    return a


def iso(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def preloaded_libraries():
    """preloaded_libraries: pg_cron and the staged whoop_fdw (one shared budget)."""
    destdir = os.environ.get("WHOOP_EXTENSION_DESTDIR")
    lib = (destdir + os.path.join(harness.pg_config("--pkglibdir"), "whoop_fdw.so")
           if destdir else "whoop_fdw")
    return "'pg_cron,%s'" % lib


def start_simulator(athletes, rate, now_iso):
    """start_simulator: MEMBERS+TEAM athletes, limits off, clock at real time from now_iso."""
    sim = harness.Simulator()
    sim.proc = subprocess.Popen(
        harness.SIMULATOR + ["--port", "0", "--seed", str(SEED), "--athletes", str(athletes),
                             "--days", str(DAYS), "--now", now_iso, "--clock-rate", "1",
                             "--rate-per-minute", "0", "--rate-per-day", "0",
                             "--rate-minute-seconds", repr(60 / rate),
                             "--token-ttl", str(max(1, round(3600 / rate))), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = sim.proc.stdout.readline()
    if not line.strip().isdigit():
        sim.stop()
        raise RuntimeError("simulator did not start: %r" % line)
    sim.port = int(line)
    return sim


def add_accounts(tokens):
    """add_accounts links each refresh token (one statement each, one session)."""
    sql = "".join("select whoop.add_account('sim', %s);\n" % quote_literal(t) for t in tokens)
    return [int(x) for x in psql(sql, dbname=DB, timeout=3600).split()]


def setup_sync(members):
    """setup_sync loads the members (first 60 days and the history chunks)
    in SETUP_SESSIONS sessions side by side, each syncing its share one
    member at a time."""
    errors = []

    def part(ids):
        try:
            psql("".join("call whoop.sync(user_id => %d);\n" % u for u in ids), dbname=DB,
                 timeout=7200)
        except harness.SQLError as e:
            errors.append(e)
    threads = [threading.Thread(target=part, args=(members[i::SETUP_SESSIONS],))
               for i in range(SETUP_SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def sim_requests(stats):
    """sim_requests: (all requests incl. tokens, 429 answers) from /_sim/stats."""
    total = sum(sum(v.values()) for v in stats["requests"].values())
    too_many = sum(v.get("429", 0) for v in stats["requests"].values())
    return total, too_many


class Deployment:
    """Deployment runs the applier and the pipeline on simulated schedules, in
    threads (each call a psql session), and keeps their timings."""

    def __init__(self, a, sim, clock):
        self.a, self.sim, self.clock = a, sim, clock
        self.stop_applier = threading.Event()
        self.stop_pipeline = threading.Event()
        self.lock = threading.Lock()
        self.apply_requests = 0
        self.apply_times = []
        self.apply_late = 0
        self.apply_paced = []       # (real time at the end, s waited for the budget)
        self.sync_times = []
        self.refresh_times = []
        self.errors = collections.Counter()
        self.team = None            # {user_id: expected fact rows}
        self.team_link = None       # (real s, simulated ms)
        self.team_done = None
        self.applier = threading.Thread(target=self._applier, daemon=True)
        self.pipeline = threading.Thread(target=self._pipeline, daemon=True)

    def start(self):
        self.applier.start()
        self.pipeline.start()

    def join(self):
        """join stops the pipeline, lets its current run finish while the
        applier keeps its schedule, then stops the applier."""
        self.stop_pipeline.set()
        self.pipeline.join()
        self.stop_applier.set()
        self.applier.join()

    def _applier(self):
        period = self.a.apply_minutes * 60 / self.a.clock_rate
        nxt = time.monotonic()
        while not self.stop_applier.is_set():
            t = time.monotonic()
            try:
                n, paced_ms = scalar("call whoop.apply_webhooks(); "
                                     "select requests || ' ' || paced_ms from whoop.fetch_stats()",
                                     dbname=DB).split()
                with self.lock:
                    self.apply_requests += int(n)
                    self.apply_paced.append((time.time(), float(paced_ms) / 1000))
            except harness.SQLError as e:
                self.errors["apply: %s" % str(e).splitlines()[0][:100]] += 1
            self.apply_times.append(time.monotonic() - t)
            nxt += period
            if nxt < time.monotonic():
                self.apply_late += 1
                nxt = time.monotonic()
            self.stop_applier.wait(max(0.0, nxt - time.monotonic()))

    def _run(self, what, sql, times):
        t = time.monotonic()
        try:
            psql(sql, dbname=DB, timeout=3600)
        except harness.SQLError as e:
            self.errors["%s: %s" % (what, str(e).splitlines()[0][:100])] += 1
        times.append((self.clock.hours(), time.monotonic() - t))

    def _pipeline(self):
        next_sync, next_refresh, next_team = self.a.sync_hours, self.a.refresh_hours, None
        while not self.stop_pipeline.is_set():
            h = self.clock.hours()
            if self.team is not None and self.team_done is None and next_team is None:
                next_team = h          # linked: sync and refresh now
            if next_team is not None and h >= next_team:
                self._run("sync", "call whoop.sync()", self.sync_times)
                self._run("refresh", "select count(*) from whoop.refresh()", self.refresh_times)
                if self._team_ready():
                    self.team_done = (time.time(), self.clock.sim_ms())
                    next_team = None
                else:
                    next_team = self.clock.hours() + 1
                continue
            if h >= next_sync:
                self._run("sync", "call whoop.sync()", self.sync_times)
                while next_sync <= self.clock.hours():
                    next_sync += self.a.sync_hours
                continue
            if h >= next_refresh:
                self._run("refresh", "select count(*) from whoop.refresh()", self.refresh_times)
                while next_refresh <= self.clock.hours():
                    next_refresh += self.a.refresh_hours
                continue
            self.stop_pipeline.wait(0.2)

    def _team_ready(self):
        since = datetime.datetime.fromtimestamp(self.team_link[1] / 1000 - 59 * 86400,
                                                datetime.timezone.utc).date()
        have = {int(u): int(n) for u, n in rows(
            "select user_id, count(*) from whoop.fact_daily_recovery "
            "where user_id = any(%s::bigint[]) and day >= %s group by 1"
            % (quote_literal("{%s}" % ",".join(map(str, self.team))), quote_literal(since)),
            dbname=DB)}
        self.team_have = sum(1 for u, want in self.team.items() if have.get(u, 0) >= want - 1)
        return self.team_have == len(self.team)


class Clock:
    """Clock: the simulated time of the measured day, from its real start and the rate."""

    def __init__(self, rate, real0, sim0_ms):
        self.rate, self.real0, self.sim0 = rate, real0, sim0_ms

    def sim_ms(self, real=None):
        return self.sim0 + ((time.time() if real is None else real) - self.real0) * 1000 * self.rate

    def hours(self):
        return (self.sim_ms() - self.sim0) / 3600000


class Changes:
    """Changes makes the bench's own re-scores and deletions: per simulated
    hour MEMBERS/200 re-scores of a record of the last three days and
    MEMBERS/1000 deletions (a workout, or a nap), of random members."""

    def __init__(self, sim, users, rng):
        self.sim, self.users, self.rng = sim, users, rng
        self.done = collections.Counter()
        self.owed = [0.0, 0.0]

    def tick(self, hours, members):
        self.owed[0] += hours * members / 200
        self.owed[1] += hours * members / 1000
        while self.owed[0] >= 1:
            self.owed[0] -= 1
            self._touch()
        while self.owed[1] >= 1:
            self.owed[1] -= 1
            self._delete()

    def _recent(self, kind, uid, want=lambda r: True):
        now = parse_iso(self.sim.clock())
        return [r for r in self.sim.records(kind, uid)
                if r.get("score_state") == "SCORED" and want(r)
                and parse_iso(r.get("start") or r["created_at"]) >= now - 3 * 86400 * 1000]

    def _touch(self):
        kind = self.rng.choice(KINDS)
        recs = self._recent(kind, self.rng.choice(self.users))
        if not recs:
            return
        rec = self.rng.choice(recs)
        if kind == "sleep":
            self.sim.touch("sleep", rec["id"],
                           {"score.sleep_performance_percentage": self.rng.randint(40, 100)})
        elif kind == "workout":
            self.sim.touch("workout", rec["id"], {"score.strain": round(self.rng.uniform(2, 20), 4)})
        else:
            self.sim.touch("recovery", rec["cycle_id"],
                           {"score.recovery_score": self.rng.randint(1, 99)})
        self.done["re-score " + kind] += 1

    def _delete(self):
        uid = self.rng.choice(self.users)
        naps = self._recent("sleep", uid, lambda r: r.get("nap"))
        kind, recs = ("sleep", naps) if naps else ("workout", self._recent("workout", uid))
        if not recs:
            return
        self.sim.control("POST", "delete", {"kind": kind, "id": self.rng.choice(recs)["id"]})
        self.done["delete " + ("nap" if kind == "sleep" else "workout")] += 1


def deliveries(sim):
    """deliveries: every webhook delivery the simulator logged, in emission order."""
    out, since = [], 0
    while True:
        rep = sim.control("GET", "webhooks?since=%d&limit=20000" % since)
        out += rep["deliveries"]
        if not rep["deliveries"]:
            return out, rep["counters"]
        since = rep["deliveries"][-1]["seq"]


def lag_figures(sim, sim_deliveries, members, real_from_ms, real_to_ms, end_ms, rate):
    """lag_figures: simulated-second lags of the last change per record of
    MEMBERS made in [real_from_ms, real_to_ms), as (lag, delivered,
    changed_at_real_ms, delivery) tuples (delivered: its webhook reached the
    receiver; else only a reconciling sync can catch it); the records whose
    change is not in the raw tables (each counted with END_MS as its
    effect); the count of changes that altered nothing the warehouse keeps
    (left out of the lags: see unchanged_at_whoop); and the count of records
    changed again after REAL_TO_MS, left out too: their raw rows show that
    later change, not the day's."""
    last, again = {}, set()
    for d in sim_deliveries:
        if d["knob"] == "duplicate" or d["user_id"] not in members:
            continue
        key = (d["type"].split(".")[0], d["id"])
        if real_from_ms <= d["changed_at_real_ms"] < real_to_ms:
            last[key] = d
        elif d["changed_at_real_ms"] >= real_to_ms:
            again.add(key)
    again &= set(last)
    for key in again:
        del last[key]
    raw = effects(DB, last)
    late = {key: d for key, d in last.items()
            if d["type"].endswith(".updated")
            and (raw.get(key, (None, None))[0] or 0) < d["changed_at_real_ms"]}
    # a record deleted before the warehouse ever stored it: nothing to remove
    unchanged = unchanged_at_whoop(sim, late) | {
        key for key, d in last.items() if d["type"].endswith(".deleted") and key not in raw}
    lags, missing = [], []
    for key, d in last.items():
        if key in unchanged:
            continue
        extracted, deleted = raw.get(key, (None, None))
        effect = deleted if d["type"].endswith(".deleted") else extracted
        if effect is None or effect < d["changed_at_real_ms"]:
            missing.append(d)
            effect = end_ms
        lags.append(((effect - d["changed_at_real_ms"]) * rate / 1000,
                     d["status"] == "delivered", d["changed_at_real_ms"], d))
    return sorted(lags, key=lambda x: x[:3]), missing, len(unchanged), len(again)


def slowest_delivered(sim, hooks, lags, n=5):
    """slowest_delivered prints where the N longest delivered lags went: the
    simulator's delivery attempts (seconds after the change, real), the
    stored event's receipt, application, attempts and last error, every
    other event of the record, the version the simulator serves against the
    raw row's, and the sync_log runs that wrote the raw row; and how many
    applied events of the whole run took more than one attempt, by the error
    the last failure left."""
    print("  the %d longest delivered lags (real seconds after the change):" % n)
    for lag, _, at, d in sorted((x for x in lags if x[1]), key=lambda x: -x[0])[:n]:
        ev = rows("select extract(epoch from received_at) * 1000, "
                  "coalesce(extract(epoch from applied_at) * 1000, 0), status, attempts, "
                  "coalesce(outcome, '-'), coalesce(replace(left(last_error, 160), '|', '/'), '-') "
                  "from whoop.webhook_events where trace_id = %s" % quote_literal(d["trace_id"]),
                  dbname=DB)
        print("    %.1f simulated min: %s %s user %s, posted at %s, delivered at %s"
              % (lag / 60, d["type"], d["id"], d["user_id"],
                 ", ".join("%.1f" % ((t - at) / 1000) for t in d["attempts_real_ms"]),
                 "%.1f" % ((d["delivered_at_real_ms"] - at) / 1000)
                 if d["delivered_at_real_ms"] else "-"))
        for received, applied, status, attempts, outcome, error in ev:
            print("      stored at %.1f, %s at %s after %s attempts (%s); last error: %s"
                  % ((float(received) - at) / 1000, status,
                     "%.1f" % ((float(applied) - at) / 1000) if float(applied) else "-",
                     attempts, outcome, error))
        kind = d["type"].split(".")[0]
        for o in hooks:
            if o["id"] == d["id"] and o["seq"] != d["seq"]:
                print("      other event: %s seq %s (this one %s) changed at %.1f, %s%s"
                      % (o["type"], o["seq"], d["seq"], (o["changed_at_real_ms"] - at) / 1000,
                         o["status"], " (%s)" % o["knob"] if o["knob"] else ""))
        key = "sleep_id" if kind == "recovery" else "id"
        served = [r for r in sim.records(kind, d["user_id"]) if r.get(key) == d["id"]]
        print("      the simulator serves updated_at %s (the change's simulated time %s)"
              % (served[0]["updated_at"] if served else "nothing", d["changed_at"]))
        for updated, extracted, deleted in rows(
                "select updated_at, extract(epoch from _extracted_at) * 1000, "
                "coalesce(extract(epoch from deleted_at) * 1000, 0) from whoop.raw_%s "
                "where %s = %s" % (kind, key, quote_literal(d["id"])), dbname=DB):
            print("      raw row: updated_at %s, extracted at %.1f%s" % (
                updated, (float(extracted) - at) / 1000,
                ", deleted at %.1f" % ((float(deleted) - at) / 1000) if float(deleted) else ""))
            if d["type"].endswith(".deleted"):
                continue
            for run in rows(
                    "select endpoint, status, coalesce(rows_updated, 0), "
                    "coalesce(rows_inserted, 0), chunk_from is not null, run_id "
                    "from whoop.sync_log where user_id = %s and started_at "
                    "between to_timestamp(%s / 1000.0) - interval '1 second' "
                    "and to_timestamp(%s / 1000.0) + interval '1 second'"
                    % (d["user_id"], extracted, extracted), dbname=DB):
                print("        sync_log at that time: %s %s, %s updated, %s inserted, "
                      "history chunk %s, run %s" % tuple(run))
    retried = rows("select count(*), coalesce(replace(left(last_error, 120), '|', '/'), '-') "
                   "from whoop.webhook_events where status = 'applied' and attempts > 0 "
                   "group by 2 order by 1 desc limit 5", dbname=DB)
    print("  events applied after failed attempts: %s"
          % ("; ".join("%s x %s" % tuple(r) for r in retried) or "none"))


def unchanged_at_whoop(sim, records):
    """unchanged_at_whoop: the (kind, id) of RECORDS whose raw row, written
    before the record's announced change, holds the version the simulator
    serves now (same updated_at): the change altered nothing the warehouse
    keeps.  A re-scored sleep announces its recovery too, which keeps its
    version; the applier fetches it, finds it unchanged and rightly leaves
    the raw row (and its _extracted_at) as it was."""
    by_member = collections.defaultdict(list)
    for (kind, rid), d in records.items():
        by_member[(kind, d["user_id"])].append(rid)
    out = set()
    for (kind, uid), ids in by_member.items():
        key = "sleep_id" if kind == "recovery" else "id"
        served = {r[key]: parse_iso(r["updated_at"]) for r in sim.records(kind, uid)}
        for rid, updated in rows(
                "select %s, extract(epoch from updated_at) * 1000 from whoop.raw_%s "
                "where user_id = %d and deleted_at is null and %s = any(%s::uuid[])"
                % (key, kind, uid, key, quote_literal("{" + ",".join(ids) + "}")), dbname=DB):
            if rid in served and abs(served[rid] - float(updated)) < 1:
                out.add((kind, rid))
    return out


def request_kinds(stats):
    """request_kinds splits the simulator's per-route counts by kind."""
    kinds = collections.Counter()
    for route, by_status in stats["requests"].items():
        n = sum(by_status.values())
        if route.startswith("POST /oauth"):
            kinds["tokens (refreshes, links)"] += n
        elif route.endswith("{id}") or route.endswith("{id}/recovery"):
            kinds["webhook applies (fetch by id)"] += n
        elif route == "GET /v2/cycle":
            kinds["cycle polls (list)"] += n
        elif route.startswith("GET /v2/user/"):
            kinds["profile + body"] += n
        else:
            kinds["reconciling syncs (recovery, sleep, workout lists)"] += n
    return kinds


def sync_log_figures(since):
    """sync_log_figures: requests of the history loads (first loads and chunks,
    with the token refreshes they needed) since SINCE, and the deferred rows."""
    backfill = int(scalar("select coalesce(sum(requests), 0) from whoop.sync_log "
                          "where started_at >= %s and chunk_from is not null"
                          % quote_literal(since), dbname=DB))
    deferred = rows("select endpoint, count(*) from whoop.sync_log where started_at >= %s "
                    "and status = 'deferred' group by 1 order by 1" % quote_literal(since),
                    dbname=DB)
    return backfill, deferred


def run(a, cluster_port, tmp):
    total_started = time.monotonic()
    athletes = a.members + a.team
    now_iso = iso(time.time() * 1000)
    t = time.monotonic()
    sim = start_simulator(athletes, a.clock_rate, now_iso)
    rx = None
    dep = None
    try:
        print("setup: simulator of %d athletes x %d days started in %.1f s"
              % (athletes, DAYS, time.monotonic() - t), flush=True)
        harness.fresh_database(DB, ("whoop_fdw",))
        accounts = sim.accounts()
        psql("create server sim foreign data wrapper whoop_fdw options (api_url %s, oauth_url %s, "
             "cycle_poll_interval %s, reconcile_interval %s, requests_per_minute '%d', "
             "requests_per_day '%d', recovery_follow_up '%.3f seconds');\n"
             "create user mapping for current_user server sim options (client_id %s, "
             "client_secret %s);" % (quote_literal(sim.api_url), quote_literal(sim.oauth_url),
                                     quote_literal(a.cycle_poll_interval),
                                     quote_literal(a.reconcile_interval), a.per_minute, a.per_day,
                                     max(1.0, a.recovery_follow_up * 60 / a.clock_rate),
                                     quote_literal(accounts["client_id"]),
                                     quote_literal(accounts["client_secret"])), dbname=DB)
        t = time.monotonic()
        members = add_accounts([x["refresh_token"] for x in accounts["athletes"][:a.members]])
        team_tokens = [x["refresh_token"] for x in accounts["athletes"][a.members:athletes]]
        team_ids = [x["user_id"] for x in accounts["athletes"][a.members:athletes]]
        print("setup: %d members linked in %.1f s" % (len(members), time.monotonic() - t),
              flush=True)
        t = time.monotonic()
        setup_sync(members)
        t_sync = time.monotonic() - t
        t = time.monotonic()
        psql("select count(*) from whoop.refresh()", dbname=DB, timeout=7200)
        print("setup: first sync (limits off, %d sessions) %.0f s, refresh %.0f s; %s raw cycles, "
              "%s fact_daily_recovery rows, %s account endpoints with history still loading"
              % (SETUP_SESSIONS, t_sync, time.monotonic() - t,
                 scalar("select count(*) from whoop.raw_cycle", dbname=DB),
                 scalar("select count(*) from whoop.fact_daily_recovery", dbname=DB),
                 scalar("select count(*) from whoop.sync_state where endpoint in ('cycle', "
                        "'recovery', 'sleep', 'workout') and history_from is distinct from "
                        "'-infinity'", dbname=DB)), flush=True)
        receiver_role()
        rx = Receiver(tmp, "scale", cluster_port, DB).start()
        sim.control("POST", "webhooks", {"url": rx.url, "ca_file": rx.cert,
                                         "drop_rate": a.drop_rate, "seed": 5})

        # -- the measured day ------------------------------------------------
        X = a.clock_rate
        sim.reset()
        sim.control("POST", "ratelimit", {"per_minute": a.per_minute, "per_day": a.per_day,
                                          "minute_seconds": 60 / X})
        since = scalar("select now()", dbname="postgres")
        real0 = time.time()
        sim.control("POST", "clock", {"now": iso(real0 * 1000), "rate": X})
        clock = Clock(X, real0, real0 * 1000)
        print("day: clock rate %g (a simulated day = %.1f real minutes), limits %d/min "
              "(%.3f s) and %d/day, tokens live %d s, webhooks every %g simulated "
              "minute(s), sync every %g h, refresh every %g h, drop_rate %g, "
              "cycle_poll_interval %s, reconcile_interval %s, recovery_follow_up %g simulated min"
              % (X, 1440 / X, a.per_minute, 60 / X, a.per_day, max(1, round(3600 / X)),
                 a.apply_minutes, a.sync_hours,
                 a.refresh_hours, a.drop_rate, a.cycle_poll_interval, a.reconcile_interval,
                 a.recovery_follow_up),
              flush=True)
        dep = Deployment(a, sim, clock)
        dep.start()
        changes = Changes(sim, [x["user_id"] for x in accounts["athletes"][:a.members]],
                          random.Random(SEED))
        tick_h = 5 / 60
        last_shift = time.time()
        next_tick = 0.0
        next_report = 1.0
        team_linked = False
        while clock.hours() < a.hours:
            h = clock.hours()
            if h >= next_tick:
                now = time.time()
                try:
                    psql("update whoop.sync_state set last_success_at = last_success_at - "
                         "make_interval(secs => %f) where last_success_at is not null"
                         % ((X - 1) * (now - last_shift)), dbname=DB)
                    last_shift = now
                except harness.SQLError as e:
                    dep.errors["shift: %s" % str(e).splitlines()[0][:80]] += 1
                changes.tick(tick_h, a.members)
                next_tick += tick_h
            if a.team and not team_linked and h >= a.team_at:
                team_linked = True
                t = time.monotonic()
                link_real, link_sim = time.time(), clock.sim_ms()
                expected = {}
                for uid in team_ids:
                    expected[uid] = len({c["start"][:10] for c in sim.records("cycle", uid)
                                         if parse_iso(c["start"]) >= link_sim - 59 * 86400000})
                ids = add_accounts(team_tokens)
                dep.team_link = (link_real, link_sim)
                dep.team = {u: expected[u] for u in ids}
                print("  %5.2f h: team of %d linked in %.1f s" % (h, len(ids),
                                                                 time.monotonic() - t),
                      flush=True)
            if h >= next_report:
                total, too_many = sim_requests(sim.stats())
                queue = dict((s, int(n)) for s, n in rows(
                    "select status, count(*) from whoop.webhook_events group by 1", dbname=DB))
                print("  %5.2f h (%4.0f s real): %d requests (%d x 429), %d by the applier, "
                      "queue %s, %d syncs, %d refreshes%s" % (
                          h, time.time() - real0, total, too_many, dep.apply_requests,
                          ", ".join("%s %d" % kv for kv in sorted(queue.items())),
                          len(dep.sync_times), len(dep.refresh_times),
                          "" if dep.team is None else ", team ready: %s" % (
                              "all" if dep.team_done else getattr(dep, "team_have", 0))),
                      flush=True)
                next_report += 1
            time.sleep(0.1)
        day_real = time.time() - real0
        day_end_ms = time.time() * 1000
        stats = sim.stats()
        apply_requests = dep.apply_requests
        # the applier's runs of the day (it keeps running through the drain)
        apply_late, apply_times = dep.apply_late, list(dep.apply_times)
        apply_paced = list(dep.apply_paced)
        kinds = request_kinds(stats)
        backfill, deferred = sync_log_figures(since)
        budget = rows("select server_name, \"window\", capacity, round(available::numeric, 1), "
                      "shared from whoop.request_budget", dbname=DB)

        # -- drain (not counted): the clock back to real time, the queue applied
        sim.control("POST", "clock", {"rate": 1})
        dep.join()
        sim.control("POST", "flush_webhooks", {"timeout_ms": 60000})
        for _ in range(30):
            psql("call whoop.apply_webhooks()", dbname=DB, timeout=600)
            if not int(scalar("select count(*) from whoop.webhook_events "
                              "where status = 'queued'", dbname=DB)):
                break
        end_ms = time.time() * 1000

        hooks, counters = deliveries(sim)
        member_set = set(x["user_id"] for x in accounts["athletes"][:a.members])
        lags, missing, unchanged, again = lag_figures(sim, hooks, member_set, real0 * 1000, day_end_ms,
                                               end_ms, X)
        events = {r[0]: r[1] for r in rows("select trace_id, status from whoop.webhook_events",
                                           dbname=DB)}
        lost = [d for d in missing if d["status"] == "delivered"
                and events.get(d["trace_id"]) == "applied"]

        # -- report ----------------------------------------------------------
        total, too_many = sim_requests(stats)
        factor = 24 / a.hours
        ext = "" if a.hours == 24 else " (extrapolated x %.2f from %g h)" % (factor, a.hours)
        print("day done: %g simulated hours in %.0f s real (rate %g); pipeline kept up: applier "
              "late %d of %d runs (longest %.1f s = %.1f simulated min), syncs %s, refreshes %s"
              % (a.hours, day_real, X, apply_late, len(apply_times),
                 max(apply_times or [0]), max(apply_times or [0]) * X / 60,
                 ", ".join("%.1fh:%.0fs" % st for st in dep.sync_times) or "none",
                 ", ".join("%.0f" % d for _, d in dep.refresh_times) or "none"))
        paced = [p for _, p in apply_paced]
        team_from = dep.team_link[0] if dep.team_link else float("inf")
        team_to = dep.team_done[0] if dep.team_done else float("inf")
        team_paced = [p for t, p in apply_paced if team_from <= t <= team_to]
        print("  applier waiting for the request budget (whoop.fetch_stats paced_ms): %.1f s real in "
              "all, longest run %.1f s; while the team loaded %.1f s in %d runs"
              % (sum(paced), max(paced or [0]), sum(team_paced), len(team_paced)))
        print("  bench changes: %s" % ", ".join("%s %d" % kv for kv in sorted(changes.done.items())))
        print("  webhooks: %d events, %d delivered, %d dropped by the knob (drop_rate %g), "
              "%d retries" % (counters["events"], counters["delivered"],
                              counters["dropped_by_knob"], a.drop_rate, counters["retries"]))
        emitted = collections.Counter(d["type"] for d in hooks if d["knob"] != "duplicate"
                                      and d["user_id"] in member_set
                                      and real0 * 1000 <= d["changed_at_real_ms"] < day_end_ms)
        print("  events of the members per member-day%s: %s" % (ext, ", ".join(
            "%s %.2f" % (t, n * factor / a.members) for t, n in sorted(emitted.items()))))
        print("  requests in the day: %d (limit %d%s), 429 answers: %d"
              % (total, a.per_day,
                 "" if a.hours == 24 else "; %d per 24 h extrapolated" % (total * factor),
                 too_many))
        print("  %-52s %8s %14s" % ("requests by kind (simulator)", "count",
                                      "per member-day"))
        for label, n in sorted(kinds.items()):
            print("  %-52s %8d %14.2f" % (label, n, n * factor / a.members))
        print("  %-52s %8d %14.2f%s" % ("all", total, total * factor / a.members, ext))
        print("  %-52s %8d %14.2f%s" % ("  of which history loads (sync_log, incl. tokens)",
                                        backfill, backfill * factor / a.members, ext))
        print("  %-52s %8d %14.2f%s" % ("  all but history loads", total - backfill,
                                        (total - backfill) * factor / a.members, ext))
        print("  %-52s %8d" % ("  webhook applier (whoop.fetch_stats, incl. tokens)", apply_requests))
        print("  simulator per route:")
        for route in sorted(stats["requests"]):
            print("    %-42s %s" % (route, ", ".join(
                "%s %d" % kv for kv in sorted(stats["requests"][route].items()))))
        print("  sync_log 'deferred': %s" % (", ".join("%s %s" % tuple(r) for r in deferred)
                                              or "none"))
        print("  request_budget at the day's end: %s" % "; ".join(" ".join(r) for r in budget))
        print("  %-44s %6s %8s %8s %8s %8s" % ("lag, simulated minutes", "n", "median", "p90",
                                               "p99", "max"))
        print(summary_row("change -> raw row (members, last per record)",
                          [lag for lag, _, _, _ in lags], 60, 44, 1))
        print(summary_row("  of which delivered by webhook", [lag for lag, hook, _, _ in lags if hook],
                          60, 44, 1))
        print(summary_row("  of which never delivered (the sync's part)",
                          [lag for lag, hook, _, _ in lags if not hook], 60, 44, 1))
        # the applier makes up for some: a scored recovery brings its sleep,
        # a recovery awaited after its sleep's scoring is fetched
        undelivered = collections.defaultdict(list)
        for lag, hook, _, d in lags:
            if not hook:
                undelivered[d["type"]].append(lag)
        print("  never delivered, by type: n (of them within 10 simulated minutes): %s" % (
            ", ".join("%s %d (%d)" % (t, len(v), sum(1 for x in v if x <= 600))
                      for t, v in sorted(undelivered.items())) or "none"))
        print("  left out: %d changes that altered nothing the warehouse keeps (its raw row "
              "already held the version WHOOP serves, or a deleted record was never stored), "
              "and %d records changed again after the day (their raw rows show that change)"
              % (unchanged, again))
        if dep.team_link is not None:
            done = dep.team_done
            t_end = min(done[0] * 1000, day_end_ms) if done else day_end_ms
            # the day's last change per record, made while the team loaded: a
            # record changed again later (a sleep scored after it appeared)
            # is the later change's, since its raw row shows only that one
            print(summary_row("  delivered, while the team loaded",
                              [lag for lag, hook, at, _ in lags
                               if hook and dep.team_link[0] * 1000 <= at < t_end], 60, 44, 1))
            if done:
                print("  team: %d members linked at %.2f h had 60 days of metrics after %.1f "
                      "simulated minutes (%.0f s real)" % (
                          len(dep.team), (dep.team_link[1] - clock.sim0) / 3600000,
                          (done[1] - dep.team_link[1]) / 60000, done[0] - dep.team_link[0]))
            else:
                print("  team: NOT all loaded by the day's end: %d of %d had 60 days of metrics"
                      % (getattr(dep, "team_have", 0), len(dep.team)))
        slowest_delivered(sim, hooks, lags)
        print("  changes not in the raw tables at the end: %d (%s); of them delivered and "
              "applied (lost): %d" % (len(missing), ", ".join("%s %d" % kv for kv in sorted(
                  collections.Counter(d["status"] for d in missing).items())), len(lost)))
        for d in lost[:10]:
            print("    lost: %s %s user %s seq %s" % (d["type"], d["id"], d["user_id"], d["seq"]))
        if dep.errors:
            print("  errors: %s" % "; ".join("%s x%d" % kv for kv in dep.errors.items()))
        print("bench_scale took %.0f s" % (time.monotonic() - total_started))
        return not lost
    finally:
        if dep is not None:
            dep.join()
        if rx is not None:
            rx.stop()
        sim.stop()


def main(cluster, argv=None):
    if not os.access(BINARY, os.X_OK):
        print("%s is not built (make builds it)" % BINARY)
        return 1
    a = options(argv if argv is not None else shlex.split(os.environ.get("BENCH_SCALE", "")))
    saved = {k: os.environ.get(k) for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE",
                                              "WHOOP_TEST_DB")}
    own = harness.Cluster({"shared_preload_libraries": preloaded_libraries(),
                           "shared_buffers": "'1GB'", "work_mem": "'64MB'",
                           "max_connections": "100"}).init().start()
    tmp = tempfile.mkdtemp(prefix="whoop_bench_scale.")
    try:
        os.environ.update(own.env())
        make_certificate(tmp)
        return 0 if run(a, own.port, tmp) else 1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        own.destroy()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main(None, sys.argv[1:]))
