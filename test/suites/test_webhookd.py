"""test_webhookd.py -- whoop-webhookd, the WHOOP webhook receiver, over real HTTPS.

The suite runs its own cluster (it restarts it), links a simulator athlete
to server "sim" (harness.link_simulator: a real account and user mapping
with the simulator's client secret), makes a self-signed certificate with
openssl, and starts the receiver built by make (webhookd/whoop-webhookd)
with HTTPS, logging in as a role that is only granted whoop_webhook.  A
Python client signs bodies as WHOOP does and verifies the certificate.

  ReceiverTest   an accepted event is stored once (a resend is a
                 duplicate); forged, replayed, unsigned, truncated,
                 oversized (by Content-Length and chunked), wrong path and
                 wrong method requests are refused and store nothing; a
                 request that trickles in (slowloris: headers or body) is
                 cut off while others are served; one log line per request,
                 without signatures or bodies
  FloodTest      1,000 genuine events and 100 forged ones from 32 clients at
                 once: every genuine one stored once, no forged one, the
                 receiver's threads bounded by max_connections
  FailureTest    the database restarted mid-stream: 503s, and resending what
                 was not answered 2XX (as WHOOP's retries would) delivers
                 everything; kill -9 of the receiver mid-stream loses nothing
                 that was answered 2XX; a database that is down at start
                 means 503, not a crash

Nothing is asserted about time: waits are bounded loops on a condition.
Each test prints what it measured (requests, statuses, latencies).
"""

import concurrent.futures
import http.client
import os
import signal
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

import harness
from harness import psql, scalar
from test_webhook import event_body, now_ms, sign

ROOT = harness.ROOT
BINARY = os.path.join(ROOT, "webhookd", "whoop-webhookd")
DB = "webhookd"
ROLE = "whoop_test_webhookd"
MAX_CONNECTIONS = 48
REQUEST_TIMEOUT = 3

CLUSTER = None
SIM = None
SECRET = None
USER_ID = None
TMP = None
SAVED_ENV = None


def setUpModule():
    global CLUSTER, SIM, SECRET, USER_ID, TMP, SAVED_ENV
    if not os.access(BINARY, os.X_OK):
        raise unittest.SkipTest("%s is not built (make builds it)" % BINARY)
    TMP = tempfile.mkdtemp(prefix="whoop_webhookd.")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", os.path.join(TMP, "key.pem"),
                    "-out", os.path.join(TMP, "cert.pem")],
                   check=True, capture_output=True)
    SAVED_ENV = dict(os.environ)
    CLUSTER = harness.Cluster().init().start()
    os.environ.update(CLUSTER.env())
    harness.fresh_database(DB)
    psql("create role %s login in role whoop_webhook" % ROLE, dbname="postgres")
    SIM = harness.Simulator("--athletes", "1", "--days", "10", "--quiet").start()
    USER_ID = harness.link_simulator(SIM, import_into=None)[0]
    SECRET = SIM.accounts()["client_secret"]


def tearDownModule():
    if SIM:
        SIM.stop()
    if CLUSTER:
        CLUSTER.destroy()
    if SAVED_ENV is not None:
        os.environ.clear()
        os.environ.update(SAVED_ENV)
    if TMP:
        subprocess.run(["rm", "-rf", TMP])


class Receiver:
    """A running whoop-webhookd with its configuration and log file."""

    def __init__(self, name, conninfo=None, **settings):
        self.port = harness.free_port()
        self.log = os.path.join(TMP, name + ".log")
        self.config = os.path.join(TMP, name + ".conf")
        conf = {
            "listen_address": "127.0.0.1",
            "port": self.port,
            "tls_cert": os.path.join(TMP, "cert.pem"),
            "tls_key": os.path.join(TMP, "key.pem"),
            "conninfo": conninfo or "host=127.0.0.1 port=%d dbname=%s user=%s"
                        % (CLUSTER.port, DB, ROLE),
            "servers": "sim",
            "max_connections": MAX_CONNECTIONS,
            "request_timeout": REQUEST_TIMEOUT,
            "db_connections": 4,
        }
        conf.update(settings)
        with open(self.config, "w") as f:
            f.write("# written by test_webhookd.py\n")
            for key, value in conf.items():
                f.write("%s = %s\n" % (key, value))
        self.proc = None
        self.context = ssl.create_default_context(cafile=os.path.join(TMP, "cert.pem"))

    def start(self):
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([BINARY, self.config], stderr=log,
                                         stdout=subprocess.DEVNULL)
        started = harness.wait_until(lambda: "listening on" in self.read_log()
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
        with open(self.log, errors="replace") as f:
            return f.read()

    def threads(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        return 0

    def post(self, body, signature=None, timestamp=None, path="/whoop/sim", method="POST",
             headers=None, chunked=False):
        """post sends one request; returns (status, body text), or (None, error)
        when no HTTP answer came (connection refused, reset or closed)."""
        hdrs = {"Content-Type": "application/json"}
        if signature is not None:
            hdrs["X-WHOOP-Signature"] = signature
        if timestamp is not None:
            hdrs["X-WHOOP-Signature-Timestamp"] = timestamp
        hdrs.update(headers or {})
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context,
                                           timeout=60)
        try:
            if chunked:
                conn.request(method, path, body=iter([body[i:i + 1000]
                                                      for i in range(0, len(body), 1000)]),
                             headers=hdrs, encode_chunked=True)
            else:
                conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as e:
            return None, repr(e)
        finally:
            conn.close()

    def deliver(self, body, attempts=40):
        """deliver posts a signed body until it is answered 2XX, as WHOOP retries
        (here at once, at most ATTEMPTS times); returns every status seen."""
        statuses = []
        for _ in range(attempts):
            ts = now_ms()
            status, _ = self.post(body, sign(SECRET, ts, body), ts)
            statuses.append(status)
            if status is not None and 200 <= status < 300:
                break
            time.sleep(0.05)
        return statuses


def stored(trace_ids):
    """stored counts queued events per trace_id among TRACE_IDS."""
    if not trace_ids:
        return {}
    values = ",".join("'%s'" % t for t in trace_ids)
    return dict((r[0], int(r[1])) for r in harness.rows(
        "select trace_id, count(*) from whoop.webhook_events where trace_id in (%s) "
        "group by trace_id" % values))


def total():
    return int(scalar("select count(*) from whoop.webhook_events"))


class ReceiverTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.rx = Receiver("receiver").start()

    @classmethod
    def tearDownClass(cls):
        cls.rx.stop()

    def assertNothingStored(self, before):
        self.assertEqual(total(), before, "a refused request stored an event")

    def test_accepted_event_is_stored_once(self):
        trace = str(uuid.uuid4())
        body = event_body(USER_ID, "sleep.updated", trace_id=trace)
        latencies = []
        for expected in ("queued", "duplicate", "duplicate"):
            ts = now_ms()
            t0 = time.monotonic()
            status, text = self.rx.post(body, sign(SECRET, ts, body), ts)
            latencies.append((time.monotonic() - t0) * 1000)
            self.assertEqual((status, text.strip()), (200, expected))
        self.assertEqual(stored([trace]), {trace: 1})
        print("\n    accepted request over HTTPS (new TLS connection each): %s ms"
              % ", ".join("%.1f" % x for x in latencies), end=" ")

    def test_refused_requests_store_nothing(self):
        before = total()
        body = event_body(USER_ID)
        ts = now_ms()
        good = sign(SECRET, ts, body)
        stale = now_ms(-600)
        cut = body[:len(body) // 2]
        cases = [
            ("forged", 401, dict(body=body, signature=sign("not the secret", ts, body),
                                 timestamp=ts)),
            ("altered", 401, dict(body=body.replace(b"sleep.updated", b"sleep.deleted"),
                                  signature=good, timestamp=ts)),
            ("replayed", 401, dict(body=body, signature=sign(SECRET, stale, body),
                                   timestamp=stale)),
            ("unsigned", 401, dict(body=body)),
            ("unknown member", 401, dict(body=event_body(987654321),
                                         signature=sign(SECRET, ts, event_body(987654321)),
                                         timestamp=ts)),
            ("truncated", 400, dict(body=cut, signature=good, timestamp=ts)),
            ("malformed", 400, dict(body=b"{}", signature=sign(SECRET, ts, b"{}"), timestamp=ts)),
            ("oversized", 413, dict(body=b"x" * 5000, signature=good, timestamp=ts)),
            ("wrong server", 404, dict(body=body, signature=good, timestamp=ts,
                                       path="/whoop/other")),
            ("wrong path", 404, dict(body=body, signature=good, timestamp=ts, path="/")),
            ("GET", 405, dict(body=None, method="GET")),
        ]
        for name, expected, kwargs in cases:
            with self.subTest(case=name):
                status, text = self.rx.post(**kwargs)
                self.assertEqual(status, expected, text)
                # the answer says nothing about why: the log does
                self.assertNotIn("signature", text.lower())
        self.assertNothingStored(before)

    def test_oversized_chunked_body_is_refused(self):
        before = total()
        status, text = self.rx.post(b"x" * 20000, "sig", now_ms(), chunked=True)
        # 413, or the connection closed before the rest was read
        self.assertIn(status, (413, None), text)
        self.assertNothingStored(before)

    def test_body_cut_by_the_client_is_not_stored(self):
        before = total()
        body = event_body(USER_ID)
        ts = now_ms()
        raw = socket.create_connection(("127.0.0.1", self.rx.port))
        conn = self.rx.context.wrap_socket(raw, server_hostname="127.0.0.1")
        conn.sendall(("POST /whoop/sim HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                      "X-WHOOP-Signature: %s\r\nX-WHOOP-Signature-Timestamp: %s\r\n\r\n"
                      % (len(body), sign(SECRET, ts, body), ts)).encode() + body[:20])
        conn.close()
        self.assertTrue(harness.wait_until(lambda: "incomplete" in self.rx.read_log()
                                           or "408 timeout" in self.rx.read_log(), timeout=60))
        self.assertNothingStored(before)

    def slowloris(self, prefix, trickle):
        """slowloris sends PREFIX, then TRICKLE one byte every 0.5 s until the
        receiver closes the connection; returns how many trickled bytes it took."""
        raw = socket.create_connection(("127.0.0.1", self.rx.port))
        conn = self.rx.context.wrap_socket(raw, server_hostname="127.0.0.1")
        conn.sendall(prefix)
        sent = 0
        try:
            for i in range(240):        # bounded: 2 minutes at most
                conn.sendall(trickle[i % len(trickle):i % len(trickle) + 1])
                sent += 1
                time.sleep(0.5)
                conn.settimeout(0.01)
                try:
                    if conn.recv(1024) == b"":
                        return sent
                except (socket.timeout, ssl.SSLWantReadError):
                    pass
                finally:
                    conn.settimeout(None)
        except (OSError, ssl.SSLError):
            return sent
        finally:
            conn.close()
        return None

    def test_slowloris_is_cut_off_while_others_are_served(self):
        before = total()
        body = event_body(USER_ID)
        ts = now_ms()
        results = {}

        def headers():
            results["headers"] = self.slowloris(b"POST /whoop/sim HTTP/1.1\r\n",
                                                b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")

        def body_trickle():
            head = ("POST /whoop/sim HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n"
                    "X-WHOOP-Signature: %s\r\nX-WHOOP-Signature-Timestamp: %s\r\n\r\n"
                    % (sign(SECRET, ts, body), ts)).encode()
            results["body"] = self.slowloris(head, body)

        threads = [threading.Thread(target=headers), threading.Thread(target=body_trickle)]
        for t in threads:
            t.start()
        # meanwhile a genuine delivery goes through
        genuine = event_body(USER_ID)
        statuses = self.rx.deliver(genuine)
        for t in threads:
            t.join()
        self.assertEqual(statuses[-1], 200)
        self.assertIsNotNone(results["headers"], "a header slowloris was never cut off")
        self.assertIsNotNone(results["body"], "a body slowloris was never cut off")
        self.assertEqual(total(), before + 1)
        self.assertIn("408 timeout", self.rx.read_log())
        print("\n    slowloris cut after %d header bytes and %d body bytes trickled "
              "(request_timeout %d s)" % (results["headers"], results["body"], REQUEST_TIMEOUT),
              end=" ")

    def test_log_has_one_line_per_request_without_secrets(self):
        marker = "trace-%s" % uuid.uuid4().hex
        body = event_body(USER_ID, trace_id=marker)
        ts = now_ms()
        signature = sign(SECRET, ts, body)
        forged = sign("nope", ts, body)
        before = self.rx.read_log().count("\n")
        self.assertEqual(self.rx.post(body, signature, ts)[0], 200)
        self.assertEqual(self.rx.post(body, forged, ts)[0], 401)
        self.assertEqual(self.rx.post(body, path="/x")[0], 404)
        lines = self.rx.read_log().splitlines()[before:]
        self.assertEqual(len([x for x in lines if "/whoop/sim" in x or " /x " in x]), 3, lines)
        log = self.rx.read_log()
        for secret in (signature, forged, marker, SECRET, body.decode()):
            self.assertNotIn(secret, log)
        self.assertIn("401 forged", log)
        self.assertIn("sqlstate=28P01", log)


class FloodTest(unittest.TestCase):

    def test_flood_of_1000_events(self):
        rx = Receiver("flood").start()
        self.addCleanup(rx.stop)
        genuine = [event_body(USER_ID, kind) for kind in
                   ("workout.updated", "sleep.updated", "recovery.updated", "sleep.deleted")
                   for _ in range(250)]
        forged = [event_body(USER_ID) for _ in range(100)]
        before = total()
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rx.threads())
                time.sleep(0.05)

        def send_genuine(body):
            t0 = time.monotonic()
            statuses = rx.deliver(body)
            return statuses, (time.monotonic() - t0) * 1000

        def send_forged(body):
            ts = now_ms()
            return rx.post(body, sign("forged", ts, body), ts)[0]

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
            g = [pool.submit(send_genuine, b) for b in genuine]
            f = [pool.submit(send_forged, b) for b in forged]
            results = [x.result() for x in g]
            forged_statuses = [x.result() for x in f]
        elapsed = time.monotonic() - t0
        done.set()
        sampler.join()

        self.assertIsNone(rx.proc.poll(), "the receiver died in the flood")
        self.assertTrue(all(s[-1] == 200 for s, _ in results),
                        [s for s, _ in results if s[-1] != 200][:5])
        self.assertEqual(set(forged_statuses), {401})
        self.assertEqual(total(), before + len(genuine))
        traces = [b.split(b'"trace_id":"')[1].split(b'"')[0].decode() for b in genuine]
        self.assertEqual(set(stored(traces).values()), {1})
        # thread per connection, at most max_connections, plus the listener
        # and the watchdog: the flood cannot make it grow beyond that
        self.assertLessEqual(peak[0], MAX_CONNECTIONS + 3)
        retried = sum(1 for s, _ in results if len(s) > 1)
        latency = sorted(ms for _, ms in results)
        print("\n    %d genuine + %d forged requests from 32 clients in %.1f s (%.0f/s), "
              "%d resent, peak %d threads, latency median %.1f ms p95 %.1f ms"
              % (len(genuine), len(forged), elapsed, (len(genuine) + len(forged)) / elapsed,
                 retried, peak[0], statistics.median(latency),
                 latency[int(len(latency) * 0.95)]), end=" ")


class FailureTest(unittest.TestCase):

    def stream(self, rx, bodies, answers, workers=4):
        """stream posts BODIES once each from WORKERS threads, recording each
        trace's status in ANSWERS; returns the threads (started)."""
        queue = list(bodies)
        lock = threading.Lock()

        def work():
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop(0)
                ts = now_ms()
                status, _ = rx.post(body, sign(SECRET, ts, body), ts)
                with lock:
                    answers[body] = status

        threads = [threading.Thread(target=work) for _ in range(workers)]
        for t in threads:
            t.start()
        return threads

    def test_database_restart_mid_stream_loses_nothing(self):
        rx = Receiver("restart").start()
        self.addCleanup(rx.stop)
        bodies = [event_body(USER_ID) for _ in range(300)]
        answers = {}
        threads = self.stream(rx, bodies, answers)
        try:
            harness.wait_until(lambda: len(answers) >= 60, timeout=120)
            CLUSTER.stop("fast")
            # while it is down every answer is 503: WHOOP will retry
            down = harness.wait_until(lambda: list(answers.values()).count(503) >= 10,
                                      timeout=120)
            CLUSTER.start()
        finally:
            for t in threads:
                t.join()
        self.assertTrue(down, "no 503 while the database was down")
        statuses = list(answers.values())
        self.assertTrue(set(statuses) <= {200, 503}, set(statuses))
        # what was answered 2XX is there; WHOOP resends the rest
        acknowledged = [b for b, s in answers.items() if s == 200]
        traces = lambda bs: [b.split(b'"trace_id":"')[1].split(b'"')[0].decode() for b in bs]
        self.assertEqual(set(stored(traces(acknowledged)).values()) or {1}, {1})
        self.assertEqual(len(stored(traces(acknowledged))), len(acknowledged))
        resent = [b for b, s in answers.items() if s != 200]
        for body in resent:
            self.assertEqual(rx.deliver(body)[-1], 200)
        self.assertEqual(len(stored(traces(bodies))), len(bodies))
        self.assertEqual(set(stored(traces(bodies)).values()), {1})
        print("\n    %d events: %d answered 200, %d answered 503 during the restart and "
              "delivered on resend" % (len(bodies), len(acknowledged), len(resent)), end=" ")

    def test_kill_9_loses_nothing_answered(self):
        rx = Receiver("kill9").start()
        self.addCleanup(rx.stop)
        bodies = [event_body(USER_ID) for _ in range(300)]
        answers = {}
        threads = self.stream(rx, bodies, answers)
        harness.wait_until(lambda: len(answers) >= 100, timeout=120)
        rx.kill9()
        for t in threads:
            t.join()
        traces = lambda bs: [b.split(b'"trace_id":"')[1].split(b'"')[0].decode() for b in bs]
        acknowledged = [b for b, s in answers.items() if s == 200]
        self.assertGreaterEqual(len(acknowledged), 100)
        self.assertEqual(len(stored(traces(acknowledged))), len(acknowledged))
        # a new receiver takes the resends of everything else
        rx2 = Receiver("kill9-again").start()
        self.addCleanup(rx2.stop)
        resent = [b for b in bodies if answers.get(b) != 200]
        for body in resent:
            self.assertEqual(rx2.deliver(body)[-1], 200)
        self.assertEqual(len(stored(traces(bodies))), len(bodies))
        self.assertEqual(set(stored(traces(bodies)).values()), {1})
        print("\n    kill -9 after %d answers: every one of the %d answered 200 stored, "
              "%d resent" % (len(answers), len(acknowledged), len(resent)), end=" ")

    def test_database_down_at_start_means_503(self):
        rx = Receiver("nodb", conninfo="host=127.0.0.1 port=%d dbname=%s user=%s "
                      "connect_timeout=2" % (harness.free_port(), DB, ROLE)).start()
        self.addCleanup(rx.stop)
        body = event_body(USER_ID)
        ts = now_ms()
        self.assertEqual(rx.post(body, sign(SECRET, ts, body), ts)[0], 503)
        self.assertIsNone(rx.proc.poll())
        self.assertIn("503 unavailable", rx.read_log())


if __name__ == "__main__":
    unittest.main()
