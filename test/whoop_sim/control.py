"""control.py -- the control plane (/_sim/): the tests steer time, faults
and chaos, change records and read what a client did.

CONTROL PLANE (/_sim/, loopback clients only, JSON in and out, not counted,
not rate limited, never faulted)
  GET  /_sim/accounts   {"client_id","client_secret","redirect_uri",
                         "athletes":[{"user_id","refresh_token","code"}]}
                        every call mints, per athlete, a new grant with all
                        scopes incl. offline (its unused refresh token) and a
                        new auth code for redirect_uri (all scopes).  Tokens
                        issued before stay valid.
  GET  /_sim/stats      {"requests": {"GET /v2/cycle": {"200": n, ...}, ...},
                         "token_grants": {"authorization_code": n,
                                          "refresh_token": n, "failed": n}}
                        keys are METHOD + path without /developer, ids as
                        {id}; status "0" = connection reset (no response).
                        token_grants counts token requests that were
                        processed (a fault that answers before processing is
                        not counted there).
  GET  /_sim/requests   {"requests": [{"method","path","query","status",
                         "user_agent","bearer_user_id","bearer_state",
                         "fault","client_port"}]} the last 10,000 API/OAuth
                        requests in arrival order; path without /developer;
                        client_port tells connections apart; query values
                        are strings (lists when repeated); code/token/secret
                        values redacted.  bearer_user_id is the athlete of
                        any token this simulator issued (also an expired or
                        rotated one), null without a (known) bearer;
                        bearer_state valid|expired|rotated|revoked|unknown|
                        null; fault = injected fault kind or null.
  POST /_sim/reset      zero the counters, clear the request log, the queued
                        faults and chaos (and its counts), restart the
                        rate-limit windows.  Data, clock, tokens unchanged.
  POST /_sim/faults     {"path": "/v2/activity/sleep"|"/v2/cycle/{id}"|"*"|
                         "/oauth/oauth2/token", "kind": K, "status": 503,
                         "delay_ms": 2000, "after": 0, "count": 1}
                        => {"queued": <faults now queued>}.  `path` matches
                        the path without /developer exactly or its template;
                        "*" matches every API and token request.  Kinds:
                          status       respond `status` (default 503) with a
                                       short JSON body (HTML for 502/503/504)
                          truncate     the normal response, body cut in
                                       half, Content-Length of the cut body
                          partial      Content-Length of the full body, half
                                       of it sent, then the connection closes
                          invalid_json 200 text/html page
                          delay        PROCESS the request (state changes
                                       such as token rotation happen), wait
                                       delay_ms, then send the normal answer
                          slow_body    headers, then the body in small pieces
                                       spread over delay_ms
                          reset        close the connection without a byte
                                       (RST: SO_LINGER 0), after reading the
                                       request; nothing is processed
                          unauthorized 401 as for an invalid token (the token
                                       stays valid)
                        truncate/partial/slow_body/delay mangle whatever the
                        request would have got (normally a 200).  Strict
                        FIFO: a request is owned by the first queued fault
                        whose path matches it: while that fault's `after` is
                        positive the request passes untouched (after -= 1),
                        else the fault is applied (count -= 1; dropped at 0).
                        The rate limit is charged first: a request answered
                        429 consumes no fault.
  GET  /_sim/faults     {"faults": [queued specs with remaining after/count]}
  POST /_sim/chaos      {"seed": 7, "rates": {"status_5xx": .1, "timeout": .02,
                         "truncate": .01, "reset": .01, "burst_429": .01,
                         "unauthorized": .01, "partial": .005,
                         "invalid_json": 0, "slow_body": 0},
                         "timeout_ms": 3000, "burst_len": 5,
                         "token_rates": {"accept_then_timeout": .05, <any
                         kind above>}}  or {"off": true}
                        a seeded fault schedule: one uniform draw per API
                        request (one RNG) and per token request (a second
                        RNG) picks at most one fault by cumulative rates in
                        the fixed order status_5xx, timeout, truncate, reset,
                        burst_429, unauthorized, partial, invalid_json,
                        slow_body, accept_then_timeout.  status_5xx picks
                        500/502/503/504; timeout and accept_then_timeout
                        process the request and answer after timeout_ms;
                        burst_429 answers this and the next burst_len-1 API
                        requests 429 (Remaining 0, Reset 1); slow_body
                        spreads the body over timeout_ms.  Queued faults take
                        precedence (a request taken by a queued fault makes
                        no chaos draw).  Same seed + same request sequence =>
                        same faults.  => {"chaos": "on"|"off"}
  GET  /_sim/chaos      {"enabled": bool, "injected": {kind: n, ...}} (every
                        configured kind; burst_429 counts 429 answers)
  POST /_sim/touch      {"kind": "cycle"|"recovery"|"sleep"|"workout"|
                         "profile"|"body", "id": ..., "set": {"score.x": v},
                         "unset": ["score.y"]}
                        changes a record (dotted paths into nested objects,
                        intermediate objects created) and sets its updated_at
                        to the simulator's now (profile/body have none).  For
                        recovery `id` is the cycle id, for profile/body the
                        user_id.  The record is frozen as it is served now
                        (pending/re-score transitions are dropped).  Setting
                        start/end re-sorts it.  Unknown record => 404;
                        changing id/user_id/cycle_id/sleep_id => 400.
                        Webhooks: sleep => sleep.updated (+ recovery.updated
                        when it has a recovery), recovery => recovery.updated,
                        workout => workout.updated; cycle/profile/body none.
                        => {"record": <the record as now served>}
  GET  /_sim/clock      {"now": ISO, "rate": X | null}  rate: simulated
                        seconds a real second of a running clock (--clock-
                        rate), null for a frozen clock
  POST /_sim/clock      {"now": ISO} or {"advance_seconds": n}, and/or
                        {"rate": X} => {"now": ISO, "rate": X | null}
                        (a frozen clock stays frozen; a running clock keeps
                        running from the new point).  Moving backwards is
                        allowed (records created later disappear again).
                        Moving forward emits the webhooks of the records that
                        appeared or changed on the way; backwards emits none.
                        rate (> 0; a running clock only, else 400) applies
                        from the new point (or from now: now() stays
                        continuous); records and webhooks follow the scaled
                        clock without further calls.
  POST /_sim/expire_tokens [{"user_id": n}]  every (that athlete's) current
                        access token expires now; refresh tokens stay valid.
                        => {"expired": n}
  POST /_sim/ratelimit  {"per_minute": n, "per_day": n, "minute_seconds": s}
                        change limits at run time (windows restart)
  GET  /_sim/            {"endpoints": [...]} this list
  GET  /_sim/records?kind=cycle|recovery|sleep|workout|profile|body
                     [&user_id=n]
                        {"records": [...]} every record of that kind visible
                        now, exactly as the API serves it, newest first
                        (across athletes: by start, then id, then user).
  POST /_sim/delete     {"kind": "sleep"|"workout", "id": uuid
                         [, "merge_into": uuid of another sleep of the member]}
                        deletes the record for good: by id 404, gone from
                        every collection and from /_sim/records.  A main
                        sleep takes its recovery with it (the cycle stays:
                        GET /v2/cycle/{id}/recovery and /sleep answer 404).
                        merge_into: the sleep (a nap) is merged into that
                        one, whose start/end and time in bed grow to span
                        both (stages add up) and whose updated_at is now.
                        Webhooks: workout.deleted; sleep.deleted (+
                        recovery.deleted); merged: then sleep.updated and
                        recovery.updated of the sleep merged into.  Unknown
                        id => 404; kind cycle or recovery => 400.
                        => {"deleted": [{"kind": "sleep", "id", "user_id",
                        "deleted_at", "merged_into"?}, {"kind": "recovery",
                        "cycle_id", "sleep_id", "user_id", "deleted_at"}],
                        "record": <merged into, as now served>}
  GET  /_sim/deleted[?user_id=n]
                        {"deleted": {"sleep": [...], "workout": [...],
                        "recovery": [...]}} every deleted record, entries as
                        POST /_sim/delete answers them (without "kind").
  POST /_sim/webhooks   {"url": "https://127.0.0.1:PORT/whoop/sim",
                         "ca_file": "/path/ca.pem", "retry_scale": 1,
                         "timeout_ms": 5000, "duplicate_rate": 0.0,
                         "reorder_rate": 0.0, "drop_rate": 0.0, "seed": 0,
                         "duplicate_ms": 200, "reorder_ms": 1000}
                        registers (replaces) the app's one subscription: the
                        values shown are the defaults, only url is needed.
                        https verifies the certificate with ca_file (else the
                        system's CAs); http only to a loopback host.  A new
                        subscription starts a new deliveries log and new
                        counters; what the old one had outstanding becomes
                        "failed".  {"url": null} unregisters.  Unknown
                        setting, bad url or value, unreadable ca_file => 400.
                        => {"subscription": {settings} | null}
                        What is sent, when and how often: webhooks.py
                        (WEBHOOKS).
  DELETE /_sim/webhooks unregisters => {"subscription": null}
  GET  /_sim/webhooks[?since=seq][&limit=n]
                        {"subscription": {settings} | null,
                         "retry_minutes": [1, 5, 10, 20, 30],
                         "outstanding": n (pending or retrying),
                         "counters": {"events", "posts", "delivered",
                           "retries", "dropped", "dropped_by_knob",
                           "duplicates", "reordered", "failed",
                           "responses": {"200": n, "500": n, "timeout": n,
                                         "tls": n, "connection": n, ...}},
                         "deliveries": [{"seq", "trace_id", "type",
                           "user_id", "id", "changed_at" (simulator ISO),
                           "changed_at_real_ms" (wall clock of the change),
                           "knob": null|"dropped"|"reordered"|"duplicate",
                           "attempts", "attempts_real_ms": [...],
                           "status": pending|retrying|delivered|dropped|
                                     dropped_by_knob|failed,
                           "last_status_code", "last_error",
                           "delivered_at_real_ms", "next_attempt_real_ms"}],
                         "last_seq": n}
                        deliveries in emission order (the last 100,000), seq
                        > since; a duplicate is an entry of its own with the
                        trace_id of the one it repeats.  /_sim/reset leaves
                        all of it alone.
  POST /_sim/flush_webhooks {"timeout_ms": 10000}
                        scans a real-time clock, then waits (without holding
                        up the API) until nothing is pending or retrying, or
                        the timeout.  => {"idle": bool, "outstanding": n,
                        "counters": {...}}
"""

import json

from .faults import FAULT_KINDS, Chaos
from .oauth import GRANT_ALL
from .times import INF, iso, parse_iso


class ControlPlane:
    """ControlPlane is the Simulator's part that answers /_sim/: one ctl_<method>_<name>
    method per endpoint."""

    def control(self, method, path, query, body):
        name = path[len("/_sim/"):].strip("/")
        try:
            data = json.loads(body) if body and body.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("JSON object expected")
        except ValueError as e:
            return 400, {"error": "bad json: %s" % e}
        fn = getattr(self, "ctl_%s_%s" % (method.lower(), name), None)
        if fn is None:
            return 404, {"error": "no control endpoint %s %s" % (method, path)}
        try:
            if getattr(fn, "unlocked", False):     # it waits: the API must not
                return fn(query, data)
            with self.lock:
                self.world.ensure()     # a running clock may have passed the horizon
                return fn(query, data)
        except (ValueError, TypeError, KeyError) as e:
            return 400, {"error": str(e)}

    def ctl_get_(self, q, d):
        names = sorted(n[4:] for n in dir(self) if n.startswith("ctl_") and not n.endswith("_"))
        return 200, {"endpoints": ["%s /_sim/%s" % (m.upper(), rest)
                                   for m, rest in (n.split("_", 1) for n in names)]}

    def ctl_get_accounts(self, q, d):
        a = self.auth
        out = []
        for ath in self.world.athletes:
            g = a.new_grant(ath.user_id, GRANT_ALL)
            code = a.new_code(ath.user_id, GRANT_ALL, a.redirect_uri)
            out.append({"user_id": ath.user_id, "refresh_token": g.refresh, "code": code})
        return 200, {"client_id": a.client_id, "client_secret": a.client_secret,
                     "redirect_uri": a.redirect_uri, "athletes": out}

    def ctl_get_stats(self, q, d):
        return 200, {"requests": self.stats, "token_grants": dict(self.grant_counts)}

    def ctl_get_requests(self, q, d):
        return 200, {"requests": list(self.log)}

    def ctl_post_reset(self, q, d):
        self.reset_counters()
        self.limiter.restart()
        return 200, {"reset": True}

    def ctl_get_faults(self, q, d):
        return 200, {"faults": [dict(f) for f in self.faults]}

    def ctl_post_faults(self, q, d):
        specs = d.get("faults") if "faults" in d else [d]
        new = []
        for s in specs:
            kind = s.get("kind", "status")
            if kind not in FAULT_KINDS:
                raise ValueError("unknown fault kind %r" % kind)
            path = s.get("path", "*")
            if path.startswith("/developer/"):
                path = path[len("/developer"):]
            f = {"path": path, "kind": kind, "status": int(s.get("status", 503)),
                 "delay_ms": int(s.get("delay_ms", 2000)), "after": int(s.get("after", 0)),
                 "count": int(s.get("count", 1))}
            if f["count"] < 1 or f["after"] < 0:
                raise ValueError("count must be >= 1 and after >= 0")
            new.append(f)
        self.faults.extend(new)
        return 200, {"queued": len(self.faults)}

    def ctl_post_chaos(self, q, d):
        if d.get("off"):
            if self.chaos is not None:
                self.chaos_counts = dict(self.chaos.injected)
            self.chaos = None
            return 200, {"chaos": "off"}
        self.chaos = Chaos(d)
        return 200, {"chaos": "on"}

    def ctl_get_chaos(self, q, d):
        inj = dict(self.chaos.injected) if self.chaos is not None else dict(self.chaos_counts)
        return 200, {"enabled": self.chaos is not None, "injected": inj}

    def _clock(self):
        w = self.world
        return {"now": iso(w.now()), "rate": None if w.frozen else w.rate}

    def ctl_get_clock(self, q, d):
        return 200, self._clock()

    def ctl_post_clock(self, q, d):
        w = self.world
        if "now" not in d and "advance_seconds" not in d and "rate" not in d:
            raise ValueError("give now, advance_seconds or rate")
        to = None       # checked before anything changes
        if "now" in d:
            to = parse_iso(str(d["now"]))
        elif "advance_seconds" in d:
            to = w.now() + float(d["advance_seconds"]) * 1000
        if "rate" in d:
            w.set_rate(d["rate"])
        if to is not None:
            w.set_now(to)
        else:
            w.ensure()
        self.hooks.scan(to is not None)
        return 200, self._clock()

    def ctl_post_expire_tokens(self, q, d):
        uid = d.get("user_id")
        return 200, {"expired": self.auth.expire(None if uid is None else int(uid), self.world.now())}

    def ctl_post_ratelimit(self, q, d):
        lim = self.limiter
        lim.configure(d.get("per_minute", lim.limits[0]), d.get("per_day", lim.limits[1]),
                      d.get("minute_seconds", lim.lengths[0]))
        return 200, {"per_minute": lim.limits[0], "per_day": lim.limits[1],
                     "minute_seconds": lim.lengths[0]}

    def ctl_get_records(self, q, d):
        kind = (q.get("kind") or [None])[-1]
        uid = (q.get("user_id") or [None])[-1]
        w = self.world
        if uid is not None:
            uid = int(uid)
            if uid not in w.by_user:
                return 404, {"error": "unknown user_id"}
        aths = [w.by_user[uid]] if uid is not None else w.athletes
        if kind == "profile":
            return 200, {"records": [a.profile for a in aths]}
        if kind == "body":
            return 200, {"records": [a.body for a in aths if a.body is not None]}
        if kind not in ("cycle", "recovery", "sleep", "workout"):
            raise ValueError("kind must be cycle, recovery, sleep, workout, profile or body")
        return 200, {"records": w.visible(kind, uid, w.now())}

    def ctl_post_touch(self, q, d):
        w = self.world
        kind, rid = d.get("kind"), d.get("id")
        sets = d.get("set") or {}
        unsets = d.get("unset") or []
        now = w.now()
        if kind in ("profile", "body"):
            ath = w.by_user.get(int(rid)) if str(rid).lstrip("-").isdigit() else None
            obj = None if ath is None else (ath.profile if kind == "profile" else ath.body)
            if obj is None:
                return 404, {"error": "no such %s" % kind}
            for k in list(sets) + list(unsets):
                if k == "user_id":
                    raise ValueError("user_id cannot change")
            _apply(obj, sets, unsets)
            return 200, {"record": obj}
        if kind not in ("cycle", "recovery", "sleep", "workout"):
            raise ValueError("kind must be cycle, recovery, sleep, workout, profile or body")
        if kind in ("cycle", "recovery"):
            try:
                key = int(rid)
            except (TypeError, ValueError):
                return 404, {"error": "no such %s" % kind}
        else:
            key = str(rid).lower()
        rec = w.find(kind, key)
        if rec is None:
            return 404, {"error": "no such %s" % kind}
        for k in list(sets) + list(unsets):
            if k in ("id", "user_id", "cycle_id", "sleep_id"):
                raise ValueError("%s cannot change" % k)
        body = self._served(rec, now)
        _apply(body, sets, unsets)
        self._fix(rec, body, now)
        if kind != "cycle" and rec.created <= now:
            edits = [(kind + ".updated", rec)]
            if kind == "sleep":
                edits += self._recovery_edit(rec, now)
            self.hooks.changed(edits)
        return 200, {"record": body}

    def _served(self, rec, now):
        """_served: a copy of the record as served now (its body if not yet visible)."""
        cur = rec.view(now)
        return json.loads(json.dumps(cur if cur is not None else rec.body()))

    def _fix(self, rec, body, now):
        """_fix freezes a record as body, updated now: its pending and re-score
        transitions are dropped; a new start or end re-sorts it."""
        start = parse_iso(str(body["start"])) if "start" in body else rec.start
        end = parse_iso(str(body["end"])) if body.get("end") else rec.end
        body["updated_at"] = iso(now)
        rec.fixed, rec.pending, rec.rescore = body, -INF, 0
        if (start, end) != (rec.start, rec.end):
            self.world.move(rec, start, end)

    def _recovery_edit(self, sleep, now):
        """_recovery_edit: the recovery.updated an edit of a sleep also fires."""
        rc = self.world.recovery_of(sleep)
        return [("recovery.updated", rc)] if rc is not None and rc.created <= now else []

    def ctl_post_delete(self, q, d):
        w = self.world
        kind = d.get("kind")
        if kind not in ("sleep", "workout"):
            raise ValueError("kind must be sleep or workout (a recovery goes with its sleep, "
                             "a cycle stays)")
        rec = w.find(kind, str(d.get("id")).lower())
        if rec is None:
            return 404, {"error": "no such %s" % kind}
        into = None
        if d.get("merge_into") is not None:
            if kind != "sleep":
                raise ValueError("only a sleep merges into a sleep")
            into = w.find("sleep", str(d["merge_into"]).lower())
            if into is None:
                return 404, {"error": "no such sleep to merge into"}
            if into is rec or into.ath is not rec.ath:
                raise ValueError("merge_into must be another sleep of the same member")
        now = w.now()
        gone = [rec]
        if kind == "sleep" and w.recovery_of(rec) is not None:
            gone.append(w.recovery_of(rec))
        body = None
        if into is not None:      # before anything changes: a bad body is a 400
            body = self._served(into, now)
            _merge(body, self._served(rec, now))
        edits = [(x.kind + ".deleted", x) for x in gone if x.created <= now]
        out = {"deleted": [dict(w.remove(x, now, into.key if into is not None and x is rec
                                         else None), kind=x.kind) for x in gone]}
        if into is not None:
            self._fix(into, body, now)
            if into.created <= now:
                edits += [("sleep.updated", into)] + self._recovery_edit(into, now)
            out["record"] = body
        self.hooks.changed(edits)
        return 200, out

    def ctl_get_deleted(self, q, d):
        uid = (q.get("user_id") or [None])[-1]
        out = {}
        for kind, rows in self.world.deleted.items():
            out[kind] = [r for r in rows if uid is None or r["user_id"] == int(uid)]
        return 200, {"deleted": out}

    def ctl_get_webhooks(self, q, d):
        since = int((q.get("since") or [0])[-1])
        limit = (q.get("limit") or [None])[-1]
        return 200, self.hooks.report(since, None if limit is None else int(limit))

    def ctl_post_webhooks(self, q, d):
        return 200, {"subscription": self.hooks.subscribe(d)}

    def ctl_delete_webhooks(self, q, d):
        return 200, {"subscription": self.hooks.subscribe({"url": None})}

    def ctl_post_flush_webhooks(self, q, d):
        timeout = float(d.get("timeout_ms", 10_000)) / 1000
        with self.lock:     # a real-time clock: what is visible by now goes out first
            self.world.ensure()
            self.hooks.scan(False)
        return 200, self.hooks.wait_idle(timeout)
    ctl_post_flush_webhooks.unlocked = True


def _merge(body, nap):
    """_merge widens a sleep's body over the body of a nap merged into it:
    start, end and time in bed span both; stages and disturbances add up."""
    start = min(body["start"], nap["start"], key=parse_iso)
    end = max(body["end"], nap["end"], key=parse_iso)
    body["start"], body["end"] = start, end
    ss = (body.get("score") or {}).get("stage_summary")
    ns = (nap.get("score") or {}).get("stage_summary") or {}
    if isinstance(ss, dict):
        for k in ("total_light_sleep_time_milli", "total_slow_wave_sleep_time_milli",
                  "total_rem_sleep_time_milli", "total_no_data_time_milli",
                  "sleep_cycle_count", "disturbance_count"):
            ss[k] = ss.get(k, 0) + ns.get(k, 0)
        in_bed = parse_iso(end) - parse_iso(start)
        ss["total_in_bed_time_milli"] = in_bed
        ss["total_awake_time_milli"] = max(0, in_bed - sum(
            ss[k] for k in ("total_light_sleep_time_milli", "total_slow_wave_sleep_time_milli",
                            "total_rem_sleep_time_milli", "total_no_data_time_milli")))


def _apply(obj, sets, unsets):
    for path, value in sets.items():
        parts = path.split(".")
        cur = obj
        for p in parts[:-1]:
            nxt = cur.get(p)
            if not isinstance(nxt, dict):
                nxt = cur[p] = {}
            cur = nxt
        cur[parts[-1]] = value
    for path in unsets:
        parts = path.split(".")
        cur = obj
        for p in parts[:-1]:
            cur = cur.get(p)
            if not isinstance(cur, dict):
                break
        else:
            cur.pop(parts[-1], None)
