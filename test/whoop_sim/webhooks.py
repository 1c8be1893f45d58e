"""webhooks.py -- WHOOP's webhooks: the app's subscription, the events the
simulator's changes emit, and their signed delivery with WHOOP's retry
schedule on a small pool of threads (WEBHOOKS).

WEBHOOKS
  One subscription per app (POST /_sim/webhooks, see control.py, or
  --webhook-url).  Event types: workout.updated, workout.deleted,
  sleep.updated, sleep.deleted, recovery.updated, recovery.deleted (for
  recovery.* `id` is the recovery's SLEEP uuid); a new record arrives as
  .updated; nothing for cycles, profile or body.  Events are emitted only
  for a member who has a live grant of the app (GET /_sim/accounts or the
  OAuth flow; none once DELETE /v2/user/access revoked it) and only for
  records visible at the simulator's now (a record not yet created gets its
  .updated when it appears):
    clock    a sleep, workout or recovery appears, is scored or is re-scored
             (its updated_at moves) between the last scan's simulator time
             and now: one .updated per record, however many of its changes
             the step covered.  A scan runs when POST /_sim/clock moves the
             clock (moving backwards emits nothing; moving forward again
             over the same span emits again) and, with a running clock
             (real time or --clock-rate), every TICK_SECONDS from a thread
             of its own, without a request: each scan emits the span the
             (scaled) clock covered since the last one.
             A scan pops a heap of future change times (rebuilt from the
             per-athlete indexes, bounded by Index.lag, when the clock goes
             back or the generated horizon grows): it costs nothing when
             nothing changes, whatever the number of athletes.
    touch    sleep: sleep.updated and, when it has one, recovery.updated;
             recovery: recovery.updated; workout: workout.updated
    delete   workout: workout.deleted; sleep: sleep.deleted and, when it had
             one, recovery.deleted; a nap merged into a sleep: those, then
             sleep.updated and recovery.updated of the sleep it went into
  A delivery is POST <url> with the body, exactly,
      {"user_id": 456, "id": "<uuid>", "type": "sleep.updated", "trace_id": "<uuid>"}
  and Content-Type: application/json,
      X-WHOOP-Signature-Timestamp  wall-clock epoch milliseconds (time.time():
                                   receivers check it against their own
                                   clock, the simulator's may be years off)
      X-WHOOP-Signature            standard base64, padded, of HMAC-SHA256
                                   (key = the client secret's bytes, message
                                   = timestamp || raw body)
  over a new connection.  https verifies the receiver's certificate against
  ca_file (else the system's CAs); plain http only to a loopback host.  A
  2XX within timeout_ms (the whole exchange) delivers it; any other status,
  a connection or TLS error or no answer in time is a failed attempt,
  retried after RETRY_MINUTES = 1, 5, 10, 20 and 30 minutes (66 in all: five
  retries in about an hour), each divided by retry_scale; the sixth failed
  attempt drops it.  A retry sends the same body (same trace_id), signed
  afresh.  POOL threads deliver and never hold the simulator's lock, so a
  slow receiver never holds up the API.  Deliveries are not API requests:
  neither rate limited nor counted in /_sim/stats or /_sim/requests.
  Knobs, three seeded draws per emitted event in emission order (same seed
  and same events => same decisions):
    drop_rate       never sent: status dropped_by_knob
    duplicate_rate  a second delivery of the same body and trace_id, due
                    duplicate_ms after the first (its own log entry, knob
                    "duplicate", retried on its own)
    reorder_rate    held back reorder_ms (knob "reordered") so that later
                    events overtake it
  Delivery statuses: pending (not attempted yet), retrying (failed, another
  attempt scheduled), delivered, dropped (six failed attempts),
  dropped_by_knob, failed (outstanding when the subscription was replaced
  or removed: no more attempts).
"""

import base64
import bisect
import collections
import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import random
import ssl
import threading
import time
import urllib.parse
import uuid

from .times import iso

RETRY_MINUTES = (1, 5, 10, 20, 30)
POOL = 4
TICK_SECONDS = 0.25
LOG_CAP = 100_000
KINDS = ("sleep", "recovery", "workout")
LOOPBACK = ("127.0.0.1", "::1", "localhost")
SETTINGS = {"url": None, "ca_file": None, "retry_scale": 1.0, "timeout_ms": 5000,
            "duplicate_rate": 0.0, "reorder_rate": 0.0, "drop_rate": 0.0, "seed": 0,
            "duplicate_ms": 200, "reorder_ms": 1000}
OUTSTANDING = ("pending", "retrying")


def event_id(rec):
    """event_id: the id a webhook names a record by (a recovery by its sleep)."""
    return rec.sleep_id() if rec.kind == "recovery" else rec.key


def _number(d, key, positive=False, hi=None):
    """_number: setting key, a number >= 0 (> 0 if positive), <= hi if given."""
    v = d[key]
    if (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0
            or (positive and v == 0) or (hi is not None and v > hi)):
        raise ValueError("%s must be a number %s%s" % (key, "> 0" if positive else ">= 0",
                                                       "" if hi is None else " and <= %s" % hi))
    return v


class Subscription:
    """Subscription is the app's registered URL and its delivery settings."""

    def __init__(self, spec):
        unknown = sorted(set(spec) - set(SETTINGS))
        if unknown:
            raise ValueError("unknown webhook setting %s" % ", ".join(unknown))
        d = dict(SETTINGS, **spec)
        url = d["url"]
        if not isinstance(url, str):
            raise ValueError("url must be a string (null unregisters)")
        u = urllib.parse.urlsplit(url)
        try:
            port = u.port
        except ValueError:
            raise ValueError("url has a bad port")
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("url must be https://host[:port]/path")
        if u.scheme == "http" and u.hostname not in LOOPBACK:
            raise ValueError("plain http only to a loopback host: use https")
        self.url, self.https, self.host, self.port = url, u.scheme == "https", u.hostname, port
        self.target = (u.path or "/") + ("?" + u.query if u.query else "")
        self.ca_file = d["ca_file"]
        self.context = None
        if self.https:
            if self.ca_file is not None and not isinstance(self.ca_file, str):
                raise ValueError("ca_file must be a path")
            try:
                self.context = ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as e:
                raise ValueError("ca_file %s: %s" % (self.ca_file, e))
        elif self.ca_file is not None:
            raise ValueError("ca_file is for an https url")
        self.retry_scale = float(_number(d, "retry_scale", positive=True))
        self.timeout_ms = max(1, int(_number(d, "timeout_ms", positive=True)))
        self.duplicate_rate = float(_number(d, "duplicate_rate", hi=1))
        self.reorder_rate = float(_number(d, "reorder_rate", hi=1))
        self.drop_rate = float(_number(d, "drop_rate", hi=1))
        self.duplicate_ms = int(_number(d, "duplicate_ms"))
        self.reorder_ms = int(_number(d, "reorder_ms"))
        if isinstance(d["seed"], bool) or not isinstance(d["seed"], int):
            raise ValueError("seed must be an integer")
        self.seed = d["seed"]
        self.rng = random.Random("webhooks:%d" % self.seed)

    def report(self):
        return {k: getattr(self, k) for k in SETTINGS}


class Delivery:
    """Delivery is one event's POSTs to the subscription (a duplicate has its own)."""
    __slots__ = ("seq", "trace_id", "type", "user_id", "id", "changed_at", "changed_at_real_ms",
                 "knob", "body", "attempts", "attempts_real_ms", "status", "last_status_code",
                 "last_error", "delivered_at_real_ms", "next_attempt_real_ms")

    def __init__(self, seq, typ, user_id, rid, trace_id, changed_ms, changed_real_ms):
        self.seq, self.type, self.user_id, self.id = seq, typ, user_id, rid
        self.trace_id = trace_id
        self.changed_at, self.changed_at_real_ms = iso(changed_ms), int(changed_real_ms)
        self.body = json.dumps({"user_id": user_id, "id": rid, "type": typ,
                                "trace_id": trace_id}).encode()
        self.knob = None
        self.attempts = 0
        self.attempts_real_ms = []
        self.status = "pending"
        self.last_status_code = self.last_error = None
        self.delivered_at_real_ms = self.next_attempt_real_ms = None

    def report(self):
        out = {k: getattr(self, k) for k in self.__slots__ if k != "body"}
        out["attempts_real_ms"] = list(self.attempts_real_ms)
        return out


def _counters():
    return {"events": 0, "posts": 0, "delivered": 0, "retries": 0, "dropped": 0,
            "dropped_by_knob": 0, "duplicates": 0, "reordered": 0, "failed": 0,
            "responses": {}}


class Webhooks:
    """Webhooks holds the subscription, the deliveries (their log, the heap
    of due attempts, the counters) and the scanner's heap of future changes.
    `cond` guards the deliveries; the scanner and emit() run under the
    simulator's lock (taken before `cond`, never the other way round)."""

    def __init__(self, world, auth, sim_lock):
        self.world, self.auth, self.sim_lock = world, auth, sim_lock
        self.cond = threading.Condition()
        self.sub = None
        self.gen = 0            # queued attempts of a replaced subscription are void
        self.seqs = itertools.count(1)
        self.log = collections.deque(maxlen=LOG_CAP)
        self.queue = []         # heap of (due, seq, delivery): real seconds
        self.inflight = 0
        self.counters = _counters()
        self.threads = []
        self.scan_t = None      # simulator ms of the last scan
        self.future = []        # heap of (simulator ms, n, record)
        self.horizon = None

    # -- the subscription (under the simulator's lock) -----------------------
    def subscribe(self, spec):
        """subscribe registers (replaces) the subscription, or removes it for a null url."""
        sub = None if spec.get("url", 0) is None else Subscription(spec)
        with self.cond:
            for d in self.log:
                if d.status in OUTSTANDING:
                    d.status = "failed"
                    self.counters["failed"] += 1
            self.queue = []
            self.gen += 1
            self.sub = sub
            if sub is not None:     # a new subscription starts a new log
                self.log.clear()
                self.counters = _counters()
            self.cond.notify_all()
        if sub is None:
            return None
        self.scan_t = self.world.now()
        self._rebuild()
        if not self.threads:
            for _ in range(POOL):
                self._start(self._deliver)
            if not self.world.frozen:
                self._start(self._tick)
        return sub.report()

    def _start(self, fn):
        t = threading.Thread(target=fn, name="webhooks", daemon=True)
        t.start()
        self.threads.append(t)

    # -- events (under the simulator's lock) ----------------------------------
    def changed(self, pairs):
        """changed emits (type, record) pairs that a control-plane edit made now."""
        now = self.world.now()
        real = time.time() * 1000
        self.emit([(typ, rec.ath.user_id, event_id(rec), now, real) for typ, rec in pairs])

    def emit(self, events):
        """emit queues a delivery per (type, user_id, id, simulator ms, real
        ms) event whose member has a live grant, after the knobs' draws."""
        if self.sub is None or not events:
            return
        granted = {g.user_id for g in self.auth.grants if g.alive}
        with self.cond:
            sub, c = self.sub, self.counters
            now = time.time()
            for typ, uid, rid, t_sim, t_real in events:
                if uid not in granted:
                    continue
                drop, dup, hold = sub.rng.random(), sub.rng.random(), sub.rng.random()
                d = Delivery(next(self.seqs), typ, uid, rid, str(uuid.uuid4()), t_sim, t_real)
                self.log.append(d)
                c["events"] += 1
                if drop < sub.drop_rate:
                    d.status, d.knob = "dropped_by_knob", "dropped"
                    c["dropped_by_knob"] += 1
                    continue
                due = now
                if hold < sub.reorder_rate:
                    d.knob = "reordered"
                    c["reordered"] += 1
                    due += sub.reorder_ms / 1000
                self._queue(d, due)
                if dup < sub.duplicate_rate:
                    copy = Delivery(next(self.seqs), typ, uid, rid, d.trace_id, t_sim, t_real)
                    copy.knob = "duplicate"
                    self.log.append(copy)
                    c["duplicates"] += 1
                    self._queue(copy, due + sub.duplicate_ms / 1000)
            self.cond.notify_all()

    def _queue(self, d, due):
        d.next_attempt_real_ms = int(due * 1000)
        heapq.heappush(self.queue, (due, d.seq, d))

    # -- the scanner (under the simulator's lock) -----------------------------
    def scan(self, jump):
        """scan emits .updated for each record whose served version changed
        after the last scan's simulator time, up to now.  jump: the clock
        was set (the changes happened now, in real time), not run."""
        if self.sub is None:
            return
        w = self.world
        now = w.now()
        if self.horizon != w.horizon_e:
            self._rebuild()
        if now < self.scan_t:
            self.scan_t = now
            self._rebuild()
            return
        due = {}
        fut = self.future
        while fut and fut[0][0] <= now:
            t, _, rec = heapq.heappop(fut)
            # a deleted record, or a change that a touch has since dropped
            if rec.ath.by_id[rec.kind].get(rec.key) is rec and t in rec.changes():
                due[rec] = t
        self.scan_t = now
        if not due:
            return
        real_now = time.time() * 1000
        order = sorted(due.items(), key=lambda x: (x[1], x[0].ath.idx, KINDS.index(x[0].kind)))
        self.emit([(rec.kind + ".updated", rec.ath.user_id, event_id(rec), t,
                    real_now if jump or w.frozen else min(real_now, w.real_at(t)))
                   for rec, t in order])

    def _rebuild(self):
        """_rebuild gathers every change time after scan_t from the athletes'
        indexes, from the first record whose index's lag can reach it."""
        w = self.world
        t0 = self.scan_t
        fut = []
        n = 0
        for a in w.athletes:
            for kind in KINDS:
                idx = a.indexes[kind]
                recs = idx.recs
                for i in range(bisect.bisect_left(idx.keys, (t0 - idx.lag,)), len(recs)):
                    rec = recs[i]
                    for t in rec.changes():
                        if t > t0:
                            fut.append((t, n, rec))
                            n += 1
        heapq.heapify(fut)
        self.future = fut
        self.horizon = w.horizon_e

    def _tick(self):
        """_tick scans a running clock without waiting for a request."""
        while True:
            time.sleep(TICK_SECONDS)
            with self.sim_lock:
                if self.sub is not None:
                    self.world.ensure()
                    self.scan(False)

    # -- delivery (threads of the pool; never under the simulator's lock) -----
    def _deliver(self):
        while True:
            with self.cond:
                while True:
                    now = time.time()
                    if self.queue and self.queue[0][0] <= now:
                        _, _, d = heapq.heappop(self.queue)
                        break
                    self.cond.wait(self.queue[0][0] - now if self.queue else None)
                sub, gen = self.sub, self.gen
                self.inflight += 1
                ts = int(time.time() * 1000)
                d.attempts_real_ms.append(ts)
                d.attempts += 1
                d.next_attempt_real_ms = None
                self.counters["posts"] += 1
                if d.attempts > 1:
                    self.counters["retries"] += 1
            code, error = self._post(sub, d, str(ts))
            with self.cond:
                self.inflight -= 1
                if gen == self.gen:
                    self._settle(sub, d, code, error)
                self.cond.notify_all()

    def _post(self, sub, d, ts):
        """_post makes one attempt signed at ts: (status or None, error or None)."""
        sig = base64.b64encode(hmac.new(self.auth.client_secret.encode(), ts.encode() + d.body,
                                        hashlib.sha256).digest()).decode("ascii")
        timeout = sub.timeout_ms / 1000
        start = time.monotonic()
        if sub.https:
            conn = http.client.HTTPSConnection(sub.host, sub.port, timeout=timeout,
                                               context=sub.context)
        else:
            conn = http.client.HTTPConnection(sub.host, sub.port, timeout=timeout)
        code = None
        try:
            conn.request("POST", sub.target, body=d.body, headers={
                "Content-Type": "application/json", "X-WHOOP-Signature": sig,
                "X-WHOOP-Signature-Timestamp": ts})
            resp = conn.getresponse()
            resp.read()
            code = resp.status
        except TimeoutError:
            return None, "timeout"
        except ssl.SSLError as e:
            return None, "tls: %s" % (e.reason or e)
        except (OSError, http.client.HTTPException) as e:
            return None, "connection: %s" % (e.__class__.__name__ if not str(e) else e)
        except Exception as e:      # a bug here must not cost the pool a thread
            return None, "simulator: %r" % e
        finally:
            conn.close()
        if time.monotonic() - start > timeout:     # a trickled answer: no answer in time
            return code, "timeout"
        return code, None

    def _settle(self, sub, d, code, error):
        """_settle books an attempt's outcome: delivered, a retry, or dropped."""
        c = self.counters
        key = error.split(":")[0] if error is not None else str(code)
        c["responses"][key] = c["responses"].get(key, 0) + 1
        d.last_status_code, d.last_error = code, error
        if error is None and 200 <= code < 300:
            d.status = "delivered"
            d.delivered_at_real_ms = int(time.time() * 1000)
            c["delivered"] += 1
        elif d.attempts > len(RETRY_MINUTES):
            d.status = "dropped"
            c["dropped"] += 1
        else:
            d.status = "retrying"
            self._queue(d, time.time() + RETRY_MINUTES[d.attempts - 1] * 60 / sub.retry_scale)

    # -- the control plane's views --------------------------------------------
    def outstanding(self):
        return len(self.queue) + self.inflight

    def report(self, since=0, limit=None):
        """report: the subscription, the counters and the deliveries after seq since."""
        with self.cond:
            rows = [d.report() for d in self.log if d.seq > since]
            if limit is not None:
                rows = rows[:limit]
            return {"subscription": None if self.sub is None else self.sub.report(),
                    "retry_minutes": list(RETRY_MINUTES), "outstanding": self.outstanding(),
                    "counters": json.loads(json.dumps(self.counters)),
                    "deliveries": rows, "last_seq": self.log[-1].seq if self.log else 0}

    def wait_idle(self, timeout):
        """wait_idle returns when no delivery is pending or retrying, or at the timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.outstanding():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return {"idle": not self.outstanding(), "outstanding": self.outstanding(),
                    "counters": json.loads(json.dumps(self.counters))}
