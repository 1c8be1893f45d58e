"""test_simulator.py -- the WHOOP API simulator (the package test/whoop_sim/) itself.

Record shapes against WHOOP's OpenAPI schema (required fields and types are
hard-coded below), paging and filtering, OAuth and token rotation, rate
limits, every fault kind, chaos, the control plane, determinism, internal
consistency of the generated physiology and multi-athlete separation.
Webhooks, received by a Receiver in this process (http, or https with
certificates made by openssl): signature and body, the events of touches,
deletions, merges and clock moves, retries on WHOOP's schedule (scaled by
RETRY_SCALE so that an hour of retries takes a fifth of a second), the
duplicate/drop/reorder knobs, grants, a real-time clock; waits are bounded
waits on a condition, never on time.

Run alone:  cd test && /usr/bin/python3 -m unittest -v test_simulator
"""

import base64
import hashlib
import hmac
import http.client
import http.server
import json
import math
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import harness

NOW = "2026-06-30T12:00:00Z"

# --------------------------------------------------------------------------
# the OpenAPI schema, hard-coded: field -> type for required and optional
# fields ("opt" fields may also be absent or null).

TS = "timestamp"
TZ = "tz"
UUID = "uuid"
STATE = "state"
INT, NUM, STR, BOOL = "int", "number", "string", "bool"

CYCLE_SCORE = ({"strain": NUM, "kilojoule": NUM, "average_heart_rate": INT,
                "max_heart_rate": INT}, {})
STAGE_SUMMARY = ({k: INT for k in (
    "total_in_bed_time_milli", "total_awake_time_milli", "total_no_data_time_milli",
    "total_light_sleep_time_milli", "total_slow_wave_sleep_time_milli",
    "total_rem_sleep_time_milli", "sleep_cycle_count", "disturbance_count")}, {})
SLEEP_NEEDED = ({k: INT for k in ("baseline_milli", "need_from_sleep_debt_milli",
                                  "need_from_recent_strain_milli",
                                  "need_from_recent_nap_milli")}, {})
SLEEP_SCORE = ({"stage_summary": STAGE_SUMMARY, "sleep_needed": SLEEP_NEEDED},
               {"respiratory_rate": NUM, "sleep_performance_percentage": NUM,
                "sleep_consistency_percentage": NUM, "sleep_efficiency_percentage": NUM})
RECOVERY_SCORE = ({"user_calibrating": BOOL, "recovery_score": NUM,
                   "resting_heart_rate": NUM, "hrv_rmssd_milli": NUM},
                  {"spo2_percentage": NUM, "skin_temp_celsius": NUM})
ZONES = ({k: INT for k in ("zone_zero_milli", "zone_one_milli", "zone_two_milli",
                           "zone_three_milli", "zone_four_milli", "zone_five_milli")}, {})
WORKOUT_SCORE = ({"strain": NUM, "average_heart_rate": INT, "max_heart_rate": INT,
                  "kilojoule": NUM, "percent_recorded": NUM, "zone_durations": ZONES},
                 {"distance_meter": NUM, "altitude_gain_meter": NUM,
                  "altitude_change_meter": NUM})
SCHEMAS = {
    "cycle": ({"id": INT, "user_id": INT, "created_at": TS, "updated_at": TS, "start": TS,
               "timezone_offset": TZ, "score_state": STATE},
              {"end": TS, "score": CYCLE_SCORE}),
    "sleep": ({"id": UUID, "cycle_id": INT, "user_id": INT, "created_at": TS,
               "updated_at": TS, "start": TS, "end": TS, "timezone_offset": TZ,
               "nap": BOOL, "score_state": STATE},
              {"v1_id": INT, "score": SLEEP_SCORE}),
    "recovery": ({"cycle_id": INT, "sleep_id": UUID, "user_id": INT, "created_at": TS,
                  "updated_at": TS, "score_state": STATE},
                 {"score": RECOVERY_SCORE}),
    "workout": ({"id": UUID, "user_id": INT, "created_at": TS, "updated_at": TS,
                 "start": TS, "end": TS, "timezone_offset": TZ, "sport_name": STR,
                 "score_state": STATE},
                {"v1_id": INT, "score": WORKOUT_SCORE, "sport_id": INT}),
    "profile": ({"user_id": INT, "email": STR, "first_name": STR, "last_name": STR}, {}),
    "body": ({"height_meter": NUM, "weight_kilogram": NUM, "max_heart_rate": INT}, {}),
}
# extra fields the simulator may add on purpose (clients must ignore them)
EXTRAS = {"cycle": {"step_count"}, "workout": {"route_name"}}
PATHS = {"cycle": "/v2/cycle", "recovery": "/v2/recovery", "sleep": "/v2/activity/sleep",
         "workout": "/v2/activity/workout"}
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TZ_RE = re.compile(r"^(Z|[+-]\d\d:[0-5]\d)$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
SPORTS = {"running", "cycling", "weightlifting", "functional-fitness", "yoga", "swimming",
          "rowing", "hiit", "walking", "tennis", "basketball", "soccer", "pilates", "hiking",
          "spin", "kyūdō", "pétanque"}


def type_ok(kind, v):
    if kind == INT:
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == NUM:     # the simulator always writes JSON numbers of float fields as floats
        return isinstance(v, float)
    if kind == STR:
        return isinstance(v, str) and v != ""
    if kind == BOOL:
        return isinstance(v, bool)
    if kind == TS:
        return isinstance(v, str) and bool(TS_RE.match(v))
    if kind == TZ:
        return isinstance(v, str) and bool(TZ_RE.match(v))
    if kind == UUID:
        return isinstance(v, str) and bool(UUID_RE.match(v))
    if kind == STATE:
        return v in ("SCORED", "PENDING_SCORE", "UNSCORABLE")
    raise AssertionError(kind)


def shape_errors(obj, schema, where="", extras=()):
    """shape_errors lists every way obj violates (required, optional)."""
    req, opt = schema
    errs = []
    if not isinstance(obj, dict):
        return ["%s: not an object" % where]
    for k, t in req.items():
        if k not in obj or obj[k] is None:
            errs.append("%s.%s: required, missing" % (where, k))
        elif isinstance(t, tuple):
            errs += shape_errors(obj[k], t, where + "." + k)
        elif not type_ok(t, obj[k]):
            errs.append("%s.%s: %r is not %s" % (where, k, obj[k], t))
    for k, t in opt.items():
        if k in obj and obj[k] is not None:
            if isinstance(t, tuple):
                errs += shape_errors(obj[k], t, where + "." + k)
            elif not type_ok(t, obj[k]):
                errs.append("%s.%s: %r is not %s" % (where, k, obj[k], t))
    for k in obj:
        if k not in req and k not in opt and k not in extras:
            errs.append("%s.%s: unexpected field" % (where, k))
    return errs


def ms(ts):
    return harness_parse(ts)


def harness_parse(ts):
    from datetime import datetime
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def iso(msec):
    from datetime import datetime, timezone
    return datetime.fromtimestamp(msec / 1000, timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (msec % 1000)


def form_token(sim, acc, **form):
    base = {"client_id": acc["client_id"], "client_secret": acc["client_secret"]}
    base.update(form)
    status, headers, data = sim.request("POST", "/oauth/oauth2/token", form=base)
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data


def refresh(sim, acc, rt):
    return form_token(sim, acc, grant_type="refresh_token", refresh_token=rt, scope="offline")


def all_pages(sim, kind, token, limit=25, **params):
    """all_pages follows next_token to the end; returns (records, pages, envelopes)."""
    out, envs, tok = [], [], None
    while True:
        q = dict(params, limit=limit)
        if tok:
            q["nextToken"] = tok
        status, _, body = sim.api(PATHS[kind], token, **q)
        if status != 200:
            raise AssertionError("%s page: %d %r" % (kind, status, body))
        envs.append(body)
        out += body["records"]
        tok = body.get("next_token")
        if not tok:
            return out, len(envs), envs
        if len(envs) > 1000:
            raise AssertionError("runaway paging")


def raw(port, method, path, headers=None, body=None, timeout=10):
    """raw sends one request on a fresh connection; returns the response (unread)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path, body=body, headers=headers or {})
    return conn, conn.getresponse()


def rec_key(kind, r):
    return r["cycle_id"] if kind == "recovery" else r["id"]


class SimTestCase(harness.SimulatorSuite):
    """One simulator per class with SIM_ARGS, no database; its accounts as acc."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.acc = cls.sim.accounts()

    def token(self, athlete=0):
        return self.sim.token(athlete)


# --------------------------------------------------------------------------

class ShapeTest(SimTestCase):
    """Every record as served matches the OpenAPI schema; variants occur."""
    SIM_ARGS = ("--athletes", "4", "--days", "420", "--rate-per-minute", "0")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.recs = {k: cls.sim.records(k) for k in ("cycle", "recovery", "sleep", "workout")}

    def test_every_record_matches_the_schema(self):
        for kind, recs in self.recs.items():
            self.assertGreater(len(recs), 100, kind)
            errs = []
            for r in recs:
                errs += shape_errors(r, SCHEMAS[kind], "%s %s" % (kind, rec_key(kind, r)),
                                     EXTRAS.get(kind, ()))
                if r["score_state"] == "SCORED":
                    if "score" not in r:
                        errs.append("%s %s: SCORED without score" % (kind, rec_key(kind, r)))
                elif "score" in r:
                    errs.append("%s %s: score while %s" % (kind, rec_key(kind, r), r["score_state"]))
            self.assertEqual(errs[:10], [])

    def test_profile_and_body(self):
        for i in range(4):
            tok = self.token(i)
            st, _, prof = self.sim.api("/v2/user/profile/basic", tok)
            self.assertEqual(st, 200)
            self.assertEqual(shape_errors(prof, SCHEMAS["profile"]), [])
            self.assertEqual(prof["user_id"], self.acc["athletes"][i]["user_id"])
            st, _, body = self.sim.api("/v2/user/measurement/body", tok)
            self.assertEqual(st, 200)
            self.assertEqual(shape_errors(body, SCHEMAS["body"]), [])
            self.assertNotIn("user_id", body)
            self.assertTrue(1.4 < body["height_meter"] < 2.1 and 40 < body["weight_kilogram"] < 130)

    def test_text_is_non_ascii_utf8_unescaped(self):
        """Names, sports and route names hold non-ASCII text (2-, 3- and 4-byte
        UTF-8), sent as raw UTF-8 like WHOOP's answers, not as \\u escapes;
        e-mail addresses stay ASCII."""
        names = []
        for i in range(4):
            st, _, body = self.sim.request("GET", "/developer/v2/user/profile/basic", headers={
                "Authorization": "Bearer " + self.token(i)})
            self.assertEqual(st, 200)
            self.assertNotIn(b"\\u", body)
            prof = json.loads(body.decode("utf-8"))
            names += [prof["first_name"], prof["last_name"]]
            self.assertIn(prof["first_name"].encode("utf-8"), body)
            self.assertTrue(prof["email"].isascii(), prof["email"])
        self.assertTrue(any(not n.isascii() for n in names), names)
        sports = {w["sport_name"] for w in self.recs["workout"]}
        self.assertTrue(any(not s.isascii() for s in sports), sports)
        routes = {w["route_name"] for w in self.recs["workout"] if "route_name" in w}
        widths = {len(c.encode("utf-8")) for r in routes for c in r}
        self.assertEqual(widths, {1, 2, 3, 4}, routes)
        tok = self.token(0)
        st, _, page = self.sim.request("GET", "/developer/v2/activity/workout?limit=25", headers={
            "Authorization": "Bearer " + tok})
        self.assertEqual(st, 200)
        self.assertNotIn(b"\\u", page)
        self.assertEqual(json.loads(page.decode("utf-8"))["records"],
                         self.sim.records("workout", self.acc["athletes"][0]["user_id"])[:25])

    def test_optional_fields_vary(self):
        """Optional fields are sometimes present, sometimes absent, sometimes null."""
        def seen(kind, path):
            states = set()
            for r in self.recs[kind]:
                if r["score_state"] != "SCORED" and path[0] == "score":
                    continue
                cur = r
                for p in path[:-1]:
                    cur = cur[p]
                states.add("absent" if path[-1] not in cur else
                           "null" if cur[path[-1]] is None else "value")
            return states
        self.assertEqual(seen("recovery", ("score", "spo2_percentage")), {"absent", "null", "value"})
        self.assertEqual(seen("recovery", ("score", "skin_temp_celsius")), {"absent", "null", "value"})
        self.assertEqual(seen("sleep", ("score", "sleep_consistency_percentage")),
                         {"absent", "null", "value"})
        self.assertEqual(seen("sleep", ("score", "respiratory_rate")), {"absent", "value"})
        self.assertEqual(seen("workout", ("score", "distance_meter")), {"absent", "null", "value"})
        self.assertEqual(seen("workout", ("score", "altitude_gain_meter")), {"absent", "value"})
        self.assertEqual(seen("sleep", ("v1_id",)), {"absent", "value"})
        self.assertEqual(seen("workout", ("v1_id",)), {"absent", "value"})
        self.assertEqual(seen("workout", ("sport_id",)), {"absent", "value"})
        self.assertEqual(seen("cycle", ("step_count",)), {"absent", "value"})
        self.assertEqual(seen("workout", ("route_name",)), {"absent", "value"})
        self.assertEqual(seen("cycle", ("end",)), {"absent", "value"})

    def test_legacy_ids_only_before_september_2025(self):
        for kind in ("sleep", "workout"):
            for r in self.recs[kind]:
                old = r["created_at"] < "2025-09-01"
                self.assertEqual("v1_id" in r, old, r["id"])
                if kind == "workout":
                    self.assertEqual("sport_id" in r, old, r["id"])

    def test_score_states_occur(self):
        for kind in ("cycle", "recovery", "sleep", "workout"):
            states = {r["score_state"] for r in self.recs[kind]}
            self.assertIn("SCORED", states, kind)
            self.assertIn("UNSCORABLE", states, kind)
        self.assertIn("PENDING_SCORE", {r["score_state"] for r in self.recs["cycle"]})

    def test_api_pages_equal_records(self):
        tok = self.token(1)
        uid = self.acc["athletes"][1]["user_id"]
        for kind in ("cycle", "recovery", "sleep", "workout"):
            got, _, _ = all_pages(self.sim, kind, tok)
            want = self.sim.records(kind, uid)
            self.assertEqual(got, want, kind)
            self.assertTrue(all(r["user_id"] == uid for r in got))


class PagingTest(SimTestCase):
    SIM_ARGS = ("--days", "730", "--rate-per-minute", "0")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tok = cls.sim.token()

    def test_paging_has_no_gaps_or_duplicates(self):
        for kind in ("cycle", "recovery", "sleep", "workout"):
            want = self.sim.records(kind)
            got, pages, envs = all_pages(self.sim, kind, self.tok, limit=25)
            self.assertGreater(pages, 10, kind)
            keys = [rec_key(kind, r) for r in got]
            self.assertEqual(len(keys), len(set(keys)), kind)
            self.assertEqual(got, want, kind)
            for env in envs[:-1]:
                self.assertEqual(len(env["records"]), 25)
                self.assertIsInstance(env["next_token"], str)
            last = envs[-1]
            if kind in ("cycle", "sleep"):
                self.assertNotIn("next_token", last)
            else:
                self.assertIsNone(last["next_token"])
            # another page size, with a start: the same records, overlapping [start, now)
            if kind != "recovery":
                start = want[150]["start"]
                got7, pages7, _ = all_pages(self.sim, kind, self.tok, limit=7,
                                            start=start[:-1] + "999Z")
                self.assertEqual(got7, [r for r in want if "end" not in r or r["end"] > start])
                self.assertGreater(pages7, 20)

    def test_newest_first(self):
        for kind in ("cycle", "sleep", "workout"):
            _, _, body = self.sim.api(PATHS[kind], self.tok, limit=25)
            starts = [r["start"] for r in body["records"]]
            self.assertEqual(starts, sorted(starts, reverse=True), kind)
        sleeps = {s["id"]: s for s in self.sim.records("sleep")}
        got, _, _ = all_pages(self.sim, "recovery", self.tok)
        starts = [sleeps[r["sleep_id"]]["start"] for r in got]
        self.assertEqual(starts, sorted(starts, reverse=True))

    def test_limit_bounds(self):
        st, _, body = self.sim.api("/v2/cycle", self.tok)
        self.assertEqual((st, len(body["records"])), (200, 10))
        for lim, want in (("1", 200), ("25", 200), ("26", 400), ("0", 400), ("-1", 400),
                          ("abc", 400), ("2.5", 400), ("", 400)):
            st, _, body = self.sim.api("/v2/cycle", self.tok, limit=lim)
            self.assertEqual(st, want, lim)
            if st == 200:
                self.assertEqual(len(body["records"]), int(lim))

    def test_overlap_semantics(self):
        cycles = self.sim.records("cycle")
        c = cycles[40]
        s, e = ms(c["start"]), ms(c["end"])

        def ids(**q):
            st, _, body = self.sim.api("/v2/cycle", self.tok, limit=25, **q)
            self.assertEqual(st, 200, q)
            return [r["id"] for r in body["records"]]
        # in progress at start: included
        self.assertIn(c["id"], ids(start=iso(s + 3600_000), end=iso(s + 7200_000)))
        self.assertIn(c["id"], ids(start=iso(e - 1), end=iso(e + 3600_000)))
        # ended exactly at start: not included; end is exclusive
        self.assertNotIn(c["id"], ids(start=iso(e), end=iso(e + 3600_000)))
        self.assertNotIn(c["id"], ids(start=iso(s - 7200_000), end=iso(s)))
        self.assertIn(c["id"], ids(start=iso(s - 7200_000), end=iso(s + 1)))
        # a window inside one cycle returns exactly that cycle
        self.assertEqual(ids(start=iso(s + 1000), end=iso(s + 2000)), [c["id"]])
        # the ongoing cycle (no end) is included for any start after its start
        newest = cycles[0]
        self.assertNotIn("end", newest)
        self.assertEqual(ids(start=iso(ms(newest["start"]) + 3600_000))[:1], [newest["id"]])

    def test_recovery_filtered_by_its_sleep(self):
        sleeps = {s["id"]: s for s in self.sim.records("sleep")}
        rec = self.sim.records("recovery")[30]
        sl = sleeps[rec["sleep_id"]]
        s, e = ms(sl["start"]), ms(sl["end"])
        for q, inside in (((s + 1000, s + 2000), True), ((e, e + 1000), False),
                          ((s - 2000, s), False), ((e - 1, e + 1000), True)):
            _, _, body = self.sim.api("/v2/recovery", self.tok, start=iso(q[0]), end=iso(q[1]))
            self.assertEqual(rec["cycle_id"] in [r["cycle_id"] for r in body["records"]], inside, q)

    def test_date_formats(self):
        c = self.sim.records("cycle")[10]
        s = ms(c["start"])
        base = iso(s + 60_000)
        variants = [base, base[:-5] + "Z", base[:-1] + "+00:00",
                    iso(s + 60_000 + 2 * 3600_000)[:-5] + "+02:00",
                    iso(s + 60_000 - 5 * 3600_000)[:-5] + "-05:00",
                    base[:-1] + "123Z"]
        for v in variants:
            st, _, body = self.sim.api("/v2/cycle", self.tok, start=v, end=iso(s + 120_000))
            self.assertEqual(st, 200, v)
            self.assertEqual([r["id"] for r in body["records"]], [c["id"]], v)
        for bad in ("yesterday", "2026-01-01", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z",
                    "1782000000", "2026-01-01T00:00:00.000 02:00", ""):
            st, _, _ = self.sim.api("/v2/cycle", self.tok, start=bad)
            self.assertEqual(st, 400, bad)
            st, _, _ = self.sim.api("/v2/activity/workout", self.tok, end=bad)
            self.assertEqual(st, 400, bad)
        # an unencoded '+' decodes to a space: 400, as from any form decoder
        st, _, _ = self.sim.request("GET", "/developer/v2/cycle?start=2026-01-01T00:00:00%2B02:00",
                                    headers={"Authorization": "Bearer " + self.tok})
        self.assertEqual(st, 200)
        st, _, _ = self.sim.request("GET", "/developer/v2/cycle?start=2026-01-01T00:00:00+02:00",
                                    headers={"Authorization": "Bearer " + self.tok})
        self.assertEqual(st, 400)

    def test_next_token_is_checked(self):
        _, _, body = self.sim.api("/v2/cycle", self.tok, limit=5)
        good = body["next_token"]
        st, _, b2 = self.sim.api("/v2/cycle", self.tok, limit=5, nextToken=good)
        self.assertEqual(st, 200)
        self.assertLess(b2["records"][0]["start"], body["records"][-1]["start"])
        for bad in ("garbage", good[:-2], "MTIzOjEyMzEyMw", good + "x",
                    base64.urlsafe_b64encode(b"1.2.abc").decode()):
            st, _, _ = self.sim.api("/v2/cycle", self.tok, nextToken=bad)
            self.assertEqual(st, 400, bad)
        # a cycle cursor is not a sleep cursor
        st, _, _ = self.sim.api("/v2/activity/sleep", self.tok, nextToken=good)
        self.assertEqual(st, 400)
        # empty means first page
        st, _, b3 = self.sim.api("/v2/cycle", self.tok, limit=5, nextToken="")
        self.assertEqual((st, b3), (200, body))

    def test_by_id(self):
        c = self.sim.records("cycle")[3]
        st, _, body = self.sim.api("/v2/cycle/%d" % c["id"], self.tok)
        self.assertEqual((st, body), (200, c))
        rec = [r for r in self.sim.records("recovery") if r["cycle_id"] == c["id"]][0]
        self.assertEqual(self.sim.api("/v2/cycle/%d/recovery" % c["id"], self.tok)[2], rec)
        sl = self.sim.api("/v2/cycle/%d/sleep" % c["id"], self.tok)[2]
        self.assertEqual((sl["id"], sl["cycle_id"], sl["nap"]), (rec["sleep_id"], c["id"], False))
        self.assertEqual(self.sim.api("/v2/activity/sleep/" + sl["id"], self.tok)[2], sl)
        self.assertEqual(self.sim.api("/v2/activity/sleep/" + sl["id"].upper(), self.tok)[2], sl)
        w = self.sim.records("workout")[0]
        self.assertEqual(self.sim.api("/v2/activity/workout/" + w["id"], self.tok)[2], w)
        for path, want in (("/v2/cycle/1", 404), ("/v2/cycle/99999999999", 404),
                           ("/v2/cycle/abc", 400), ("/v2/cycle/-5", 400), ("/v2/cycle/1.5", 400),
                           ("/v2/cycle/1/recovery", 404), ("/v2/cycle/x/sleep", 400),
                           ("/v2/activity/sleep/6b1d2f59-62a1-4c43-9a7e-2f1f0d3c9e11", 404),
                           ("/v2/activity/sleep/not-a-uuid", 400),
                           ("/v2/activity/workout/6b1d2f59-62a1-4c43-9a7e-2f1f0d3c9e11", 404),
                           ("/v2/activity/workout/12345", 400),
                           ("/v2/recovery/%d" % c["id"], 404), ("/v2/nothing", 404)):
            st, _, _ = self.sim.api(path, self.tok)
            self.assertEqual(st, want, path)
        st, _, _ = self.sim.request("POST", "/developer/v2/cycle",
                                    headers={"Authorization": "Bearer " + self.tok})
        self.assertEqual(st, 405)

    def test_missing_or_invalid_bearer(self):
        for hdrs in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer nope"},
                     {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()},
                     {"Authorization": "Bearer " + self.tok + "x"}):
            for path in ("/developer/v2/cycle", "/developer/v2/user/profile/basic",
                         "/developer/v2/cycle/1"):
                st, h, body = self.sim.request("GET", path, headers=hdrs)
                self.assertEqual(st, 401, (hdrs, path))
                self.assertIn("Bearer", h.get("WWW-Authenticate", ""))
                self.assertIn("error", json.loads(body))
        # the scheme is case-insensitive
        st, _, _ = self.sim.request("GET", "/developer/v2/cycle",
                                    headers={"Authorization": "bearer " + self.tok})
        self.assertEqual(st, 200)

    def test_keep_alive_and_content_length(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=10)
        socks = set()
        for path in ("/developer/v2/cycle?limit=3", "/developer/v2/cycle/1",
                     "/developer/v2/recovery", "/developer/v2/nothing"):
            conn.request("GET", path, headers={"Authorization": "Bearer " + self.tok})
            resp = conn.getresponse()
            body = resp.read()
            self.assertEqual(int(resp.getheader("Content-Length")), len(body))
            self.assertEqual(resp.version, 11)
            self.assertIn("application/json", resp.getheader("Content-Type"))
            socks.add(id(conn.sock))
        conn.request("DELETE", "/developer/v2/user/access", headers={"Authorization": "Bearer bad"})
        resp = conn.getresponse()
        resp.read()
        self.assertEqual(len(socks), 1)
        conn.close()

    def test_fresh_records_are_pending(self):
        sl = self.sim.records("sleep")
        newest = [s for s in sl if not s["nap"]][0]
        try:
            self.sim.clock(now=iso(ms(newest["created_at"]) + 180_000))
            self.tok = self.sim.token()     # tokens live on the simulator clock
            s0 = self.sim.api("/v2/activity/sleep", self.tok, limit=1)[2]["records"][0]
            r0 = self.sim.api("/v2/recovery", self.tok, limit=1)[2]["records"][0]
            self.assertEqual((s0["id"], s0["score_state"]), (newest["id"], "PENDING_SCORE"))
            self.assertEqual((r0["sleep_id"], r0["score_state"]), (newest["id"], "PENDING_SCORE"))
            self.assertEqual(s0["updated_at"], s0["created_at"])
            self.assertNotIn("score", r0)
            self.sim.clock(advance_seconds=3 * 3600)
            self.tok = self.sim.token()
            s0 = self.sim.api("/v2/activity/sleep/" + newest["id"], self.tok)[2]
            r0 = self.sim.api("/v2/recovery", self.tok, limit=1)[2]["records"][0]
            self.assertIn(s0["score_state"], ("SCORED", "UNSCORABLE"))
            self.assertIn(r0["score_state"], ("SCORED", "UNSCORABLE"))
            self.assertGreater(s0["updated_at"], s0["created_at"])
        finally:
            self.sim.clock(now=NOW)
            type(self).tok = self.sim.token()

    def test_invisible_until_created(self):
        newest = self.sim.records("sleep")[0]
        created = ms(newest["created_at"])
        try:
            self.sim.clock(now=iso(created - 1))
            self.assertNotEqual(self.sim.records("sleep")[0]["id"], newest["id"])
            st, _, _ = self.sim.api("/v2/activity/sleep/" + newest["id"], self.tok)
            self.assertEqual(st, 404)
            self.sim.clock(now=iso(created))
            st, _, body = self.sim.api("/v2/activity/sleep/" + newest["id"], self.tok)
            self.assertEqual((st, body["score_state"]), (200, "PENDING_SCORE"))
            self.assertNotIn("score", body)
        finally:
            self.sim.clock(now=NOW)


class OAuthTest(SimTestCase):
    SIM_ARGS = ("--athletes", "2", "--days", "30", "--rate-per-minute", "0", "--token-ttl", "600")

    def authorize(self, **over):
        q = {"response_type": "code", "client_id": self.acc["client_id"],
             "redirect_uri": self.acc["redirect_uri"], "scope": "offline read:cycles read:recovery",
             "state": "abcd1234"}
        q.update(over)
        q = {k: v for k, v in q.items() if v is not None}
        return self.sim.request("GET", "/oauth/oauth2/auth?" + urllib.parse.urlencode(q))

    def code_from(self, location):
        u = urllib.parse.urlsplit(location)
        self.assertEqual(urllib.parse.urlunsplit(u[:3] + ("", "")), self.acc["redirect_uri"])
        q = dict(urllib.parse.parse_qsl(u.query))
        return q["code"], q["state"]

    def exchange(self, code, **over):
        form = dict(grant_type="authorization_code", code=code,
                    redirect_uri=self.acc["redirect_uri"])
        form.update(over)
        return form_token(self.sim, self.acc, **form)

    def test_authorize_redirects_with_code_and_state(self):
        grants = self.sim.stats()["token_grants"]["authorization_code"]
        st, h, _ = self.authorize()
        self.assertEqual(st, 302)
        code, state = self.code_from(h["Location"])
        self.assertEqual(state, "abcd1234")
        self.assertGreater(len(code), 30)
        st, tok = self.exchange(code)
        self.assertEqual(st, 200, tok)
        self.assertEqual(set(tok), {"access_token", "expires_in", "refresh_token", "scope",
                                    "token_type"})
        self.assertEqual((tok["expires_in"], tok["token_type"]), (600, "bearer"))
        self.assertEqual(set(tok["scope"].split()), {"offline", "read:cycles", "read:recovery"})
        self.assertGreater(len(tok["access_token"]), 40)
        st, _, prof = self.sim.api("/v2/cycle", tok["access_token"])
        self.assertEqual(st, 200)
        self.assertEqual(self.sim.stats()["token_grants"]["authorization_code"], grants + 1)
        # codes are single use
        st, body = self.exchange(code)
        self.assertEqual((st, body["error"]), (400, "invalid_grant"))

    def test_authorize_checks_its_input(self):
        for over in ({"client_id": "other"}, {"redirect_uri": "https://localhost/callback/x"},
                     {"redirect_uri": "http://localhost/callback"}, {"scope": "read:everything"},
                     {"scope": ""}, {"state": "short"}, {"state": "123456789"}, {"state": None},
                     {"response_type": "token"}, {"user_id": "12"}):
            st, h, body = self.authorize(**over)
            self.assertEqual(st, 400, over)
            self.assertIn("error", json.loads(body))
            self.assertIn("X-RateLimit-Limit", h)

    def test_authorize_as_another_athlete(self):
        uid = self.acc["athletes"][1]["user_id"]
        st, h, _ = self.authorize(user_id=str(uid), scope="read:profile")
        code, _ = self.code_from(h["Location"])
        st, tok = self.exchange(code)
        self.assertNotIn("refresh_token", tok)      # no offline: no refresh token
        self.assertEqual(self.sim.api("/v2/user/profile/basic", tok["access_token"])[2]["user_id"],
                         uid)

    def test_code_exchange_checks(self):
        _, h, _ = self.authorize()
        code, _ = self.code_from(h["Location"])
        st, body = self.exchange(code, redirect_uri="https://localhost/other")
        self.assertEqual((st, body["error"]), (400, "invalid_grant"))
        _, h, _ = self.authorize()
        code, _ = self.code_from(h["Location"])
        st, body = self.exchange(code, client_secret="wrong")
        self.assertEqual((st, body["error"]), (400, "invalid_client"))
        st, body = self.exchange(code, client_id="other")
        self.assertEqual((st, body["error"]), (400, "invalid_client"))
        st, body = self.exchange(code, grant_type="password")
        self.assertEqual((st, body["error"]), (400, "unsupported_grant_type"))
        st, body = self.exchange(code)       # the failed attempts did not spend it
        self.assertEqual(st, 200, body)
        st, body = self.exchange("no-such-code")
        self.assertEqual((st, body["error"]), (400, "invalid_grant"))

    def test_credentials_must_be_in_a_form_body(self):
        rt = self.sim.accounts()["athletes"][0]["refresh_token"]
        st, h, body = self.sim.request("POST", "/oauth/oauth2/token", body={
            "grant_type": "refresh_token", "refresh_token": rt,
            "client_id": self.acc["client_id"], "client_secret": self.acc["client_secret"]})
        self.assertEqual((st, json.loads(body)["error"]), (400, "invalid_request"))
        basic = base64.b64encode(("%s:%s" % (self.acc["client_id"],
                                             self.acc["client_secret"])).encode()).decode()
        st, _, body = self.sim.request("POST", "/oauth/oauth2/token", headers={
            "Authorization": "Basic " + basic}, form={"grant_type": "refresh_token",
                                                      "refresh_token": rt})
        self.assertEqual((st, json.loads(body)["error"]), (400, "invalid_client"))
        st, tok = refresh(self.sim, self.acc, rt)       # still unused, still good
        self.assertEqual(st, 200)
        self.assertEqual(h.get("Cache-Control"), "no-store")

    def test_refresh_rotates(self):
        rt = self.sim.accounts()["athletes"][0]["refresh_token"]
        st, t1 = refresh(self.sim, self.acc, rt)
        self.assertEqual(st, 200)
        self.assertEqual(self.sim.api("/v2/cycle", t1["access_token"])[0], 200)
        st, t2 = refresh(self.sim, self.acc, t1["refresh_token"])
        self.assertEqual(st, 200)
        self.assertNotEqual(t2["refresh_token"], t1["refresh_token"])
        self.assertNotEqual(t2["access_token"], t1["access_token"])
        # the old access token and both old refresh tokens are dead at once
        self.assertEqual(self.sim.api("/v2/cycle", t1["access_token"])[0], 401)
        self.assertEqual(self.sim.api("/v2/cycle", t2["access_token"])[0], 200)
        for old in (rt, t1["refresh_token"]):
            st, body = refresh(self.sim, self.acc, old)
            self.assertEqual((st, body["error"]), (400, "invalid_grant"))
        # the failed reuse did not hurt the current pair
        self.assertEqual(self.sim.api("/v2/cycle", t2["access_token"])[0], 200)
        st, t3 = refresh(self.sim, self.acc, t2["refresh_token"])
        self.assertEqual(st, 200)
        self.assertEqual(set(t3["scope"].split()), {"offline", "read:recovery", "read:cycles",
                                                    "read:workout", "read:sleep", "read:profile",
                                                    "read:body_measurement"})
        st, body = refresh(self.sim, self.acc, "")
        self.assertEqual((st, body["error"]), (400, "invalid_request"))
        st, body = form_token(self.sim, self.acc, grant_type="refresh_token",
                              refresh_token=t3["refresh_token"], client_secret="nope")
        self.assertEqual((st, body["error"]), (400, "invalid_client"))

    def test_racing_refreshes_have_one_winner(self):
        import threading
        rt = self.sim.accounts()["athletes"][0]["refresh_token"]
        results = []
        gate = threading.Barrier(6)

        def go():
            gate.wait()
            results.append(refresh(self.sim, self.acc, rt))
        threads = [threading.Thread(target=go) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(st for st, _ in results), [200] + [400] * 5)
        self.assertTrue(all(b["error"] == "invalid_grant" for st, b in results if st == 400))
        winner = [b for st, b in results if st == 200][0]
        self.assertEqual(self.sim.api("/v2/cycle", winner["access_token"])[0], 200)

    def test_minting_accounts_keeps_issued_tokens(self):
        a1 = self.sim.accounts()["athletes"][0]
        st, t1 = refresh(self.sim, self.acc, a1["refresh_token"])
        a2 = self.sim.accounts()["athletes"][0]
        self.assertNotEqual(a1["refresh_token"], a2["refresh_token"])
        self.assertNotEqual(a1["code"], a2["code"])
        self.assertEqual(self.sim.api("/v2/cycle", t1["access_token"])[0], 200)
        self.assertEqual(refresh(self.sim, self.acc, t1["refresh_token"])[0], 200)
        # the minted code works with the redirect_uri
        st, tok = self.exchange(a2["code"])
        self.assertEqual(st, 200, tok)

    def test_scopes(self):
        _, h, _ = self.authorize(scope="read:cycles")
        code, _ = self.code_from(h["Location"])
        st, tok = self.exchange(code)
        at = tok["access_token"]
        self.assertNotIn("refresh_token", tok)
        self.assertEqual(self.sim.api("/v2/cycle", at)[0], 200)
        cid = self.sim.api("/v2/cycle", at)[2]["records"][1]["id"]
        for path in ("/v2/recovery", "/v2/activity/sleep", "/v2/activity/workout",
                     "/v2/user/profile/basic", "/v2/user/measurement/body",
                     "/v2/cycle/%d/recovery" % cid):
            st, _, body = self.sim.api(path, at)
            self.assertEqual((st, body["error"]), (403, "insufficient_scope"), path)
        # cycle/{id}/sleep: read:sleep or read:cycles
        self.assertEqual(self.sim.api("/v2/cycle/%d/sleep" % cid, at)[0], 200)

    def test_wrong_secret_counts_as_failed_grant(self):
        before = self.sim.stats()["token_grants"]["failed"]
        rt = self.sim.accounts()["athletes"][0]["refresh_token"]
        st, body = form_token(self.sim, self.acc, grant_type="refresh_token", refresh_token=rt,
                              client_secret="wrong")
        self.assertEqual((st, body["error"]), (400, "invalid_client"))
        self.assertEqual(self.sim.stats()["token_grants"]["failed"], before + 1)
        self.assertEqual(refresh(self.sim, self.acc, rt)[0], 200)

    def test_expiry_on_the_real_clock_not_the_data_clock(self):
        rt = self.sim.accounts()["athletes"][1]["refresh_token"]
        st, t = refresh(self.sim, self.acc, rt)
        try:
            # WHOOP's clock is the real one: the data clock moving past the
            # token's life (600 s) does not expire it
            self.sim.clock(advance_seconds=601)
            self.assertEqual(self.sim.api("/v2/cycle", t["access_token"])[0], 200)
            self.sim.expire_tokens(user_id=self.acc["athletes"][1]["user_id"])
            self.assertEqual(self.sim.api("/v2/cycle", t["access_token"])[0], 401)
            log = self.sim.request_log()[-1]
            self.assertEqual((log["bearer_state"], log["bearer_user_id"]),
                             ("expired", self.acc["athletes"][1]["user_id"]))
            st, t2 = refresh(self.sim, self.acc, t["refresh_token"])
            self.assertEqual(st, 200)
            self.assertEqual(self.sim.api("/v2/cycle", t2["access_token"])[0], 200)
        finally:
            self.sim.clock(now=NOW)

    def test_expire_tokens(self):
        ta, tb = self.token(0), self.token(1)
        r = self.sim.expire_tokens(user_id=self.acc["athletes"][0]["user_id"])
        self.assertGreaterEqual(r["expired"], 1)
        self.assertEqual(self.sim.api("/v2/cycle", ta)[0], 401)
        self.assertEqual(self.sim.api("/v2/cycle", tb)[0], 200)
        self.sim.expire_tokens()
        self.assertEqual(self.sim.api("/v2/cycle", tb)[0], 401)
        self.assertEqual(self.sim.api("/v2/cycle", self.token(1))[0], 200)

    def test_revoke(self):
        rt = self.sim.accounts()["athletes"][1]["refresh_token"]
        st, t = refresh(self.sim, self.acc, rt)
        other = self.token(0)
        st, h, body = self.sim.request("DELETE", "/developer/v2/user/access",
                                       headers={"Authorization": "Bearer " + t["access_token"]})
        self.assertEqual((st, body, h.get("Content-Length")), (204, b"", "0"))
        self.assertEqual(self.sim.api("/v2/cycle", t["access_token"])[0], 401)
        st, body = refresh(self.sim, self.acc, t["refresh_token"])
        self.assertEqual((st, body["error"]), (400, "invalid_grant"))
        self.assertEqual(self.sim.api("/v2/cycle", other)[0], 200)   # other athlete untouched
        st, _, _ = self.sim.request("DELETE", "/developer/v2/user/access",
                                    headers={"Authorization": "Bearer " + t["access_token"]})
        self.assertEqual(st, 401)
        self.assertEqual(self.sim.api("/v2/cycle", self.token(1))[0], 200)   # relink works


class RealTimeTokenTest(SimTestCase):
    SIM_ARGS = ("--athletes", "1", "--days", "30", "--rate-per-minute", "0", "--token-ttl", "1")

    def test_token_expires_after_its_real_life(self):
        rt = self.sim.accounts()["athletes"][0]["refresh_token"]
        st, t = refresh(self.sim, self.acc, rt)
        self.assertEqual((st, t["expires_in"]), (200, 1))
        # a bounded wait for the real second to pass, not a timed assertion
        self.assertTrue(harness.wait_until(
            lambda: self.sim.api("/v2/cycle", t["access_token"])[0] == 401, timeout=30))
        self.assertEqual(self.sim.request_log()[-1]["bearer_state"], "expired")


class RateLimitTest(SimTestCase):
    SIM_ARGS = ("--days", "20", "--rate-per-minute", "6", "--rate-per-day", "1000",
                "--rate-minute-seconds", "1")

    def setUp(self):
        self.sim.control("POST", "ratelimit", {"per_minute": 6, "per_day": 1000,
                                               "minute_seconds": 1})
        self.tok = self.token()
        self.sim.reset()

    def parse(self, h):
        lim = h["X-RateLimit-Limit"]
        m = re.match(r"^(\d+), (\d+);window=(\d+), (\d+);window=(\d+)$", lim)
        self.assertIsNotNone(m, lim)
        return [int(x) for x in m.groups()], int(h["X-RateLimit-Remaining"]), \
            int(h["X-RateLimit-Reset"])

    def test_headers_on_every_response(self):
        for method, path, hdrs in (("GET", "/developer/v2/cycle", {"Authorization": "Bearer " + self.tok}),
                                   ("GET", "/developer/v2/cycle", {}),
                                   ("GET", "/developer/v2/nothing", {}),
                                   ("POST", "/oauth/oauth2/token", {}),
                                   ("GET", "/oauth/oauth2/auth", {})):
            st, h, _ = self.sim.request(method, path, headers=hdrs)
            lim, rem, reset = self.parse(h)
            self.assertEqual(lim, [6, 6, 1, 1000, 1440], path)
            self.assertGreaterEqual(reset, 1)
        self.sim.reset()
        st, h, _ = self.sim.request("GET", "/developer/v2/cycle", headers={})
        self.assertEqual(self.parse(h)[1], 5)

    def test_429_past_the_minute_and_recovery(self):
        for attempt in range(3):        # a (1 s) minute may pass mid-way: try again
            self.sim.reset()
            statuses = []
            for i in range(8):
                st, h, body = self.sim.api("/v2/cycle", self.tok, limit=1)
                statuses.append(st)
                if st == 429:
                    _, rem, reset = self.parse(h)
                    self.assertEqual(rem, 0)
                    self.assertGreaterEqual(reset, 1)
                    self.assertIn("error", body)
            if statuses == [200] * 6 + [429] * 2:
                break
        self.assertEqual(statuses, [200] * 6 + [429] * 2)
        self.assertEqual(self.sim.stats()["requests"]["GET /v2/cycle"], {"200": 6, "429": 2})
        time.sleep(1.05)
        st, h, _ = self.sim.api("/v2/cycle", self.tok, limit=1)
        self.assertEqual(st, 200)
        self.assertEqual(self.parse(h)[1], 5)

    def test_day_window(self):
        self.sim.control("POST", "ratelimit", {"per_minute": 0, "per_day": 3, "minute_seconds": 1})
        sts = []
        for _ in range(4):
            st, h, _ = self.sim.api("/v2/cycle", self.tok, limit=1)
            sts.append(st)
        self.assertEqual(sts, [200, 200, 200, 429])
        lim, rem, reset = self.parse(h)
        self.assertEqual(lim[0], 3)
        self.assertEqual(lim[1], 1_000_000_000)        # unlimited minute: a big number
        self.assertEqual(rem, 0)
        self.assertTrue(1300 <= reset <= 1440, reset)   # the day window, in real seconds
        # token requests count too
        st, _, _ = self.sim.request("POST", "/oauth/oauth2/token", form={})
        self.assertEqual(st, 429)

    def test_unlimited(self):
        self.sim.control("POST", "ratelimit", {"per_minute": 0, "per_day": 0})
        for _ in range(10):
            st, h, _ = self.sim.api("/v2/cycle", self.tok, limit=1)
            self.assertEqual(st, 200)
        lim, rem, _ = self.parse(h)
        self.assertEqual((lim[1], lim[3]), (1_000_000_000, 1_000_000_000))
        self.assertGreater(rem, 10 ** 8)

    def test_shared_by_all_athletes_of_the_app(self):
        self.sim.control("POST", "ratelimit", {"per_minute": 0, "per_day": 4})
        st1 = [self.sim.api("/v2/cycle", self.tok)[0] for _ in range(2)]
        tok2 = self.token()     # the refresh itself counts
        st2 = [self.sim.api("/v2/user/profile/basic", tok2)[0] for _ in range(2)]
        self.assertEqual(st1 + st2, [200, 200, 200, 429])


class FaultTest(SimTestCase):
    SIM_ARGS = ("--days", "30", "--rate-per-minute", "0")

    def setUp(self):
        self.sim.reset()
        self.tok = self.token()
        self.auth = {"Authorization": "Bearer " + self.tok}

    def get(self, path="/developer/v2/cycle?limit=3", timeout=10):
        conn, resp = raw(self.sim.port, "GET", path, self.auth, timeout=timeout)
        body = resp.read()
        conn.close()
        return resp, body

    def test_status(self):
        self.assertEqual(self.sim.fault(path="/v2/cycle", kind="status", status=503),
                         {"queued": 1})
        resp, body = self.get()
        self.assertEqual(resp.status, 503)
        self.assertIn(b"503", body)
        self.assertIsNotNone(resp.getheader("X-RateLimit-Remaining"))
        self.assertEqual(self.get()[0].status, 200)       # count 1: only once
        self.sim.fault(path="/v2/cycle", kind="status", status=500)
        resp, body = self.get()
        self.assertEqual(resp.status, 500)
        self.assertIn("error", json.loads(body))
        self.assertEqual(self.sim.stats()["requests"]["GET /v2/cycle"],
                         {"200": 1, "500": 1, "503": 1})

    def test_truncate(self):
        full = self.get()[1]
        self.sim.fault(path="/v2/cycle", kind="truncate")
        resp, body = self.get()
        self.assertEqual(resp.status, 200)
        self.assertEqual(int(resp.getheader("Content-Length")), len(body))
        self.assertEqual(body, full[:len(full) // 2])
        with self.assertRaises(ValueError):
            json.loads(body)

    def test_partial(self):
        full = self.get()[1]
        self.sim.fault(path="/v2/cycle", kind="partial")
        conn, resp = raw(self.sim.port, "GET", "/developer/v2/cycle?limit=3", self.auth)
        self.assertEqual(int(resp.getheader("Content-Length")), len(full))
        with self.assertRaises(http.client.IncompleteRead) as cm:
            resp.read()
        self.assertEqual(cm.exception.partial, full[:len(full) // 2])
        conn.close()

    def test_invalid_json(self):
        self.sim.fault(path="/v2/activity/sleep", kind="invalid_json")
        resp, body = self.get("/developer/v2/activity/sleep")
        self.assertEqual(resp.status, 200)
        self.assertIn("text/html", resp.getheader("Content-Type"))
        with self.assertRaises(ValueError):
            json.loads(body)

    def test_reset_sends_rst(self):
        self.sim.fault(path="/v2/cycle", kind="reset")
        s = socket.create_connection(("127.0.0.1", self.sim.port), timeout=5)
        s.sendall(("GET /developer/v2/cycle HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                   % self.tok).encode())
        with self.assertRaises(ConnectionResetError):
            data = s.recv(1000)
            if data == b"":
                raise AssertionError("FIN instead of RST")
            raise AssertionError("got a response: %r" % data[:80])
        s.close()
        self.assertEqual(self.get()[0].status, 200)
        self.assertEqual(self.sim.stats()["requests"]["GET /v2/cycle"], {"0": 1, "200": 1})
        log = [r for r in self.sim.request_log() if r["path"] == "/v2/cycle"]
        self.assertEqual([(r["status"], r["fault"]) for r in log], [(0, "reset"), (200, None)])

    def test_delay_and_slow_body(self):
        self.sim.fault(path="/v2/cycle", kind="delay", delay_ms=300)
        t = time.time()
        resp, body = self.get()
        self.assertGreaterEqual(time.time() - t, 0.28)
        self.assertEqual(resp.status, 200)
        json.loads(body)
        self.sim.fault(path="/v2/cycle", kind="slow_body", delay_ms=400)
        conn, resp = raw(self.sim.port, "GET", "/developer/v2/cycle?limit=3", self.auth)
        t = time.time()
        body = resp.read()
        self.assertGreaterEqual(time.time() - t, 0.25)     # the body trickles in
        json.loads(body)
        conn.close()

    def test_unauthorized_keeps_the_token(self):
        self.sim.fault(path="/v2/cycle", kind="unauthorized")
        resp, body = self.get()
        self.assertEqual(resp.status, 401)
        self.assertEqual(self.get()[0].status, 200)

    def test_after_count_template_and_fifo(self):
        self.sim.fault(path="/v2/cycle/{id}", kind="status", status=502, after=1, count=2)
        self.sim.fault(path="/v2/cycle/{id}", kind="status", status=504)
        self.sim.fault(path="*", kind="status", status=500)
        self.assertEqual(self.sim.control("GET", "faults")["faults"][0]["after"], 1)
        cid = self.sim.records("cycle")[1]["id"]
        got = [self.get("/developer/v2/cycle/%d" % cid)[0].status for _ in range(5)]
        self.assertEqual(got, [200, 502, 502, 504, 500])
        self.assertEqual(self.get()[0].status, 200)
        # exact paths match too, and the token endpoint; reset clears the queue
        self.sim.fault(path="/v2/cycle/%d" % cid, kind="status", status=503)
        self.assertEqual(self.get("/developer/v2/cycle/%d" % cid)[0].status, 503)
        self.sim.fault(path="/oauth/oauth2/token", kind="status", status=500)
        with self.assertRaises(RuntimeError):
            self.sim.token()
        self.sim.fault(path="*", kind="status", count=5)
        self.assertEqual(self.sim.reset(), {"reset": True})
        self.assertEqual(self.get()[0].status, 200)
        with self.assertRaises(RuntimeError):
            self.sim.fault(path="*", kind="nonsense")

    def test_delayed_token_response_still_rotates(self):
        acc = self.sim.accounts()
        rt = acc["athletes"][0]["refresh_token"]
        self.sim.fault(path="/oauth/oauth2/token", kind="delay", delay_ms=1500)
        body = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": rt,
                                       "client_id": acc["client_id"],
                                       "client_secret": acc["client_secret"]})
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=0.3)
        conn.request("POST", "/oauth/oauth2/token", body=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        with self.assertRaises(socket.timeout):
            conn.getresponse()
        conn.close()
        # WHOOP accepted it: the refresh token is spent although the answer never came
        st, body = refresh(self.sim, acc, rt)
        self.assertEqual((st, body["error"]), (400, "invalid_grant"))
        self.assertEqual(self.sim.stats()["token_grants"]["refresh_token"], 2)


class ChaosTest(SimTestCase):
    SIM_ARGS = ("--days", "30", "--rate-per-minute", "0")

    SPEC = {"seed": 7, "rates": {"status_5xx": 0.12, "timeout": 0.04, "truncate": 0.05,
                                 "reset": 0.04, "burst_429": 0.03, "unauthorized": 0.04,
                                 "partial": 0.04},
            "timeout_ms": 40, "burst_len": 3, "token_rates": {"accept_then_timeout": 0.3}}

    def run_sequence(self, tok, n=70):
        out = []
        for i in range(n):
            conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=5)
            try:
                conn.request("GET", "/developer/v2/cycle?limit=2",
                             headers={"Authorization": "Bearer " + tok})
                resp = conn.getresponse()
                body = resp.read()
                label = str(resp.status)
                if resp.status == 200:
                    try:
                        json.loads(body)
                    except ValueError:
                        label = "truncated"
            except http.client.IncompleteRead:
                label = "partial"
            except (ConnectionResetError, http.client.RemoteDisconnected):
                label = "reset"
            finally:
                conn.close()
            out.append(label)
        return out

    def test_chaos_is_deterministic_and_counted(self):
        tok = self.token()
        runs = []
        for _ in range(2):
            self.sim.reset()
            self.assertEqual(self.sim.chaos(**self.SPEC), {"chaos": "on"})
            runs.append(self.run_sequence(tok))
            injected = self.sim.control("GET", "chaos")["injected"]
            stats = self.sim.stats()["requests"]["GET /v2/cycle"]
        self.assertEqual(runs[0], runs[1])
        seq = runs[0]
        kinds = set(seq)
        self.assertTrue({"200", "reset", "partial", "truncated", "401", "429"} <= kinds, kinds)
        self.assertTrue(kinds & {"500", "502", "503", "504"}, kinds)
        self.assertEqual(sum(injected[k] for k in ("status_5xx",)),
                         sum(seq.count(s) for s in ("500", "502", "503", "504")))
        self.assertEqual(injected["reset"], seq.count("reset"))
        self.assertEqual(injected["partial"], seq.count("partial"))
        self.assertEqual(injected["truncate"], seq.count("truncated"))
        self.assertEqual(injected["unauthorized"], seq.count("401"))
        self.assertEqual(injected["burst_429"], seq.count("429"))
        self.assertEqual(stats.get("429", 0), seq.count("429"))
        self.assertGreater(injected["timeout"], 0)
        self.assertEqual(sum(injected.values()) + seq.count("200") - injected["timeout"], 70)
        # another seed, another schedule; off stops it, reset forgets it
        self.sim.reset()
        self.sim.chaos(**dict(self.SPEC, seed=8))
        self.assertNotEqual(self.run_sequence(tok, 40), seq[:40])
        self.sim.chaos(off=True)
        self.assertEqual(set(self.run_sequence(tok, 5)), {"200"})
        self.assertFalse(self.sim.control("GET", "chaos")["enabled"])

    def test_token_chaos_accepts_then_times_out(self):
        self.sim.reset()
        self.sim.chaos(seed=1, rates={}, timeout_ms=800, token_rates={"accept_then_timeout": 1.0})
        acc = self.sim.accounts()
        rt = acc["athletes"][0]["refresh_token"]
        body = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": rt,
                                       "client_id": acc["client_id"],
                                       "client_secret": acc["client_secret"]})
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=0.2)
        conn.request("POST", "/oauth/oauth2/token", body=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        with self.assertRaises(socket.timeout):
            conn.getresponse()
        conn.close()
        self.sim.chaos(off=True)
        self.assertEqual(refresh(self.sim, acc, rt)[1]["error"], "invalid_grant")
        self.assertEqual(self.sim.control("GET", "chaos")["injected"]["accept_then_timeout"], 1)
        self.sim.reset()
        self.assertEqual(self.sim.control("GET", "chaos")["injected"], {})

    def test_bad_chaos_spec(self):
        with self.assertRaises(RuntimeError):
            self.sim.chaos(seed=1, rates={"meteor": 0.1})
        with self.assertRaises(RuntimeError):
            self.sim.chaos(seed=1, rates={"reset": 2})


class ControlTest(SimTestCase):
    SIM_ARGS = ("--athletes", "2", "--days", "60", "--rate-per-minute", "0")

    def tearDown(self):
        self.sim.clock(now=NOW)

    def test_touch(self):
        tok = self.token()
        uid = self.acc["athletes"][0]["user_id"]
        c = self.sim.records("cycle", uid)[5]
        self.sim.clock(now="2026-06-30T12:34:56.789Z")
        r = self.sim.touch("recovery", c["id"], {"score.recovery_score": 12.5,
                                                "score.extra.deep": 1})
        self.assertEqual(r["record"]["score"]["recovery_score"], 12.5)
        st, _, rec = self.sim.api("/v2/cycle/%d/recovery" % c["id"], tok)
        self.assertEqual(rec["score"]["recovery_score"], 12.5)
        self.assertEqual(rec["updated_at"], "2026-06-30T12:34:56.789Z")
        self.assertEqual(rec["score"]["extra"], {"deep": 1})
        self.sim.touch("cycle", c["id"], {"score.strain": 3.25})
        got = self.sim.api("/v2/cycle/%d" % c["id"], tok)[2]
        self.assertEqual((got["score"]["strain"], got["updated_at"]),
                         (3.25, "2026-06-30T12:34:56.789Z"))
        self.assertEqual(got["start"], c["start"])
        s = self.sim.records("sleep", uid)[3]
        self.sim.touch("sleep", s["id"], {"score_state": "UNSCORABLE"}, unset=["score"])
        got = self.sim.api("/v2/activity/sleep/" + s["id"], tok)[2]
        self.assertEqual(got["score_state"], "UNSCORABLE")
        self.assertNotIn("score", got)
        w = self.sim.records("workout", uid)[0]
        self.sim.touch("workout", w["id"], {"sport_name": "yoga"})
        self.assertEqual(self.sim.api("/v2/activity/workout/" + w["id"], tok)[2]["sport_name"], "yoga")
        self.sim.touch("profile", uid, {"first_name": "Renamed"})
        self.assertEqual(self.sim.api("/v2/user/profile/basic", tok)[2]["first_name"], "Renamed")
        self.sim.touch("body", uid, {"weight_kilogram": 80.5})
        self.assertEqual(self.sim.api("/v2/user/measurement/body", tok)[2]["weight_kilogram"], 80.5)
        for kind, rid in (("cycle", 1), ("recovery", 1), ("sleep", "nope"), ("workout", w["id"][:-1]),
                          ("profile", 1), ("body", 1)):
            st, _, _ = self.sim.request("POST", "/_sim/touch", {"kind": kind, "id": rid,
                                                                "set": {"x": 1}})
            self.assertEqual(st, 404, kind)
        st, _, _ = self.sim.request("POST", "/_sim/touch", {"kind": "cycle", "id": c["id"],
                                                            "set": {"id": 1}})
        self.assertEqual(st, 400)

    def test_touch_start_resorts(self):
        tok = self.token()
        cycles = self.sim.records("cycle", self.acc["athletes"][0]["user_id"])
        c = cycles[10]
        new_start = iso(ms(cycles[12]["start"]) + 60_000)    # between 12 and 11
        self.sim.touch("cycle", c["id"], {"start": new_start})
        got, _, _ = all_pages(self.sim, "cycle", tok)
        order = [r["id"] for r in got]
        self.assertLess(order.index(c["id"]), order.index(cycles[12]["id"]))
        self.assertGreater(order.index(c["id"]), order.index(cycles[11]["id"]))

    def test_clock_advance_completes_the_ongoing_cycle(self):
        tok = self.token(1)
        uid = self.acc["athletes"][1]["user_id"]
        self.assertEqual(self.sim.clock(), "2026-06-30T12:00:00.000Z")
        before = {k: self.sim.records(k, uid) for k in ("cycle", "recovery", "sleep")}
        ongoing = before["cycle"][0]
        self.assertNotIn("end", ongoing)
        self.assertEqual(ongoing["score_state"], "PENDING_SCORE")
        self.assertEqual(self.sim.clock(advance_seconds=86400), "2026-07-01T12:00:00.000Z")
        tok = self.token(1)
        after = {k: self.sim.records(k, uid) for k in ("cycle", "recovery", "sleep")}
        done = [c for c in after["cycle"] if c["id"] == ongoing["id"]][0]
        self.assertIn("end", done)
        self.assertEqual(done["score_state"], "SCORED")
        self.assertGreater(done["updated_at"], ongoing["updated_at"])
        self.assertNotIn("end", after["cycle"][0])
        self.assertGreater(after["cycle"][0]["start"], ongoing["start"])
        for k in ("recovery", "sleep"):
            self.assertGreater(len(after[k]), len(before[k]), k)
        self.assertEqual(self.sim.api("/v2/cycle", tok, limit=1)[2]["records"][0],
                         after["cycle"][0])
        # and back: what was created after now disappears again
        self.sim.clock(now=NOW)
        self.assertEqual(self.sim.records("cycle", uid), before["cycle"])

    def test_new_records_between_pages(self):
        tok = self.token()
        _, _, p1 = self.sim.api("/v2/cycle", tok, limit=5)
        self.sim.clock(advance_seconds=3 * 86400)
        tok = self.token()
        _, _, p2 = self.sim.api("/v2/cycle", tok, limit=5, nextToken=p1["next_token"])
        self.assertLess(p2["records"][0]["start"], p1["records"][-1]["start"])
        all_now = self.sim.records("cycle", self.acc["athletes"][0]["user_id"])
        ids = [c["id"] for c in all_now]
        i = ids.index(p1["records"][-1]["id"])
        self.assertEqual([c["id"] for c in p2["records"]], ids[i + 1:i + 6])

    def test_stats_requests_and_reset(self):
        tok = self.token()
        self.sim.reset()
        self.assertEqual(self.sim.stats(), {"requests": {}, "token_grants": {
            "authorization_code": 0, "refresh_token": 0, "failed": 0}})
        cid = self.sim.records("cycle", self.acc["athletes"][0]["user_id"])[2]["id"]
        self.sim.api("/v2/cycle", tok, limit=2)
        self.sim.api("/v2/cycle/%d" % cid, tok)
        self.sim.api("/v2/cycle/1", tok)
        self.sim.api("/v2/cycle/%d/recovery" % cid, tok)
        sleep_id = self.sim.records("sleep")[1]["id"]
        self.sim.api("/v2/activity/sleep/" + sleep_id, "bad-token")
        tok2 = self.token(1)
        refresh(self.sim, self.acc, "spent-or-unknown")
        st = self.sim.stats()
        self.assertEqual(st["requests"], {
            "GET /v2/cycle": {"200": 1}, "GET /v2/cycle/{id}": {"200": 1, "404": 1},
            "GET /v2/cycle/{id}/recovery": {"200": 1}, "GET /v2/activity/sleep/{id}": {"401": 1},
            "POST /oauth/oauth2/token": {"200": 1, "400": 1}})
        self.assertEqual(st["token_grants"], {"authorization_code": 0, "refresh_token": 1,
                                              "failed": 1})
        log = self.sim.request_log()
        self.assertEqual(len(log), 7)
        self.assertEqual(log[0]["method"], "GET")
        self.assertEqual(log[0]["path"], "/v2/cycle")
        self.assertEqual(log[0]["query"], {"limit": "2"})
        self.assertEqual(log[0]["status"], 200)
        self.assertIn("Python-urllib", log[0]["user_agent"])
        self.assertEqual(log[0]["bearer_user_id"], self.acc["athletes"][0]["user_id"])
        self.assertIsNone(log[4]["bearer_user_id"])
        self.assertEqual(log[4]["bearer_state"], "unknown")
        self.assertEqual(log[5]["path"], "/oauth/oauth2/token")
        dump = json.dumps(log)
        self.assertNotIn(tok, dump)
        self.assertNotIn(tok2, dump)
        self.sim.reset()
        self.assertEqual(self.sim.request_log(), [])
        self.assertEqual(self.sim.api("/v2/cycle", tok)[0], 200)      # tokens survive reset

    def test_records_endpoint(self):
        uids = [a["user_id"] for a in self.acc["athletes"]]
        both = self.sim.records("cycle")
        one = self.sim.records("cycle", uids[0])
        two = self.sim.records("cycle", uids[1])
        self.assertEqual(len(both), len(one) + len(two))
        self.assertEqual({c["user_id"] for c in one}, {uids[0]})
        starts = [c["start"] for c in both]
        self.assertEqual(starts, sorted(starts, reverse=True))
        self.assertEqual(len(self.sim.records("profile")), 2)
        for q in ("records?kind=nope", "records"):
            st, _, _ = self.sim.request("GET", "/_sim/" + q)
            self.assertEqual(st, 400, q)
        st, _, _ = self.sim.request("GET", "/_sim/records?kind=cycle&user_id=1")
        self.assertEqual(st, 404)
        st, _, _ = self.sim.request("GET", "/_sim/nothing")
        self.assertEqual(st, 404)
        self.assertIn("POST /_sim/faults", self.sim.control("GET", "")["endpoints"])

    def test_control_plane_rejects_bad_input(self):
        for path, body in (("faults", b"not json"), ("faults", b"[1, 2]"),
                           ("clock", b'{"now": "tomorrow"}'), ("clock", b"{}"),
                           ("faults", b'{"kind": "status", "count": 0}')):
            req = urllib.request.Request(self.sim.base + "/_sim/" + path, data=body, method="POST")
            with self.assertRaises(urllib.error.HTTPError) as cm:
                urllib.request.urlopen(req, timeout=10)
            self.assertEqual(cm.exception.code, 400, (path, body))
            cm.exception.close()

    def test_control_plane_is_not_counted(self):
        self.sim.reset()
        self.sim.records("cycle")
        self.sim.clock()
        self.sim.accounts()
        self.assertEqual(self.sim.stats()["requests"], {})


# --------------------------------------------------------------------------
# webhooks

RETRY_SCALE = 20_000        # WHOOP's 66 minutes of retries in 0.2 s
RETRY_MINUTES = (1, 5, 10, 20, 30)
EVENT_KINDS = ("sleep", "recovery", "workout")


class Receiver:
    """Receiver is a webhook endpoint on 127.0.0.1 (plain http, or https with
    cert and key) that keeps every POST and answers each with the next status
    of its script (200 once the script is spent), after the next delay."""

    def __init__(self, cert=None, key=None):
        rx = self
        self.cond = threading.Condition()
        self.posts, self.script, self.delays = [], [], []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with rx.cond:
                    rx.posts.append({"path": self.path, "headers": dict(self.headers),
                                     "body": body})
                    status = rx.script.pop(0) if rx.script else 200
                    delay = rx.delays.pop(0) if rx.delays else 0
                    rx.cond.notify_all()
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass        # a client that gave up on a slow answer: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        if cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()
        self.url = "%s://127.0.0.1:%d/whoop/sim" % ("https" if cert else "http",
                                                    self.server.server_address[1])

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def reset(self, script=(), delays=()):
        with self.cond:
            self.posts, self.script, self.delays = [], list(script), list(delays)

    def events(self):
        """events: the bodies received so far, decoded, in arrival order."""
        with self.cond:
            return [json.loads(p["body"]) for p in self.posts]

    def wait_for(self, n, timeout=30):
        """wait_for returns the posts once there are at least n (bounded wait)."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.posts) >= n, timeout)
            return list(self.posts)


def signature_ok(secret, post):
    """signature_ok checks a delivery as WHOOP documents it."""
    ts = post["headers"]["X-WHOOP-Signature-Timestamp"]
    want = base64.b64encode(hmac.new(secret.encode(), ts.encode() + post["body"],
                                     hashlib.sha256).digest()).decode()
    return hmac.compare_digest(want, post["headers"]["X-WHOOP-Signature"])


def event_of(kind, r):
    """event_of: the (type, id) a record's .updated names (a recovery by its sleep)."""
    return (kind + ".updated", r["sleep_id"] if kind == "recovery" else r["id"])


def make_cert(directory, name):
    """make_cert makes a self-signed certificate for 127.0.0.1; returns (cert, key)."""
    cert, key = (os.path.join(directory, name + ext) for ext in (".pem", ".key"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


class HookTestCase(SimTestCase):
    """A receiver per class and a fresh subscription to it per test."""
    SIM_ARGS = ("--athletes", "2", "--days", "60", "--rate-per-minute", "0")
    CERT = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rx = Receiver(*(cls.CERT or ()))
        cls.addClassCleanup(cls.rx.stop)
        cls.uids = [a["user_id"] for a in cls.acc["athletes"]]

    def setUp(self):
        self.rx.reset()
        self.subscribe()

    def tearDown(self):
        """tearDown unsubscribes and waits out the attempts under way, so that
        the next test's receiver hears nothing of this one."""
        self.sim.control("DELETE", "webhooks")
        self.flush()
        self.sim.clock(now=NOW)

    def subscribe(self, **settings):
        spec = dict(url=self.rx.url, retry_scale=RETRY_SCALE)
        spec.update(settings)
        return self.sim.control("POST", "webhooks", spec)["subscription"]

    def flush(self):
        """flush waits until the simulator has nothing left to deliver."""
        out = self.sim.control("POST", "flush_webhooks", {"timeout_ms": 30_000})
        self.assertTrue(out["idle"], out)
        return out

    def log(self):
        return self.sim.control("GET", "webhooks")

    def received(self):
        """received: (type, id) of every event that arrived, in arrival order."""
        return [(e["type"], e["id"]) for e in self.rx.events()]


class WebhookTest(HookTestCase):
    """What is sent for which change, how it is signed, retried and knobbed."""

    def test_delivery_is_signed_and_has_exactly_four_keys(self):
        w = self.sim.records("workout", self.uids[0])[0]
        self.sim.touch("workout", w["id"], {"score.strain": 7.5})
        self.flush()
        [post] = self.rx.wait_for(1)
        h = post["headers"]
        self.assertEqual(post["path"], "/whoop/sim")
        self.assertEqual(h["Content-Type"], "application/json")
        self.assertTrue(signature_ok(self.acc["client_secret"], post))
        self.assertFalse(signature_ok(self.acc["client_secret"] + "x", post))
        self.assertTrue(re.fullmatch(r"[A-Za-z0-9+/]{43}=", h["X-WHOOP-Signature"]))
        # wall-clock milliseconds, whatever the simulator's clock says
        self.assertTrue(h["X-WHOOP-Signature-Timestamp"].isdigit())
        self.assertLess(abs(int(h["X-WHOOP-Signature-Timestamp"]) - time.time() * 1000), 300_000)
        body = json.loads(post["body"])
        self.assertEqual(list(body), ["user_id", "id", "type", "trace_id"])
        self.assertEqual(post["body"], json.dumps(body).encode())
        self.assertEqual((body["user_id"], body["id"], body["type"]),
                         (self.uids[0], w["id"], "workout.updated"))
        self.assertTrue(UUID_RE.match(body["trace_id"]))
        log = self.log()
        [d] = log["deliveries"]
        self.assertEqual((d["trace_id"], d["type"], d["user_id"], d["id"], d["status"],
                          d["attempts"], d["last_status_code"], d["knob"], d["changed_at"]),
                         (body["trace_id"], "workout.updated", self.uids[0], w["id"],
                          "delivered", 1, 200, None, "2026-06-30T12:00:00.000Z"))
        self.assertLessEqual(d["changed_at_real_ms"], d["delivered_at_real_ms"])
        self.assertEqual(log["counters"]["posts"], 1)
        self.assertEqual(log["counters"]["responses"], {"200": 1})

    def test_touch_emits_the_events_of_the_record(self):
        uid = self.uids[0]
        sleeps = self.sim.records("sleep", uid)
        main = [s for s in sleeps if not s["nap"]][4]
        nap = [s for s in sleeps if s["nap"]][0]
        rec = [r for r in self.sim.records("recovery", uid) if r["sleep_id"] != main["id"]][6]
        self.sim.touch("sleep", main["id"], {"score.respiratory_rate": 15.5})
        self.sim.touch("recovery", rec["cycle_id"], {"score.recovery_score": 44.0})
        self.sim.touch("sleep", nap["id"], {"score.respiratory_rate": 14.5})
        c = self.sim.records("cycle", uid)[3]
        self.sim.touch("cycle", c["id"], {"score.strain": 5.5})
        self.sim.touch("profile", uid, {"first_name": "Hooked"})
        self.sim.touch("body", uid, {"weight_kilogram": 71.25})
        self.flush()
        self.assertEqual(sorted(self.received()), sorted([
            ("sleep.updated", main["id"]), ("recovery.updated", main["id"]),
            ("recovery.updated", rec["sleep_id"]), ("sleep.updated", nap["id"])]))
        self.assertEqual({e["user_id"] for e in self.rx.events()}, {uid})

    def test_deleted_workout_is_gone_everywhere(self):
        uid = self.uids[0]
        tok = self.token(0)
        w = self.sim.records("workout", uid)[2]
        out = self.sim.control("POST", "delete", {"kind": "workout", "id": w["id"]})
        self.assertEqual(out["deleted"], [{"kind": "workout", "id": w["id"], "user_id": uid,
                                           "deleted_at": "2026-06-30T12:00:00.000Z"}])
        self.assertEqual(self.sim.api("/v2/activity/workout/" + w["id"], tok)[0], 404)
        self.assertNotIn(w["id"], [r["id"] for r in all_pages(self.sim, "workout", tok)[0]])
        self.assertNotIn(w["id"], [r["id"] for r in self.sim.records("workout")])
        self.assertIn(w["id"], [r["id"] for r in self.sim.control("GET", "deleted")
                                ["deleted"]["workout"]])
        self.flush()
        self.assertEqual(self.received(), [("workout.deleted", w["id"])])
        for body, want in (({"kind": "workout", "id": w["id"]}, 404),
                           ({"kind": "sleep", "id": "6b1d2f59-62a1-4c43-9a7e-2f1f0d3c9e11"}, 404),
                           ({"kind": "cycle", "id": self.sim.records("cycle")[4]["id"]}, 400),
                           ({"kind": "recovery",
                             "id": self.sim.records("recovery")[4]["cycle_id"]}, 400),
                           ({"kind": "profile", "id": uid}, 400)):
            self.assertEqual(self.sim.request("POST", "/_sim/delete", body)[0], want, body)

    def test_deleted_sleep_takes_its_recovery(self):
        uid = self.uids[1]
        tok = self.token(1)
        rec = self.sim.records("recovery", uid)[8]
        cid, sid = rec["cycle_id"], rec["sleep_id"]
        out = self.sim.control("POST", "delete", {"kind": "sleep", "id": sid})
        self.assertEqual([(d["kind"], d.get("id"), d.get("cycle_id")) for d in out["deleted"]],
                         [("sleep", sid, None), ("recovery", None, cid)])
        for path in ("/v2/activity/sleep/" + sid, "/v2/cycle/%d/recovery" % cid,
                     "/v2/cycle/%d/sleep" % cid):
            self.assertEqual(self.sim.api(path, tok)[0], 404, path)
        self.assertEqual(self.sim.api("/v2/cycle/%d" % cid, tok)[0], 200)     # the cycle stays
        self.assertNotIn(cid, [r["cycle_id"] for r in all_pages(self.sim, "recovery", tok)[0]])
        self.assertNotIn(sid, [r["id"] for r in all_pages(self.sim, "sleep", tok)[0]])
        self.assertNotIn(cid, [r["cycle_id"] for r in self.sim.records("recovery")])
        gone = self.sim.control("GET", "deleted?user_id=%d" % uid)["deleted"]
        self.assertIn({"cycle_id": cid, "sleep_id": sid, "user_id": uid,
                       "deleted_at": "2026-06-30T12:00:00.000Z"}, gone["recovery"])
        self.flush()
        self.assertEqual(sorted(self.received()),
                         [("recovery.deleted", sid), ("sleep.deleted", sid)])

    def test_nap_merged_into_its_sleep(self):
        uid = self.uids[1]
        tok = self.token(1)
        sleeps = self.sim.records("sleep", uid)
        nap = [s for s in sleeps[5:] if s["nap"]][0]
        main = [s for s in sleeps if s["cycle_id"] == nap["cycle_id"] and not s["nap"]][0]
        self.sim.clock(now="2026-06-30T12:30:00Z")
        out = self.sim.control("POST", "delete", {"kind": "sleep", "id": nap["id"],
                                                  "merge_into": main["id"]})
        self.assertEqual(out["deleted"][0]["merged_into"], main["id"])
        self.assertEqual(len(out["deleted"]), 1)            # a nap has no recovery
        self.assertEqual(self.sim.api("/v2/activity/sleep/" + nap["id"], tok)[0], 404)
        got = self.sim.api("/v2/activity/sleep/" + main["id"], tok)[2]
        self.assertEqual(got, out["record"])
        self.assertEqual((got["start"], got["end"], got["updated_at"]),
                         (main["start"], nap["end"], "2026-06-30T12:30:00.000Z"))
        stages = got["score"]["stage_summary"]
        self.assertEqual(stages["total_in_bed_time_milli"], ms(nap["end"]) - ms(main["start"]))
        self.assertEqual(stages["total_rem_sleep_time_milli"],
                         main["score"]["stage_summary"]["total_rem_sleep_time_milli"]
                         + nap["score"]["stage_summary"]["total_rem_sleep_time_milli"])
        self.assertEqual(sum(v for k, v in stages.items() if k.endswith("_time_milli")
                             and k != "total_in_bed_time_milli"),
                         stages["total_in_bed_time_milli"])
        self.assertEqual([r["id"] for r in all_pages(self.sim, "sleep", tok)[0]],
                         [r["id"] for r in self.sim.records("sleep", uid)])
        self.assertNotIn(nap["id"], [r["id"] for r in self.sim.records("sleep", uid)])
        self.flush()
        self.assertEqual(sorted(self.received()), sorted([
            ("sleep.deleted", nap["id"]), ("sleep.updated", main["id"]),
            ("recovery.updated", main["id"])]))
        for body, want in (({"kind": "sleep", "id": main["id"], "merge_into": main["id"]}, 400),
                           ({"kind": "sleep", "id": main["id"],
                             "merge_into": "6b1d2f59-62a1-4c43-9a7e-2f1f0d3c9e11"}, 404),
                           ({"kind": "workout", "id": self.sim.records("workout", uid)[0]["id"],
                             "merge_into": main["id"]}, 400),
                           ({"kind": "sleep",      # another member's
                             "id": self.sim.records("sleep", self.uids[0])[9]["id"],
                             "merge_into": main["id"]}, 400)):
            self.assertEqual(self.sim.request("POST", "/_sim/delete", body)[0], want, body)

    def test_clock_emits_updated_for_what_appeared_or_changed(self):
        def snapshot():
            return {k: {event_of(k, r): r["updated_at"] for r in self.sim.records(k)}
                    for k in EVENT_KINDS}
        fresh = self.sim.records("sleep")[0]
        self.sim.clock(now=fresh["created_at"])     # it has just appeared, not scored yet
        self.assertEqual(self.sim.records("sleep")[0]["score_state"], "PENDING_SCORE")
        before = snapshot()
        self.sim.clock(advance_seconds=2 * 86400)
        after = snapshot()
        self.flush()
        want = sorted(ev for k in EVENT_KINDS for ev, upd in after[k].items()
                      if before[k].get(ev) != upd)
        got = self.received()
        self.assertGreater(len(want), 5)
        self.assertEqual(sorted(got), want)                 # each once, no cycles
        new = [ev for k in EVENT_KINDS for ev in after[k] if ev not in before[k]]
        changed = [ev for k in EVENT_KINDS for ev in after[k] if ev in before[k]
                   and before[k][ev] != after[k][ev]]
        self.assertTrue(new and changed, (new, changed))    # created ones and scored ones
        end = self.sim.clock()
        for d in self.log()["deliveries"]:
            self.assertGreater(d["changed_at"], fresh["created_at"])
            self.assertLessEqual(d["changed_at"], end)
        self.sim.clock(now=NOW)             # backwards: nothing
        self.sim.clock(advance_seconds=-3600)
        self.flush()
        self.assertEqual(len(self.rx.events()), len(got))

    def test_failing_receiver_gets_five_retries_then_the_event_is_dropped(self):
        self.rx.reset(script=[500] * 10)
        w = self.sim.records("workout", self.uids[0])[3]
        self.sim.touch("workout", w["id"], {"sport_name": "rowing"})
        self.flush()
        posts = self.rx.wait_for(6)
        self.assertEqual(len(posts), 6)
        self.assertEqual({p["body"] for p in posts}, {posts[0]["body"]})   # same trace_id
        for p in posts:
            self.assertTrue(signature_ok(self.acc["client_secret"], p))
        stamps = [int(p["headers"]["X-WHOOP-Signature-Timestamp"]) for p in posts]
        self.assertEqual(stamps, sorted(stamps))            # signed afresh
        [d] = self.log()["deliveries"]
        self.assertEqual((d["status"], d["attempts"], d["last_status_code"]), ("dropped", 6, 500))
        self.assertEqual(d["attempts_real_ms"], stamps)
        for i, minutes in enumerate(RETRY_MINUTES):     # never earlier than the schedule
            self.assertGreaterEqual(stamps[i + 1] - stamps[i], minutes * 60_000 / RETRY_SCALE - 1)
        c = self.log()["counters"]
        self.assertEqual((c["posts"], c["retries"], c["dropped"], c["delivered"], c["responses"]),
                         (6, 5, 1, 0, {"500": 6}))
        self.assertEqual(len(self.rx.events()), 6)          # and nothing after the drop

    def test_receiver_recovering_midway_gets_it_delivered(self):
        self.rx.reset(script=[500, 503, 404])
        w = self.sim.records("workout", self.uids[1])[1]
        self.sim.touch("workout", w["id"], {"sport_name": "hiking"})
        self.flush()
        [d] = self.log()["deliveries"]
        self.assertEqual((d["status"], d["attempts"], d["last_status_code"]), ("delivered", 4, 200))
        self.assertEqual(len({p["body"] for p in self.rx.wait_for(4)}), 1)

    def test_no_answer_in_time_is_a_failure(self):
        self.subscribe(timeout_ms=300)
        self.rx.reset(delays=[3])
        w = self.sim.records("workout", self.uids[1])[2]
        self.sim.touch("workout", w["id"], {"sport_name": "yoga"})
        self.flush()
        [d] = self.log()["deliveries"]
        self.assertEqual((d["status"], d["attempts"]), ("delivered", 2))
        self.assertEqual(self.log()["counters"]["responses"], {"timeout": 1, "200": 1})

    def test_duplicate_knob_sends_the_same_trace_id_twice(self):
        self.subscribe(duplicate_rate=1.0, duplicate_ms=50)
        w = self.sim.records("workout", self.uids[0])[4]
        self.sim.touch("workout", w["id"], {"sport_name": "spin"})
        self.flush()
        posts = self.rx.wait_for(2)
        self.assertEqual(len(posts), 2)
        self.assertEqual(posts[0]["body"], posts[1]["body"])
        log = self.log()
        self.assertEqual([(d["knob"], d["status"]) for d in log["deliveries"]],
                         [(None, "delivered"), ("duplicate", "delivered")])
        self.assertEqual(len({d["trace_id"] for d in log["deliveries"]}), 1)
        self.assertEqual((log["counters"]["events"], log["counters"]["duplicates"]), (1, 1))

    def test_drop_knob_is_logged_and_seeded(self):
        def run():
            self.rx.reset()
            self.subscribe(drop_rate=0.5, seed=11)
            self.sim.clock(advance_seconds=2 * 86400)
            self.flush()
            log = self.log()["deliveries"]
            self.sim.clock(now=NOW)
            return log
        first = run()
        dropped = [d for d in first if d["status"] == "dropped_by_knob"]
        sent = [d for d in first if d["status"] == "delivered"]
        self.assertTrue(dropped and sent)
        self.assertEqual(len(dropped) + len(sent), len(first))
        self.assertEqual(sorted(e["trace_id"] for e in self.rx.events()),
                         sorted(d["trace_id"] for d in sent))
        again = run()
        self.assertEqual([(d["type"], d["id"], d["status"]) for d in again],
                         [(d["type"], d["id"], d["status"]) for d in first])

    def test_reorder_knob_lets_later_events_overtake(self):
        self.subscribe(reorder_rate=0.3, seed=5, reorder_ms=500)
        self.sim.clock(advance_seconds=2 * 86400)
        self.flush()
        log = self.log()["deliveries"]
        held = [d for d in log if d["knob"] == "reordered"]
        self.assertTrue(held and len(held) < len(log))
        arrival = [e["trace_id"] for e in self.rx.events()]
        self.assertEqual(sorted(arrival), sorted(d["trace_id"] for d in log))
        pos = {t: i for i, t in enumerate(arrival)}
        overtaken = [(h["seq"], d["seq"]) for h in held for d in log
                     if d["seq"] > h["seq"] and d["knob"] is None
                     and pos[d["trace_id"]] < pos[h["trace_id"]]]
        self.assertTrue(overtaken)

    def test_webhooks_are_not_api_requests(self):
        self.sim.reset()
        self.rx.reset(script=[500])
        w = self.sim.records("workout", self.uids[1])[5]
        self.sim.touch("workout", w["id"], {"sport_name": "tennis"})
        self.sim.clock(advance_seconds=86400)
        self.flush()
        self.assertGreater(self.log()["counters"]["posts"], 2)
        self.assertEqual(self.sim.stats()["requests"], {})
        self.assertEqual(self.sim.request_log(), [])

    def test_subscription_settings(self):
        sub = self.subscribe(duplicate_rate=0.25, seed=9)
        self.assertEqual(sub, {"url": self.rx.url, "ca_file": None, "retry_scale": RETRY_SCALE,
                               "timeout_ms": 5000, "duplicate_rate": 0.25, "reorder_rate": 0.0,
                               "drop_rate": 0.0, "seed": 9, "duplicate_ms": 200,
                               "reorder_ms": 1000})
        self.assertEqual(self.log()["subscription"], sub)
        self.assertEqual(self.log()["retry_minutes"], list(RETRY_MINUTES))
        for bad in ({}, {"url": "http://example.com/hook"}, {"url": "ftp://127.0.0.1/x"},
                    {"url": self.rx.url, "drop_rate": 1.5}, {"url": self.rx.url, "retry_scale": 0},
                    {"url": self.rx.url, "colour": "red"}, {"url": self.rx.url, "ca_file": "/x"},
                    {"url": "https://127.0.0.1:1/x", "ca_file": "/nonexistent/ca.pem"},
                    {"url": self.rx.url, "seed": "one"}, {"url": 5}):
            st, _, _ = self.sim.request("POST", "/_sim/webhooks", bad)
            self.assertEqual(st, 400, bad)
        self.assertEqual(self.log()["subscription"], sub)
        self.assertIsNone(self.sim.control("DELETE", "webhooks")["subscription"])
        w = self.sim.records("workout", self.uids[0])[6]
        self.sim.touch("workout", w["id"], {"sport_name": "walking"})
        self.flush()
        self.assertEqual(self.rx.events(), [])
        self.subscribe()
        self.assertIsNone(self.sim.control("POST", "webhooks", {"url": None})["subscription"])
        self.assertIsNone(self.log()["subscription"])
        endpoints = self.sim.control("GET", "")["endpoints"]
        for e in ("POST /_sim/webhooks", "GET /_sim/webhooks", "DELETE /_sim/webhooks",
                  "POST /_sim/flush_webhooks", "POST /_sim/delete", "GET /_sim/deleted"):
            self.assertIn(e, endpoints)


class HttpsWebhookTest(HookTestCase):
    """Deliveries over https verify the receiver's certificate with the CA given."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="whoop_sim_hooks.")
        cls.addClassCleanup(shutil.rmtree, cls.tmp)
        cls.CERT = make_cert(cls.tmp, "receiver")
        cls.other_ca = make_cert(cls.tmp, "other")[0]
        super().setUpClass()

    def setUp(self):
        self.rx.reset()
        self.subscribe(ca_file=self.CERT[0])

    def test_delivered_over_verified_https(self):
        self.assertTrue(self.rx.url.startswith("https://127.0.0.1:"))
        w = self.sim.records("workout", self.uids[0])[0]
        self.sim.touch("workout", w["id"], {"sport_name": "yoga"})
        self.flush()
        [post] = self.rx.wait_for(1)
        self.assertTrue(signature_ok(self.acc["client_secret"], post))
        self.assertEqual(self.log()["deliveries"][0]["status"], "delivered")

    def test_wrong_ca_fails_every_attempt(self):
        self.subscribe(ca_file=self.other_ca)
        w = self.sim.records("workout", self.uids[0])[1]
        self.sim.touch("workout", w["id"], {"sport_name": "yoga"})
        self.flush()
        [d] = self.log()["deliveries"]
        self.assertEqual((d["status"], d["attempts"], d["last_status_code"]), ("dropped", 6, None))
        self.assertIn("CERTIFICATE_VERIFY_FAILED", d["last_error"])
        self.assertEqual(self.log()["counters"]["responses"], {"tls": 6})
        self.assertEqual(self.rx.events(), [])


class GrantWebhookTest(unittest.TestCase):
    """Events only for members who authorized the app, and not once revoked."""

    def test_events_only_for_members_with_a_live_grant(self):
        rx = Receiver()
        self.addCleanup(rx.stop)
        sim = harness.Simulator("--athletes", "2", "--days", "20", "--rate-per-minute", "0",
                                "--quiet").start()
        self.addCleanup(sim.stop)
        sim.control("POST", "webhooks", {"url": rx.url, "retry_scale": RETRY_SCALE})
        uids = [p["user_id"] for p in sim.records("profile")]
        workouts = {u: sim.records("workout", u) for u in uids}

        def touch_all(i):
            for u in uids:
                sim.touch("workout", workouts[u][i]["id"], {"sport_name": "yoga"})
            sim.control("POST", "flush_webhooks", {})
            return {e["user_id"] for e in rx.events()}

        self.assertEqual(touch_all(0), set())               # nobody has authorized the app
        q = {"response_type": "code", "client_id": "sim-client",
             "redirect_uri": "https://localhost/callback", "scope": "offline read:workout",
             "state": "abcd1234", "user_id": uids[1]}
        st, h, _ = sim.request("GET", "/oauth/oauth2/auth?" + urllib.parse.urlencode(q))
        code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(h["Location"]).query))["code"]
        st, _, data = sim.request("POST", "/oauth/oauth2/token", form={
            "grant_type": "authorization_code", "code": code, "client_id": "sim-client",
            "client_secret": "sim-secret", "redirect_uri": "https://localhost/callback"})
        self.assertEqual(st, 200)
        self.assertEqual(touch_all(1), {uids[1]})
        sim.clock(advance_seconds=86400)
        sim.control("POST", "flush_webhooks", {})
        self.assertEqual({e["user_id"] for e in rx.events()}, {uids[1]})
        sim.clock(advance_seconds=-86400)       # the access token is valid again
        n = len(rx.events())
        st, _, _ = sim.request("DELETE", "/developer/v2/user/access", headers={
            "Authorization": "Bearer " + json.loads(data)["access_token"]})
        self.assertEqual(st, 204)
        touch_all(2)
        sim.clock(advance_seconds=86400)
        sim.control("POST", "flush_webhooks", {})
        self.assertEqual(len(rx.events()), n)


class RealTimeWebhookTest(unittest.TestCase):
    """A real-time clock's changes go out from the scanner thread; --webhook-url."""

    def test_real_time_clock_emits_without_a_request(self):
        rx = Receiver()
        self.addCleanup(rx.stop)
        proc = subprocess.Popen(harness.SIMULATOR + [
            "--port", "0", "--days", "5", "--quiet", "--webhook-url", rx.url,
            "--webhook-retry-scale", str(RETRY_SCALE)], stdout=subprocess.PIPE, text=True)
        sim = harness.Simulator()
        sim.proc, sim.port = proc, int(proc.stdout.readline())
        self.addCleanup(sim.stop)
        self.assertEqual(sim.control("GET", "webhooks")["subscription"]["url"], rx.url)
        sim.accounts()                                      # the athlete authorizes the app
        sleep = sim.records("sleep")[0]
        # just before it appeared: the clock runs on and the scanner thread
        # sends its .updated while nobody asks the simulator anything
        sim.clock(now=iso(ms(sleep["created_at"]) - 300))
        want = {"type": "sleep.updated", "id": sleep["id"]}
        deadline = time.time() + 30
        with rx.cond:
            rx.cond.wait_for(lambda: any({"type": json.loads(p["body"])["type"],
                                          "id": json.loads(p["body"])["id"]} == want
                                         for p in rx.posts), deadline - time.time())
        sim.control("POST", "flush_webhooks", {})
        got = [d for d in sim.control("GET", "webhooks")["deliveries"]
               if (d["type"], d["id"]) == ("sleep.updated", sleep["id"])]
        self.assertEqual(len(got), 1)
        self.assertEqual((got[0]["status"], got[0]["changed_at"]),
                         ("delivered", sleep["created_at"]))


class ClockRateTest(unittest.TestCase):
    """--clock-rate and POST /_sim/clock {"rate"}: a running data clock,
    time-scaled; records and webhooks follow it without control-plane calls.
    Bounds on the clock are wide (it checks function, not speed)."""

    RATE = 7200         # two simulated hours a real second

    @staticmethod
    def first_sleep_after(now, hours):
        """first_sleep_after: the first sleep created more than `hours`
        simulated hours after now (the same seed serves the same data), as a
        frozen twin serves it a day later."""
        with harness.Simulator("--days", "5") as twin:
            twin.clock(advance_seconds=2 * 86400)
            later = [s for s in twin.records("sleep")
                     if ms(s["created_at"]) > ms(now) + hours * 3_600_000]
        return min(later, key=lambda s: ms(s["created_at"]))

    def running(self, *args):
        sim = harness.Simulator("--days", "5", "--rate-per-minute", "0", *args).start()
        self.addCleanup(sim.stop)
        return sim

    def test_clock_runs_at_the_rate(self):
        sim = self.running("--clock-rate", str(self.RATE))
        self.assertEqual(sim.control("GET", "clock")["rate"], self.RATE)
        outer = time.monotonic()
        t1 = ms(sim.clock())
        inner = time.monotonic()
        time.sleep(1)
        inner = time.monotonic() - inner
        t2 = ms(sim.clock())
        outer = time.monotonic() - outer
        self.assertGreaterEqual(t1, ms(NOW))            # it started at --now
        moved = (t2 - t1) / 1000
        self.assertGreaterEqual(moved, 0.5 * self.RATE * min(inner, 1))
        self.assertLessEqual(moved, 3 * self.RATE * max(outer, 1))
        # a frozen clock (--now alone) has no rate and refuses one
        frozen = harness.Simulator("--days", "2").start()
        self.addCleanup(frozen.stop)
        self.assertEqual(frozen.control("GET", "clock"), {"now": "2026-06-30T12:00:00.000Z",
                                                          "rate": None})
        st, _, body = frozen.request("POST", "/_sim/clock", {"rate": 10})
        self.assertEqual(st, 400)
        self.assertIn("frozen", json.loads(body)["error"])
        self.assertEqual(frozen.clock(), "2026-06-30T12:00:00.000Z")

    def test_rate_change_keeps_now_continuous(self):
        sim = self.running("--clock-rate", str(self.RATE))
        real = time.monotonic()
        before = ms(sim.clock())
        at = sim.control("POST", "clock", {"rate": 1})
        real = time.monotonic() - real
        after = ms(sim.clock())
        self.assertEqual(at["rate"], 1)
        # no jump: the change lands between the readings around it, within
        # what the fast clock could run in the real time the calls took
        self.assertLessEqual(before, ms(at["now"]))
        self.assertLessEqual(ms(at["now"]) - before, self.RATE * 1000 * real + 1000)
        self.assertLessEqual(ms(at["now"]), after)
        self.assertLess(after - ms(at["now"]), 60_000)     # now at one second a second
        # rate with a move: the move, then the new rate; bad rates change nothing
        at = sim.control("POST", "clock", {"now": NOW, "rate": 2})
        self.assertEqual((at["rate"], ms(at["now"]) - ms(NOW) < 60_000), (2, True))
        for bad in (0, -1, "fast", None, True):
            st, _, _ = sim.request("POST", "/_sim/clock", {"rate": bad, "advance_seconds": 86400})
            self.assertEqual(st, 400, bad)
        clock = sim.control("GET", "clock")
        self.assertEqual(clock["rate"], 2)
        self.assertLess(ms(clock["now"]) - ms(NOW), 3_600_000)
        proc = subprocess.run(harness.SIMULATOR + ["--port", "0", "--clock-rate", "0"],
                              capture_output=True, text=True, timeout=20)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("--clock-rate", proc.stderr)

    def test_sleep_appears_and_is_scored_as_the_scaled_clock_passes(self):
        want = self.first_sleep_after(NOW, 1)
        sim = self.running("--clock-rate", "1")
        tok = sim.token()
        path = "/v2/activity/sleep"
        ids = [s["id"] for s in sim.api(path, tok, limit=25)[2]["records"]]
        self.assertNotIn(want["id"], ids)
        sim.control("POST", "clock", {"rate": self.RATE})
        # from here on only the API: the record appears, then gets scored
        seen, deadline = None, time.time() + 60
        while time.time() < deadline:
            recs = sim.api(path, tok, limit=25)[2]["records"]
            seen = next((s for s in recs if s["id"] == want["id"]), None)
            if seen is not None and seen["score_state"] == "SCORED":
                break
            time.sleep(0.2)
        self.assertIsNotNone(seen, "the sleep never appeared")
        self.assertEqual(seen["score_state"], "SCORED")
        self.assertEqual((seen["start"], seen["end"], seen["created_at"]),
                         (want["start"], want["end"], want["created_at"]))
        self.assertGreaterEqual(ms(sim.clock()), ms(want["created_at"]))

    def test_a_fast_run_serves_what_a_frozen_twin_serves(self):
        # days a real second: the generated horizon keeps up with the clock
        sim = self.running("--clock-rate", "1")
        tok = sim.token()
        sim.control("POST", "clock", {"rate": 3 * 86400})
        time.sleep(2)
        now = sim.control("POST", "clock", {"rate": 1e-6})["now"]     # all but stopped
        self.assertGreater(ms(now), ms(NOW) + 4 * 86400_000)
        with harness.Simulator("--days", "5") as twin:
            twin.clock(now=now)
            ttok = twin.token()
            for kind, path in sorted(PATHS.items()):
                self.assertEqual(sim.api(path, tok, limit=25)[2],
                                 twin.api(path, ttok, limit=25)[2], kind)
                self.assertEqual(sim.records(kind), twin.records(kind), kind)

    def test_webhooks_follow_the_scaled_clock(self):
        want = self.first_sleep_after(NOW, 1)
        rx = Receiver()
        self.addCleanup(rx.stop)
        sim = self.running("--clock-rate", "1", "--webhook-url", rx.url,
                           "--webhook-retry-scale", str(RETRY_SCALE))
        sim.accounts()                                      # the athlete authorizes the app
        sim.control("POST", "clock", {"rate": self.RATE})
        # nobody asks the simulator anything: the scanner thread sends it
        key = {"type": "sleep.updated", "id": want["id"]}
        with rx.cond:
            rx.cond.wait_for(lambda: any({k: json.loads(p["body"])[k] for k in key} == key
                                         for p in rx.posts), 60)
        deadline = time.time() + 30     # the receiver has it; the simulator books it
        while True:
            got = [d for d in sim.control("GET", "webhooks")["deliveries"]
                   if (d["type"], d["id"]) == ("sleep.updated", want["id"])]
            if (got and got[0]["status"] != "pending") or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertTrue(got, "no delivery booked")
        self.assertEqual(got[0]["status"], "delivered")
        # a tick emits one .updated for whatever the record went through in
        # the span it covers: its appearance, maybe its scoring too
        self.assertLessEqual(ms(want["created_at"]), ms(got[0]["changed_at"]))
        self.assertLessEqual(ms(got[0]["changed_at"]), ms(want["updated_at"]))
        # the wall clock of the change is when the scaled clock passed it
        self.assertLessEqual(got[0]["changed_at_real_ms"], got[0]["attempts_real_ms"][0])
        self.assertGreaterEqual(ms(sim.clock()), ms(want["created_at"]))


class DeterminismTest(unittest.TestCase):
    ARGS = ("--athletes", "2", "--days", "200", "--rate-per-minute", "0")

    def pages(self, sim):
        out = []
        for i in range(2):
            tok = sim.token(i)
            for kind, path in sorted(PATHS.items()):
                nxt = None
                for _ in range(3):
                    q = "?limit=25" + ("&nextToken=" + nxt if nxt else "")
                    st, _, body = sim.request("GET", "/developer" + path + q,
                                              headers={"Authorization": "Bearer " + tok})
                    out.append(body)
                    nxt = json.loads(body).get("next_token")
            for p in ("/v2/user/profile/basic", "/v2/user/measurement/body"):
                out.append(sim.request("GET", "/developer" + p,
                                       headers={"Authorization": "Bearer " + tok})[2])
        return out

    def test_same_flags_same_bytes(self):
        with harness.Simulator(*self.ARGS) as a, harness.Simulator(*self.ARGS) as b:
            pa, pb = self.pages(a), self.pages(b)
            self.assertEqual(len(pa), 28)
            self.assertEqual(pa, pb)
            for kind in ("cycle", "recovery", "sleep", "workout"):
                self.assertEqual(a.request("GET", "/_sim/records?kind=" + kind)[2],
                                 b.request("GET", "/_sim/records?kind=" + kind)[2])
            # extending the horizon gives the same days whether in one step or two
            a.clock(advance_seconds=5 * 86400)
            b.clock(advance_seconds=2 * 86400)
            b.clock(advance_seconds=3 * 86400)
            for kind in ("cycle", "sleep", "workout", "recovery"):
                self.assertEqual(a.request("GET", "/_sim/records?kind=" + kind)[2],
                                 b.request("GET", "/_sim/records?kind=" + kind)[2])
        with harness.Simulator(*(self.ARGS + ("--seed", "43"))) as c:
            self.assertNotEqual(self.pages(c)[0], pa[0])

    def test_forked_generation_equals_sequential(self):
        args = ("--athletes", "24", "--days", "25")
        with harness.Simulator(*args) as a, harness.Simulator(*(args + ("--jobs", "1"))) as b:
            for kind in ("cycle", "recovery", "sleep", "workout", "profile", "body"):
                ra = a.request("GET", "/_sim/records?kind=" + kind)[2]
                self.assertEqual(ra, b.request("GET", "/_sim/records?kind=" + kind)[2], kind)
            a.clock(advance_seconds=2 * 86400)
            b.clock(advance_seconds=2 * 86400)
            self.assertEqual(a.request("GET", "/_sim/records?kind=sleep")[2],
                             b.request("GET", "/_sim/records?kind=sleep")[2])


class ConsistencyTest(unittest.TestCase):
    """The generated physiology hangs together and has signal."""

    @classmethod
    def setUpClass(cls):
        with harness.Simulator("--athletes", "3", "--days", "730") as sim:
            cls.uids = [a["user_id"] for a in sim.accounts()["athletes"]]
            cls.data = {uid: {k: list(reversed(sim.records(k, uid)))
                              for k in ("cycle", "recovery", "sleep", "workout")}
                        for uid in cls.uids}

    def each(self):
        for uid in self.uids:
            yield uid, self.data[uid]

    @staticmethod
    def cycle_of(d, w):
        """cycle_of: the cycle a workout lies in (None if none holds it whole)."""
        import bisect
        starts = d.setdefault("_starts", [c["start"] for c in d["cycle"]])
        i = bisect.bisect_right(starts, w["start"]) - 1
        if i < 0:
            return None
        c = d["cycle"][i]
        return c if "end" not in c or w["end"] <= c["end"] else None

    def test_links(self):
        for uid, d in self.each():
            cycles = {c["id"]: c for c in d["cycle"]}
            sleeps = {s["id"]: s for s in d["sleep"]}
            main = {}
            for s in d["sleep"]:
                c = cycles[s["cycle_id"]]
                if s["nap"]:
                    self.assertGreaterEqual(s["start"], c["start"])
                    if "end" in c:
                        self.assertLessEqual(s["end"], c["end"])
                else:
                    self.assertEqual(s["start"], c["start"], s["id"])   # the sleep starts the cycle
                    self.assertNotIn(s["cycle_id"], main)
                    main[s["cycle_id"]] = s
            self.assertEqual(set(main), set(cycles))
            self.assertEqual({r["cycle_id"] for r in d["recovery"]}, set(cycles))
            for r in d["recovery"]:
                self.assertEqual(r["sleep_id"], main[r["cycle_id"]]["id"])
                self.assertEqual(sleeps[r["sleep_id"]]["score_state"] == "UNSCORABLE",
                                 r["score_state"] == "UNSCORABLE")
            for w in d["workout"]:
                c = self.cycle_of(d, w)
                self.assertIsNotNone(c, w["id"])
            ids = [c["id"] for c in d["cycle"]]
            self.assertEqual(ids, sorted(ids))        # int64 ids grow with time
            self.assertGreater(ids[0], 2 ** 31)
            self.assertEqual(len({s["id"] for s in d["sleep"]} | {w["id"] for w in d["workout"]}),
                             len(d["sleep"]) + len(d["workout"]))

    def test_cycles_chain_with_gaps(self):
        for uid, d in self.each():
            cyc = d["cycle"]
            self.assertEqual([c for c in cyc if "end" not in c], [cyc[-1]])
            self.assertEqual(cyc[-1]["score_state"], "PENDING_SCORE")
            gaps = 0
            for a, b in zip(cyc, cyc[1:]):
                self.assertLessEqual(a["end"], b["start"])
                if a["end"] != b["start"]:
                    gaps += 1
                    self.assertGreater(ms(b["start"]) - ms(a["end"]), 12 * 3600_000)
            self.assertTrue(5 <= gaps <= 60, gaps)
            self.assertTrue(640 <= len(cyc) <= 735, len(cyc))

    def test_timelines(self):
        for uid, d in self.each():
            for kind in ("cycle", "recovery", "sleep", "workout"):
                for r in d[kind]:
                    self.assertGreaterEqual(r["updated_at"], r["created_at"])
                    if kind in ("sleep", "workout"):
                        self.assertLess(r["end"], r["created_at"])
                        self.assertLess(ms(r["created_at"]) - ms(r["end"]), 2 * 3600_000)
            cycles = {c["id"]: c for c in d["cycle"]}
            for r in d["recovery"]:     # a sleep, its recovery and its cycle appear in that order
                self.assertLessEqual(r["created_at"], cycles[r["cycle_id"]]["created_at"])
            rescored = [r for r in d["recovery"] + d["sleep"] + d["workout"]
                        if ms(r["updated_at"]) - ms(r["created_at"]) > 6 * 3600_000]
            self.assertGreater(len(rescored), 10)
            self.assertTrue(all(ms(r["updated_at"]) - ms(r["created_at"]) < 4 * 86400_000
                                for r in rescored))
            calib = [r["score"]["user_calibrating"] for r in d["recovery"] if "score" in r]
            self.assertTrue(all(calib[:3]) and not any(calib[10:]), calib[:12])

    def test_workouts(self):
        for uid, d in self.each():
            per_cycle = {}
            for w in d["workout"]:
                self.assertIn(w["sport_name"], SPORTS)
                dur = ms(w["end"]) - ms(w["start"])
                self.assertTrue(20 * 60_000 <= dur <= 121 * 60_000, dur)
                if "score" in w:
                    s = w["score"]
                    self.assertEqual(sum(s["zone_durations"].values()), dur)
                    self.assertTrue(0 < s["strain"] < 21)
                    self.assertLessEqual(s["average_heart_rate"], s["max_heart_rate"])
                c = self.cycle_of(d, w)
                per_cycle.setdefault(c["id"], []).append(w)
            counts = [len(v) for v in per_cycle.values()]
            self.assertLessEqual(max(counts), 3)
            self.assertIn(2, counts)
            cycles = {c["id"]: c for c in d["cycle"]}
            for cid, ws in per_cycle.items():
                c = cycles[cid]
                if "score" in c:
                    self.assertGreaterEqual(c["score"]["strain"] + 1e-9,
                                            max(w["score"]["strain"] for w in ws if "score" in w)
                                            if any("score" in w for w in ws) else 0)
            zones = [0] * 6
            for w in d["workout"]:
                if "score" in w:
                    for i, v in enumerate(w["score"]["zone_durations"].values()):
                        zones[i] += v
            self.assertGreater(sum(zones[1:4]), sum(zones[4:]) * 2)

    def test_strain_and_energy(self):
        for uid, d in self.each():
            wo_cycles = {self.cycle_of(d, w)["id"] for w in d["workout"]}
            normal = [c for c in d["cycle"] if "score" in c and
                      20 <= (ms(c["end"]) - ms(c["start"])) / 3600_000 <= 28]
            strain = [c["score"]["strain"] for c in normal]
            kj = [c["score"]["kilojoule"] for c in normal]
            self.assertTrue(all(0 <= s <= 21 for s in strain))
            self.assertGreater(sum(4 <= s <= 18.5 for s in strain) / len(strain), 0.95)
            self.assertTrue(all(7000 <= k <= 14000 for k in kj), (min(kj), max(kj)))
            with_w = [c["score"]["strain"] for c in normal if c["id"] in wo_cycles]
            without = [c["score"]["strain"] for c in normal if c["id"] not in wo_cycles]
            self.assertGreater(statistics.mean(with_w), statistics.mean(without) + 2)

    def test_sleep(self):
        for uid, d in self.each():
            main = [s for s in d["sleep"] if not s["nap"] and "score" in s]
            naps = [s for s in d["sleep"] if s["nap"]]
            self.assertGreater(len(naps), 5)
            for s in d["sleep"]:
                if "score" not in s:
                    continue
                st = s["score"]["stage_summary"]
                parts = (st["total_awake_time_milli"] + st["total_no_data_time_milli"] +
                         st["total_light_sleep_time_milli"] + st["total_slow_wave_sleep_time_milli"] +
                         st["total_rem_sleep_time_milli"])
                self.assertLessEqual(parts, st["total_in_bed_time_milli"])
                self.assertEqual(st["total_in_bed_time_milli"], ms(s["end"]) - ms(s["start"]))
                self.assertLessEqual(s["score"]["sleep_needed"]["need_from_recent_nap_milli"], 0)
            inbed = [s["score"]["stage_summary"]["total_in_bed_time_milli"] / 3600_000 for s in main]
            self.assertTrue(6.5 < statistics.median(inbed) < 9, statistics.median(inbed))
            frac = lambda k: statistics.mean(s["score"]["stage_summary"][k] /
                                             s["score"]["stage_summary"]["total_in_bed_time_milli"]
                                             for s in main)
            self.assertTrue(0.4 < frac("total_light_sleep_time_milli") < 0.6)
            self.assertTrue(0.15 <= frac("total_slow_wave_sleep_time_milli") <= 0.25)
            self.assertTrue(0.18 <= frac("total_rem_sleep_time_milli") <= 0.26)
            self.assertTrue(0.05 <= frac("total_awake_time_milli") <= 0.11)
            cc = [s["score"]["stage_summary"]["sleep_cycle_count"] for s in main]
            self.assertTrue(all(3 <= c <= 6 for c in cc))
            resp = [s["score"]["respiratory_rate"] for s in main if s["score"].get("respiratory_rate")]
            self.assertTrue(all(12 <= r <= 20 for r in resp))

    def test_recovery_has_signal(self):
        for uid, d in self.each():
            scored = [r["score"] for r in d["recovery"] if "score" in r]
            rec = [s["recovery_score"] for s in scored]
            ln = [math.log(s["hrv_rmssd_milli"]) for s in scored]
            rhr = [s["resting_heart_rate"] for s in scored]
            self.assertTrue(all(0 <= x <= 100 for x in rec))
            self.assertTrue(40 < statistics.mean(rec) < 70, statistics.mean(rec))
            self.assertTrue(12 < statistics.stdev(rec) < 30)
            self.assertTrue(any(x >= 67 for x in rec) and any(x <= 33 for x in rec))
            self.assertGreater(statistics.correlation(rec, ln), 0.5)
            self.assertLess(statistics.correlation(rec, rhr), -0.3)
            cv = statistics.stdev(ln) / statistics.mean(ln) * 100
            self.assertTrue(3 < cv < 11, cv)
            self.assertTrue(25 < math.exp(statistics.median(ln)) < 150)
            self.assertTrue(all(38 <= x <= 90 for x in rhr))
            for s in scored:
                if s.get("spo2_percentage") is not None:
                    self.assertTrue(94 <= s["spo2_percentage"] <= 99.5)
                if s.get("skin_temp_celsius") is not None:
                    self.assertTrue(32.5 <= s["skin_temp_celsius"] <= 35.5)
            # a hard day lowers the next morning's HRV
            cycles = d["cycle"]
            by_cycle = {r["cycle_id"]: r for r in d["recovery"] if "score" in r}
            pairs = [(a["score"]["strain"], math.log(by_cycle[b["id"]]["score"]["hrv_rmssd_milli"]))
                     for a, b in zip(cycles, cycles[1:])
                     if "score" in a and a["end"] == b["start"] and b["id"] in by_cycle]
            self.assertLess(statistics.correlation([p[0] for p in pairs], [p[1] for p in pairs]),
                            -0.1)

    def test_seasons_time_zones_and_dst(self):
        ny, berlin, london = self.uids
        tz = {uid: {c["timezone_offset"] for c in self.data[uid]["cycle"]} for uid in self.uids}
        self.assertTrue({"-05:00", "-04:00"} <= tz[ny], tz[ny])
        self.assertTrue({"+01:00", "+02:00"} <= tz[berlin], tz[berlin])
        self.assertTrue({"Z", "+01:00"} <= tz[london], tz[london])
        for uid in self.uids:
            self.assertGreater(len(tz[uid]), 3, tz[uid])      # travel
        # US DST: 2025-03-09 and 2025-11-02
        off = {c["start"][:10]: c["timezone_offset"] for c in self.data[ny]["cycle"]}
        self.assertEqual(off.get("2025-03-05"), "-05:00")
        self.assertEqual(off.get("2025-03-13"), "-04:00")
        self.assertEqual(off.get("2025-10-29"), "-04:00")
        self.assertEqual(off.get("2025-11-06"), "-05:00")
        # EU DST: 2025-03-30
        off = {c["start"][:10]: c["timezone_offset"] for c in self.data[berlin]["cycle"]}
        self.assertEqual((off.get("2025-03-26"), off.get("2025-04-02")), ("+01:00", "+02:00"))
        for uid in self.uids:
            by_month = {}
            for r in self.data[uid]["recovery"]:
                if "score" in r:
                    by_month.setdefault(r["created_at"][5:7], []).append(
                        math.log(r["score"]["hrv_rmssd_milli"]))
            summer = statistics.mean(by_month["06"] + by_month["07"] + by_month["08"])
            winter = statistics.mean(by_month["12"] + by_month["01"] + by_month["02"])
            self.assertGreater(summer, winter, uid)

    def test_two_cycles_on_one_local_day_happen(self):
        found = 0
        for uid, d in self.each():
            main = [s for s in d["sleep"] if not s["nap"]]
            for a, b in zip(main, main[1:]):
                if self.local_date(a) == self.local_date(b):
                    found += 1
        self.assertGreater(found, 0)

    @staticmethod
    def local_date(s):
        off = s["timezone_offset"]
        mins = 0 if off == "Z" else (int(off[1:3]) * 60 + int(off[4:6])) * (1 if off[0] == "+" else -1)
        return iso(ms(s["end"]) + mins * 60_000)[:10]


class MultiAthleteTest(SimTestCase):
    SIM_ARGS = ("--athletes", "3", "--days", "60", "--no-body-for", "2", "--rate-per-minute", "0",
                "--max-page-size", "40")

    def test_max_page_size_flag(self):
        tok = self.token()
        st, _, body = self.sim.api("/v2/cycle", tok, limit=40)
        self.assertEqual((st, len(body["records"])), (200, 40))
        self.assertEqual(self.sim.api("/v2/cycle", tok, limit=41)[0], 400)

    def test_separation(self):
        uids = [a["user_id"] for a in self.acc["athletes"]]
        self.assertEqual(len(set(uids)), 3)
        toks = [self.token(i) for i in range(3)]
        firsts = {}
        for i, tok in enumerate(toks):
            for kind in ("cycle", "recovery", "sleep", "workout"):
                got, _, _ = all_pages(self.sim, kind, tok)
                self.assertTrue(got)
                self.assertEqual({r["user_id"] for r in got}, {uids[i]}, kind)
                self.assertEqual(got, self.sim.records(kind, uids[i]))
                firsts[(i, kind)] = got[1]
            prof = self.sim.api("/v2/user/profile/basic", tok)[2]
            self.assertEqual(prof["user_id"], uids[i])
        emails = {self.sim.api("/v2/user/profile/basic", t)[2]["email"] for t in toks}
        self.assertEqual(len(emails), 3)
        # someone else's record by id: 404
        c = firsts[(1, "cycle")]
        self.assertEqual(self.sim.api("/v2/cycle/%d" % c["id"], toks[0])[0], 404)
        self.assertEqual(self.sim.api("/v2/cycle/%d/recovery" % c["id"], toks[0])[0], 404)
        self.assertEqual(self.sim.api("/v2/cycle/%d/sleep" % c["id"], toks[2])[0], 404)
        self.assertEqual(self.sim.api("/v2/cycle/%d" % c["id"], toks[1])[0], 200)
        s = firsts[(0, "sleep")]
        self.assertEqual(self.sim.api("/v2/activity/sleep/" + s["id"], toks[1])[0], 404)
        w = firsts[(2, "workout")]
        self.assertEqual(self.sim.api("/v2/activity/workout/" + w["id"], toks[0])[0], 404)
        # physiology differs between athletes
        hrv = [statistics.median(r["score"]["hrv_rmssd_milli"]
                                 for r in self.sim.records("recovery", u) if "score" in r)
               for u in uids]
        self.assertEqual(len({round(h) for h in hrv}), 3)

    def test_missing_body_measurement(self):
        st, _, body = self.sim.api("/v2/user/measurement/body", self.token(1))
        self.assertEqual(st, 404)
        self.assertIn("error", body)
        self.assertEqual(self.sim.api("/v2/user/measurement/body", self.token(0))[0], 200)
        self.assertEqual(self.sim.api("/v2/user/measurement/body", self.token(2))[0], 200)
        self.assertEqual(len(self.sim.records("body")), 2)


class ProcessTest(unittest.TestCase):
    def test_startup_time_and_clean_exit(self):
        t = time.time()
        sim = harness.Simulator("--days", "730").start()
        elapsed = time.time() - t
        try:
            self.assertLess(elapsed, 3.0)       # well under 1 s on an idle machine
            st, _, _ = sim.request("GET", "/_sim/clock")
            self.assertEqual(st, 200)
        finally:
            proc = sim.proc
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=10), 0)
            err = proc.stderr.read()
            sim.proc = None
            proc.stdout.close()
            proc.stderr.close()
        self.assertEqual(err, "")

    def test_real_time_clock_without_now(self):
        proc = subprocess.Popen(harness.SIMULATOR + ["--port", "0", "--days", "10", "--quiet"],
                                stdout=subprocess.PIPE, text=True)
        try:
            port = int(proc.stdout.readline())
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/_sim/clock")
            now = json.loads(conn.getresponse().read())["now"]
            conn.close()
            self.assertLess(abs(ms(now) - time.time() * 1000), 5000)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            proc.stdout.close()

    def test_bad_arguments(self):
        proc = subprocess.run(harness.SIMULATOR + ["--port", "0", "--now", "yesterday"],
                              capture_output=True, text=True, timeout=20)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("--now", proc.stderr)


if __name__ == "__main__":
    unittest.main()
