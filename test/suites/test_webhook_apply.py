"""test_webhook_apply.py -- whoop.apply_webhooks(): queued WHOOP webhook events applied.

Events are signed and queued the way WHOOP and whoop-webhookd deliver them
(through whoop.receive_webhook(), see test_webhook), for simulator athletes
linked to server "sim"; then whoop.apply_webhooks() applies them against the
simulator.  A record deleted at WHOOP is deleted in the simulator
(POST /_sim/delete), or, where a test needs it only for one fetch, a queued
404 fault on its by-id path.

  ApplyTest        updates fetch by id and upsert (new, re-scored, unchanged),
                   deletions tombstone (neither a late update nor the sync
                   resurrects; a deletion of a record never stored is 'not
                   stored'),
                   recoveries cost 2 requests with the sleep unknown and 1
                   with it stored, duplicates cost one fetch, a 404 is 'not
                   found', sleeps and workouts mark the member's cycles
                   (not a workout that has only appeared, unscored),
                   staging and facts ignore tombstones, the status view
  CyclePollTest    a sleep or workout event's batch polls the member's cycles
                   at once (one listing from the mark, logged with the run
                   id), a recovery event's does not; poll_cycles_on_event
                   'false' leaves the mark for the sync, and a value that is
                   no boolean is refused (HV024)
  CyclePollBudgetTest  a poll the request budget defers leaves the mark, and
                   the call polls no other member's cycles
  FollowUpTest     a sleep just scored whose recovery is not stored scored
                   awaits its recovery.updated: the event cancels the
                   follow-up, else the recovery is fetched once it is due
                   (recovery_follow_up, 5 minutes), again after 10 and 20
                   while unscored, then left to the sync; a scored recovery
                   fetches its sleep stored unscored, an unscored one does
                   not; deletions end follow-ups; the option is checked
  FollowUpBudgetTest  a follow-up the request budget refuses waits, not
                   counted as a try, without a failure NOTICE
  RetentionTest    apply_webhooks() deletes applied events older than the
                   server's webhook_retention (30 days; at least 1 day, else
                   HV024), oldest first and at most 10000 per server and call;
                   queued and dead events stay; webhook_status reads through
                   indexes only and agrees with an aggregate over every event
  RetryTest        a failing fetch is retried with doubling backoff, dead
                   after 8 attempts with a WARNING, queued again by
                   whoop.requeue_webhooks(); the events of an account that is
                   disconnected are dead at once
  ConcurrencyTest  two appliers at once apply every event exactly once; the
                   events of accounts the calling role may not use are left
                   alone
  PipelineTest     run_pipeline() records a webhooks step before the sync;
                   schedule_webhooks() makes a pg_cron job that applies
                   events, and DROP EXTENSION is refused while it exists
  CrashTest        kill -9 of the backend applying events (held in its fetch)
                   loses nothing: after the restart every event is applied
                   exactly once
"""

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import time
import unittest
import uuid

import harness
from harness import psql, rows, scalar, SQLError

SIM_ARGS = ("--athletes", "3", "--days", "12", "--quiet")
MEMBER_PATH = {"workout": "/v2/activity/workout/%s", "sleep": "/v2/activity/sleep/%s"}


def sign(secret, timestamp, body):
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def deliver(secret, user_id, kind, record_id, trace_id=None, env=None):
    """deliver queues one signed event through whoop.receive_webhook(); returns its trace_id."""
    trace_id = trace_id or str(uuid.uuid4())
    body = json.dumps({"user_id": user_id, "id": record_id, "type": kind, "trace_id": trace_id},
                      separators=(",", ":")).encode()
    ts = str(int(time.time() * 1000))
    result = scalar("select whoop.receive_webhook('sim', :'sig', :'ts', decode(:'body', 'base64'))",
                    variables={"sig": sign(secret, ts, body), "ts": ts,
                               "body": base64.b64encode(body).decode()}, extra_env=env)
    assert result == "queued", result
    return trace_id


def event(trace_id, env=None):
    """event is the queue row of a delivery as a dict."""
    out = rows("select status, coalesce(outcome, ''), attempts, coalesce(last_error, ''), "
               "next_attempt_at is not null, applied_at is not null, coalesce(run_id::text, '') "
               "from whoop.webhook_events where trace_id = '%s'" % trace_id, extra_env=env)
    s = out[0]
    return {"status": s[0], "outcome": s[1], "attempts": int(s[2]), "last_error": s[3],
            "waiting": s[4] == "t", "applied": s[5] == "t", "run_id": s[6]}


def apply_and_count(sql="call whoop.apply_webhooks()", env=None):
    """apply_and_count applies in one session and returns the WHOOP requests it made."""
    out = psql("%s; select requests from whoop.fetch_stats()" % sql, extra_env=env)
    return int(out.split()[-1])


class WebhookSuite(harness.SimulatorSuite):
    SIM_ARGS = SIM_ARGS
    LINK = {"import_into": None, "athletes": 2}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.secret = cls.sim.accounts()["client_secret"]

    def setUp(self):
        os.environ["WHOOP_TEST_DB"] = self.DB
        self.sim.reset()

    def deliver(self, user_id, kind, record_id, trace_id=None):
        return deliver(self.secret, user_id, kind, record_id, trace_id)

    def record(self, kind, user=0, index=0, where=lambda r: True):
        """record is a simulator record of athlete USER (its INDEX-th match, newest first)."""
        return [r for r in self.sim.records(kind, self.users[user]) if where(r)][index]

    def gone(self, kind, record_id, count=1):
        """gone makes the next COUNT by-id fetches of a record answer 404, as for a deleted one."""
        self.sim.fault(path=MEMBER_PATH[kind] % record_id, kind="status", status=404, count=count)

    def raw(self, table, key, value, columns="updated_at, deleted_at is not null"):
        out = rows("select %s from whoop.%s where %s = '%s'" % (columns, table, key, value))
        return out[0] if out else None


class ApplyTest(WebhookSuite):
    DB = "webhook_apply"

    def test_updated_new_then_rescored_then_unchanged(self):
        w = self.record("workout", 0, 0)
        first = self.deliver(self.users[0], "workout.updated", w["id"])
        self.assertEqual(apply_and_count(), 1)
        self.assertEqual(event(first)["status"], "applied")
        self.assertEqual(event(first)["outcome"], "upserted")
        stored = self.raw("raw_workout", "id", w["id"])
        self.assertEqual(stored[1], "f")
        # WHOOP re-scores it: the next event brings the newer version
        self.sim.clock(advance_seconds=60)
        self.sim.touch("workout", w["id"], set={"score.strain": 12.5})
        second = self.deliver(self.users[0], "workout.updated", w["id"])
        psql("call whoop.apply_webhooks()")
        self.assertEqual(event(second)["outcome"], "upserted")
        self.assertGreater(self.raw("raw_workout", "id", w["id"])[0], stored[0])
        self.assertEqual(scalar("select record->'score'->>'strain' from whoop.raw_workout "
                                "where id = '%s'" % w["id"]), "12.5")
        third = self.deliver(self.users[0], "workout.updated", w["id"])
        psql("call whoop.apply_webhooks()")
        self.assertEqual(event(third)["outcome"], "unchanged")

    def test_written_records_are_looked_up_by_primary_key(self):
        """After a by-id fetch, the applier finds the rows it wrote through
        the raw tables' primary keys, not by reading every member's rows
        (which at a team's size cost more than the fetch)."""
        w = self.record("workout", 1, 2)
        r = [x for x in self.sim.records("recovery", self.users[1]) if x.get("sleep_id")][4]
        self.deliver(self.users[1], "workout.updated", w["id"])
        self.deliver(self.users[1], "recovery.updated", r["sleep_id"])
        # with sequential scans disabled, one is chosen only where no index
        # can answer
        plans, out = harness.nested_plans("set enable_seqscan = off; call whoop.apply_webhooks()",
                                          r"select coalesce\(array_agg\(r\.")
        self.assertEqual(len(plans), 3, out)      # the workout, the sleep, the recovery
        for plan in plans:
            self.assertNotIn("Seq Scan", plan)
            self.assertRegex(plan, r"Index Scan using raw_(workout|sleep|recovery)_pkey")

    def test_late_update_after_deletion_stays_a_tombstone(self):
        s = self.record("sleep", 0, 1)
        self.deliver(self.users[0], "sleep.updated", s["id"])
        psql("call whoop.apply_webhooks()")
        before = self.raw("raw_sleep", "id", s["id"])
        deleted = self.deliver(self.users[0], "sleep.deleted", s["id"])
        self.assertEqual(apply_and_count(), 0)            # a deletion costs no request
        self.assertEqual(event(deleted)["outcome"], "tombstoned")
        self.assertEqual(self.raw("raw_sleep", "id", s["id"]), [before[0], "t"])
        # a late update whose fetch still answers -- even with a newer version -- changes nothing
        self.sim.clock(advance_seconds=60)
        self.sim.touch("sleep", s["id"], set={"score.respiratory_rate": 15.5})
        late = self.deliver(self.users[0], "sleep.updated", s["id"])
        psql("call whoop.apply_webhooks()")
        self.assertEqual(event(late)["outcome"], "unchanged")
        self.assertEqual(self.raw("raw_sleep", "id", s["id"]), [before[0], "t"])
        # and one whose fetch answers 404, as WHOOP's would
        self.gone("sleep", s["id"])
        later = self.deliver(self.users[0], "sleep.updated", s["id"])
        psql("call whoop.apply_webhooks()")
        self.assertEqual(event(later)["outcome"], "not found")
        self.assertEqual(self.raw("raw_sleep", "id", s["id"]), [before[0], "t"])

    def test_record_deleted_at_whoop(self):
        w = self.record("workout", 1, 6)
        self.deliver(self.users[1], "workout.updated", w["id"])
        psql("call whoop.apply_webhooks()")
        self.sim.control("POST", "delete", {"kind": "workout", "id": w["id"]})
        # the update WHOOP sent before the deletion arrives late, after it
        deleted = self.deliver(self.users[1], "workout.deleted", w["id"])
        late = self.deliver(self.users[1], "workout.updated", w["id"])
        psql("call whoop.apply_webhooks(max_events => 1)")
        psql("call whoop.apply_webhooks()")
        self.assertEqual((event(deleted)["outcome"], event(late)["outcome"]), ("tombstoned", "not found"))
        self.assertEqual(self.raw("raw_workout", "id", w["id"], "deleted_at is not null"), ["t"])
        # nor does the sync bring it back
        psql("call whoop.sync(user_id => %d, endpoint => 'workout')" % self.users[1])
        self.assertEqual(self.raw("raw_workout", "id", w["id"], "deleted_at is not null"), ["t"])

    def test_deletion_before_the_record_is_stored(self):
        w = self.record("workout", 1, 2)
        deleted = self.deliver(self.users[1], "workout.deleted", w["id"])
        psql("call whoop.apply_webhooks()")
        self.assertEqual(event(deleted)["status"], "applied")
        self.assertEqual(event(deleted)["outcome"], "not stored")
        self.assertIsNone(self.raw("raw_workout", "id", w["id"]))
        # the update that arrives after it finds the record gone
        self.gone("workout", w["id"])
        late = self.deliver(self.users[1], "workout.updated", w["id"])
        psql("call whoop.apply_webhooks()")
        self.assertEqual(event(late)["outcome"], "not found")
        self.assertIsNone(self.raw("raw_workout", "id", w["id"]))

    def test_deletion_wins_over_an_update_in_the_same_batch(self):
        w = self.record("workout", 1, 3)
        self.deliver(self.users[1], "workout.updated", w["id"])
        psql("call whoop.apply_webhooks()")
        updated = self.deliver(self.users[1], "workout.updated", w["id"])
        deleted = self.deliver(self.users[1], "workout.deleted", w["id"])
        self.assertEqual(apply_and_count(), 0)
        self.assertEqual(event(updated)["outcome"], "superseded")
        self.assertEqual(event(deleted)["outcome"], "tombstoned")
        self.assertEqual(self.raw("raw_workout", "id", w["id"])[1], "t")

    def test_recovery_costs_two_requests_with_the_sleep_unknown_one_with_it_stored(self):
        recoveries = [r for r in self.sim.records("recovery", self.users[1]) if r.get("sleep_id")]
        unknown, known = recoveries[0], recoveries[1]
        first = self.deliver(self.users[1], "recovery.updated", unknown["sleep_id"])
        self.assertEqual(apply_and_count(), 2)
        self.assertEqual(event(first)["outcome"], "upserted")
        self.assertIsNotNone(self.raw("raw_sleep", "id", unknown["sleep_id"]))
        self.assertEqual(self.raw("raw_recovery", "cycle_id", unknown["cycle_id"],
                                  "sleep_id::text, deleted_at is not null"),
                         [unknown["sleep_id"], "f"])
        self.deliver(self.users[1], "sleep.updated", known["sleep_id"])
        psql("call whoop.apply_webhooks()")
        second = self.deliver(self.users[1], "recovery.updated", known["sleep_id"])
        self.assertEqual(apply_and_count(), 1)
        self.assertEqual(event(second)["outcome"], "upserted")
        self.assertEqual(self.raw("raw_recovery", "cycle_id", known["cycle_id"], "cycle_id")[0],
                         str(known["cycle_id"]))

    def test_recovery_and_sleep_deletions_tombstone(self):
        recoveries = [r for r in self.sim.records("recovery", self.users[0]) if r.get("sleep_id")]
        a, b = recoveries[2], recoveries[3]
        for r in (a, b):
            self.deliver(self.users[0], "recovery.updated", r["sleep_id"])
        psql("call whoop.apply_webhooks()")
        gone_recovery = self.deliver(self.users[0], "recovery.deleted", a["sleep_id"])
        gone_sleep = self.deliver(self.users[0], "sleep.deleted", b["sleep_id"])
        self.assertEqual(apply_and_count(), 0)
        self.assertEqual(event(gone_recovery)["outcome"], "tombstoned")
        self.assertEqual(event(gone_sleep)["outcome"], "tombstoned")
        # recovery.deleted: the recovery only; sleep.deleted: the sleep and its recovery
        self.assertEqual(self.raw("raw_recovery", "cycle_id", a["cycle_id"], "deleted_at is not null"), ["t"])
        self.assertEqual(self.raw("raw_sleep", "id", a["sleep_id"], "deleted_at is not null"), ["f"])
        self.assertEqual(self.raw("raw_recovery", "cycle_id", b["cycle_id"], "deleted_at is not null"), ["t"])
        self.assertEqual(self.raw("raw_sleep", "id", b["sleep_id"], "deleted_at is not null"), ["t"])
        unknown = self.deliver(self.users[0], "recovery.deleted", str(uuid.uuid4()))
        psql("call whoop.apply_webhooks()")
        self.assertEqual(event(unknown)["outcome"], "not stored")

    def test_duplicates_in_one_batch_cost_one_fetch(self):
        w = self.record("workout", 0, 4)
        traces = [self.deliver(self.users[0], "workout.updated", w["id"]) for _ in range(3)]
        self.assertEqual(apply_and_count(), 1)
        self.assertEqual({event(t)["outcome"] for t in traces}, {"upserted"})
        by_id = [r for r in self.sim.request_log() if r["path"].endswith(w["id"])]
        self.assertEqual(len(by_id), 1, by_id)

    def test_sleeps_and_workouts_mark_the_members_cycles_recoveries_do_not(self):
        psql("delete from whoop.sync_state where endpoint = 'cycle'")
        r = [r for r in self.sim.records("recovery", self.users[1]) if r.get("sleep_id")][5]
        self.deliver(self.users[1], "recovery.updated", r["sleep_id"])
        psql("call whoop.apply_webhooks()")
        self.assertEqual(scalar("select count(*) from whoop.sync_state where endpoint = 'cycle'"), "0")
        # nor does a workout that has only appeared, unscored: its scoring will
        pending = self.record("workout", 0, 3)
        self.sim.touch("workout", pending["id"], set={"score_state": "PENDING_SCORE"}, unset=["score"])
        self.deliver(self.users[0], "workout.updated", pending["id"])
        psql("call whoop.apply_webhooks()")
        self.assertEqual(self.raw("raw_workout", "id", pending["id"], "score_state"), ["PENDING_SCORE"])
        self.assertEqual(scalar("select count(*) from whoop.sync_state where endpoint = 'cycle'"), "0")
        self.deliver(self.users[0], "workout.updated", self.record("workout", 0, 5)["id"])
        psql("call whoop.apply_webhooks()")
        pending = rows("select user_id, pending_since is not null from whoop.sync_state "
                       "where endpoint = 'cycle'")
        self.assertEqual(pending, [[str(self.users[0]), "t"]])
        since = scalar("select pending_since from whoop.sync_state where endpoint = 'cycle'")
        # a later event keeps the first mark: the cycles have been pending since then
        self.deliver(self.users[0], "sleep.deleted", str(uuid.uuid4()))
        psql("call whoop.apply_webhooks()")
        self.assertEqual(scalar("select pending_since from whoop.sync_state where endpoint = 'cycle'"), since)

    def test_status_view(self):
        self.deliver(self.users[0], "workout.deleted", str(uuid.uuid4()))
        psql("call whoop.apply_webhooks()")
        # the view's figures are those of an aggregate over every event
        every_event = (
            "select e.server_name, count(*) filter (where e.status = 'queued'), "
            "count(*) filter (where e.status = 'queued' and (e.next_attempt_at is null "
            "or e.next_attempt_at <= now())), "
            "count(*) filter (where e.status = 'queued' and e.next_attempt_at > now()), "
            "count(*) filter (where e.status = 'dead'), "
            "count(*) filter (where e.applied_at >= now() - interval '1 hour'), "
            "count(*) filter (where e.applied_at >= now() - interval '1 day'), "
            "now() - min(e.received_at) filter (where e.status = 'queued'), "
            "percentile_cont(0.5) within group (order by e.applied_at - e.received_at) "
            "filter (where e.applied_at >= now() - interval '1 hour'), "
            "percentile_cont(0.99) within group (order by e.applied_at - e.received_at) "
            "filter (where e.applied_at >= now() - interval '1 day'), "
            "max(e.received_at) from whoop.webhook_events e group by e.server_name")
        both = rows("begin; " + every_event + "; select server_name, queued, due, retrying, dead, "
                    "applied_last_hour, applied_last_day, oldest_queued_age, lag_median_last_hour, "
                    "lag_p99_last_day, last_received_at from whoop.webhook_status; commit")
        self.assertEqual(len(both), 2)
        self.assertEqual(both[0], both[1])
        view = harness.rows("select server_name, queued, due, retrying, dead, applied_last_hour > 0, "
                            "applied_last_day >= applied_last_hour, oldest_queued_age is null, "
                            "lag_median_last_hour >= interval '0', "
                            "lag_p99_last_day >= lag_median_last_day, "
                            "(outcomes_last_day->>'not stored')::int > 0, "
                            "(select sum(v::int) from jsonb_each_text(outcomes_last_day) x(k, v)) "
                            "= applied_last_day "
                            "from whoop.webhook_status")
        self.assertEqual(view, [["sim", "0", "0", "0", "0", "t", "t", "t", "t", "t", "t", "t"]])


class FactsTest(WebhookSuite):
    DB = "webhook_facts"

    def test_staging_and_facts_ignore_tombstones(self):
        psql("call whoop.sync(); select count(*) from whoop.refresh()")
        workout, cycle = rows(
            "select x.workout_id, x.cycle_id from whoop.stg_workout x "
            "join whoop.fact_daily_strain f on f.cycle_id = x.cycle_id "
            "where x.user_id = %d and x.score_state = 'SCORED' order by x.start desc limit 1"
            % self.users[1])[0]
        in_facts = "select workout_count from whoop.fact_daily_strain where cycle_id = %s" % cycle
        count_before = int(scalar(in_facts))
        self.deliver(self.users[1], "workout.deleted", workout)
        psql("call whoop.apply_webhooks(); select count(*) from whoop.refresh()")
        self.assertEqual(scalar("select count(*) from whoop.stg_workout where workout_id = '%s'" % workout), "0")
        self.assertEqual(scalar("select count(*) from whoop.raw_workout where id = '%s' "
                                "and deleted_at is not null" % workout), "1")
        self.assertEqual(int(scalar(in_facts)), count_before - 1)


class CyclePollTest(WebhookSuite):
    DB = "webhook_cycle_poll"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        psql("call whoop.sync()")

    def cycle_state(self, user):
        return rows("select pending_since is not null, last_success_at > now() - interval '1 minute' "
                    "from whoop.sync_state where endpoint = 'cycle' and user_id = %d" % user)[0]

    def test_a_sleep_or_workout_event_polls_the_cycles_at_once_a_recovery_event_does_not(self):
        run = 4711
        self.deliver(self.users[0], "workout.updated", self.record("workout", 0, 1)["id"])
        self.assertEqual(apply_and_count("call whoop.apply_webhooks(run_id => %d)" % run), 2)
        paths = [r["path"] for r in self.sim.request_log()]
        self.assertEqual(sorted(p.split("/")[2] for p in paths), ["activity", "cycle"], paths)
        cycle_poll = [r for r in self.sim.request_log() if r["path"] == "/v2/cycle"][0]
        self.assertIn("start", cycle_poll["query"])     # from the high-water mark, not all history
        self.assertEqual(self.cycle_state(self.users[0]), ["f", "t"])
        self.assertEqual(rows("select status, requests from whoop.sync_log "
                              "where run_id = %d and endpoint = 'cycle' and user_id = %d"
                              % (run, self.users[0])), [["ok", "1"]])

        self.sim.reset()
        sleep = self.record("sleep", 1, 1)
        self.deliver(self.users[1], "recovery.updated", sleep["id"])
        self.assertEqual(apply_and_count(), 1)
        self.assertEqual([r["path"] for r in self.sim.request_log()],
                         ["/v2/cycle/%s/recovery" % sleep["cycle_id"]])

    def test_the_option_off_leaves_the_mark_for_the_sync(self):
        psql("alter server sim options (add poll_cycles_on_event 'false')")
        self.addCleanup(psql, "alter server sim options (drop poll_cycles_on_event)")
        self.deliver(self.users[1], "sleep.updated", self.record("sleep", 1, 2)["id"])
        self.assertEqual(apply_and_count(), 1)
        self.assertEqual(self.cycle_state(self.users[1])[0], "t")
        psql("call whoop.sync(user_id => %d)" % self.users[1])
        self.assertEqual(self.cycle_state(self.users[1]), ["f", "t"])

        with self.assertRaises(SQLError) as cm:
            psql("alter server sim options (set poll_cycles_on_event 'sometimes')")
        self.assertEqual(cm.exception.sqlstate, "HV024")
        self.assertIn('invalid value for option "poll_cycles_on_event": "sometimes"',
                      cm.exception.output)
        self.assertIn("must be a boolean", cm.exception.output)


class CyclePollBudgetTest(WebhookSuite):
    DB = "webhook_cycle_poll_budget"

    def test_a_poll_the_budget_defers_leaves_the_mark_and_ends_the_polls(self):
        psql("call whoop.sync()")
        # WHOOP's day holds 100 and the cycle class must leave 99: after one
        # by-id fetch a cycle poll is refused
        self.sim.control("POST", "ratelimit", {"per_minute": 0, "per_day": 100,
                                               "minute_seconds": 60})
        psql("alter server sim options (add requests_per_day '100', "
             "add day_budget_reserve 'cycle=99,reconcile=99,backfill=99')")
        events = [self.deliver(self.users[u], "workout.updated", self.record("workout", u, 1)["id"])
                  for u in (0, 1)]
        self.sim.reset()
        out = harness.psql_full("call whoop.apply_webhooks(run_id => 42)")
        self.assertNotIn("WARNING", out)
        self.assertEqual({event(t)["status"] for t in events}, {"applied"})
        self.assertEqual([r["path"] for r in self.sim.request_log() if r["path"] == "/v2/cycle"], [])
        self.assertEqual(rows("select user_id, pending_since is not null from whoop.sync_state "
                              "where endpoint = 'cycle' order by user_id"),
                         [[str(u), "t"] for u in sorted(self.users)])
        # the first member's poll was deferred; after that none was tried
        self.assertEqual(rows("select user_id, status, requests from whoop.sync_log "
                              "where run_id = 42 and endpoint = 'cycle'"),
                         [[str(self.users[0]), "deferred", "0"]])


class FollowUps:
    """FollowUps: what the follow-up tests share.  The simulator's clock is
    today's (a follow-up is noted only for a sleep scored within the hour);
    a sleep is made just scored with /_sim/touch."""
    SIM_ARGS = ("--athletes", "3", "--days", "12", "--quiet",
                "--now", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def setUp(self):
        super().setUp()
        psql("truncate whoop.raw_sleep, whoop.raw_recovery, whoop_internal.recovery_follow_ups")

    def just_scored(self, user, index):
        """just_scored is a main sleep of USER, touched now (scored, with a recovery), and its recovery."""
        recovery = [r for r in self.sim.records("recovery", self.users[user]) if r.get("sleep_id")][index]
        self.sim.touch("sleep", recovery["sleep_id"], set={"score.respiratory_rate": 15.25})
        return recovery["sleep_id"], recovery["cycle_id"]

    def follow_ups(self):
        return rows("select sleep_id, attempts, round(extract(epoch from due_at - now()) / 60) "
                    "from whoop_internal.recovery_follow_ups order by sleep_id")

    def make_due(self):
        psql("update whoop_internal.recovery_follow_ups set due_at = now() - interval '1 second'")


class FollowUpTest(FollowUps, WebhookSuite):
    """A scored sleep's recovery is awaited: its own event cancels the
    follow-up, a missing one is fetched once the follow-up is due; and a
    scored recovery brings its sleep stored unscored along."""
    DB = "webhook_follow_up"

    def test_a_missing_recovery_event_is_followed_up_after_recovery_follow_up(self):
        sleep, cycle = self.just_scored(0, 2)
        self.deliver(self.users[0], "sleep.updated", sleep)
        self.assertEqual(apply_and_count(), 1)
        self.assertEqual(self.follow_ups(), [[sleep, "0", "5"]])    # the default: 5 minutes
        status = "select follow_ups, follow_ups_due from whoop.webhook_status"
        self.assertEqual(rows(status), [["1", "0"]])
        self.assertEqual(apply_and_count(), 0)                        # not due yet
        self.make_due()
        self.assertEqual(rows(status), [["1", "1"]])
        self.sim.reset()
        self.assertEqual(apply_and_count(), 1)
        self.assertEqual([r["path"] for r in self.sim.request_log()], ["/v2/cycle/%s/recovery" % cycle])
        self.assertEqual(self.raw("raw_recovery", "cycle_id", cycle, "score_state"), ["SCORED"])
        self.assertEqual(self.follow_ups(), [])
        self.assertEqual(rows(status), [["0", "0"]])
        # a sleep scored more than an hour ago is the reconciling sync's
        psql("truncate whoop.raw_sleep, whoop.raw_recovery")
        old = [r for r in self.sim.records("recovery", self.users[0]) if r.get("sleep_id")][3]
        self.deliver(self.users[0], "sleep.updated", old["sleep_id"])
        psql("call whoop.apply_webhooks()")
        self.assertEqual(self.follow_ups(), [])

    def test_the_recovery_event_cancels_the_follow_up(self):
        sleep, cycle = self.just_scored(1, 2)
        self.deliver(self.users[1], "sleep.updated", sleep)
        psql("call whoop.apply_webhooks()")
        self.assertEqual(len(self.follow_ups()), 1)
        self.deliver(self.users[1], "recovery.updated", sleep)
        self.assertEqual(apply_and_count(), 1)
        self.assertEqual(self.follow_ups(), [])
        # with the recovery stored scored, the next scored version of the sleep awaits nothing
        self.sim.touch("sleep", sleep, set={"score.respiratory_rate": 15.5})
        self.deliver(self.users[1], "sleep.updated", sleep)
        psql("call whoop.apply_webhooks()")
        self.assertEqual(self.follow_ups(), [])

    def test_a_recovery_still_unscored_is_fetched_three_times_with_doubling_waits(self):
        sleep, cycle = self.just_scored(0, 4)
        self.sim.touch("recovery", cycle, set={"score_state": "PENDING_SCORE"}, unset=["score"])
        self.deliver(self.users[0], "sleep.updated", sleep)
        psql("call whoop.apply_webhooks()")
        for attempts, minutes in ((1, 10), (2, 20)):
            self.make_due()
            self.assertEqual(apply_and_count(), 1)
            self.assertEqual(self.follow_ups(), [[sleep, str(attempts), str(minutes)]])
        self.make_due()
        self.assertEqual(apply_and_count(), 1)
        self.assertEqual(self.follow_ups(), [])      # the reconciling sync's now
        self.assertEqual(self.raw("raw_recovery", "cycle_id", cycle, "score_state"), ["PENDING_SCORE"])

    def test_a_scored_recovery_fetches_its_sleep_stored_unscored(self):
        sleep, cycle = self.just_scored(1, 3)
        self.deliver(self.users[1], "sleep.updated", sleep)
        psql("call whoop.apply_webhooks()")
        # as if the sleep's scoring event had been dropped: stored unscored
        psql("update whoop.raw_sleep set score_state = 'PENDING_SCORE', "
             "updated_at = updated_at - interval '1 hour' where id = '%s'" % sleep)
        self.sim.reset()
        self.deliver(self.users[1], "recovery.updated", sleep)
        self.assertEqual(apply_and_count(), 2)
        self.assertEqual([r["path"] for r in self.sim.request_log()],
                         ["/v2/cycle/%s/recovery" % cycle, "/v2/activity/sleep/%s" % sleep])
        self.assertEqual(self.raw("raw_sleep", "id", sleep, "score_state"), ["SCORED"])
        # a recovery itself unscored says nothing of its sleep: no sleep fetch
        psql("update whoop.raw_sleep set score_state = 'PENDING_SCORE', "
             "updated_at = updated_at - interval '1 hour' where id = '%s'" % sleep)
        self.sim.touch("recovery", cycle, set={"score_state": "PENDING_SCORE"}, unset=["score"])
        self.deliver(self.users[1], "recovery.updated", sleep)
        self.assertEqual(apply_and_count(), 1)

    def test_deletions_end_follow_ups_and_roles_without_the_table_keep_none(self):
        sleep, _ = self.just_scored(0, 5)
        self.deliver(self.users[0], "sleep.updated", sleep)
        psql("call whoop.apply_webhooks()")
        self.assertEqual(len(self.follow_ups()), 1)
        self.deliver(self.users[0], "sleep.deleted", sleep)
        psql("call whoop.apply_webhooks()")
        self.assertEqual(self.follow_ups(), [])
        # an applier role without privileges on the follow-ups applies without them
        self.assertEqual(scalar("select whoop_internal.may_follow_up()"), "t")
        self.assertEqual(scalar("select has_table_privilege('public', "
                                "'whoop_internal.recovery_follow_ups', 'select')"), "f")

    def test_the_option_is_checked(self):
        psql("alter server sim options (add recovery_follow_up '90 seconds')")
        self.addCleanup(psql, "alter server sim options (drop recovery_follow_up)")
        self.assertEqual(scalar("select (whoop_internal.sync_settings('sim')).recovery_follow_up"),
                         "00:01:30")
        for value, message in (("0", "must be at least 1 second"), ("-1 minute", "must not be negative"),
                               ("soon", "invalid input syntax for type interval")):
            with self.assertRaises(SQLError) as cm:
                psql("alter server sim options (set recovery_follow_up '%s')" % value)
            self.assertEqual(cm.exception.sqlstate, "HV024" if value != "soon" else "22007",
                             cm.exception.output)
            self.assertIn(message, cm.exception.output)


class FollowUpBudgetTest(FollowUps, WebhookSuite):
    """Its own database: the request budget it spends stays spent."""
    DB = "webhook_follow_up_budget"

    def test_a_follow_up_the_request_budget_refuses_waits_untried(self):
        sleep, _ = self.just_scored(1, 5)
        self.deliver(self.users[1], "sleep.updated", sleep)
        psql("call whoop.apply_webhooks()")
        self.make_due()
        # WHOOP's day is spent: its headers say so after the next request
        self.sim.control("POST", "ratelimit", {"per_minute": 0, "per_day": 1, "minute_seconds": 60})
        self.addCleanup(self.sim.control, "POST", "ratelimit",
                        {"per_minute": 100, "per_day": 10000, "minute_seconds": 60})
        workout = [w for w in self.sim.records("workout") if w["user_id"] in self.users][0]
        self.deliver(workout["user_id"], "workout.updated", workout["id"])
        self.sim.reset()
        out = harness.psql_full("call whoop.apply_webhooks()")
        self.assertNotIn("failed", out)
        self.assertEqual([r["path"].split("/")[2] for r in self.sim.request_log()], ["activity"])
        self.assertEqual([row[:2] for row in self.follow_ups()], [[sleep, "0"]])


class RetentionTest(WebhookSuite):
    DB = "webhook_retention"

    def applied_event(self, age):
        """applied_event queues and applies a deletion, then dates its application AGE back."""
        trace = self.deliver(self.users[0], "workout.deleted", str(uuid.uuid4()))
        psql("call whoop.apply_webhooks()")
        psql("update whoop.webhook_events set received_at = now() - interval '%s', "
             "applied_at = now() - interval '%s' where trace_id = '%s'" % (age, age, trace))
        return trace

    def kept(self, traces):
        return [scalar("select count(*) from whoop.webhook_events where trace_id = '%s'" % t) == "1"
                for t in traces]

    def test_applied_events_past_the_retention_are_deleted_queued_and_dead_ones_stay(self):
        old, recent = self.applied_event("31 days"), self.applied_event("29 days")
        dead = self.deliver(self.users[0], "workout.deleted", str(uuid.uuid4()))
        queued = self.deliver(self.users[1], "workout.deleted", str(uuid.uuid4()))
        psql("update whoop.webhook_events set received_at = now() - interval '60 days', "
             "status = case when trace_id = '%s' then 'dead' else status end, "
             "next_attempt_at = case when trace_id = '%s' then now() + interval '1 hour' end "
             "where trace_id in ('%s', '%s')" % (dead, queued, dead, queued))
        psql("call whoop.apply_webhooks()")
        self.assertEqual(self.kept([old, recent, dead, queued]), [False, True, True, True])
        # the server option shortens (or lengthens) it
        psql("alter server sim options (add webhook_retention '28 days')")
        self.addCleanup(psql, "alter server sim options (drop webhook_retention)")
        self.assertEqual(scalar("select extract(epoch from webhook_retention) "
                                "from whoop_internal.sync_settings('sim')"), "2419200.000000")
        psql("call whoop.apply_webhooks()")
        self.assertEqual(self.kept([recent, dead, queued]), [False, True, True])

    def test_one_call_deletes_at_most_10000_per_server(self):
        psql("insert into whoop.webhook_events (server_name, trace_id, user_id, event_type, record_id, "
             "signed_at, received_at, status, applied_at, outcome) "
             "select 'sim', 'old-' || i, %d, 'workout.deleted', gen_random_uuid(), now() - interval '40 days', "
             "now() - interval '40 days', 'applied', now() - interval '40 days' + i * interval '1 ms', "
             "'not stored' from generate_series(1, 10002) i" % int(self.users[0]))
        psql("call whoop.apply_webhooks()")
        # the oldest go first
        self.assertEqual(rows("select count(*), min(trace_id) from whoop.webhook_events "
                              "where trace_id like 'old-%'"), [["2", "old-10001"]])
        psql("call whoop.apply_webhooks()")
        self.assertEqual(scalar("select count(*) from whoop.webhook_events where trace_id like 'old-%'"), "0")

    def test_the_option_is_checked(self):
        for value, state, text in (("12 hours", "HV024", '"webhook_retention" must be at least 1 day'),
                                   ("-1 day", "HV024", "must not be negative"),
                                   ("forever", "22007", 'option "webhook_retention"')):
            with self.subTest(value=value):
                with self.assertRaises(SQLError) as cm:
                    psql("alter server sim options (add webhook_retention '%s')" % value)
                self.assertEqual(cm.exception.sqlstate, state, cm.exception.output)
                self.assertIn(text, cm.exception.output)

    def test_the_status_view_reads_no_event_outside_its_indexes(self):
        plan = psql("set enable_seqscan = off; explain select * from whoop.webhook_status")
        self.assertNotIn("Seq Scan on webhook_events", plan)


class RetryTest(WebhookSuite):
    DB = "webhook_retry"

    def test_backoff_dead_letter_and_requeue(self):
        w = self.record("workout", 0, 0)
        # WHOOP answers 400 to every fetch of it until the faults run out
        self.sim.fault(path=MEMBER_PATH["workout"] % w["id"], kind="status", status=400, count=100)
        trace = self.deliver(self.users[0], "workout.updated", w["id"])
        psql("call whoop.apply_webhooks()")
        e = event(trace)
        self.assertEqual((e["status"], e["attempts"], e["waiting"]), ("queued", 1, True))
        self.assertIn("400", e["last_error"])
        self.assertEqual(scalar("select next_attempt_at > now() + interval '20 seconds' and "
                                "next_attempt_at <= now() + interval '30 seconds' "
                                "from whoop.webhook_events where trace_id = '%s'" % trace), "t")
        # not due yet: another call leaves it alone
        self.assertEqual(apply_and_count(), 0)
        self.assertEqual(event(trace)["attempts"], 1)
        waits = []
        for attempt in range(2, 9):
            psql("update whoop.webhook_events set next_attempt_at = now() where trace_id = '%s'" % trace)
            out = harness.psql_full("call whoop.apply_webhooks()")
            if attempt < 8:
                waits.append(float(scalar(
                    "select extract(epoch from next_attempt_at - now()) from whoop.webhook_events "
                    "where trace_id = '%s'" % trace)))
        # the wait doubles: 60 s, 120 s, ... 32 min
        for n, wait in enumerate(waits):
            self.assertLessEqual(wait, 30 * 2 ** (n + 1))
            self.assertGreater(wait, 30 * 2 ** (n + 1) - 10)
        e = event(trace)
        self.assertEqual((e["status"], e["attempts"], e["waiting"]), ("dead", 8, False))
        self.assertIn("WARNING:  whoop.apply_webhooks: 1 webhook events failed 8 times and are dead letters", out)
        self.assertIn("whoop.requeue_webhooks()", out)
        self.assertEqual(scalar("select dead from whoop.webhook_status"), "1")
        # fixed: queued again, applied
        self.sim.reset()
        self.assertEqual(scalar("select whoop.requeue_webhooks()"), "1")
        self.assertEqual(scalar("select whoop.requeue_webhooks()"), "0")
        psql("call whoop.apply_webhooks()")
        e = event(trace)
        self.assertEqual((e["status"], e["outcome"], e["attempts"]), ("applied", "upserted", 0))

    def test_one_failing_account_does_not_hold_up_another(self):
        bad = self.record("sleep", 0, 2)
        good = self.record("sleep", 1, 2)
        self.sim.fault(path=MEMBER_PATH["sleep"] % bad["id"], kind="status", status=400, count=1)
        t_bad = self.deliver(self.users[0], "sleep.updated", bad["id"])
        t_good = self.deliver(self.users[1], "sleep.updated", good["id"])
        psql("call whoop.apply_webhooks()")
        self.assertEqual(event(t_bad)["status"], "queued")
        self.assertEqual(event(t_good)["status"], "applied")

    def test_events_of_a_disconnected_account_are_dead_at_once(self):
        athlete = self.sim.accounts()["athletes"][2]
        user = int(scalar("select whoop.add_account('sim', '%s')" % athlete["refresh_token"]))
        trace = self.deliver(user, "workout.updated", str(uuid.uuid4()))
        psql("select whoop.disconnect_account('sim', %d)" % user)
        e = event(trace)
        self.assertEqual(e["status"], "dead")
        self.assertIn("was disconnected", e["last_error"])
        self.assertEqual(scalar("select whoop.requeue_webhooks()"), "0")   # no account to apply it with

    def test_arguments(self):
        for sql, state in (("call whoop.apply_webhooks(max_events => 0)", "22023"),
                           ("call whoop.apply_webhooks(server => 'nosuch')", "42704"),
                           ("begin; call whoop.apply_webhooks(); commit;", "25001")):
            with self.subTest(sql=sql):
                with self.assertRaises(SQLError) as cm:
                    psql(sql)
                self.assertEqual(cm.exception.sqlstate, state, cm.exception.output)

    def test_max_events_bounds_a_call(self):
        traces = [self.deliver(self.users[1], "workout.deleted", str(uuid.uuid4())) for _ in range(3)]
        psql("call whoop.apply_webhooks(max_events => 2)")
        self.assertEqual([event(t)["status"] for t in traces], ["applied", "applied", "queued"])
        psql("call whoop.apply_webhooks()")
        self.assertEqual(event(traces[2])["status"], "applied")


OTHER = "whoop_test_apply_other"


class ConcurrencyTest(WebhookSuite):
    DB = "webhook_concurrency"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        psql("drop role if exists %s; create role %s login" % (OTHER, OTHER), dbname="postgres")
        cls.addClassCleanup(psql, "drop role if exists %s" % OTHER, dbname="postgres")
        psql("grant usage on schema whoop to %s; "
             "grant execute on procedure whoop.apply_webhooks(name, integer, bigint) to %s; "
             "grant execute on function whoop.requeue_webhooks(name) to %s; "
             "grant select, update on whoop.webhook_events to %s" % ((OTHER,) * 4))
        cls.addClassCleanup(psql, "drop owned by %s" % OTHER)

    def test_two_appliers_apply_every_event_exactly_once(self):
        workouts = [self.record("workout", u, i) for u in (0, 1) for i in range(4)]
        traces = [self.deliver(self.users[u], "workout.updated", w["id"])
                  for w, u in zip(workouts, [0] * 4 + [1] * 4)]
        # every fetch is slow, so the two calls overlap
        self.sim.fault(path="/v2/activity/workout/{id}", kind="delay", delay_ms=500, count=8)
        procs = [subprocess.Popen(["psql", "-X", "-q", "-d", self.DB, "-v", "ON_ERROR_STOP=1", "-c",
                                   "call whoop.apply_webhooks(max_events => 4)", "-c",
                                   "call whoop.apply_webhooks()"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, err)
        self.assertEqual({event(t)["status"] for t in traces}, {"applied"},
                         [event(t) for t in traces])
        self.assertEqual({event(t)["outcome"] for t in traces}, {"upserted"})
        fetched = [r["path"].rsplit("/", 1)[-1] for r in self.sim.request_log()
                   if "/v2/activity/workout/" in r["path"]]
        self.assertEqual(sorted(fetched), sorted(w["id"] for w in workouts))

    def test_events_of_accounts_the_role_may_not_use_are_left_alone(self):
        trace = self.deliver(self.users[0], "workout.deleted", str(uuid.uuid4()))
        psql("call whoop.apply_webhooks()", user=OTHER)
        self.assertEqual(event(trace)["status"], "queued")
        psql("update whoop.webhook_events set status = 'dead' where trace_id = '%s'" % trace)
        self.assertEqual(psql("select whoop.requeue_webhooks()", user=OTHER).strip(), "0")
        self.assertEqual(scalar("select whoop.requeue_webhooks()"), "1")
        psql("call whoop.apply_webhooks()")
        self.assertEqual(event(trace)["status"], "applied")

    def test_operations_are_not_public(self):
        self.assertEqual(rows(
            "select p.oid::regprocedure, has_function_privilege('public', p.oid, 'execute') from pg_proc p "
            "where p.oid in ('whoop.apply_webhooks(name, integer, bigint)'::regprocedure, "
            "'whoop.requeue_webhooks(name)'::regprocedure, 'whoop.schedule_webhooks(text)'::regprocedure, "
            "'whoop.unschedule_webhooks()'::regprocedure) order by 1::text"),
            [["whoop.apply_webhooks(name,integer,bigint)", "f"], ["whoop.requeue_webhooks(name)", "f"],
             ["whoop.schedule_webhooks(text)", "f"], ["whoop.unschedule_webhooks()", "f"]])
        self.assertEqual(scalar("select has_table_privilege('whoop_reader', 'whoop.webhook_status', 'select')"),
                         "f")


class PipelineTest(WebhookSuite):
    DB = "webhook_pipeline"
    JOB = "whoop_webhooks_webhook_pipeline"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        psql("create extension if not exists pg_cron", dbname="postgres")

    def tearDown(self):
        psql("select cron.unschedule(jobid) from cron.job where database = '%s'" % self.DB,
             dbname="postgres")

    def jobs(self):
        return rows("select jobname, schedule, command, username from cron.job where database = '%s'"
                    % self.DB, dbname="postgres")

    def test_pipeline_applies_events_before_the_sync(self):
        w = self.record("workout", 0, 0)
        trace = self.deliver(self.users[0], "workout.updated", w["id"])
        psql("call whoop.run_pipeline()")
        run = scalar("select max(run_id) from whoop.run_log where step = 'pipeline'")
        steps = {r[0]: r[1:] for r in rows(
            "select step, status, row_count, detail, id from whoop.run_log where run_id = %s" % run)}
        self.assertEqual(set(steps), {"pipeline", "webhooks", "sync", "refresh", "quality"})
        self.assertEqual(steps["webhooks"][:3], ["ok", "1", "1 webhook events applied, 0 failed and "
                                                 "queued for a retry, 0 dead letters"])
        self.assertLess(int(steps["webhooks"][3]), int(steps["sync"][3]))
        self.assertTrue(steps["pipeline"][2].startswith("webhooks ok, sync ok, refresh ok, quality "),
                        steps["pipeline"])
        self.assertEqual(event(trace)["run_id"], run)
        # a failing fetch fails the step, and the run goes on
        bad = self.record("workout", 1, 0)
        self.sim.fault(path=MEMBER_PATH["workout"] % bad["id"], kind="status", status=400, count=1)
        self.deliver(self.users[1], "workout.updated", bad["id"])
        psql("call whoop.run_pipeline()")
        run = scalar("select max(run_id) from whoop.run_log where step = 'pipeline'")
        steps = {r[0]: r[1:] for r in rows(
            "select step, status, row_count, coalesce(error, '') from whoop.run_log where run_id = %s" % run)}
        self.assertEqual(steps["webhooks"][:2], ["failed", "0"])
        self.assertIn("%d" % self.users[1], steps["webhooks"][2])
        self.assertEqual(steps["sync"][0], "ok")

    def test_schedule_webhooks_job_runs_and_blocks_drop_extension(self):
        psql("create extension if not exists dblink")
        first = scalar("select whoop.schedule_webhooks()")
        self.assertEqual(scalar("select whoop.schedule_webhooks()"), first)
        self.assertEqual(self.jobs(), [[self.JOB, "* * * * *", "CALL whoop.apply_webhooks()", "postgres"]])
        with self.assertRaises(SQLError) as cm:
            psql("drop extension whoop_fdw cascade")
        self.assertEqual(cm.exception.sqlstate, "2BP01")
        self.assertIn(self.JOB, cm.exception.output)
        self.assertIn("HINT:  Run SELECT whoop.unschedule_webhooks(); first", cm.exception.output)
        # the job applies what arrives
        trace = self.deliver(self.users[1], "workout.deleted", str(uuid.uuid4()))
        self.assertTrue(harness.wait_until(lambda: event(trace)["status"] == "applied",
                                           timeout=150, interval=2), "no job run within 150 s")
        self.assertEqual(scalar("select whoop.unschedule_webhooks()"), "t")
        self.assertEqual(scalar("select whoop.unschedule_webhooks()"), "f")
        self.assertEqual(self.jobs(), [])


class CrashTest(unittest.TestCase):
    """In a cluster of its own: the postmaster restarts every backend after a kill -9."""

    DB = "webhook_crash"

    @classmethod
    def setUpClass(cls):
        # synchronous_commit on, the production default: a commit survives the crash
        cls.cluster = harness.Cluster(settings={"synchronous_commit": "on"}).init().start()
        cls.addClassCleanup(cls.cluster.destroy)
        cls.sim = harness.Simulator(*SIM_ARGS).start()
        cls.addClassCleanup(cls.sim.stop)
        cls.env = dict(cls.cluster.env(), PGDATABASE=cls.DB)
        psql("create database %s" % cls.DB, extra_env=cls.env, dbname="postgres")
        psql("create extension whoop_fdw", extra_env=cls.env)
        saved = {k: os.environ.get(k) for k in list(cls.env) + ["WHOOP_TEST_DB"]}
        os.environ.update(cls.env)
        os.environ["WHOOP_TEST_DB"] = cls.DB
        try:
            cls.users = harness.link_simulator(cls.sim, import_into=None, athletes=2)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def sql(self, query, **kw):
        return psql(query, extra_env=self.env, dbname=self.DB, **kw)

    def test_kill_9_mid_fetch_loses_nothing(self):
        secret = self.sim.accounts()["client_secret"]
        saved = os.environ.get("WHOOP_TEST_DB")
        os.environ["WHOOP_TEST_DB"] = self.DB
        self.addCleanup(lambda: os.environ.__setitem__("WHOOP_TEST_DB", saved) if saved
                        else os.environ.pop("WHOOP_TEST_DB", None))
        traces = []
        for i, user in enumerate(self.users):
            for w in self.sim.records("workout", user)[:3]:
                traces.append(deliver(secret, user, "workout.updated", w["id"], env=self.env))
            traces.append(deliver(secret, user, "workout.deleted", str(uuid.uuid4()), env=self.env))
        # the first account's batch commits; the second's fetch is held
        self.sim.fault(path="/v2/activity/workout/{id}", kind="delay", delay_ms=60000, after=3, count=1)
        proc = subprocess.Popen(["psql", "-X", "-q", "-d", self.DB, "-c", "call whoop.apply_webhooks()"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, **self.env))
        self.assertTrue(harness.wait_until(
            lambda: any(r.get("fault") == "delay" for r in self.sim.request_log()), timeout=60),
            "the applier never reached the held fetch")
        pid = int(self.sql("select pid from pg_stat_activity where query ilike 'call whoop.apply_webhooks%' "
                           "and state = 'active'").strip())
        os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        self.assertNotEqual(proc.returncode, 0)

        def up():
            try:
                return self.sql("select 1", timeout=10).strip() == "1"
            except Exception:
                return False
        self.assertTrue(harness.wait_until(up, timeout=90), "the cluster did not come back")
        with open(self.cluster.log, errors="replace") as f:
            self.assertIn("was terminated by signal 9", f.read())
        statuses = dict(rows("select trace_id, status from whoop.webhook_events", extra_env=self.env))
        self.assertEqual(sorted(statuses.values()), ["applied"] * 4 + ["queued"] * 4,
                         [(r["path"], r.get("fault")) for r in self.sim.request_log()])
        self.sim.reset()
        self.sql("call whoop.apply_webhooks()")
        self.assertEqual({event(t, env=self.env)["status"] for t in traces}, {"applied"})
        self.assertEqual({event(t, env=self.env)["attempts"] for t in traces}, {0})
        # the second account's three workouts were fetched once more, nothing else
        self.assertEqual(len([r for r in self.sim.request_log() if "/v2/activity/workout/" in r["path"]]), 3)
        self.assertEqual(self.sql("select count(*) from whoop.raw_workout").strip(), "6")


if __name__ == "__main__":
    unittest.main()
