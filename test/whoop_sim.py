#!/usr/bin/env python3
"""whoop_sim.py -- a loopback WHOOP developer API (v2) simulator for whoop_fdw.

Python 3 standard library only.  It speaks HTTP/1.1 with keep-alive on
127.0.0.1 and behaves like api.prod.whoop.com closely enough that a libcurl
client cannot tell the difference: OAuth 2.0 authorization code flow with
single-use rotating refresh tokens, bearer-protected member endpoints,
nextToken paging, overlap start/end filtering, rate-limit headers and 429s,
plus a control plane (/_sim/) to steer time, inject faults and inspect what
a client did.  All data is generated deterministically from --seed.

COMMAND LINE
    python3 whoop_sim.py --port 0 --seed 42 --athletes 1 --days 730 \\
                         --now 2026-06-30T12:00:00Z

  The first line on stdout is the bound port (flushed); nothing else is
  written to stdout.  Serves until killed; SIGTERM/SIGINT exit cleanly (0).

  --port N                 TCP port on 127.0.0.1 (0 = any free port)
  --seed N                 data seed (default 42); same seed + flags => the
                           same bytes in every response body
  --athletes N             number of WHOOP members (default 1)
  --days N                 days of history up to now (default 730)
  --now ISO                freeze the simulator ("data") clock at ISO; without
                           it the clock is real time.  Token expiry, record
                           visibility and "end defaults to now" use this clock.
  --token-ttl S            access-token lifetime in simulator seconds (3600)
  --rate-per-minute N      per-app requests per "minute" (100; 0 = unlimited)
  --rate-per-day N         per-app requests per "day" (10000; 0 = unlimited)
  --rate-minute-seconds S  real seconds a rate-limit minute lasts (60); a day
                           window is 1440 such minutes
  --max-page-size N        largest accepted `limit` (25)
  --client-id S            OAuth client id (sim-client)
  --client-secret S        OAuth client secret (sim-secret)
  --redirect-uri U         the one registered redirect URI
                           (https://localhost/callback)
  --no-body-for N          athlete N (1-based index; a value larger than
                           --athletes is taken as a user_id) has no body
                           measurement (404).  Repeatable.
  --jobs N                 processes generating the data at start-up (default
                           2: from 24 athletes on, forked helpers generate all
                           but the first 1/N of them; 1: this process alone).
                           Same data either way.
  --quiet                  nothing at all on stderr
  --verbose                one line per request on stderr (default: none)

HTTP SURFACE
  OAuth (under /oauth/oauth2):
    GET  /oauth/oauth2/auth?response_type=code&client_id=&redirect_uri=
              &scope=&state=[&user_id=]
         auto-approves as the first athlete (or `user_id`): 302 to
         redirect_uri?code=..&state=...  Checks response_type=code, client_id,
         redirect_uri (exact), scope (space separated, known scopes only,
         non-empty) and state (exactly 8 characters); else 400 JSON
         {"error": "invalid_request"|"invalid_scope"|"invalid_client"|
                   "unsupported_response_type", "error_description": ...}.
    POST /oauth/oauth2/token  (application/x-www-form-urlencoded; client
         credentials in the body; HTTP Basic is not accepted)
         grant_type=authorization_code&code&client_id&client_secret&redirect_uri
         grant_type=refresh_token&refresh_token&client_id&client_secret[&scope]
         => 200 {"access_token","expires_in","refresh_token"?,"scope",
                 "token_type":"bearer"}
         refresh_token only when the grant has `offline`.  Codes are single
         use (no expiry).  Refresh tokens are single use and rotate: a refresh
         kills the old refresh token and that grant's previous access token at
         once.  Errors are 400 JSON {"error": ..., "error_description": ...}:
         invalid_request (missing field, wrong content type), invalid_client
         (unknown client_id, wrong secret), invalid_grant (unknown/spent
         code or refresh token, redirect_uri mismatch, revoked),
         unsupported_grant_type, invalid_scope (refresh asking for a scope
         not granted).  A refresh keeps the grant's scopes.
  API (under /developer; paths below as WHOOP writes them, without it):
    GET /v2/cycle                      read:cycles
    GET /v2/cycle/{cycleId}            read:cycles
    GET /v2/cycle/{cycleId}/recovery   read:recovery
    GET /v2/cycle/{cycleId}/sleep      read:sleep OR read:cycles (not stated
                                       by WHOOP; either is accepted)
    GET /v2/recovery                   read:recovery
    GET /v2/activity/sleep             read:sleep
    GET /v2/activity/sleep/{sleepId}   read:sleep
    GET /v2/activity/workout           read:workout
    GET /v2/activity/workout/{id}      read:workout
    GET /v2/user/profile/basic         read:profile
    GET /v2/user/measurement/body      read:body_measurement
    DELETE /v2/user/access             any valid token => 204, kills every
                                       access and refresh token of that
                                       athlete (all grants)
  Status codes: no/invalid/expired/rotated/revoked bearer => 401 (with
  WWW-Authenticate: Bearer); token lacks the scope => 403
  {"error":"insufficient_scope"}; unknown path => 404; wrong method on a
  known path => 405; bad limit/start/end/nextToken => 400; by-id: malformed
  id (non-integer cycle id, non-uuid sleep/workout id) => 400, unknown id or
  another athlete's record or one not yet created => 404; body measurement
  missing => 404.
  Collections: limit default 10, 1..--max-page-size else 400; start/end
  ISO-8601 date-times with a zone (Z or offset, with or without fractional
  seconds; a bare date or naive time => 400; remember that an unencoded '+'
  in a query string decodes to a space => 400); end defaults to now;
  nextToken opaque (garbage => 400; an empty value means "first page").
  A record is returned when it OVERLAPS [start, end): record.start < end and
  (record.end > start or the record is ongoing).  Recoveries are filtered and
  ordered by the [start, end) of their sleep.  Newest first by start, ties
  by id.  Envelope {"records": [...], "next_token": "..."}; on the last page
  next_token is ABSENT for cycle and sleep and null for recovery and workout
  (clients must accept both).  Pages are cursor based: no gaps or duplicates
  even when new records appear between pages.  Records not yet created as of
  the simulator clock are invisible everywhere.
  Rate limits: one app (the client id); every request under /developer and
  /oauth counts, whatever its outcome.  Every such response (except a
  `reset` fault) carries
      X-RateLimit-Limit: <closest>, <m>;window=<60*S>, <d>;window=<86400*S>
      X-RateLimit-Remaining: <left in the window closest to exhaustion>
      X-RateLimit-Reset: <whole real seconds until that window resets, >= 1>
  (S = --rate-minute-seconds/60; windows are fixed, aligned to start-up or
  the last /_sim/reset).  Past a limit => 429 JSON.  An unlimited window
  (0) reports a limit of 1000000000.

DATA
  Per athlete: user_id, profile, body measurement, physiology (resting HR,
  log-normal rMSSD, respiratory rate, SpO2, skin temperature, sleep need,
  chronotype, favourite sports, home time zone).  One WHOOP day per wake
  date: main sleep (starts the cycle: a cycle runs from falling asleep to
  falling asleep), recovery (sleep_id = that sleep, HRV/RHR relative to the
  athlete's own 30-day baseline, responding to prior-day strain, sleep,
  alcohol, illness, jet lag and season), 0-3 workouts, sometimes a nap, day
  strain and energy consistent with the workouts.  Days not worn (gaps: no
  cycle, sleep or recovery), travel trips of 3-9 days to other offsets, real
  US/EU/AU DST dates (athlete 1 lives in America/New_York, 2 in
  Europe/Berlin, 3 in Europe/London -- offset "Z" in winter, while trips to
  UTC+0 say "+00:00" -- the others anywhere, Asia/Kolkata's +05:30
  included), rare split nights (two main sleeps => two cycles on one local
  date), UNSCORABLE records, re-scored records (updated_at up to 3 days
  after created_at, values change), user_calibrating on the first worn days,
  SpO2/skin temperature missing on 3.0 hardware (every 4th athlete, for a
  while) or now and then (absent or null), legacy v1_id/sport_id on records
  created before 2025-09-01, an unknown extra `step_count` on some cycles.
  Text is international and served as raw UTF-8, as WHOOP serves it: names
  with accents (Zoë, José, Ångström, Nguyễn), a regional sport with a
  non-ASCII name (pétanque, kyūdō) for some athletes, and an unknown
  `route_name` on some outdoor workouts (Tour du Léman, 箱根駅伝コース,
  Sunrise loop 🌅: 2-, 3- and 4-byte characters).
  Cycle ids are int64 growing with time ((epoch day * 2 + n) * 100000 +
  athlete index); sleep and workout ids are seeded version-4 UUIDs.
  Timeline: a sleep appears 2-25 min after it ends, then its recovery, then
  the cycle it starts (so a cycle appears hours after its start); workouts
  and naps appear minutes after they end.  A cycle is ongoing (no end,
  PENDING_SCORE) until the next one appears (or for 2 h past its end before
  a day not worn); sleeps, recoveries, naps and workouts are PENDING_SCORE
  for 5-120 min after they appear.  The two days before --now are always worn,
  so the newest cycle is ongoing.  Each athlete draws from its own random
  streams strictly in date order, day after day, on top of the state of the
  days before, so a day's data never depends on when it was generated; the
  horizon (now + 2 days) extends lazily when the clock moves.  Generation
  keeps only numbers; JSON bodies are built when served.

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
                        => {"record": <the record as now served>}
  GET  /_sim/clock      {"now": ISO}
  POST /_sim/clock      {"now": ISO} or {"advance_seconds": n} => {"now": ISO}
                        (a frozen clock stays frozen; a real-time clock keeps
                        running from the new point).  Moving backwards is
                        allowed (records created later disappear again).
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

NOT REPRODUCED
  Webhooks; the sleep stream, partner and v1 mapping endpoints; token reuse
  detection that revokes a whole grant (Hydra's behaviour) -- a spent
  refresh token just fails; auth-code expiry; the real error body formats
  (undocumented); per-IP limits; TLS.
"""

import argparse
import bisect
import collections
import gc
import hashlib
import hmac
import io
import itertools
import json
import math
import os
import pickle
import random
import secrets
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import unicodedata
import urllib.parse
import uuid
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# --------------------------------------------------------------------------
# constants

SCOPES = ("read:recovery", "read:cycles", "read:workout", "read:sleep",
          "read:profile", "read:body_measurement", "offline")
GRANT_ALL = ("offline",) + SCOPES[:-1]     # what /_sim/accounts grants

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
INF = float("inf")
EPOCH_ORD = date(1970, 1, 1).toordinal()
V1_CUTOFF = 20332 * DAY           # 2025-09-01T00:00Z: legacy ids end here
STEP_COUNT_FROM = 20240 * DAY     # 2025-06-01: some cycles carry step_count
UNLIMITED = 1_000_000_000
STRAIN_SCALE = 5.5               # strain = 21 * (1 - exp(-load / STRAIN_SCALE))
PARALLEL_FROM = 24               # athletes: from here helper processes generate (--jobs)

# sport: (sport_id, min minutes, max minutes, HRR fraction lo, hi,
#         speed m/s (lo, hi) or None, outdoor altitude possible)
SPORTS = {
    "running": (0, 25, 90, .58, .76, (2.5, 3.9), True),
    "cycling": (1, 45, 120, .50, .70, (6.0, 9.0), True),
    "basketball": (17, 45, 110, .55, .72, None, False),
    "rowing": (18, 20, 60, .55, .72, (3.4, 4.4), False),
    "soccer": (30, 60, 105, .55, .74, None, False),
    "swimming": (33, 30, 70, .50, .68, (0.8, 1.25), False),
    "tennis": (34, 45, 120, .45, .65, None, False),
    "pilates": (43, 30, 60, .25, .40, None, False),
    "yoga": (44, 30, 75, .22, .38, None, False),
    "weightlifting": (45, 35, 80, .38, .55, None, False),
    "functional-fitness": (48, 30, 60, .55, .72, None, False),
    "hiking": (52, 60, 120, .35, .55, (1.0, 1.5), True),
    "walking": (63, 20, 90, .22, .38, (1.25, 1.65), True),
    "hiit": (96, 20, 45, .62, .80, None, False),
    "spin": (97, 30, 60, .56, .74, None, False),
}
SPORT_NAMES = sorted(SPORTS)
SHORT_SPORTS = [s for s in SPORT_NAMES if SPORTS[s][1] <= 35]
# a regional favourite some athletes add to theirs (drawn apart, so the
# others' data does not depend on it)
REGIONAL_SPORTS = {
    "kyūdō": (235, 40, 90, .15, .30, None, False),
    "pétanque": (236, 45, 110, .12, .28, None, False),
}
SPORTS.update(REGIONAL_SPORTS)
# names users give outdoor routes; an unknown field WHOOP may add
ROUTE_NAMES = ("Tour du Léman", "Zürichsee-Runde", "Parc de la Tête d'Or",
               "Retiro – Casa de Campo", "Søndermarken loop", "箱根駅伝コース",
               "Sunrise loop 🌅", "Riverside 10k")
ZONE_KEYS = ("zone_zero_milli", "zone_one_milli", "zone_two_milli",
             "zone_three_milli", "zone_four_milli", "zone_five_milli")

FIRST_NAMES = ("Ava", "Ben", "Chloé", "Diego", "Emma", "Finn", "Grace", "Hugo",
               "Inès", "José", "Kira", "Liam", "Maëlle", "Noah", "Olivia", "Pablo",
               "Quinn", "Renée", "Sam", "Tara", "Umar", "Vera", "Will", "Xenia",
               "Yusuf", "Zoë", "Aiko", "Björn", "Carmen", "Dev")
LAST_NAMES = ("Smith", "García", "Müller", "Tanaka", "Okafor", "Rossi",
              "Nguyễn", "Kowalski", "Silva", "Ångström", "Patel", "Dubois",
              "Kim", "Oconnor", "Haddad", "Novák", "López", "Schmidt",
              "Brown", "Ivanova", "Martin", "Fischer", "Santos", "Weber")


def ascii_fold(text):
    """ascii_fold spells a name without its accents, for an e-mail address."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


# --------------------------------------------------------------------------
# time

_DAYSTR = {}
_HMS = ["%02d:%02d:%02d." % (h, m, x) for h in range(24) for m in range(60) for x in range(60)]
_MS3 = ["%03dZ" % i for i in range(1000)]


def iso(ms):
    """iso formats epoch milliseconds as 2026-06-29T22:13:05.123Z."""
    d, r = divmod(int(ms), DAY)
    s = _DAYSTR.get(d)
    if s is None:
        s = _DAYSTR[d] = date.fromordinal(EPOCH_ORD + d).isoformat() + "T"
    sec, milli = divmod(r, 1000)
    return s + _HMS[sec] + _MS3[milli]


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_iso(text):
    """parse_iso reads an ISO-8601 date-time with a zone into epoch ms."""
    s = text.strip()
    if len(s) < 11 or s[10] not in "Tt":
        raise ValueError("not a date-time")
    if s[-1] in "Zz":
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        raise ValueError("date-time without a zone")
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def ymd(e):
    return date.fromordinal(EPOCH_ORD + e)


def nth_sunday(y, m, n):
    """epoch day of the n-th Sunday of month m (n = -1: the last one)."""
    if n > 0:
        first = date(y, m, 1)
        d = first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))
    else:
        nxt = date(y + (m == 12), m % 12 + 1, 1)
        last = nxt - timedelta(days=1)
        d = last - timedelta(days=(last.weekday() + 1) % 7)
    return d.toordinal() - EPOCH_ORD


def fmt_offset(minutes, zero_as_z):
    if minutes == 0 and zero_as_z:
        return "Z"
    sign = "+" if minutes >= 0 else "-"
    h, m = divmod(abs(minutes), 60)
    return "%s%02d:%02d" % (sign, h, m)


class Zone:
    """A home time zone with real DST rules (us, eu, au) or none."""

    def __init__(self, name, std, rule=None, zero_as_z=True, south=False):
        self.name, self.std, self.rule = name, std, rule
        self.zero_as_z, self.south = zero_as_z, south
        self._years = {}
        self._day = {}
        self._tzd = {}

    def _trans(self, y):
        t = self._years.get(y)
        if t is None:
            if self.rule == "us":      # 2nd Sun Mar 02:00 std .. 1st Sun Nov 02:00 dst
                a = nth_sunday(y, 3, 2) * DAY + 2 * HOUR - self.std * MINUTE
                b = nth_sunday(y, 11, 1) * DAY + 2 * HOUR - (self.std + 60) * MINUTE
            elif self.rule == "eu":    # last Sun Mar 01:00Z .. last Sun Oct 01:00Z
                a = nth_sunday(y, 3, -1) * DAY + HOUR
                b = nth_sunday(y, 10, -1) * DAY + HOUR
            else:                      # au: DST from 1st Sun Oct 02:00 std to 1st Sun Apr 03:00 dst
                a = nth_sunday(y, 10, 1) * DAY + 2 * HOUR - self.std * MINUTE
                b = nth_sunday(y, 4, 1) * DAY + 3 * HOUR - (self.std + 60) * MINUTE
            t = self._years[y] = (a, b)
        return t

    def offset(self, utc_ms):
        """offset: minutes east of UTC at the instant utc_ms."""
        if self.rule is None:
            return self.std
        d = utc_ms // DAY
        off = self._day.get(d)
        if off is None:
            off = self._day[d] = self._offset(d * DAY), self._offset(d * DAY + DAY - 1)
        if off[0] == off[1]:
            return off[0]
        return self._offset(utc_ms)

    def _offset(self, utc_ms):
        a, b = self._trans(ymd(int(utc_ms // DAY)).year)
        if self.rule == "au":
            return self.std if b <= utc_ms < a else self.std + 60
        return self.std + 60 if a <= utc_ms < b else self.std

    def to_utc(self, local_ms):
        off = self.offset(local_ms - self.std * MINUTE)
        utc = local_ms - off * MINUTE
        off2 = self.offset(utc)
        if off2 != off:
            utc = local_ms - off2 * MINUTE
        return utc

    def tzd(self, utc_ms):
        off = self.offset(utc_ms)
        t = self._tzd.get(off)
        if t is None:
            t = self._tzd[off] = fmt_offset(off, self.zero_as_z)
        return t


HOME_ZONES = [
    Zone("America/New_York", -300, "us"),
    Zone("Europe/Berlin", 60, "eu"),
    Zone("Europe/London", 0, "eu", zero_as_z=True),
    Zone("America/Los_Angeles", -480, "us"),
    Zone("Asia/Tokyo", 540),
    Zone("Australia/Sydney", 600, "au", south=True),
    Zone("Asia/Kolkata", 330),
    Zone("America/Sao_Paulo", -180, south=True),
]
HOME_WEIGHTS = [4, 3, 2, 3, 1, 1, 1, 1]
TRIP_OFFSETS = [-480, -360, -300, -180, 0, 60, 120, 330, 480, 540, 600]
_TRIP_ZONES = {o: Zone("trip%+d" % o, o, None, zero_as_z=False) for o in TRIP_OFFSETS}


def rng(*parts):
    return random.Random(":".join(str(p) for p in parts))


def clamp(x, lo, hi):
    return lo if x < lo else hi if x > hi else x


_UUID_MASK = ~((0xf000 << 64) | (0xc000 << 48))
_UUID_BITS = (0x4000 << 64) | (0x8000 << 48)


def det_uuid(r):
    """det_uuid draws a version-4 UUID string from r."""
    h = "%032x" % ((r.getrandbits(128) & _UUID_MASK) | _UUID_BITS)
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


# --------------------------------------------------------------------------
# records and per-athlete indexes

class Rec:
    """One record (cycle, sleep, workout or recovery) and its timeline.

    created  visible from this simulator time on
    pending  PENDING_SCORE view until then (cycles: also no `end`); INF
             while unknown (the newest cycle, until the next one exists)
    rescore  0, or: the early version is served until then, the final after
    spec     the numbers the JSON body is built from (bodies are built when
             served, not stored); fixed, once touched, holds the body itself
    """
    __slots__ = ("kind", "ath", "key", "start", "end", "sort_start", "tb",
                 "created", "pending", "rescore", "spec", "fixed", "cyc", "nap")

    def body(self, early=False):
        if self.fixed is not None:
            return self.fixed
        return BUILDERS[self.kind](self, early)

    def updated(self, early):
        if self.pending == INF:
            return self.created
        if self.rescore and not early:
            return self.rescore
        return self.pending

    def view(self, now):
        if now < self.created:
            return None
        if now < self.pending:
            src = self.body(True)
            out = {}
            for k, v in src.items():
                if k == "score" or k == "step_count" or (k == "end" and self.kind == "cycle"):
                    continue
                out[k] = v
            out["score_state"] = "PENDING_SCORE"
            out["updated_at"] = out["created_at"]
            return out
        return self.body(bool(self.rescore) and now < self.rescore)

    def open_at(self, now):
        """open_at: the record is served without an end (ongoing cycle)."""
        if self.fixed is not None:
            return self.kind == "cycle" and "end" not in self.fixed
        return self.kind == "cycle" and now < self.pending


class _Absent:
    """The marker of an optional field left out (None = present as null)."""

    def __reduce__(self):       # a singleton also across the helper process
        return "ABSENT"

    def __repr__(self):
        return "ABSENT"


ABSENT = _Absent()
ALCOHOL, ILL, JET, NAP = 1, 2, 4, 8      # flags of a night


def _put(d, key, value):
    if value is not ABSENT:
        d[key] = value


def build_cycle(rec, early):
    uid, tzd, uns, strain, kj, avg, mx, steps, early_strain = rec.spec
    d = {"id": rec.key, "user_id": uid, "created_at": iso(rec.created),
         "updated_at": iso(rec.updated(early)), "start": iso(rec.start), "end": iso(rec.end),
         "timezone_offset": tzd}
    if uns:
        d["score_state"] = "UNSCORABLE"
        return d
    d["score_state"] = "SCORED"
    d["score"] = {"strain": early_strain if early and early_strain is not None else strain,
                  "kilojoule": kj, "average_heart_rate": avg, "max_heart_rate": mx}
    if steps is not None:
        d["step_count"] = steps
    return d


def build_sleep(rec, early):
    (v1, uid, tzd, uns, seed, awake, nodata, need, perf, cons, flags, prev_strain, resp0,
     has_early) = rec.spec
    d = {"id": rec.key, "cycle_id": rec.cyc}
    if v1 is not None:
        d["v1_id"] = v1
    d["user_id"] = uid
    d["created_at"] = iso(rec.created)
    d["updated_at"] = iso(rec.updated(early))
    d["start"] = iso(rec.start)
    d["end"] = iso(rec.end)
    d["timezone_offset"] = tzd
    d["nap"] = rec.nap
    if uns:
        d["score_state"] = "UNSCORABLE"
        return d
    d["score_state"] = "SCORED"
    r = random.Random(seed)
    inbed = rec.end - rec.start
    if flags & NAP:
        sws = int(inbed * r.uniform(0.05, 0.15))
        rem = int(inbed * r.uniform(0.05, 0.15))
        stage = (inbed, awake, 0, inbed - awake - sws - rem, sws, rem,
                 int(inbed > 50 * MINUTE), int(r.random() * 5))
        resp = round((resp0 + r.gauss(0, 0.3)) * 256) / 256
    else:
        alcohol = 0.03 if flags & ALCOHOL else 0.0
        sws = int(inbed * clamp(r.gauss(0.20, 0.022) + 0.002 * (prev_strain - 10) - alcohol,
                                0.13, 0.27))
        rem = int(inbed * clamp(r.gauss(0.225, 0.018) - 1.33 * alcohol, 0.15, 0.27))
        asleep = inbed - awake - nodata
        stage = (inbed, awake, nodata, asleep - sws - rem, sws, rem,
                 int(clamp(round(asleep / HOUR / 1.5 + r.gauss(0, 0.5)), 3, 6)),
                 int(clamp(round(r.gauss(10, 3.5) + 133 * alcohol), 2, 25)))
        resp = round((resp0 + r.gauss(0, 0.25) + (1.0 if flags & ILL else 0)
                      + 10 * alcohol) * 256) / 256
        if r.random() < 0.01:
            resp = ABSENT
        if cons is None and r.random() < 0.5:
            cons = ABSENT
        if early and has_early:     # the first scoring differed a little
            if perf is not ABSENT:
                perf = float(max(0.0, perf - 3))
            if resp is not ABSENT:
                resp = round((resp + 0.25) * 256) / 256
    sc = {"stage_summary": dict(zip(STAGE_KEYS, stage)),
          "sleep_needed": dict(zip(NEED_KEYS, need))}
    _put(sc, "respiratory_rate", resp)
    _put(sc, "sleep_performance_percentage", perf)
    _put(sc, "sleep_consistency_percentage", cons)
    sc["sleep_efficiency_percentage"] = round((inbed - awake - nodata) / inbed * 100, 8)
    d["score"] = sc
    return d


def build_recovery(rec, early):
    (sleep_id, uid, uns, calib, seed, ln, rhr, mln, sdl, mr, sdr, perf, hw4, ill, season,
     spo20, skin0, has_early) = rec.spec
    d = {"cycle_id": rec.key, "sleep_id": sleep_id, "user_id": uid,
         "created_at": iso(rec.created), "updated_at": iso(rec.updated(early))}
    if uns:
        d["score_state"] = "UNSCORABLE"
        return d
    d["score_state"] = "SCORED"
    r = random.Random(seed ^ 0x5DEECE66D)       # not the stream of its sleep
    raw = (0.35 + 0.9 * (ln - mln) / sdl - 0.4 * (rhr - mr) / sdr + 0.2 * (perf - 85) / 15
           + r.gauss(0, 0.3))
    score = float(int(round(clamp(100 / (1 + math.exp(-0.8 * raw)), 1, 99))))
    if early and has_early:
        score = float(clamp(score + (3 if score < 50 else -3), 1, 99))
    sc = {"user_calibrating": calib, "recovery_score": score,
          "resting_heart_rate": rhr, "hrv_rmssd_milli": round(math.exp(ln), 6)}
    if hw4:     # 4.0 hardware: SpO2 and skin temperature, now and then missing
        u = r.random()
        if u > 0.015:
            sc["spo2_percentage"] = round(clamp(spo20 + r.gauss(0, 0.5) - (0.8 if ill else 0),
                                                94.0, 99.5) * 16) / 16
            sc["skin_temp_celsius"] = round(clamp(skin0 + 0.25 * season + (0.6 if ill else 0)
                                                  + r.gauss(0, 0.18), 32.5, 35.5), 2)
        elif u > 0.0075:
            sc["spo2_percentage"] = sc["skin_temp_celsius"] = None
    d["score"] = sc
    return d


def build_workout(rec, early):
    (v1, uid, tzd, sport, sid, uns, strain, avg, mx, kj, frac, seed, has_early) = rec.spec
    d = {"id": rec.key}
    if v1 is not None:
        d["v1_id"] = v1
    d["user_id"] = uid
    d["created_at"] = iso(rec.created)
    d["updated_at"] = iso(rec.updated(early))
    d["start"] = iso(rec.start)
    d["end"] = iso(rec.end)
    d["timezone_offset"] = tzd
    d["sport_name"] = sport
    if uns:
        d["score_state"] = "UNSCORABLE"
    else:
        d["score_state"] = "SCORED"
        if early and has_early:
            strain, kj = round(strain * 0.96, 6), round(kj * 0.96, 3)
        r = random.Random(seed)
        _, _, _, flo, fhi, speed, alt = SPORTS[sport]
        dur = rec.end - rec.start
        c = (frac - 0.45) / 0.1      # centre of the zone mass (zones by % HR reserve)
        ws = [math.exp(-((z - c) ** 2) / 1.45) * r.uniform(0.6, 1.4) for z in range(6)]
        ws[0] += 0.04
        tot = sum(ws)
        zms = [int(dur * v / tot) for v in ws]
        zms[ws.index(max(ws))] += dur - sum(zms)     # the zones add up to the duration
        x = [r.random() for _ in range(5)]
        sc = {"strain": strain, "average_heart_rate": avg, "max_heart_rate": mx,
              "kilojoule": kj, "percent_recorded": 100.0 if x[0] < 0.92 else round(80 + 19.9 * x[1], 2)}
        if speed is not None:
            if x[2] < 0.03:
                sc["distance_meter"] = None     # no GPS
            else:
                v = speed[0] + (speed[1] - speed[0]) * clamp((frac - flo) / (fhi - flo), 0, 1)
                dist = round(v * dur / 1000, 8)
                sc["distance_meter"] = dist
                if alt and x[3] < 0.75:         # outdoors
                    sc["altitude_gain_meter"] = round(dist * (0.002 + 0.013 * x[4]), 11)
                    sc["altitude_change_meter"] = round((x[3] - 0.375) * 40, 11)
        sc["zone_durations"] = dict(zip(ZONE_KEYS, zms))
        d["score"] = sc
    if sid is not None:
        d["sport_id"] = sid
    if SPORTS[sport][6]:
        route = rng(seed, "route")
        if route.random() < 0.3:
            d["route_name"] = route.choice(ROUTE_NAMES)
    return d


BUILDERS = {"cycle": build_cycle, "sleep": build_sleep, "recovery": build_recovery,
            "workout": build_workout}
STAGE_KEYS = ("total_in_bed_time_milli", "total_awake_time_milli", "total_no_data_time_milli",
              "total_light_sleep_time_milli", "total_slow_wave_sleep_time_milli",
              "total_rem_sleep_time_milli", "sleep_cycle_count", "disturbance_count")
NEED_KEYS = ("baseline_milli", "need_from_sleep_debt_milli", "need_from_recent_strain_milli",
             "need_from_recent_nap_milli")


class Index:
    """Records of one kind of one athlete, sorted by (sort_start, tb)."""
    __slots__ = ("keys", "recs", "span")

    def __init__(self):
        self.keys, self.recs, self.span = [], [], 0

    def add(self, rec):
        k = (rec.sort_start, rec.tb)
        if not self.keys or k > self.keys[-1]:
            self.keys.append(k)
            self.recs.append(rec)
        else:
            i = bisect.bisect_left(self.keys, k)
            self.keys.insert(i, k)
            self.recs.insert(i, rec)
        self.widen(rec)

    def widen(self, rec):
        reach = rec.end
        if rec.kind == "cycle" and rec.pending != INF:
            reach = max(reach, rec.pending)
        if reach - rec.sort_start > self.span:
            self.span = reach - rec.sort_start

    def remove(self, rec):
        i = bisect.bisect_left(self.keys, (rec.sort_start, rec.tb))
        while self.recs[i] is not rec:
            i += 1
        del self.keys[i]
        del self.recs[i]


class Sched:
    __slots__ = ("onset", "bed", "worn", "split", "zone", "trip")


class State:
    """What carries over from one day to the next for an athlete."""

    def __init__(self):
        self.prev_strain = 9.0
        self.acute = 9.0
        self.chronic = 9.0
        self.fitness = 0.0
        self.debt = 0.0
        self.prev_nap = 0
        self.ill = 0
        self.ar_h = 0.0
        self.ar_r = 0.0
        self.hist = collections.deque(maxlen=30)   # (ln rMSSD, RHR) of worn days
        self.s_ln = self.s_ln2 = self.s_r = self.s_r2 = 0.0
        self.worn = 0
        self.prev_bed = None
        self.prev_wake = None
        self.prev_zone = None


class Athlete:
    def __init__(self, world, idx, user_id, has_body):
        self.world = world
        self.idx = idx
        self.user_id = user_id
        seed = world.seed
        self.seed = seed
        r = rng(seed, "athlete", idx)
        self.first = r.choice(FIRST_NAMES)
        self.last = r.choice(LAST_NAMES)
        self.sex = r.choice("MF")
        self.age = r.randint(22, 58)
        if self.sex == "M":
            h = r.uniform(1.66, 1.95)
        else:
            h = r.uniform(1.55, 1.80)
        w = r.uniform(20.0, 27.5) * h * h
        self.weight = w
        self.max_hr = int(round(208 - 0.7 * self.age + r.gauss(0, 4)))
        if idx < 3:
            self.zone = HOME_ZONES[idx]
        else:
            self.zone = r.choices(HOME_ZONES, HOME_WEIGHTS)[0]
        self.hemi = -1.0 if self.zone.south else 1.0
        fit = r.random()
        self.rhr0 = clamp(67 - 18 * fit + r.gauss(0, 2.5), 45, 70)
        self.ln0 = math.log(clamp(38 + 70 * fit + r.gauss(0, 9), 30, 120))
        target_sd = self.ln0 * r.uniform(0.045, 0.075)
        self.hrv_sd = target_sd
        self.hrv_noise = math.sqrt(max(0.004, target_sd ** 2 - 0.13 ** 2)) / 1.12
        self.resp0 = r.uniform(13.6, 17.4)
        self.spo20 = r.uniform(95.4, 97.6)
        self.skin0 = r.uniform(33.5, 34.5)
        self.need_h = r.uniform(7.4, 8.6)
        self.bed_min = clamp(r.gauss(23 * 60 + 5, 25), 22 * 60, 24 * 60 + 15)
        self.bed_sd = r.uniform(15, 35)
        self.wake_min = clamp(r.gauss(6 * 60 + 45, 20), 5 * 60 + 45, 7 * 60 + 45)
        self.weekly = r.uniform(3.0, 8.5)
        self.nap_p = r.uniform(0.02, 0.10)
        self.neat = r.uniform(1.32, 2.4)
        sports = r.sample(SPORT_NAMES, r.randint(2, 4))
        if idx == 0 and "running" not in sports:
            sports[0] = "running"
        self.sports = sports
        self.sport_w = [r.uniform(0.5, 3.0) for _ in sports]
        regional = rng(seed, "regional sport", idx)
        if regional.random() < 0.4:
            sports.append(regional.choice(sorted(REGIONAL_SPORTS)))
            self.sport_w.append(regional.uniform(0.5, 1.5))
        self.sport_cw = list(itertools.accumulate(self.sport_w))
        self.slot_w = [r.uniform(0.5, 2.0), r.uniform(0.2, 1.0), r.uniform(0.5, 2.0)]
        # hardware 3.0 (no SpO2/skin temp) until an upgrade day for some athletes
        self.hw4_from = world.first_e + r.randint(60, 300) if idx % 4 == 3 else -10 ** 9
        bmr_kcal = 10 * w + 625 * h - 5 * self.age + (5 if self.sex == "M" else -161)
        self.bmr_kj = bmr_kcal * 4.184
        self.profile = {"user_id": user_id,
                        "email": "%s.%s%d@example.com" % (ascii_fold(self.first).lower(),
                                                          ascii_fold(self.last).lower(), idx + 1),
                        "first_name": self.first, "last_name": self.last}
        self.body = {"height_meter": round(h, 4), "weight_kilogram": round(w, 4),
                     "max_heart_rate": self.max_hr} if has_body else None
        self.idx_cycle, self.idx_sleep = Index(), Index()
        self.idx_workout, self.idx_recovery = Index(), Index()
        self.indexes = {"cycle": self.idx_cycle, "sleep": self.idx_sleep,
                        "workout": self.idx_workout, "recovery": self.idx_recovery}
        # by id: cycle id, sleep uuid, workout uuid, cycle id; main sleep by cycle id
        self.by_id = {"cycle": {}, "sleep": {}, "workout": {}, "recovery": {}}
        self.main_sleep = {}
        self.st = State()
        self.gen_e = world.first_e - 1     # last generated wake day
        self.last_cycle = None
        self._sched = {}
        self._trips = {}
        self._gaps = {}
        # two random streams, consumed strictly in date order: the schedule
        # (a day ahead) and the day itself; so every run draws the same
        # numbers for the same day, whenever the day is generated
        self.r_sched = rng(seed, idx, "schedule")
        self.r_day = rng(seed, idx, "day")
        self.sched_e = self.gen_e

    # -- pure per-date schedule ------------------------------------------

    def trip(self, e):
        """trip: the zone of a trip covering wake day e, or None (pure)."""
        block = e // 75
        t = self._trips.get(block)
        if t is None:
            rt = rng(self.seed, self.idx, block, "trip")
            t = ()
            if rt.random() < 0.5:
                t0 = block * 75 + rt.randrange(0, 60)
                n = rt.randint(3, 9)
                home = self.zone.offset(t0 * DAY)
                choices = [o for o in TRIP_OFFSETS if 60 <= abs(o - home) <= 540]
                t = (t0, n, _TRIP_ZONES[rt.choice(choices)])
            self._trips[block] = t
        if t and t[0] <= e < t[0] + t[1]:
            return t[2]
        return None

    def gap(self, e, r):
        """gap: wake day e is not worn (pure; draws once from r)."""
        w = self.world
        u = r.random()
        if e < w.first_e + 4 or w.now0_e - 2 <= e <= w.now0_e + 1:
            return False
        if u < 0.02:
            return True
        block = e // 120
        g = self._gaps.get(block)
        if g is None:
            rb = rng(self.seed, self.idx, block, "gap")
            g = ()
            if rb.random() < 0.35:
                g = (block * 120 + rb.randrange(0, 110), rb.randint(2, 6))
            self._gaps[block] = g
        return bool(g) and g[0] <= e < g[0] + g[1]

    def sched(self, e):
        """sched: bedtime, sleep onset, place and whether day e is worn.
        Drawn from the athlete's schedule stream strictly in date order (a
        day ahead of gen_day, which needs the next onset to end a cycle)."""
        s = self._sched.get(e)
        if s is not None:
            return s
        if e != self.sched_e + 1:
            raise AssertionError("schedule out of order: %d after %d" % (e, self.sched_e))
        self.sched_e = e
        r = self.r_sched
        s = Sched()
        trip = self.trip(e)
        s.trip = trip is not None
        zone = trip or self.zone
        s.zone = zone
        wd = (e + 3) % 7          # 1970-01-01 was a Thursday; Monday = 0
        bed = self.bed_min + (40 if wd >= 5 else 0) + r.gauss(0, self.bed_sd)
        bed = clamp(bed, 21 * 60 + 15, 25 * 60 + 45)
        s.bed = bed
        local = (e - 1) * DAY + int(bed * MINUTE) + int(r.random() * 1000)
        s.onset = zone.to_utc(local)
        s.worn = not self.gap(e, r)
        w = self.world
        s.split = (r.random() < 0.005 and not s.trip and e > w.first_e + 10
                   and not (w.now0_e - 3 <= e <= w.now0_e + 1))
        self._sched[e] = s
        return s

    # -- day generation ----------------------------------------------------

    def ensure(self, upto_e):
        while self.gen_e < upto_e:
            self.gen_e += 1
            self.gen_day(self.gen_e)
            self._sched.pop(self.gen_e - 1, None)

    def close_prev(self, created_next):
        """close_prev completes the previous cycle once the next one exists
        (created_next) or, before a day not worn, two hours after its end."""
        c = self.last_cycle
        if c is None or c.pending != INF:
            return
        c.pending = created_next if created_next is not None else c.end + 2 * HOUR
        if c.rescore:
            c.rescore += c.pending      # held the re-score delay until now
        self.idx_cycle.widen(c)

    def gen_day(self, e):
        """gen_day generates wake day e: its main sleep(s) and their cycles
        and recoveries, its workouts and nap, then updates the state."""
        sc = self.sched(e)
        nxt = self.sched(e + 1)
        st = self.st
        if not sc.worn:
            self.close_prev(None)
            st.prev_strain = 9.0
            st.debt *= 0.6
            st.prev_nap = 0
            st.prev_bed = None
            return
        r = self.r_day
        rand, uni, gauss = r.random, r.uniform, r.gauss
        uid = self.user_id
        zone = sc.zone
        weekend = (e + 3) % 7 >= 5
        # +1 in mid-July, -1 in mid-January (northern hemisphere); 1970-07-15 = day 195
        season = math.cos(2 * math.pi * (e - 195) / 365.2425) * self.hemi
        if st.ill > 0:
            st.ill -= 1
        elif rand() < 0.005:
            st.ill = r.randint(3, 6)
        ill = st.ill > 0
        alcohol = rand() < (0.12 if weekend else 0.04) and not ill
        jet = st.prev_zone is not None and st.prev_zone != zone.name
        st.prev_zone = zone.name

        # ---- the main sleep(s): in-bed time from the wake habit ---------
        wake_local = self.wake_min + (uni(50, 120) if weekend else 0) + gauss(0, 18)
        if ill:
            wake_local += 40
        inbed_min = wake_local + 1440 - sc.bed - (20 if alcohol else 0) - (30 if jet else 0)
        inbed_min = clamp(inbed_min, 270, 630)
        onset = sc.onset
        if sc.split:    # two main sleeps: a short night, then a long sleep by day
            first_len = int(uni(3.0, 4.5) * HOUR)
            s2 = onset + first_len + int(uni(5, 8) * HOUR)
            sleeps = [(onset, onset + first_len), (s2, s2 + int(uni(3.0, 4.5) * HOUR))]
        else:
            sleeps = [(onset, onset + int(inbed_min * MINUTE) + int(rand() * 60000))]
        cyc_end = nxt.onset
        wake = sleeps[-1][1]

        # ---- physiology of the night -------------------------------------
        slept_h = (sleeps[0][1] - sleeps[0][0]) / HOUR * 0.9
        st.ar_h = 0.45 * st.ar_h + gauss(0, self.hrv_noise)
        st.ar_r = 0.5 * st.ar_r + gauss(0, 1.0)
        ln = (self.ln0 + 0.07 * season + 0.08 * st.fitness
              - 0.030 * (st.prev_strain - 10) - 0.035 * max(0.0, 7 - slept_h)
              - 0.012 * min(st.debt / HOUR, 4) - (0.13 if alcohol else 0)
              - (0.28 if ill else 0) - (0.06 if jet else 0) + st.ar_h)
        rhr = (self.rhr0 - 1.3 * season - 2.0 * st.fitness
               + 0.35 * max(-3.0, st.prev_strain - 10) + (5.0 if alcohol else 0)
               + (6.5 if ill else 0) + (1.5 if jet else 0) + st.ar_r
               - 1.4 * st.ar_h / self.hrv_sd)
        rhr = float(int(round(clamp(rhr, 38, 88))))
        n = len(st.hist)
        if n >= 4:      # the athlete's own baseline: the last 30 worn days
            mln, mr = st.s_ln / n, st.s_r / n
            sdl = max(0.08, math.sqrt(max(0.0, (st.s_ln2 - n * mln * mln) / (n - 1))))
            sdr = max(1.5, math.sqrt(max(0.0, (st.s_r2 - n * mr * mr) / (n - 1))))
        else:
            mln, sdl, mr, sdr = self.ln0, self.hrv_sd, self.rhr0, 2.5
        calibrating = st.worn < 4

        # ---- workouts: more on good days, none when ill -------------------
        readiness = (ln - mln) / sdl - 0.5 * (rhr - mr) / sdr
        mult = 1.25 if readiness > 0.5 else (0.55 if readiness < -1.0 else 1.0)
        m = self.weekly / 7 * mult * (1.15 if weekend else 1.0) * (1 + 0.1 * season)
        if ill:
            m = 0.0
        if jet:
            m *= 0.6
        if sc.split:
            m *= 0.3
        lim, p, k = math.exp(-m), rand(), 0
        while p > lim and k < 3:
            k += 1
            p *= rand()
        cand, wts, slots = [0, 1, 2], list(self.slot_w), []
        for _ in range(k):       # k of the 3 slots, by the athlete's habits
            x, i = rand() * sum(wts), 0
            while i < len(wts) - 1 and x >= wts[i]:
                x -= wts[i]
                i += 1
            slots.append(cand.pop(i))
            wts.pop(i)
        slots.sort()
        wake_l = (wake - e * DAY + zone.offset(wake) * MINUTE) / MINUTE
        busy = list(sleeps)
        hrr = self.max_hr - rhr
        max_hr = self.max_hr
        wrecs, loads = [], []
        w_ms = w_beats = w_kj = 0.0
        w_max = 0
        for wi, slot in enumerate(slots):
            sport = self.sports[bisect.bisect(self.sport_cw, rand() * self.sport_cw[-1])]
            if slot == 1 and SPORTS[sport][1] > 35:
                sport = SHORT_SPORTS[int(rand() * len(SHORT_SPORTS))]
            sid, dlo, dhi, flo, fhi, speed, alt = SPORTS[sport]
            dur_min = uni(dlo, dhi if slot != 1 else min(dhi, 55))
            st_min = (wake_l + uni(15, 60), 12 * 60 + uni(0, 35), 17 * 60 + uni(0, 150))[slot]
            start = zone.to_utc(e * DAY + int(st_min * MINUTE)) + int(rand() * 60000)
            end = start + int(dur_min * MINUTE) + int(rand() * 1000)
            frac = uni(flo, fhi) + (0.03 if mult > 1.2 else -0.03 if mult < 0.6 else 0)
            x = [rand() for _ in range(9)]
            wuuid = det_uuid(r)
            if start < wake + 10 * MINUTE or end > cyc_end - 40 * MINUTE:
                continue
            if any(start < t and s < end for s, t in busy):
                continue
            busy.append((start, end))
            dur = end - start
            avg = int(round(rhr + frac * hrr))
            mx = min(max_hr, avg + 10 + int(x[0] * 24))
            load = dur / HOUR * (frac / 0.6) ** 3 * 2.5
            strain = 21 * (1 - math.exp(-load / STRAIN_SCALE))
            if self.sex == "M":
                kjm = -55.0969 + 0.6309 * avg + 0.1988 * self.weight + 0.2017 * self.age
            else:
                kjm = -20.4022 + 0.4472 * avg - 0.1263 * self.weight + 0.074 * self.age
            kj = max(3.0, kjm) * dur / MINUTE
            created = end + int((3 + 27 * x[6]) * MINUTE)
            pend = created + int((5 + 55 * x[7]) * MINUTE)
            uns = x[8] < 0.015
            has_early = not uns and x[8] > 0.94
            rescore = pend + int((1 + 71 * x[5]) * HOUR) if has_early else 0
            legacy = created < V1_CUTOFF
            spec = ((e * 8 + wi) * 1000 + self.idx % 1000 if legacy else None, uid,
                    zone.tzd(start), sport, sid if legacy else None, uns, round(strain, 6),
                    avg, mx, round(kj, 3), frac, int(x[1] * 2 ** 48), has_early)
            wrecs.append(self._rec("workout", wuuid, start, end, start, e * 8 + wi,
                                   created, pend, rescore, spec))
            loads.append(load)
            w_ms += dur
            w_beats += dur / HOUR * avg
            w_kj += kj
            w_max = max(w_max, mx)

        # ---- nap ------------------------------------------------------------
        nap = None
        if not sc.split and rand() < self.nap_p * (2 if slept_h < 6.5 else 1):
            ns = zone.to_utc(e * DAY + int((13 * 60 + 45 + uni(0, 100)) * MINUTE)) + int(rand() * 60000)
            ne = ns + int(uni(20, 80) * MINUTE) + int(rand() * 1000)
            nap_uuid = det_uuid(r)
            if ns > wake + HOUR and ne < cyc_end - 2 * HOUR and not any(ns < t and s < ne for s, t in busy):
                nap = (ns, ne)

        # ---- day strain (never below any workout's) and energy ------------
        base_load = self.neat * uni(0.9, 1.2) * (1 + 0.06 * season) * (0.85 if ill else 1.0)
        day_strain = 21 * (1 - math.exp(-(base_load + sum(loads)) / STRAIN_SCALE))

        # ---- main sleeps with their cycles and recoveries -----------------
        # Only what the state, the timelines and the cycle need is computed
        # here; the rest of each body (sleep stages, recovery score, SpO2,
        # skin temperature...) is drawn when served, from a per-record seed.
        cycle = None
        hw4 = e >= self.hw4_from
        flags = (ALCOHOL if alcohol else 0) | (ILL if ill else 0) | (JET if jet else 0)
        for si, (s_start, s_end) in enumerate(sleeps):
            last = si + 1 == len(sleeps)
            c_end = cyc_end if last else sleeps[si + 1][0]
            cid = (e * 2 + si) * 100_000 + self.idx
            inbed = s_end - s_start
            awake = int(inbed * (uni(0.05, 0.10) + (0.03 if alcohol else 0) + (0.02 if jet else 0)))
            nodata = int(uni(5, 40) * MINUTE) if rand() < 0.05 else 0
            asleep = inbed - awake - nodata
            need = (int(self.need_h * HOUR), int(min(st.debt, 4 * HOUR) * 0.35),
                    int(max(0.0, st.prev_strain - 9) * 5 * MINUTE), -int(st.prev_nap * 0.6))
            perf = float(min(100, int(round(asleep / sum(need) * 100))))
            wake_lm = (s_end - e * DAY + zone.offset(s_end) * MINUTE) / MINUTE
            if si == 0 and st.prev_bed is not None:
                cons = 100 - (abs(sc.bed - st.prev_bed) + abs(wake_lm - st.prev_wake)) / 3
                cons = float(int(clamp(round(cons), 25, 100)))
            else:
                cons = None         # not enough history: null or absent
            if si == 0:
                st.prev_bed, st.prev_wake = sc.bed, wake_lm
            ln_n = ln + (gauss(0, 0.05) if si else 0.0)
            tzd = zone.tzd(s_start)
            suuid = det_uuid(r)
            u = [rand() for _ in range(12)]
            seed = r.getrandbits(48)

            # the sleep
            s_created = s_end + int((2 + 23 * u[0]) * MINUTE)
            s_pend = s_created + int((10 + 110 * u[1]) * MINUTE)
            uns = u[2] < 0.012
            s_early = not uns and u[3] > 0.95
            s_resc = s_pend + int((1 + 71 * u[4]) * HOUR) if s_early else 0
            spec = ((e * 8 + si) * 1000 + self.idx % 1000 if s_created < V1_CUTOFF else None,
                    uid, tzd, uns, seed, awake, nodata, need, perf if st.worn else ABSENT, cons,
                    flags, st.prev_strain, self.resp0, s_early)
            sleep = self._rec("sleep", suuid, s_start, s_end, s_start, e * 8 + si,
                              s_created, s_pend, s_resc, spec, cid, False)

            # its recovery: HRV and RHR against the athlete's own baseline
            r_created = s_created + int((0.5 + 2.5 * u[5]) * MINUTE)
            r_pend = s_pend + int(3 * u[6] * MINUTE)
            r_early = not uns and u[7] > 0.95
            r_resc = r_pend + int((1 + 59 * u[8]) * HOUR) if r_early else 0
            spec = (suuid, uid, uns, calibrating, seed, ln_n, rhr, mln, sdl, mr, sdr, perf,
                    hw4, ill, season, self.spo20, self.skin0, r_early)
            recovery = self._rec("recovery", cid, s_start, s_end, s_start, cid,
                                 r_created, r_pend, r_resc, spec)

            # the cycle this sleep starts
            c_created = r_created + int(60000 * u[9])    # sleep, recovery, then cycle
            c_hours = (c_end - s_start) / HOUR
            if last:
                strain = day_strain
                kj = (self.bmr_kj * 1.25 + base_load * 1000) * c_hours / 24 + 0.85 * w_kj
                if kj > 13000:          # big days flatten out
                    kj = 13000 + (kj - 13000) * 0.3
                if c_hours >= 18:
                    kj = clamp(kj, 7000.0, 14000.0)
                w_h, beats, mx = w_ms / HOUR, w_beats, w_max
            else:
                strain = 21 * (1 - math.exp(-base_load * 0.5 / STRAIN_SCALE))
                kj = self.bmr_kj * c_hours / 24 * 1.1
                w_h, beats, mx = 0.0, 0.0, 0
            sl_h = inbed / HOUR
            rest_h = max(0.0, c_hours - sl_h - w_h)
            avg_hr = (sl_h * (rhr + 2) + beats + rest_h * (rhr + 15 + 8 * u[10])) / max(c_hours, 1)
            cmax = min(max_hr, max(mx, int(rhr) + 45 + int(35 * u[11])))
            c_uns = rand() < 0.004
            c_early = not c_uns and rand() > 0.95
            steps = None
            if rand() < 0.3 and c_created >= STEP_COUNT_FROM:
                steps = 3000 + int(day_strain * 700 + 3000 * rand())
            spec = (uid, tzd, c_uns, round(strain, 6), round(kj, 3),
                    int(round(avg_hr)), int(cmax), steps,
                    round(max(0.0, strain - 0.4), 6) if c_early else None)
            # pending (so updated_at) is known once the next cycle exists:
            # close_prev() fills it in; rescore holds the delay until then
            cycle = self._rec("cycle", cid, s_start, c_end, s_start, cid, c_created, INF,
                              int(uni(2, 72) * HOUR) if c_early else 0, spec)
            self.close_prev(c_created)
            self.last_cycle = cycle
            self.add(cycle, sleep, recovery)

        # ---- the nap and the workouts belong to the (last) cycle ----------
        if nap is not None:
            ns, ne = nap
            inbed = ne - ns
            awake = int(inbed * uni(0.08, 0.15))
            n_created = ne + int(uni(2, 20) * MINUTE)
            n_pend = n_created + int(uni(10, 60) * MINUTE)
            spec = ((e * 8 + 2) * 1000 + self.idx % 1000 if n_created < V1_CUTOFF else None,
                    uid, zone.tzd(ns), False, r.getrandbits(48), awake, 0,
                    (int(self.need_h * HOUR), 0, 0, 0), ABSENT, ABSENT, NAP, 0.0, self.resp0, False)
            self.add(self._rec("sleep", nap_uuid, ns, ne, ns, e * 8 + 2, n_created, n_pend, 0,
                               spec, cycle.key, True))
            st.prev_nap = inbed - awake
        else:
            st.prev_nap = 0
        for w in wrecs:
            self.add(w)

        # ---- state for tomorrow -------------------------------------------
        st.prev_strain = day_strain
        st.acute += (day_strain - st.acute) * 0.25
        st.chronic += (day_strain - st.chronic) * (2 / 29)
        st.fitness += 0.01 * ((st.chronic - 9.5) / 4 - st.fitness)
        slept = sum(t - s for s, t in sleeps) * 0.9
        st.debt = clamp(0.6 * st.debt + (self.need_h * HOUR - slept), 0, 6 * HOUR)
        if n == 30:
            oln, orr = st.hist[0]
            st.s_ln -= oln
            st.s_ln2 -= oln * oln
            st.s_r -= orr
            st.s_r2 -= orr * orr
        st.hist.append((ln, rhr))
        st.s_ln += ln
        st.s_ln2 += ln * ln
        st.s_r += rhr
        st.s_r2 += rhr * rhr
        st.worn += 1

    def _rec(self, kind, key, start, end, sort_start, tb, created, pending, rescore, spec,
             cyc=None, nap=False):
        x = Rec()
        x.kind, x.ath, x.key = kind, self, key
        x.start, x.end, x.sort_start, x.tb = start, end, sort_start, tb
        x.created, x.pending, x.rescore = created, pending, rescore
        x.spec, x.fixed, x.cyc, x.nap = spec, None, cyc, nap
        return x

    def add(self, *recs):
        for rec in recs:
            self.indexes[rec.kind].add(rec)
            self.by_id[rec.kind][rec.key] = rec
            if rec.kind == "sleep" and not rec.nap:
                self.main_sleep[rec.cyc] = rec

    # -- hand-over from a helper process (see World.generate) -----------------
    def export(self):
        recs = {k: [(x.key, x.start, x.end, x.sort_start, x.tb, x.created, x.pending,
                     x.rescore, x.spec, x.cyc, x.nap) for x in idx.recs]
                for k, idx in self.indexes.items()}
        return (self.gen_e, self.st, recs,
                self.last_cycle.key if self.last_cycle is not None else None,
                self.r_sched, self.r_day, self.sched_e, self._sched)

    def load(self, data):
        (self.gen_e, self.st, recs, last, self.r_sched, self.r_day, self.sched_e,
         self._sched) = data
        for kind, rows in recs.items():
            idx = self.indexes[kind]
            ids = self.by_id[kind]
            for row in rows:
                x = Rec()
                (x.key, x.start, x.end, x.sort_start, x.tb, x.created, x.pending,
                 x.rescore, x.spec, x.cyc, x.nap) = row
                x.kind, x.ath, x.fixed = kind, self, None
                idx.keys.append((x.sort_start, x.tb))
                idx.recs.append(x)
                idx.widen(x)
                ids[x.key] = x
                if kind == "sleep" and not x.nap:
                    self.main_sleep[x.cyc] = x
        self.last_cycle = self.by_id["cycle"].get(last)


# --------------------------------------------------------------------------
# the world: athletes, clock, lookups

class World:
    def __init__(self, seed, athletes, days, now_ms, frozen, no_body, jobs=2):
        self.seed = seed
        self.jobs = jobs
        self.frozen = frozen
        self.now_fixed = now_ms
        self.offset = 0.0      # real-time mode: sim now = real now + offset
        self.real0 = now_ms
        self.now0_e = int(now_ms // DAY)
        self.first_e = self.now0_e - days + 1
        r = rng(seed, "users")
        ids = r.sample(range(100_000, 40_000_000), athletes)
        self.athletes = []
        self.by_user = {}
        for i, uid in enumerate(ids):
            has_body = not ((i + 1) in no_body or uid in no_body)
            a = Athlete(self, i, uid, has_body)
            self.athletes.append(a)
            self.by_user[uid] = a
        self.horizon_e = None
        self.secret = hashlib.sha256(("whoop-sim:%s" % seed).encode()).digest()
        self.ensure()

    def now(self):
        if self.frozen:
            return self.now_fixed
        return int(time.time() * 1000 + self.offset)

    def set_now(self, ms):
        if self.frozen:
            self.now_fixed = int(ms)
        else:
            self.offset = ms - time.time() * 1000
        self.ensure()

    def ensure(self):
        """ensure generates every athlete up to two days past now."""
        target = int(self.now() // DAY) + 2
        if self.horizon_e is not None and target <= self.horizon_e:
            return
        gc_was = gc.isenabled()
        gc.disable()     # millions of young objects: the cyclic GC only costs here
        try:
            if self.horizon_e is None and self.jobs > 1 and len(self.athletes) >= PARALLEL_FROM:
                self.generate_forked(target)
            for a in self.athletes:
                a.ensure(target)
        finally:
            if gc_was:
                gc.freeze()
                gc.enable()
        self.horizon_e = target

    def generate_forked(self, target):
        """generate_forked splits the athletes into `jobs` chunks: forked
        helper processes generate all but the first (this process does that
        one meanwhile) and hand their athletes over in a pickle.  The data is
        the same as generating in order: each athlete is independent."""
        if not hasattr(os, "fork"):
            return
        n = len(self.athletes)
        chunks = [self.athletes[n * i // self.jobs:n * (i + 1) // self.jobs]
                  for i in range(self.jobs)]
        kids = []
        try:
            for chunk in chunks[1:]:
                fd, path = tempfile.mkstemp(prefix="whoop_sim.")
                try:
                    pid = os.fork()
                except OSError:     # no helper: ensure() generates the rest here
                    os.close(fd)
                    os.unlink(path)
                    break
                if pid == 0:
                    code = 1
                    try:
                        for a in chunk:
                            a.ensure(target)
                        with os.fdopen(fd, "wb") as f:
                            pickle.dump([a.export() for a in chunk], f,
                                        protocol=pickle.HIGHEST_PROTOCOL)
                        code = 0
                    finally:
                        os._exit(code)
                os.close(fd)
                kids.append((pid, path, chunk))
            for a in chunks[0]:
                a.ensure(target)
            while kids:
                pid, path, chunk = kids[0]
                _, status = os.waitpid(pid, 0)
                kids.pop(0)
                if status == 0:     # else the athletes are generated here, in ensure()
                    with open(path, "rb") as f:
                        for a, data in zip(chunk, pickle.load(f)):
                            a.load(data)
                os.unlink(path)
        finally:        # interrupted (SIGTERM): no orphans, no files left
            for pid, path, chunk in kids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except OSError:
                    pass
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def find(self, kind, key):
        """find looks a record up by id across athletes (control plane)."""
        for a in self.athletes:
            rec = a.by_id[kind].get(key)
            if rec is not None:
                return rec
        return None

    # paging cursor -----------------------------------------------------
    def make_token(self, kind, uid, key):
        msg = "%s.%d" % (key[0], key[1])
        mac = hmac.new(self.secret, ("%s|%s|%s" % (kind, uid, msg)).encode(),
                       hashlib.sha256).hexdigest()[:12]
        raw = ("%s.%s" % (msg, mac)).encode()
        return urllib.parse.quote(__import__("base64").urlsafe_b64encode(raw).decode().rstrip("="))

    def read_token(self, kind, uid, tok):
        import base64
        try:
            t = tok.strip()
            raw = base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)).decode("ascii")
            a, b, mac = raw.split(".")
            msg = "%d.%d" % (int(a), int(b))
            if msg != "%s.%s" % (a, b):
                raise ValueError
            good = hmac.new(self.secret, ("%s|%s|%s" % (kind, uid, msg)).encode(),
                            hashlib.sha256).hexdigest()[:12]
            if not hmac.compare_digest(good, mac):
                raise ValueError
            return (int(a), int(b))
        except Exception:
            raise ValueError("invalid nextToken")

    def page(self, ath, kind, start_ms, end_ms, cursor, limit, now):
        idx = ath.indexes[kind]
        keys, recs, span = idx.keys, idx.recs, idx.span
        hi = bisect.bisect_left(keys, (end_ms,))
        if cursor is not None:
            hi = min(hi, bisect.bisect_left(keys, cursor))
        out = []
        i = hi - 1
        while i >= 0 and len(out) <= limit:
            rec = recs[i]
            i -= 1
            v = rec.view(now)
            if start_ms is not None:
                overlaps = rec.open_at(now) or rec.end > start_ms
                if not overlaps:
                    if rec.sort_start + span <= start_ms:
                        break
                    continue
            if v is None:
                continue
            out.append((rec, v))
        nxt = None
        if len(out) > limit:
            last = out[limit - 1][0]
            nxt = self.make_token(kind, ath.user_id, (last.sort_start, last.tb))
            out = out[:limit]
        return [v for _, v in out], nxt

    def visible(self, kind, uid, now):
        aths = [self.by_user[uid]] if uid is not None else self.athletes
        rows = []
        for a in aths:
            idx = a.indexes[kind]
            for rec in idx.recs:
                v = rec.view(now)
                if v is not None:
                    rows.append(((rec.sort_start, rec.tb, a.user_id), v))
        rows.sort(key=lambda x: x[0], reverse=True)
        return [v for _, v in rows]


# --------------------------------------------------------------------------
# OAuth grants

class Grant:
    __slots__ = ("user_id", "scopes", "access", "access_exp", "refresh", "alive")


class Auth:
    def __init__(self, world, client_id, client_secret, redirect_uri, ttl):
        self.world = world
        self.client_id, self.client_secret = client_id, client_secret
        self.redirect_uri, self.ttl = redirect_uri, ttl
        self.codes = {}          # code -> (user_id, scopes, redirect_uri)
        self.access = {}         # live access token -> grant
        self.refresh = {}        # live refresh token -> grant
        self.issued = {}         # every access token ever issued -> (user_id, grant)
        self.grants = []

    @staticmethod
    def _tok(prefix):
        return "%s%s.%s" % (prefix, secrets.token_urlsafe(32), secrets.token_urlsafe(24))

    def new_code(self, user_id, scopes, redirect_uri):
        code = secrets.token_urlsafe(32) + "." + secrets.token_urlsafe(16)
        self.codes[code] = (user_id, list(scopes), redirect_uri)
        return code

    def new_grant(self, user_id, scopes):
        g = Grant()
        g.user_id, g.scopes = user_id, list(scopes)
        g.access, g.access_exp, g.refresh, g.alive = None, 0, None, True
        if "offline" in g.scopes:
            g.refresh = self._tok("ory_rt_")
            self.refresh[g.refresh] = g
        self.grants.append(g)
        return g

    def issue(self, g, now):
        """issue rotates the grant's tokens and returns the token response."""
        if g.access is not None:
            self.access.pop(g.access, None)
        if g.refresh is not None:
            self.refresh.pop(g.refresh, None)
            g.refresh = None
        g.access = self._tok("ory_at_")
        g.access_exp = now + self.ttl * 1000
        self.access[g.access] = g
        self.issued[g.access] = g
        out = {"access_token": g.access, "expires_in": self.ttl}
        if "offline" in g.scopes:
            g.refresh = self._tok("ory_rt_")
            self.refresh[g.refresh] = g
            out["refresh_token"] = g.refresh
        out["scope"] = " ".join(g.scopes)
        out["token_type"] = "bearer"
        return out

    def check(self, token, now):
        """check returns (grant or None, state, user_id or None)."""
        if token is None:
            return None, None, None
        g = self.access.get(token)
        if g is not None:
            if now < g.access_exp:
                return g, "valid", g.user_id
            return None, "expired", g.user_id
        g = self.issued.get(token)
        if g is not None:
            return None, ("rotated" if g.alive else "revoked"), g.user_id
        return None, "unknown", None

    def revoke_user(self, user_id):
        for g in self.grants:
            if g.user_id == user_id and g.alive:
                g.alive = False
                if g.access is not None:
                    self.access.pop(g.access, None)
                if g.refresh is not None:
                    self.refresh.pop(g.refresh, None)
                g.refresh = None
        self.grants = [g for g in self.grants if g.alive]

    def expire(self, user_id, now):
        n = 0
        for g in self.grants:
            if g.access is not None and g.access in self.access and (user_id is None or g.user_id == user_id):
                if g.access_exp > now:
                    g.access_exp = now
                    n += 1
        return n


# --------------------------------------------------------------------------
# rate limiting

class RateLimiter:
    def __init__(self, per_minute, per_day, minute_seconds):
        self.configure(per_minute, per_day, minute_seconds)

    def configure(self, per_minute, per_day, minute_seconds):
        self.limits = [int(per_minute), int(per_day)]
        self.lengths = [float(minute_seconds), float(minute_seconds) * 1440]
        self.restart()

    def restart(self):
        self.t0 = time.monotonic()
        self.win = [0, 0]
        self.count = [0, 0]

    def _roll(self, t):
        for w in (0, 1):
            k = int((t - self.t0) // self.lengths[w])
            if k != self.win[w]:
                self.win[w], self.count[w] = k, 0

    def hit(self, charge=True):
        """hit charges one request; returns (allowed, headers)."""
        t = time.monotonic()
        self._roll(t)
        lim = [l if l > 0 else UNLIMITED for l in self.limits]
        over = [self.limits[w] > 0 and self.count[w] >= lim[w] for w in (0, 1)]
        allowed = not any(over)
        if allowed and charge:
            self.count[0] += 1
            self.count[1] += 1
        rem = [lim[w] - self.count[w] for w in (0, 1)]
        resets = [max(1, math.ceil(self.t0 + (self.win[w] + 1) * self.lengths[w] - t)) for w in (0, 1)]
        if any(over):
            w = 1 if over[1] else 0
        else:
            w = 1 if rem[1] < rem[0] else 0
        return allowed, self._headers(lim, w, rem[w], resets[w])

    def _headers(self, lim, w, remaining, reset):
        def win(x):
            return str(int(x)) if float(x).is_integer() else ("%g" % x)
        return [("X-RateLimit-Limit", "%d, %d;window=%s, %d;window=%s"
                 % (lim[w], lim[0], win(self.lengths[0]), lim[1], win(self.lengths[1]))),
                ("X-RateLimit-Remaining", str(max(0, remaining))),
                ("X-RateLimit-Reset", str(int(reset)))]

    def exhausted_headers(self):
        lim = [l if l > 0 else UNLIMITED for l in self.limits]
        return self._headers(lim, 0, 0, 1)


# --------------------------------------------------------------------------
# faults and chaos

FAULT_KINDS = ("status", "truncate", "invalid_json", "delay", "slow_body",
               "reset", "partial", "unauthorized")
CHAOS_ORDER = ("status_5xx", "timeout", "truncate", "reset", "burst_429",
               "unauthorized", "partial", "invalid_json", "slow_body",
               "accept_then_timeout")


class Chaos:
    def __init__(self, spec):
        self.seed = spec.get("seed", 0)
        self.rates = dict(spec.get("rates") or {})
        self.token_rates = dict(spec.get("token_rates") or {})
        for k, v in list(self.rates.items()) + list(self.token_rates.items()):
            if k not in CHAOS_ORDER:
                raise ValueError("unknown chaos kind %r" % k)
            if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError("rate of %s must be in [0, 1]" % k)
        if "accept_then_timeout" in self.rates:
            raise ValueError("accept_then_timeout is a token_rates kind")
        self.timeout_ms = int(spec.get("timeout_ms", 3000))
        self.burst_len = max(1, int(spec.get("burst_len", 5)))
        self.api_rng = random.Random("chaos:%s:api" % self.seed)
        self.tok_rng = random.Random("chaos:%s:token" % self.seed)
        self.burst_left = 0
        self.injected = {k: 0 for k in CHAOS_ORDER if k in self.rates or k in self.token_rates}

    def draw(self, token_request):
        """draw returns (kind, status) or None for one request."""
        if not token_request and self.burst_left > 0:
            self.burst_left -= 1
            self.injected["burst_429"] = self.injected.get("burst_429", 0) + 1
            return ("burst_429", 429)
        r = self.tok_rng if token_request else self.api_rng
        rates = self.token_rates if token_request else self.rates
        u = r.random()
        acc = 0.0
        for k in CHAOS_ORDER:
            p = rates.get(k, 0)
            if not p:
                continue
            acc += p
            if u < acc:
                status = None
                if k == "status_5xx":
                    status = (500, 502, 503, 504)[r.randrange(4)]
                if k == "burst_429":
                    if token_request:
                        status = 429
                    else:
                        self.burst_left = self.burst_len - 1
                        status = 429
                self.injected[k] = self.injected.get(k, 0) + 1
                return (k, status)
        return None


# --------------------------------------------------------------------------
# the simulator (all state; request processing)

API_ROUTES = {
    ("v2", "cycle"): ("list", "cycle", "read:cycles"),
    ("v2", "recovery"): ("list", "recovery", "read:recovery"),
    ("v2", "activity", "sleep"): ("list", "sleep", "read:sleep"),
    ("v2", "activity", "workout"): ("list", "workout", "read:workout"),
    ("v2", "user", "profile", "basic"): ("profile", None, "read:profile"),
    ("v2", "user", "measurement", "body"): ("body", None, "read:body_measurement"),
    ("v2", "user", "access"): ("revoke", None, None),
}
NEXT_TOKEN_NULL = {"recovery": True, "workout": True, "cycle": False, "sleep": False}


def route(path):
    """route maps an API path (no /developer) to (template, action, kind, scope, id)."""
    parts = [p for p in path.split("/") if p]
    t = tuple(parts)
    if t in API_ROUTES:
        a, k, s = API_ROUTES[t]
        return "/" + "/".join(parts), a, k, s, None
    if len(parts) == 3 and parts[:2] == ["v2", "cycle"]:
        return "/v2/cycle/{id}", "get", "cycle", "read:cycles", parts[2]
    if len(parts) == 4 and parts[:2] == ["v2", "cycle"] and parts[3] == "recovery":
        return "/v2/cycle/{id}/recovery", "get", "recovery", "read:recovery", parts[2]
    if len(parts) == 4 and parts[:2] == ["v2", "cycle"] and parts[3] == "sleep":
        return "/v2/cycle/{id}/sleep", "get", "cycle_sleep", "read:sleep|read:cycles", parts[2]
    if len(parts) == 4 and parts[:3] == ["v2", "activity", "sleep"]:
        return "/v2/activity/sleep/{id}", "get", "sleep", "read:sleep", parts[3]
    if len(parts) == 4 and parts[:3] == ["v2", "activity", "workout"]:
        return "/v2/activity/workout/{id}", "get", "workout", "read:workout", parts[3]
    return None


def jbytes(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Resp:
    __slots__ = ("status", "headers", "body", "mode", "delay_ms", "fault")

    def __init__(self, status, body=b"", headers=None, ctype="application/json"):
        self.status = status
        if isinstance(body, (dict, list)):
            body = jbytes(body)
        self.body = body
        self.headers = list(headers or [])
        if body or status not in (204, 302):
            self.headers.insert(0, ("Content-Type", ctype))
        self.mode = None
        self.delay_ms = 0
        self.fault = None


def err(status, error, desc, extra_headers=None):
    return Resp(status, {"error": error, "error_description": desc}, extra_headers)


HTML_ERR = (b"<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1>"
            b"</center>\r\n</body>\r\n</html>\r\n")


class Simulator:
    def __init__(self, args):
        now = parse_iso(args.now) if args.now else int(time.time() * 1000)
        self.world = World(args.seed, args.athletes, args.days, now, args.now is not None,
                           set(args.no_body_for or []), args.jobs)
        self.auth = Auth(self.world, args.client_id, args.client_secret, args.redirect_uri,
                         args.token_ttl)
        self.max_page = args.max_page_size
        self.limiter = RateLimiter(args.rate_per_minute, args.rate_per_day, args.rate_minute_seconds)
        self.lock = threading.RLock()
        self.verbose = args.verbose and not args.quiet
        self.quiet = args.quiet
        self.bugs = 0
        self.reset_counters()

    def reset_counters(self):
        self.stats = {}
        self.grant_counts = {"authorization_code": 0, "refresh_token": 0, "failed": 0}
        self.log = collections.deque(maxlen=10_000)
        self.faults = []
        self.chaos = None
        self.chaos_counts = {}

    # -- accounting --------------------------------------------------------
    def record(self, method, template, path, query, status, ua, bearer_uid, bearer_state, fault,
               client_port=None):
        key = "%s %s" % (method, template)
        d = self.stats.setdefault(key, {})
        s = str(status)
        d[s] = d.get(s, 0) + 1
        q = {}
        for k, v in query.items():
            if k.lower() in ("code", "refresh_token", "access_token", "client_secret", "token"):
                v = ["<redacted>"] * len(v)
            q[k] = v[0] if len(v) == 1 else v
        self.log.append({"method": method, "path": path, "query": q, "status": status,
                         "user_agent": ua, "bearer_user_id": bearer_uid,
                         "bearer_state": bearer_state, "fault": fault,
                         "client_port": client_port})

    # -- faults --------------------------------------------------------------
    def take_fault(self, path, template, token_request):
        for i, f in enumerate(self.faults):
            fp = f["path"]
            if fp == "*":
                if not (token_request or path.startswith("/v2/")):
                    continue
            elif fp != path and fp != template:
                continue
            if f["after"] > 0:
                f["after"] -= 1
                return "pass"
            f["count"] -= 1
            if f["count"] <= 0:
                del self.faults[i]
            return f
        return None

    # -- the main entry ---------------------------------------------------------
    def handle(self, method, area, path, query, headers, body, client_port=None):
        """handle processes one /developer or /oauth request into a Resp."""
        with self.lock:
            w = self.world
            w.ensure()
            now = w.now()
            if area == "api":
                rt = route(path)
                template = rt[0] if rt else path
            else:
                rt = None
                template = path
            token_request = area == "oauth" and path == "/oauth/oauth2/token"
            bearer = None
            ah = headers.get("Authorization")
            if ah:
                parts = ah.split(None, 1)
                if len(parts) == 2 and parts[0].lower() == "bearer":
                    bearer = parts[1].strip()
                else:
                    bearer = ""
            grant, bstate, buid = self.auth.check(bearer, now) if area == "api" else (None, None, None)
            ua = headers.get("User-Agent")

            allowed, rl_headers = self.limiter.hit()
            fault = None
            if not allowed:
                resp = Resp(429, {"error": "rate_limited",
                                  "error_description": "Too many requests; see X-RateLimit-Reset"},
                            rl_headers)
            else:
                f = None
                if area == "api" or token_request or path == "/oauth/oauth2/auth":
                    f = self.take_fault(path, template, token_request)
                chaos_kind = None
                if f is None and self.chaos is not None and (area == "api" or token_request):
                    ck = self.chaos.draw(token_request)
                    if ck is not None:
                        chaos_kind = ck
                if f == "pass":
                    f = None
                resp = None
                if f is not None:
                    fault = f["kind"]
                    resp = self.pre_fault(f["kind"], f.get("status", 503), rl_headers)
                elif chaos_kind is not None:
                    k, st = chaos_kind
                    fault = "chaos:" + k
                    if k == "status_5xx":
                        resp = self.pre_fault("status", st, rl_headers)
                    elif k == "burst_429":
                        resp = Resp(429, {"error": "rate_limited",
                                          "error_description": "Too many requests"},
                                    self.limiter.exhausted_headers())
                    elif k in ("reset", "unauthorized", "invalid_json"):
                        resp = self.pre_fault(k, None, rl_headers)
                if resp is None:
                    if area == "api":
                        resp = self.api(method, path, rt, query, grant, bstate, now)
                    else:
                        resp = self.oauth(method, path, query, headers, body, now)
                    resp.headers.extend(rl_headers)
                    if f is not None:
                        self.post_fault(resp, f["kind"], int(f.get("delay_ms", 2000)))
                    elif chaos_kind is not None:
                        k = chaos_kind[0]
                        kind = {"timeout": "delay", "accept_then_timeout": "delay",
                                "slow_body": "slow_body", "truncate": "truncate",
                                "partial": "partial"}[k]
                        self.post_fault(resp, kind, self.chaos.timeout_ms)
            resp.fault = fault
            status = 0 if resp.mode == "reset" else resp.status
            self.record(method, template, path, query, status, ua, buid, bstate, fault,
                        client_port)
            return resp

    def pre_fault(self, kind, status, rl_headers):
        if kind == "status":
            status = int(status or 503)
            if status in (502, 503, 504):
                reason = {502: b"Bad Gateway", 503: b"Service Temporarily Unavailable",
                          504: b"Gateway Time-out"}[status]
                r = Resp(status, HTML_ERR % (status, reason, status, reason), rl_headers,
                         "text/html")
            else:
                r = Resp(status, {"error": "server_error" if status >= 500 else "error",
                                  "error_description": "simulated fault %d" % status},
                         rl_headers)
            return r
        if kind == "invalid_json":
            return Resp(200, b"<!DOCTYPE html><html><head><title>WHOOP</title></head>"
                             b"<body><p>Something went wrong. Please try again.</p></body></html>",
                        rl_headers, "text/html; charset=utf-8")
        if kind == "unauthorized":
            return Resp(401, {"error": "invalid_token",
                              "error_description": "The access token is invalid or has expired"},
                        [("WWW-Authenticate", 'Bearer error="invalid_token"')] + rl_headers)
        if kind == "reset":
            r = Resp(0, b"")
            r.mode = "reset"
            return r
        return None

    @staticmethod
    def post_fault(resp, kind, delay_ms):
        if kind == "truncate":
            resp.body = resp.body[:len(resp.body) // 2]
        elif kind == "partial":
            resp.mode = "partial"
        elif kind == "delay":
            resp.mode, resp.delay_ms = "delay", delay_ms
        elif kind == "slow_body":
            resp.mode, resp.delay_ms = "slow", delay_ms

    # -- API ------------------------------------------------------------------
    def api(self, method, path, rt, query, grant, bstate, now):
        if rt is None:
            return err(404, "not_found", "No resource at %s" % path)
        template, action, kind, scope, rid = rt
        want = "DELETE" if action == "revoke" else "GET"
        if method != want:
            return err(405, "method_not_allowed", "%s not allowed on %s" % (method, template))
        if grant is None:
            return err(401, "invalid_token",
                       "missing bearer token" if bstate is None else "The access token is invalid or has expired",
                       [("WWW-Authenticate", 'Bearer realm="whoop"' if bstate is None
                         else 'Bearer error="invalid_token"')])
        if scope is not None and not any(s in grant.scopes for s in scope.split("|")):
            return err(403, "insufficient_scope", "this endpoint needs %s" % scope.replace("|", " or "))
        w = self.world
        ath = w.by_user[grant.user_id]
        if action == "revoke":
            self.auth.revoke_user(grant.user_id)
            return Resp(204)
        if action == "profile":
            return Resp(200, ath.profile)
        if action == "body":
            if ath.body is None:
                return err(404, "not_found", "no body measurement for this user")
            return Resp(200, ath.body)
        if action == "list":
            return self.list(ath, kind, query, now)
        # by id
        if kind in ("cycle", "recovery", "cycle_sleep"):
            try:
                if not rid.isdigit() or len(rid) > 19:
                    raise ValueError
                cid = int(rid)
            except ValueError:
                return err(400, "bad_request", "cycleId must be an integer")
            if kind == "cycle_sleep":
                rec = ath.main_sleep.get(cid)
            else:
                rec = ath.by_id[kind].get(cid)
        else:
            try:
                key = str(uuid.UUID(rid))
                if len(rid) != 36:
                    raise ValueError
            except ValueError:
                return err(400, "bad_request", "%sId must be a UUID" % kind)
            rec = ath.by_id[kind].get(key.lower())
        if rec is None:
            return err(404, "not_found", "No resource found")
        v = rec.view(now)
        if v is None:
            return err(404, "not_found", "No resource found")
        return Resp(200, v)

    def list(self, ath, kind, query, now):
        def one(name):
            v = query.get(name)
            return None if v is None else v[-1]
        lim = one("limit")
        if lim is None:
            limit = 10
        else:
            try:
                if not lim.strip().lstrip("+").isdigit():
                    raise ValueError
                limit = int(lim)
            except ValueError:
                return err(400, "bad_request", "limit must be an integer")
            if limit < 1 or limit > self.max_page:
                return err(400, "bad_request", "limit must be between 1 and %d" % self.max_page)
        start = end = None
        try:
            s = one("start")
            if s is not None:
                start = parse_iso(s)
            e = one("end")
            if e is not None:
                end = parse_iso(e)
        except ValueError:
            return err(400, "bad_request", "start and end must be ISO-8601 date-times")
        if end is None:
            end = now
        cursor = None
        tok = one("nextToken")
        if tok:
            try:
                cursor = self.world.read_token(kind, ath.user_id, tok)
            except ValueError:
                return err(400, "bad_request", "invalid nextToken")
        records, nxt = self.world.page(ath, kind, start, end, cursor, limit, now)
        out = {"records": records}
        if nxt is not None:
            out["next_token"] = nxt
        elif NEXT_TOKEN_NULL[kind]:
            out["next_token"] = None
        return Resp(200, out)

    # -- OAuth ----------------------------------------------------------------
    def oauth(self, method, path, query, headers, body, now):
        if path == "/oauth/oauth2/auth":
            if method != "GET":
                return err(405, "invalid_request", "use GET")
            return self.authorize(query)
        if path == "/oauth/oauth2/token":
            if method != "POST":
                return err(405, "invalid_request", "use POST")
            return self.token(headers, body, now)
        return err(404, "not_found", "No resource at %s" % path)

    def authorize(self, query):
        q = {k: v[-1] for k, v in query.items()}
        a = self.auth
        if q.get("response_type") != "code":
            return err(400, "unsupported_response_type", "response_type must be code")
        if q.get("client_id") != a.client_id:
            return err(400, "invalid_client", "unknown client_id")
        if q.get("redirect_uri") != a.redirect_uri:
            return err(400, "invalid_request", "redirect_uri does not match the registered one")
        scopes = (q.get("scope") or "").split()
        if not scopes or any(s not in SCOPES for s in scopes):
            return err(400, "invalid_scope", "unknown or missing scope")
        state = q.get("state")
        if state is None or len(state) != 8:
            return err(400, "invalid_request", "state must be exactly 8 characters")
        uid = q.get("user_id")
        if uid is not None:
            try:
                uid = int(uid)
                if uid not in self.world.by_user:
                    raise ValueError
            except ValueError:
                return err(400, "invalid_request", "unknown user_id")
        else:
            uid = self.world.athletes[0].user_id
        code = a.new_code(uid, scopes, a.redirect_uri)
        sep = "&" if "?" in a.redirect_uri else "?"
        loc = a.redirect_uri + sep + urllib.parse.urlencode({"code": code, "state": state})
        return Resp(302, b"", [("Location", loc)])

    def token(self, headers, body, now):
        r = self._token(headers, body, now)
        if r.status != 200:
            self.grant_counts["failed"] += 1
        r.headers.extend([("Cache-Control", "no-store"), ("Pragma", "no-cache")])
        return r

    def _token(self, headers, body, now):
        a = self.auth
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return err(400, "invalid_request",
                       "the request must be application/x-www-form-urlencoded")
        try:
            form = {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode("utf-8"),
                                                               keep_blank_values=True).items()}
        except UnicodeDecodeError:
            return err(400, "invalid_request", "undecodable body")
        if "client_id" not in form or "client_secret" not in form:
            return err(400, "invalid_client", "client_id and client_secret must be sent in the body")
        if form["client_id"] != a.client_id or not hmac.compare_digest(
                form["client_secret"].encode(), a.client_secret.encode()):
            return err(400, "invalid_client", "Client authentication failed")
        gt = form.get("grant_type")
        if gt == "authorization_code":
            code = form.get("code")
            if not code:
                return err(400, "invalid_request", "code is required")
            c = a.codes.pop(code, None)
            if c is None:
                return err(400, "invalid_grant", "The authorization code is invalid or was already used")
            uid, scopes, ruri = c
            if form.get("redirect_uri") != ruri:
                return err(400, "invalid_grant", "redirect_uri does not match the authorization request")
            g = a.new_grant(uid, scopes)
            out = a.issue(g, now)
            self.grant_counts["authorization_code"] += 1
            return Resp(200, out)
        if gt == "refresh_token":
            rt = form.get("refresh_token")
            if not rt:
                return err(400, "invalid_request", "refresh_token is required")
            g = a.refresh.get(rt)
            if g is None or not g.alive:
                return err(400, "invalid_grant",
                           "The refresh token is invalid, expired, revoked or was already used")
            want = (form.get("scope") or "").split()
            if any(s not in g.scopes for s in want):
                return err(400, "invalid_scope", "requested scope was not granted")
            out = a.issue(g, now)
            self.grant_counts["refresh_token"] += 1
            return Resp(200, out)
        if gt is None:
            return err(400, "invalid_request", "grant_type is required")
        return err(400, "unsupported_grant_type", "grant_type %s is not supported" % gt)

    # -- control plane ---------------------------------------------------------
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
        with self.lock:
            try:
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

    def ctl_get_clock(self, q, d):
        return 200, {"now": iso(self.world.now())}

    def ctl_post_clock(self, q, d):
        w = self.world
        if "now" in d:
            w.set_now(parse_iso(str(d["now"])))
        elif "advance_seconds" in d:
            w.set_now(w.now() + float(d["advance_seconds"]) * 1000)
        else:
            raise ValueError("give now or advance_seconds")
        return 200, {"now": iso(w.now())}

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
        cur = rec.view(now)
        if cur is None:
            cur = rec.body()
        body = json.loads(json.dumps(cur))
        _apply(body, sets, unsets)
        body["updated_at"] = iso(now)
        rec.fixed, rec.pending, rec.rescore = body, -INF, 0
        if kind in ("cycle", "sleep", "workout") and ("start" in sets or "end" in sets):
            idx = rec.ath.indexes[kind]
            idx.remove(rec)
            if "start" in body:
                rec.start = parse_iso(body["start"])
            if body.get("end"):
                rec.end = parse_iso(body["end"])
            rec.sort_start = rec.start
            idx.add(rec)
            if kind == "sleep" and not body.get("nap"):
                rc = rec.ath.by_id["recovery"].get(body.get("cycle_id"))
                if rc is not None and rc.body().get("sleep_id") == body["id"]:
                    ridx = rec.ath.indexes["recovery"]
                    ridx.remove(rc)
                    rc.start, rc.end, rc.sort_start = rec.start, rec.end, rec.start
                    ridx.add(rc)
        return 200, {"record": body}


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


# --------------------------------------------------------------------------
# HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "whoop-sim/1.0"
    sys_version = ""
    timeout = 120

    def setup(self):
        super().setup()
        try:    # small responses must not wait for delayed ACKs (Nagle)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if self.server.sim.verbose:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def log_request(self, code="-", size="-"):
        if self.server.sim.verbose:
            super().log_request(code, size)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_DELETE(self):
        self._serve("DELETE")

    def do_PUT(self):
        self._serve("PUT")

    def do_PATCH(self):
        self._serve("PATCH")

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out += self.rfile.read(size)
                self.rfile.readline(65537)
            return bytes(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _serve(self, method):
        sim = self.server.sim
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if path == "/_sim" or path.startswith("/_sim/"):
            if not self.client_address[0].startswith("127."):
                return self._send(Resp(403, {"error": "control plane is loopback only"}))
            status, obj = sim.control(method, path if path != "/_sim" else "/_sim/", query, body)
            return self._send(Resp(status, obj))
        if path.startswith("/developer/"):
            area, apath = "api", path[len("/developer"):]
        elif path.startswith("/oauth/"):
            area, apath = "oauth", path
        else:
            return self._send(err(404, "not_found", "No resource at %s" % path))
        try:
            resp = sim.handle(method, area, apath, query, self.headers, body,
                              self.client_address[1])
        except Exception as e:  # a bug in the simulator: say so, keep serving
            sim.bugs += 1
            if sim.bugs <= 5 and not sim.quiet:      # nobody may be reading stderr
                import traceback
                traceback.print_exc()
            resp = Resp(500, {"error": "server_error", "error_description": "simulator bug: %r" % e})
        self._send(resp)

    def _send(self, resp):
        if resp.mode == "reset":
            return self._abort()
        if resp.mode == "delay" and resp.delay_ms > 0:
            time.sleep(resp.delay_ms / 1000)
        body = resp.body
        self.send_response(resp.status)
        for k, v in resp.headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n")
        try:
            if resp.mode == "partial":
                self._headers_buffer.append(body[:len(body) // 2])
                self.flush_headers()
                self.close_connection = True
            elif resp.mode == "slow":
                self.flush_headers()
                n = max(1, min(len(body), 16))
                step = -(-len(body) // n)
                pause = resp.delay_ms / 1000 / n
                for i in range(0, len(body), step):
                    time.sleep(pause)
                    self.wfile.write(body[i:i + step])
            else:       # headers and body in one write
                self._headers_buffer.append(body)
                self.flush_headers()
        except OSError:
            self.close_connection = True

    def _abort(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True
        self.wfile = io.BytesIO()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        if self.sim.verbose:
            super().handle_error(request, client_address)


def main(argv=None):
    p = argparse.ArgumentParser(description="WHOOP API simulator (see the module docstring)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--athletes", type=int, default=1)
    p.add_argument("--days", type=int, default=730)
    p.add_argument("--now", default=None)
    p.add_argument("--token-ttl", type=int, default=3600)
    p.add_argument("--rate-per-minute", type=int, default=100)
    p.add_argument("--rate-per-day", type=int, default=10000)
    p.add_argument("--rate-minute-seconds", type=float, default=60)
    p.add_argument("--max-page-size", type=int, default=25)
    p.add_argument("--client-id", default="sim-client")
    p.add_argument("--client-secret", default="sim-secret")
    p.add_argument("--redirect-uri", default="https://localhost/callback")
    p.add_argument("--no-body-for", type=int, action="append")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.athletes < 1 or args.days < 1 or args.max_page_size < 1 or args.rate_minute_seconds <= 0:
        p.error("--athletes, --days, --max-page-size and --rate-minute-seconds must be positive")
    if args.now is not None:
        try:
            parse_iso(args.now)
        except ValueError:
            p.error("--now must be an ISO-8601 date-time with a zone")

    def stop(*_):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)

    sim = Simulator(args)
    server = Server(("127.0.0.1", args.port), Handler)
    server.sim = sim
    sys.stdout.write("%d\n" % server.server_address[1])
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
