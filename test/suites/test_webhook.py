"""test_webhook.py -- whoop.receive_webhook(): a WHOOP webhook checked and queued.

A simulator athlete is linked to server "sim" (harness.link_simulator: a
real account and user mapping with the simulator's client secret); the
tests sign bodies the way WHOOP does -- base64(HMAC-SHA256(client secret,
X-WHOOP-Signature-Timestamp || raw body)) -- and call the function as a
login role that is only granted whoop_webhook, as whoop-webhookd does.

  ReceiveTest  a signed event is queued once (a repeated trace_id is a
               duplicate), every event type is accepted, the stored row is
               what the body said
  RefusalTest  every refusal -- unsigned, forged, altered, replayed, from the
               future, unknown member, malformed, oversized -- has its own
               SQLSTATE, stores nothing, never says which part of a
               signature was wrong, and leaves neither the signature nor the
               body in the server log
  PrivilegeTest  the function is SECURITY DEFINER with a pinned search_path;
               only whoop_webhook (and the owner) may call it; whoop_webhook
               reads neither the queue nor the tokens
"""

import base64
import hashlib
import hmac
import json
import os
import time
import unittest
import uuid

import harness
from harness import psql, scalar, SQLError

DB = "webhook"
RECEIVER = "whoop_test_webhook_rx"       # the login role a receiver would use
OUTSIDER = "whoop_test_webhook_outsider"
SIM = None
SECRET = None
USER_IDS = []


def sign(secret, timestamp, body):
    """sign returns X-WHOOP-Signature for TIMESTAMP (text) and BODY (bytes)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def now_ms(offset_s=0):
    return str(int((time.time() + offset_s) * 1000))


def event_body(user_id, kind="sleep.updated", record_id=None, trace_id=None, **extra):
    """event_body is a body as WHOOP posts it (compact JSON, bytes)."""
    body = {"user_id": user_id, "id": record_id or str(uuid.uuid4()), "type": kind,
            "trace_id": trace_id or str(uuid.uuid4())}
    body.update(extra)
    return json.dumps(body, separators=(",", ":")).encode()


def receive(signature, timestamp, body, server="sim", user=RECEIVER):
    """receive calls whoop.receive_webhook as USER; NULL for a None argument."""
    def arg(name, value):
        return "null" if value is None else ":'%s'" % name
    variables = {"server": server}
    if signature is not None:
        variables["sig"] = signature
    if timestamp is not None:
        variables["ts"] = timestamp
    variables["body"] = base64.b64encode(body).decode()
    return scalar("select whoop.receive_webhook(:'server', %s, %s, decode(:'body', 'base64'))"
                  % (arg("sig", signature), arg("ts", timestamp)),
                  user=user, variables=variables)


def refusal(signature, timestamp, body, **kw):
    """refusal calls receive() where it must fail and returns the SQLError."""
    try:
        receive(signature, timestamp, body, **kw)
    except SQLError as e:
        return e
    raise AssertionError("the delivery was accepted")


def queued(where="true"):
    return int(scalar("select count(*) from whoop.webhook_events where %s" % where))


def setUpModule():
    global SIM, SECRET, USER_IDS
    harness.fresh_database(DB)
    for role, grant in ((RECEIVER, " in role whoop_webhook"), (OUTSIDER, "")):
        psql("drop role if exists %s; create role %s login%s" % (role, role, grant),
             dbname="postgres")
    SIM = harness.Simulator("--athletes", "2", "--days", "10", "--quiet").start()
    USER_IDS = harness.link_simulator(SIM, import_into=None)
    SECRET = SIM.accounts()["client_secret"]


def tearDownModule():
    if SIM:
        SIM.stop()
    psql("drop database if exists %s with (force)" % DB, dbname="postgres")
    for role in (RECEIVER, OUTSIDER):
        psql("drop role if exists %s" % role, dbname="postgres")


class ReceiveTest(unittest.TestCase):

    def test_signed_event_is_queued_once(self):
        trace = str(uuid.uuid4())
        record = str(uuid.uuid4())
        body = event_body(USER_IDS[0], "workout.updated", record, trace)
        ts = now_ms()
        self.assertEqual(receive(sign(SECRET, ts, body), ts, body), "queued")
        row = harness.rows("select server_name, user_id, event_type, record_id, status, "
                           "extract(epoch from signed_at) * 1000 = %s "
                           "from whoop.webhook_events where trace_id = '%s'" % (ts, trace))
        self.assertEqual(row, [["sim", str(USER_IDS[0]), "workout.updated", record, "queued", "t"]])
        # WHOOP's retry of the same delivery (new timestamp, same trace_id)
        ts2 = now_ms()
        self.assertEqual(receive(sign(SECRET, ts2, body), ts2, body), "duplicate")
        self.assertEqual(queued("trace_id = '%s'" % trace), 1)

    def test_every_event_type_is_accepted(self):
        for kind in ("workout.updated", "workout.deleted", "sleep.updated", "sleep.deleted",
                     "recovery.updated", "recovery.deleted"):
            with self.subTest(kind=kind):
                body = event_body(USER_IDS[1], kind)
                ts = now_ms()
                self.assertEqual(receive(sign(SECRET, ts, body), ts, body), "queued")
        self.assertEqual(queued("user_id = %d and event_type like 'recovery.%%'" % USER_IDS[1]), 2)

    def test_whitespace_and_member_order_as_sent_are_accepted(self):
        # the signature covers the raw bytes: the body is never re-serialized
        trace = str(uuid.uuid4())
        body = ('{\n  "trace_id": "%s",\n  "type": "sleep.deleted",\n  "id": "%s",\n'
                '  "user_id": %d\n}\n' % (trace, str(uuid.uuid4()).upper(), USER_IDS[0])).encode()
        ts = now_ms()
        self.assertEqual(receive(sign(SECRET, ts, body), ts, body), "queued")
        self.assertEqual(queued("trace_id = '%s' and record_id::text = lower(record_id::text)"
                                % trace), 1)

    def test_timestamps_inside_the_window_either_way_are_accepted(self):
        for offset in (-290, 290):
            with self.subTest(offset=offset):
                body = event_body(USER_IDS[0])
                ts = now_ms(offset)
                self.assertEqual(receive(sign(SECRET, ts, body), ts, body), "queued")


class RefusalTest(unittest.TestCase):

    def assertRefused(self, sqlstate, signature, timestamp, body, **kw):
        before = queued()
        error = refusal(signature, timestamp, body, **kw)
        self.assertEqual(error.sqlstate, sqlstate, error.output)
        self.assertEqual(queued(), before, "a refused delivery stored a row")
        return error

    def test_unsigned(self):
        body = event_body(USER_IDS[0])
        ts = now_ms()
        self.assertRefused("28000", None, ts, body)
        self.assertRefused("28000", "", ts, body)
        self.assertRefused("28000", sign(SECRET, ts, body), None, body)
        self.assertRefused("28000", sign(SECRET, "", body), "", body)

    def test_forged_altered_or_re_timed_signature_refused_alike(self):
        body = event_body(USER_IDS[0])
        ts = now_ms()
        good = sign(SECRET, ts, body)
        other_ts = str(int(ts) + 1)
        cases = {
            "another secret": (sign(SECRET + "x", ts, body), ts, body),
            "altered body": (good, ts, body.replace(b"sleep.updated", b"sleep.deleted")),
            "another timestamp": (good, other_ts, body),
            "not base64": ("%" * 44, ts, body),
            "hex, not base64": (hmac.new(SECRET.encode(), ts.encode() + body,
                                         hashlib.sha256).hexdigest(), ts, body),
            "unpadded": (good.rstrip("="), ts, body),
            "one bit off": (good[:-2] + ("A" if good[-2] != "A" else "B") + "=", ts, body),
        }
        messages = set()
        for name, (signature, stamp, payload) in cases.items():
            with self.subTest(case=name):
                error = self.assertRefused("28P01", signature, stamp, payload)
                messages.add(error.output.split("\n")[0].split(":", 2)[-1].strip())
                self.assertNotIn(good, error.output)
        # the same words whatever was wrong: nothing says which part
        self.assertEqual(messages, {"WHOOP webhook signature does not match"})

    def test_replayed_or_future_timestamp(self):
        for offset in (-310, -86400, 310):
            with self.subTest(offset=offset):
                body = event_body(USER_IDS[0])
                ts = now_ms(offset)
                self.assertRefused("22008", sign(SECRET, ts, body), ts, body)

    def test_timestamp_that_is_not_milliseconds(self):
        body = event_body(USER_IDS[0])
        for ts in ("abc", "1.5", " %s" % now_ms(), "-%s" % now_ms(), "2026-06-30T12:00:00Z",
                   "1" * 16):
            with self.subTest(ts=ts):
                self.assertRefused("22007", sign(SECRET, ts, body), ts, body)

    def test_unknown_member(self):
        body = event_body(424242)
        ts = now_ms()
        error = self.assertRefused("42704", sign(SECRET, ts, body), ts, body)
        self.assertIn("not linked", error.output)

    def test_malformed_bodies(self):
        uid = USER_IDS[0]
        good = json.loads(event_body(uid))
        cases = {
            "not JSON": b"user_id=1&type=sleep.updated",
            "empty": b"",
            "cut": event_body(uid)[:-3],
            "trailing data": event_body(uid) + b"{}",
            "an array": b"[]",
            "extra member": event_body(uid, extra=1),
            "missing trace_id": json.dumps({k: v for k, v in good.items()
                                            if k != "trace_id"}).encode(),
            "user_id as string": json.dumps(dict(good, user_id=str(uid))).encode(),
            "user_id zero": json.dumps(dict(good, user_id=0)).encode(),
            "user_id negative": json.dumps(dict(good, user_id=-uid)).encode(),
            "user_id fraction": json.dumps(dict(good, user_id=uid + 0.5)).encode(),
            "id not a uuid": json.dumps(dict(good, id="12345")).encode(),
            "id with braces": json.dumps(dict(good, id="{%s}" % good["id"])).encode(),
            "unknown type": json.dumps(dict(good, type="cycle.updated")).encode(),
            "type in upper case": json.dumps(dict(good, type="SLEEP.UPDATED")).encode(),
            "empty trace_id": json.dumps(dict(good, trace_id="")).encode(),
            "trace_id with a space": json.dumps(dict(good, trace_id="a b")).encode(),
            "long trace_id": json.dumps(dict(good, trace_id="t" * 129)).encode(),
            "not UTF-8": event_body(uid).replace(b"sleep", b"sl\xffep"),
            "a page": json.dumps({"records": [good]}).encode(),
        }
        for name, body in cases.items():
            with self.subTest(case=name):
                ts = now_ms()
                self.assertRefused("22P02", sign(SECRET, ts, body), ts, body)

    def test_oversized_body(self):
        body = event_body(USER_IDS[0], padding="x" * 4096)
        ts = now_ms()
        error = self.assertRefused("54000", sign(SECRET, ts, body), ts, body)
        self.assertIn("too large", error.output)

    def test_refusals_leave_no_signature_or_body_in_the_server_log(self):
        log_path = os.environ.get("WHOOP_SERVER_LOG")
        if not log_path:
            self.skipTest("no server log (WHOOP_SERVER_LOG) to read")
        marker = "trace-%s" % uuid.uuid4().hex
        body = event_body(USER_IDS[0], trace_id=marker)
        ts = now_ms()
        signature = sign(SECRET + "forged", ts, body)
        self.assertRefused("28P01", signature, ts, body)
        self.assertRefused("22P02", signature, ts, body + b"x")
        psql("select pg_catalog.pg_sleep(0)")     # a round trip: the log is written
        with open(log_path, errors="replace") as f:
            log = f.read()
        self.assertIn("WHOOP webhook signature does not match", log)
        self.assertNotIn(signature, log)
        self.assertNotIn(base64.b64encode(body).decode(), log)
        self.assertNotIn(marker, log)
        self.assertNotIn(SECRET, log)


class PrivilegeTest(unittest.TestCase):

    def test_security_definer_with_pinned_search_path(self):
        self.assertEqual(harness.rows(
            "select prosecdef, proconfig::text from pg_proc "
            "where oid = 'whoop.receive_webhook(name, text, text, bytea)'::regprocedure"),
            [["t", "{\"search_path=pg_catalog, pg_temp\"}"]])

    def test_only_whoop_webhook_may_call_it(self):
        self.assertEqual(scalar("select has_function_privilege('public', "
                                "'whoop.receive_webhook(name, text, text, bytea)', 'execute')"), "f")
        body = event_body(USER_IDS[0])
        ts = now_ms()
        error = refusal(sign(SECRET, ts, body), ts, body, user=OUTSIDER)
        self.assertEqual(error.sqlstate, "42501", error.output)

    def test_whoop_webhook_reads_neither_the_queue_nor_the_tokens(self):
        for relation in ("whoop.webhook_events", "whoop_internal.account"):
            with self.subTest(relation=relation):
                with self.assertRaises(SQLError) as caught:
                    psql("select count(*) from %s" % relation, user=RECEIVER)
                self.assertEqual(caught.exception.sqlstate, "42501")

    def test_queue_is_kept_by_pg_dump(self):
        self.assertEqual(harness.rows(
            "select c::regclass::text from pg_extension x, unnest(x.extconfig) c "
            "where x.extname = 'whoop_fdw' and c::regclass::text like 'whoop.webhook%' "
            "order by 1"), [["whoop.webhook_events"], ["whoop.webhook_events_id_seq"]])


if __name__ == "__main__":
    unittest.main()
