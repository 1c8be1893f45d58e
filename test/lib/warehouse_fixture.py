"""warehouse_fixture.py -- a hand-built WHOOP data set and an independent model
of the warehouse semantics, for test_warehouse.py.

The fixture: three members over about three to six months, as API records
(jsonb) for the raw tables.  It holds what the day rule and the metrics must get
right: gaps of one and three days, a daylight-saving switch (New York, the
night of 8-9 March 2025), a timezone change (a week in Tokyo, where a sleep
ending at 07:00 local ends on the previous UTC date), a member in the
southern hemisphere (Sydney, UTC+11, with a week at UTC 'Z'), naps, a night
without sleep data (fallback day), a cycle with only a nap, two cycles on
one day (the longer main sleep wins) and a tie (the later start wins),
pending and unscorable records, scored recoveries whose HRV is 0 or
missing and a scored sleep without a recovery (the autonomic baselines of
resting HR and respiratory rate count them), an ongoing cycle, exact
category edges of the readiness gap, a weight change and an e-mail change
(SCD2), and seasons with 13 and 14 scored recoveries after a baseline (the
minimum of a season mean).

The model (class Reference) recomputes every fact and metric from the
records in plain Python -- its own parsing of offsets, its own day rule,
statistics.stdev, exact least squares, a hand-rolled EWMA -- without
looking at the SQL.  Values are compared within a relative 1e-9.
"""

import datetime as dt
import json
import math
import random
import statistics
import uuid

UTC = dt.timezone.utc
D = dt.date
USER_A = 1001          # northern hemisphere: New York, DST, a week in Tokyo
USER_B = 2002          # southern hemisphere: Sydney, a week in London
USER_C = 3030          # Berlin: a winter, then seasons one day short of and at the season minimum

NS = uuid.UUID("6f1c2d7e-0000-4000-8000-000000000000")
ABSENT = object()       # a recovery_fields value: leave the field out of the record


def _uuid(*parts):
    return str(uuid.uuid5(NS, "/".join(str(p) for p in parts)))


def iso(ts):
    """iso formats an aware datetime the way WHOOP does (UTC, milliseconds, Z)."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ts.microsecond // 1000)


def offset_text(minutes):
    if minutes is None:
        return "Z"
    sign = "-" if minutes < 0 else "+"
    m = abs(minutes)
    return "%s%02d:%02d" % (sign, m // 60, m % 60)


def to_utc(local, offset_minutes):
    """to_utc turns a naive local wall-clock time at an offset into an aware UTC time."""
    return (local - dt.timedelta(minutes=offset_minutes or 0)).replace(tzinfo=UTC)


def days(first, last):
    d = first
    while d <= last:
        yield d
        d += dt.timedelta(days=1)


# --------------------------------------------------------------------------
# The fixture

class Builder:
    """Builder collects cycle specs and turns them into API records."""

    def __init__(self, user_id, seed, skin_temp=True):
        self.user_id = user_id
        self.rng = random.Random(seed)
        self.skin_temp = skin_temp
        self.specs = []
        self.next_cycle_id = user_id * 100000

    def cycle(self, start_local, offset, main_sleep=None, naps=(), workouts=(),
              recovery=True, cycle_state="SCORED", recovery_state="SCORED",
              sleep_state="SCORED", strain=None, recovery_score=None, recovery_fields=None,
              ongoing=False):
        """cycle adds one cycle.  main_sleep = (start_local, end_local, offset);
        recovery_fields replaces values of a scored recovery (ABSENT leaves the field out)."""
        self.next_cycle_id += 1
        self.specs.append(dict(
            id=self.next_cycle_id, start_local=start_local, offset=offset,
            main_sleep=main_sleep, naps=list(naps), workouts=list(workouts),
            recovery=recovery and main_sleep is not None, cycle_state=cycle_state,
            recovery_state=recovery_state, sleep_state=sleep_state, strain=strain,
            recovery_score=recovery_score, recovery_fields=recovery_fields or {}, ongoing=ongoing))

    def night(self, wake, offset, sleep_offset=None, **kw):
        """night adds an ordinary cycle: asleep the evening before `wake`, up in its morning."""
        rng = self.rng
        start = dt.datetime.combine(wake - dt.timedelta(days=1), dt.time(22, 0)) \
            + dt.timedelta(minutes=rng.randrange(0, 100))
        end = dt.datetime.combine(wake, dt.time(5, 45)) + dt.timedelta(minutes=rng.randrange(0, 120))
        workouts = kw.pop("workouts", None)
        if workouts is None:
            workouts = []
            if rng.random() < 0.45:
                t = dt.datetime.combine(wake, dt.time(17, 0)) + dt.timedelta(minutes=rng.randrange(0, 90))
                workouts.append((t, rng.randrange(25, 95), "SCORED"))
                if rng.random() < 0.3:
                    t2 = dt.datetime.combine(wake, dt.time(7, 30)) + dt.timedelta(minutes=rng.randrange(0, 60))
                    workouts.append((t2, rng.randrange(20, 50), "SCORED"))
        self.cycle(start, offset, main_sleep=(start, end, offset if sleep_offset is None else sleep_offset),
                   workouts=workouts, **kw)

    def records(self):
        """records turns the specs into WHOOP API records, by kind."""
        rng = self.rng
        out = {"cycle": [], "sleep": [], "recovery": [], "workout": []}
        specs = sorted(self.specs, key=lambda s: to_utc(s["start_local"], s["offset"]))
        for i, s in enumerate(specs):
            start = to_utc(s["start_local"], s["offset"])
            end = None if s["ongoing"] else to_utc(specs[i + 1]["start_local"], specs[i + 1]["offset"])
            updated = (end or start) + dt.timedelta(hours=2)
            cyc = {"id": s["id"], "user_id": self.user_id, "created_at": iso(start + dt.timedelta(minutes=5)),
                   "updated_at": iso(updated), "start": iso(start),
                   "timezone_offset": offset_text(s["offset"]), "score_state": s["cycle_state"]}
            if end is not None:
                cyc["end"] = iso(end)
            if s["cycle_state"] == "SCORED":
                strain = s["strain"] if s["strain"] is not None else round(rng.uniform(3, 19), 4)
                cyc["score"] = {"strain": strain, "kilojoule": round(rng.uniform(7000, 14000), 3),
                                "average_heart_rate": rng.randrange(55, 85),
                                "max_heart_rate": rng.randrange(120, 190)}
            out["cycle"].append(cyc)

            sleep_id = None
            if s["main_sleep"]:
                ss, se, soff = s["main_sleep"]
                sleep_id = _uuid(self.user_id, s["id"], "main")
                out["sleep"].append(self._sleep(sleep_id, s["id"], ss, se, soff, False, s["sleep_state"]))
            for k, (ns, ne, noff) in enumerate(s["naps"]):
                out["sleep"].append(self._sleep(_uuid(self.user_id, s["id"], "nap", k), s["id"],
                                                ns, ne, noff, True, "SCORED"))
            if s["recovery"]:
                rec = {"cycle_id": s["id"], "sleep_id": sleep_id, "user_id": self.user_id,
                       "created_at": iso(start + dt.timedelta(hours=8)),
                       "updated_at": iso(start + dt.timedelta(hours=9)),
                       "score_state": s["recovery_state"]}
                if s["recovery_state"] == "SCORED":
                    score = s["recovery_score"] if s["recovery_score"] is not None \
                        else round(rng.uniform(8, 98), 3)
                    rec["score"] = {
                        "user_calibrating": False,
                        "recovery_score": score,
                        "resting_heart_rate": round(rng.uniform(46, 66), 2),
                        "hrv_rmssd_milli": round(math.exp(rng.gauss(math.log(60), 0.25)), 4),
                        "spo2_percentage": round(rng.uniform(94, 99), 2),
                        "skin_temp_celsius": round(rng.uniform(33, 35), 3) if self.skin_temp else None,
                    }
                    # Replaced after drawing, so that the random stream of the other records stays put.
                    for k, v in s["recovery_fields"].items():
                        if v is ABSENT:
                            del rec["score"][k]
                        else:
                            rec["score"][k] = v
                out["recovery"].append(rec)
            for k, (wstart, minutes, state) in enumerate(s["workouts"]):
                out["workout"].append(self._workout(_uuid(self.user_id, s["id"], "w", k), wstart,
                                                    minutes, s["offset"], state))
        return out

    def _sleep(self, sid, cycle_id, start_local, end_local, offset, nap, state):
        rng = self.rng
        start, end = to_utc(start_local, offset), to_utc(end_local, offset)
        rec = {"id": sid, "cycle_id": cycle_id, "v1_id": None, "user_id": self.user_id,
               "created_at": iso(end + dt.timedelta(minutes=10)),
               "updated_at": iso(end + dt.timedelta(minutes=30)),
               "start": iso(start), "end": iso(end), "timezone_offset": offset_text(offset),
               "nap": nap, "score_state": state}
        if state == "SCORED":
            in_bed = int((end - start).total_seconds() * 1000)
            awake = int(in_bed * rng.uniform(0.04, 0.1))
            asleep = in_bed - awake
            light = int(asleep * 0.5)
            sws = int(asleep * rng.uniform(0.15, 0.25))
            rec["score"] = {
                "stage_summary": {
                    "total_in_bed_time_milli": in_bed, "total_awake_time_milli": awake,
                    "total_no_data_time_milli": 0, "total_light_sleep_time_milli": light,
                    "total_slow_wave_sleep_time_milli": sws,
                    "total_rem_sleep_time_milli": asleep - light - sws,
                    "sleep_cycle_count": rng.randrange(3, 7), "disturbance_count": rng.randrange(0, 15)},
                "sleep_needed": {
                    "baseline_milli": 28800000, "need_from_sleep_debt_milli": rng.randrange(0, 3600000),
                    "need_from_recent_strain_milli": rng.randrange(0, 1800000),
                    "need_from_recent_nap_milli": -rng.randrange(0, 900000)},
                "respiratory_rate": round(rng.uniform(13.5, 16.5), 3),
                "sleep_performance_percentage": rng.randrange(60, 100),
                "sleep_consistency_percentage": rng.randrange(50, 95),
                "sleep_efficiency_percentage": round(rng.uniform(85, 97), 2)}
        return rec

    def _workout(self, wid, start_local, minutes, offset, state):
        rng = self.rng
        start = to_utc(start_local, offset)
        end = start + dt.timedelta(minutes=minutes)
        sport = rng.choice(["running", "cycling", "weightlifting", "yoga"])
        rec = {"id": wid, "v1_id": None, "user_id": self.user_id,
               "created_at": iso(end + dt.timedelta(minutes=3)),
               "updated_at": iso(end + dt.timedelta(minutes=20)),
               "start": iso(start), "end": iso(end), "timezone_offset": offset_text(offset),
               "sport_name": sport, "sport_id": 0, "score_state": state}
        if state == "SCORED":
            total = minutes * 60000
            cuts = sorted(rng.randrange(0, total) for _ in range(5))
            parts = [b - a for a, b in zip([0] + cuts, cuts + [total])]
            names = ["zone_zero_milli", "zone_one_milli", "zone_two_milli", "zone_three_milli",
                     "zone_four_milli", "zone_five_milli"]
            score = {"strain": round(rng.uniform(4, 16), 4), "average_heart_rate": rng.randrange(100, 160),
                     "max_heart_rate": rng.randrange(150, 195), "kilojoule": round(rng.uniform(600, 3000), 3),
                     "percent_recorded": 100.0, "altitude_gain_meter": None, "altitude_change_meter": None,
                     "zone_durations": dict(zip(names, parts))}
            if sport in ("running", "cycling"):
                score["distance_meter"] = round(rng.uniform(3000, 40000), 1)
            rec["score"] = score
        return rec


# Days with fixed values, to hit the readiness-gap and zone edges exactly.
# (recovery score, day strain): gap = strain - target (red 5, yellow 12, green 16).
EDGE_DAYS_A = {
    D(2025, 3, 11): (80.0, 20.0),    # green, gap  4.0 -> Pushing (not Overreaching)
    D(2025, 3, 12): (50.0, 13.5),    # yellow, gap 1.5 -> Aligned (not Pushing)
    D(2025, 3, 13): (20.0, 3.5),     # red, gap -1.5 -> Aligned
    D(2025, 3, 15): (33.5, 1.0),     # 33.5 is red; gap -4.0 -> Conservative
    D(2025, 3, 16): (67.0, 20.5),    # 67 is green; gap 4.5 -> Overreaching
    D(2025, 3, 17): (34.0, 7.9),     # 34 is yellow; gap -4.1 -> Undertrained
    D(2025, 3, 18): (66.9, 13.625),  # 66.9 is yellow; gap 1.625 -> Pushing
    D(2025, 3, 21): (55.0, 0.75),    # strain < 1: no efficiency
}
# A hard week, then a yellow day with a big gap: overtraining_risk.
for _d in days(D(2025, 4, 7), D(2025, 4, 13)):
    EDGE_DAYS_A[_d] = (None, 17.0)
EDGE_DAYS_A[D(2025, 4, 14)] = (40.0, 15.0)

NY_WINTER, NY_SUMMER, TOKYO = -300, -240, 540
SYDNEY_SUMMER, SYDNEY_WINTER, LONDON = 660, 600, None
BERLIN_WINTER, BERLIN_SUMMER = 60, 120
# a season mean needs this many observations of its measure in the season
SEASON_MIN = 14

# Profile and body-measurement snapshots: (observed_at, values).
PROFILES = {
    USER_A: [(dt.datetime(2025, 1, 10, 12, 0, tzinfo=UTC),
              {"email": "ada@example.org", "first_name": "Ada", "last_name": "Lovelace"}),
             (dt.datetime(2025, 4, 1, 9, 0, tzinfo=UTC),
              {"email": "ada.lovelace@example.org", "first_name": "Ada", "last_name": "Lovelace"})],
    USER_B: [(dt.datetime(2025, 1, 20, 8, 0, tzinfo=UTC),
              {"email": "bo@example.org", "first_name": "Bo", "last_name": "Dean"})],
    USER_C: [(dt.datetime(2025, 1, 3, 7, 0, tzinfo=UTC),
              {"email": "cy@example.org", "first_name": "Cy", "last_name": "Berg"})],
}
BODIES = {
    USER_A: [(dt.datetime(2025, 1, 10, 12, 0, 1, tzinfo=UTC),
              {"height_meter": 1.7, "weight_kilogram": 80.0, "max_heart_rate": 190}),
             (dt.datetime(2025, 3, 1, 8, 0, tzinfo=UTC),
              {"height_meter": 1.7, "weight_kilogram": 78.5, "max_heart_rate": 190})],
    USER_B: [(dt.datetime(2025, 1, 20, 8, 0, 2, tzinfo=UTC),
              {"height_meter": 1.82, "weight_kilogram": 72.25, "max_heart_rate": 195})],
    USER_C: [(dt.datetime(2025, 1, 3, 7, 0, 1, tzinfo=UTC),
              {"height_meter": 1.75, "weight_kilogram": 68.0, "max_heart_rate": 185})],
}
HEMISPHERES = {USER_B: "south"}


def build():
    """build returns the fixture: {kind: [record, ...]} for the four collections."""
    a = Builder(USER_A, seed=7)
    gaps = {D(2025, 2, 5), D(2025, 2, 6), D(2025, 2, 7), D(2025, 3, 14), D(2025, 3, 19)}
    for w in days(D(2025, 1, 10), D(2025, 4, 19)):
        if w in gaps:
            continue
        off = NY_WINTER if w <= D(2025, 3, 9) else NY_SUMMER
        if D(2025, 3, 20) <= w <= D(2025, 3, 27):
            off = TOKYO
        rs, st = EDGE_DAYS_A.get(w, (None, None))
        kw = dict(recovery_score=rs, strain=st)
        if w == D(2025, 2, 15):
            # Two cycles on one day (shift work): P sleeps 3.5 h, Q 7 h; Q wins.
            # P has a workout, which therefore does not count for the day.
            p_start = dt.datetime(2025, 2, 14, 22, 0)
            a.cycle(p_start, off, main_sleep=(p_start, dt.datetime(2025, 2, 15, 1, 30), off),
                    workouts=[(dt.datetime(2025, 2, 15, 1, 40), 30, "SCORED")])
            q_start = dt.datetime(2025, 2, 15, 2, 30)
            a.cycle(q_start, off, main_sleep=(q_start, dt.datetime(2025, 2, 15, 9, 30), off),
                    workouts=[(dt.datetime(2025, 2, 15, 18, 0), 45, "SCORED")])
        elif w == D(2025, 4, 5):
            # A tie: both main sleeps 5 h; the later start (T) wins.
            s_start = dt.datetime(2025, 4, 4, 20, 0)
            a.cycle(s_start, off, main_sleep=(s_start, dt.datetime(2025, 4, 5, 1, 0), off), workouts=[])
            t_start = dt.datetime(2025, 4, 5, 2, 0)
            a.cycle(t_start, off, main_sleep=(t_start, dt.datetime(2025, 4, 5, 7, 0), off), workouts=[])
        elif w == D(2025, 2, 20):
            # No sleep data that night: the day falls back to start + 12 h
            # (23:30 + 12 h = 11:30 the next day), and there is no recovery.
            a.cycle(dt.datetime(2025, 2, 19, 23, 30), off)
        elif w == D(2025, 3, 3):
            # Only a nap in this cycle: a nap is never the main sleep.
            a.cycle(dt.datetime(2025, 3, 2, 23, 0), off,
                    naps=[(dt.datetime(2025, 3, 3, 14, 0), dt.datetime(2025, 3, 3, 14, 40), off)])
        elif w == D(2025, 3, 9):
            # The DST night: asleep at 23:00 EST, up at 07:00 EDT.  The cycle
            # carries the offset at its start, the sleep the one at its end.
            start = dt.datetime(2025, 3, 8, 23, 0)
            a.cycle(start, NY_WINTER,
                    main_sleep=(dt.datetime(2025, 3, 9, 0, 0), dt.datetime(2025, 3, 9, 7, 0), NY_SUMMER),
                    workouts=[(dt.datetime(2025, 3, 9, 16, 0), 40, "SCORED")])
        elif w == D(2025, 2, 22):
            # A nap in an ordinary cycle does not move its day.
            a.night(w, off, naps=[(dt.datetime(2025, 2, 22, 13, 0), dt.datetime(2025, 2, 22, 13, 30), off)], **kw)
        elif w == D(2025, 1, 25):
            a.night(w, off, cycle_state="UNSCORABLE", **kw)
        elif w == D(2025, 2, 25):
            a.night(w, off, recovery_state="UNSCORABLE", **kw)
        elif w == D(2025, 2, 26):
            a.night(w, off, sleep_state="PENDING_SCORE", **kw)
        elif w == D(2025, 3, 5):
            a.night(w, off, workouts=[(dt.datetime(2025, 3, 5, 18, 0), 50, "UNSCORABLE"),
                                      (dt.datetime(2025, 3, 5, 7, 0), 30, "SCORED")], **kw)
        elif w == D(2025, 3, 29):
            # A scored recovery with an HRV of 0: no autonomic_balance row on
            # the day, but its resting HR (73, above any other) and its
            # sleep's respiratory rate enter the baselines of the days after.
            a.night(w, off, recovery_fields={"hrv_rmssd_milli": 0, "resting_heart_rate": 73.0}, **kw)
        elif w == D(2025, 3, 31):
            # A scored recovery without an HRV at all.
            a.night(w, off, recovery_fields={"hrv_rmssd_milli": ABSENT}, **kw)
        elif w == D(2025, 4, 2):
            # A scored main sleep whose cycle has no recovery: a respiratory
            # rate without a resting HR (like the unscorable recovery of 25 Feb).
            a.night(w, off, recovery=False, **kw)
        elif w == D(2025, 4, 19):
            a.night(w, off, cycle_state="PENDING_SCORE", recovery_state="PENDING_SCORE",
                    ongoing=True, workouts=[], **kw)
        else:
            a.night(w, off, **kw)

    b = Builder(USER_B, seed=11, skin_temp=False)
    for w in days(D(2025, 1, 20), D(2025, 4, 15)):
        if w in (D(2025, 2, 10), D(2025, 2, 11)):
            continue
        off = SYDNEY_SUMMER if w <= D(2025, 4, 6) else SYDNEY_WINTER
        if D(2025, 3, 1) <= w <= D(2025, 3, 5):
            off = LONDON
        b.night(w, off, ongoing=(w == D(2025, 4, 15)))

    # Member C: a whole winter (the baseline of the seasons after it), then
    # a spring with SEASON_MIN scored recoveries and a summer with one
    # fewer.  Each has a day with strain but no recovery, which counts in
    # `days` but not for the mean recovery: the spring has 15 days and a
    # category, the summer 14 days and none (yet a mean strain, of 14
    # days).  One spring day has no skin temperature, so the spring's skin
    # mean has 13 observations: none, hence no index either.
    c = Builder(USER_C, seed=13)
    for w in days(D(2025, 1, 3), D(2025, 2, 28)):
        c.night(w, BERLIN_WINTER)
    for w in days(D(2025, 3, 1), D(2025, 3, 15)):
        if w == D(2025, 3, 4):
            c.night(w, BERLIN_WINTER, recovery_fields={"skin_temp_celsius": ABSENT})
        else:
            c.night(w, BERLIN_WINTER, recovery=(w != D(2025, 3, 15)))
    for w in days(D(2025, 6, 1), D(2025, 6, 14)):
        last = w == D(2025, 6, 14)
        c.night(w, BERLIN_SUMMER, recovery=not last, ongoing=last)

    recs = a.records()
    for builder in (b, c):
        for kind, items in builder.records().items():
            recs[kind].extend(items)
    return recs


def load_sql(recs, profiles=PROFILES, bodies=BODIES, hemispheres=HEMISPHERES):
    """load_sql is the SQL that inserts the fixture into the raw tables."""
    doc = json.dumps(recs)
    prof = json.dumps([{"user_id": u, "observed_at": iso(t), **v}
                       for u, snaps in profiles.items() for t, v in snaps])
    body = json.dumps([{"user_id": u, "observed_at": iso(t), **v}
                       for u, snaps in bodies.items() for t, v in snaps])
    settings = "".join("insert into whoop.user_settings values (%d, '%s');\n" % (u, h)
                       for u, h in hemispheres.items())
    return RAW_INSERT_SQL.replace("@DOC@", doc) + """
insert into whoop.raw_profile (user_id, observed_at, email, first_name, last_name, record)
select (p->>'user_id')::bigint, (p->>'observed_at')::timestamptz, p->>'email', p->>'first_name',
       p->>'last_name', p - 'observed_at'
from jsonb_array_elements($fx$%s$fx$::jsonb) p;
insert into whoop.raw_body_measurement (user_id, observed_at, height_meter, weight_kilogram, max_heart_rate, record)
select (p->>'user_id')::bigint, (p->>'observed_at')::timestamptz, (p->>'height_meter')::float8,
       (p->>'weight_kilogram')::float8, (p->>'max_heart_rate')::int, p - 'observed_at'
from jsonb_array_elements($fx$%s$fx$::jsonb) p;
%s""" % (prof, body, settings)


# Inserts {kind: [API record]} (in @DOC@) into the four raw tables, the way
# whoop.sync() lands them.  Shared with the simulator cross-checks.
RAW_INSERT_SQL = """
insert into whoop.raw_cycle (id, user_id, start, "end", timezone_offset, score_state, created_at, updated_at, record)
select (r->>'id')::bigint, (r->>'user_id')::bigint, (r->>'start')::timestamptz, (r->>'end')::timestamptz,
       r->>'timezone_offset', r->>'score_state', (r->>'created_at')::timestamptz,
       (r->>'updated_at')::timestamptz, r
from jsonb_array_elements($fx$@DOC@$fx$::jsonb -> 'cycle') r;
insert into whoop.raw_sleep (id, cycle_id, user_id, start, "end", timezone_offset, nap, score_state, created_at, updated_at, record)
select (r->>'id')::uuid, (r->>'cycle_id')::bigint, (r->>'user_id')::bigint, (r->>'start')::timestamptz,
       (r->>'end')::timestamptz, r->>'timezone_offset', (r->>'nap')::boolean, r->>'score_state',
       (r->>'created_at')::timestamptz, (r->>'updated_at')::timestamptz, r
from jsonb_array_elements($fx$@DOC@$fx$::jsonb -> 'sleep') r;
insert into whoop.raw_recovery (cycle_id, sleep_id, user_id, score_state, created_at, updated_at, record)
select (r->>'cycle_id')::bigint, (r->>'sleep_id')::uuid, (r->>'user_id')::bigint, r->>'score_state',
       (r->>'created_at')::timestamptz, (r->>'updated_at')::timestamptz, r
from jsonb_array_elements($fx$@DOC@$fx$::jsonb -> 'recovery') r;
insert into whoop.raw_workout (id, user_id, start, "end", timezone_offset, sport_name, score_state, created_at, updated_at, record)
select (r->>'id')::uuid, (r->>'user_id')::bigint, (r->>'start')::timestamptz, (r->>'end')::timestamptz,
       r->>'timezone_offset', r->>'sport_name', r->>'score_state', (r->>'created_at')::timestamptz,
       (r->>'updated_at')::timestamptz, r
from jsonb_array_elements($fx$@DOC@$fx$::jsonb -> 'workout') r;
"""


# --------------------------------------------------------------------------
# The reference model

def parse_ts(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


def parse_offset(s):
    """parse_offset: '+hh:mm' / '-hh:mm' / 'Z' -> minutes east of UTC."""
    if s in ("Z", "z"):
        return 0
    sign = -1 if s[0] == "-" else 1
    return sign * (int(s[1:3]) * 60 + int(s[4:6]))


def local_date(ts, offset):
    return (ts + dt.timedelta(minutes=parse_offset(offset))).date()


def mean(xs):
    return math.fsum(xs) / len(xs)


def slope(points):
    """slope: exact least-squares slope of [(day, y)] per day; None below 2 distinct days."""
    from fractions import Fraction
    if len({d for d, _ in points}) < 2:
        return None
    x0 = points[0][0]
    xs = [Fraction((d - x0).days) for d, _ in points]
    ys = [Fraction(y) for _, y in points]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    return float(sxy / sxx)


def stdev(xs):
    return statistics.stdev(xs) if len(xs) >= 2 else None


def window(series, day, first_back, last_back):
    """window: values of {day: value} on days day-first_back ... day-last_back (calendar)."""
    lo, hi = day - dt.timedelta(days=first_back), day - dt.timedelta(days=last_back)
    return [(d, v) for d, v in sorted(series.items()) if lo <= d <= hi and v is not None]


def need(values, n):
    return values if len(values) >= n else None


def cat_momentum(x):
    if x is None:
        return None
    return ("Accelerating" if x >= 2 else "Improving" if x >= 0.5 else "Stable" if x > -0.5
            else "Declining" if x > -2 else "Deteriorating")


def cat_efficiency(x):
    if x is None:
        return None
    return ("Highly Efficient" if x > 1 else "Efficient" if x > 0.5 else "Moderate" if x > 0
            else "Poor" if x > -0.5 else "Very Poor")


def cat_gap(x):
    if x is None:
        return None
    return ("Overreaching" if x > 4 else "Pushing" if x > 1.5 else "Aligned" if x >= -1.5
            else "Conservative" if x >= -4 else "Undertrained")


def cat_volatility(x):
    if x is None:
        return None
    return ("Very Stable" if x < 5 else "Stable" if x < 10 else "Moderate" if x < 15
            else "Volatile" if x < 20 else "Very Volatile")


def cat_balance(x):
    if x is None:
        return None
    return ("Excellent" if x >= 80 else "Good" if x >= 60 else "Moderate" if x >= 40
            else "Poor" if x >= 20 else "Very Poor")


def cat_adaptation(x):
    if x is None:
        return None
    return ("Thriving" if x > 10 else "Well Adapted" if x > 5 else "Normal Adaptation" if x > -5
            else "Struggling" if x > -10 else "Poorly Adapted")


def cat_load(x):
    if x is None:
        return None
    return "Detraining" if x < 0.8 else "Optimal" if x <= 1.3 else "Caution" if x <= 1.5 else "High Risk"


def zone(score):
    if score is None:
        return None
    return "green" if score >= 67 else "yellow" if score >= 34 else "red"


def _sub(a, b):
    return None if a is None or b is None else a - b


def _div(a, b):
    return None if a is None or b is None or b == 0 else a / b


def season_of(day, hemisphere):
    """season_of: (season_year, season name, season_start) for a day."""
    m = day.month
    block = (m % 12) // 3          # 0 Dec-Feb, 1 Mar-May, 2 Jun-Aug, 3 Sep-Nov
    start_month = {0: 12, 1: 3, 2: 6, 3: 9}[block]
    start_year = day.year - 1 if m in (1, 2) else day.year
    start = D(start_year, start_month, 1)
    year = start_year + 1 if start_month == 12 else start_year
    north = ["Winter", "Spring", "Summer", "Autumn"][block]
    south = ["Summer", "Autumn", "Winter", "Spring"][block]
    return year, (south if hemisphere == "south" else north), start


class Reference:
    """Reference recomputes the warehouse from API records, independently of the SQL."""

    def __init__(self, recs, hemispheres=HEMISPHERES):
        self.recs = recs
        self.hemispheres = hemispheres
        self._build_days()
        self._build_facts()

    # The WHOOP day
    def _build_days(self):
        recovery_by_cycle = {r["cycle_id"]: r for r in self.recs["recovery"]}
        sleeps_by_cycle = {}
        for s in self.recs["sleep"]:
            sleeps_by_cycle.setdefault(s["cycle_id"], []).append(s)
        self.cycle_day = {}     # cycle id -> (day, main sleep or None)
        for c in self.recs["cycle"]:
            mains = [s for s in sleeps_by_cycle.get(c["id"], []) if not s["nap"]]
            named = (recovery_by_cycle.get(c["id"]) or {}).get("sleep_id")
            main = None
            if mains:
                main = max(mains, key=lambda s: (s["id"] == named,
                                                 parse_ts(s["end"]) - parse_ts(s["start"]),
                                                 parse_ts(s["end"])))
            if main:
                day = local_date(parse_ts(main["end"]), main["timezone_offset"])
            else:
                day = local_date(parse_ts(c["start"]) + dt.timedelta(hours=12), c["timezone_offset"])
            self.cycle_day[c["id"]] = (day, main)
        self.primary = {}       # (user, day) -> cycle
        for c in self.recs["cycle"]:
            day, main = self.cycle_day[c["id"]]
            key = (c["user_id"], day)
            rank = ((parse_ts(main["end"]) - parse_ts(main["start"])) if main else dt.timedelta(-1),
                    parse_ts(c["start"]), c["id"])
            if key not in self.primary or rank > self.primary[key][0]:
                self.primary[key] = (rank, c)
        self.primary = {k: v[1] for k, v in self.primary.items()}

    def _build_facts(self):
        recovery_by_cycle = {r["cycle_id"]: r for r in self.recs["recovery"]}
        cycles_by_user = {}
        for c in self.recs["cycle"]:
            cycles_by_user.setdefault(c["user_id"], []).append(c)
        workouts_by_cycle = {}
        for w in self.recs["workout"]:
            ws = parse_ts(w["start"])
            for c in cycles_by_user.get(w["user_id"], []):
                cs, ce = parse_ts(c["start"]), parse_ts(c.get("end"))
                if cs <= ws and (ce is None or ws < ce):
                    workouts_by_cycle.setdefault(c["id"], []).append(w)
        self.recovery, self.strain = {}, {}
        for (user, day), c in self.primary.items():
            _, main = self.cycle_day[c["id"]]
            r = recovery_by_cycle.get(c["id"])
            if r or main:
                rs = r["score"] if r and r["score_state"] == "SCORED" else {}
                ss = main["score"] if main and main["score_state"] == "SCORED" else {}
                st = ss.get("stage_summary", {})
                self.recovery[(user, day)] = {
                    "cycle_id": c["id"], "sleep_id": main["id"] if main else None,
                    "recovery_score": rs.get("recovery_score"),
                    "recovery_zone": zone(rs.get("recovery_score")),
                    "resting_heart_rate": rs.get("resting_heart_rate"),
                    "hrv_rmssd_milli": rs.get("hrv_rmssd_milli"),
                    "skin_temp_celsius": rs.get("skin_temp_celsius"),
                    "respiratory_rate": ss.get("respiratory_rate"),
                    "hours_asleep": (st["total_in_bed_time_milli"] - st["total_awake_time_milli"]) / 3.6e6
                    if st else None,
                    "hours_in_bed": st["total_in_bed_time_milli"] / 3.6e6 if st else None,
                    "sleep_need_hours": sum(ss["sleep_needed"].values()) / 3.6e6 if ss else None,
                }
            cs = c.get("score") if c["score_state"] == "SCORED" else None
            ws = [w for w in workouts_by_cycle.get(c["id"], []) if w["score_state"] == "SCORED"]
            zones = ["zone_zero_milli", "zone_one_milli", "zone_two_milli", "zone_three_milli",
                     "zone_four_milli", "zone_five_milli"]
            self.strain[(user, day)] = {
                "cycle_id": c["id"],
                "day_strain": cs["strain"] if cs else None,
                "kcal": cs["kilojoule"] / 4.184 if cs else None,
                "workout_count": len(ws),
                "max_workout_strain": max((w["score"]["strain"] for w in ws), default=None),
                "workout_minutes": sum((parse_ts(w["end"]) - parse_ts(w["start"])).total_seconds() / 60
                                       for w in ws),
                "zone_2_minutes": sum(w["score"]["zone_durations"]["zone_two_milli"] for w in ws) / 60000,
                "zone_total_minutes": sum(w["score"]["zone_durations"][z] for w in ws for z in zones) / 60000,
                "distance_km": sum(w["score"].get("distance_meter") or 0 for w in ws) / 1000,
                "sports": sorted({w["sport_name"] for w in ws}),
                "cycle_complete": c.get("end") is not None,
            }

    # Series helpers
    def users(self):
        return sorted({u for u, _ in self.strain} | {u for u, _ in self.recovery})

    def series(self, user, field, source):
        return {d: v[field] for (u, d), v in source.items() if u == user and v[field] is not None}

    def daily(self, user):
        """daily: {day: {...}} of the scored daily inputs (the daily_scores view)."""
        out = {}
        for (u, d), v in self.recovery.items():
            if u == user:
                out.setdefault(d, {}).update(
                    recovery_score=v["recovery_score"], hrv=v["hrv_rmssd_milli"],
                    rhr=v["resting_heart_rate"], resp=v["respiratory_rate"], skin=v["skin_temp_celsius"])
        for (u, d), v in self.strain.items():
            if u == user:
                out.setdefault(d, {})["day_strain"] = v["day_strain"]
        for v in out.values():
            for k in ("recovery_score", "hrv", "rhr", "resp", "skin", "day_strain"):
                v.setdefault(k, None)
        return out

    # The metrics, each {(user, day or year/season): {column: value}}
    def recovery_momentum(self):
        out = {}
        for u in self.users():
            rec = self.series(u, "recovery_score", self.recovery)
            for d, r in rec.items():
                prev = rec.get(d - dt.timedelta(days=1))
                row = {"recovery_score": r, "change_1d": _sub(r, prev)}
                for name, span, mn in (("trend_3d", 3, 2), ("trend_7d", 7, 3), ("trend_14d", 14, 5)):
                    pts = window(rec, d, span - 1, 0)
                    row[name] = slope(pts) if len(pts) >= mn else None
                terms = [(0.4, row["change_1d"]), (0.3, row["trend_3d"]), (0.2, row["trend_7d"]),
                         (0.1, row["trend_14d"])]
                present = [(w, v) for w, v in terms if v is not None]
                row["momentum_score"] = (math.fsum(w * v for w, v in present) / math.fsum(w for w, _ in present)
                                         if present else None)
                row["momentum_category"] = cat_momentum(row["momentum_score"])
                out[(u, d)] = row
        return out

    def strain_recovery_efficiency(self):
        out = {}
        for u in self.users():
            daily = self.daily(u)
            rec = {d: v["recovery_score"] for d, v in daily.items()}
            eff = {}
            for d in sorted(daily):
                s = daily[d]["day_strain"]
                if s is None:
                    continue
                base = need([v for _, v in window(rec, d, 7, 1)], 3)
                baseline = mean(base) if base else None
                nxt = rec.get(d + dt.timedelta(days=1))
                e = (nxt - baseline) / s if s >= 1 and baseline is not None and nxt is not None else None
                eff[d] = e
                out[(u, d)] = {"day_strain": s, "baseline_recovery": baseline, "next_day_recovery": nxt,
                               "efficiency": e, "efficiency_category": cat_efficiency(e)}
            for d in eff:
                vals = need([v for _, v in window(eff, d, 29, 0)], 5)
                out[(u, d)]["efficiency_30d"] = mean(vals) if vals else None
        return out

    def training_readiness_gap(self):
        out = {}
        target = {"red": (0, 10, 5), "yellow": (10, 14, 12), "green": (14, 18, 16)}
        for u in self.users():
            daily = self.daily(u)
            strain = {d: v["day_strain"] for d, v in daily.items()}
            for d, v in daily.items():
                r = v["recovery_score"]
                if r is None:
                    continue
                z = zone(r)
                lo, hi, t = target[z]
                prior = need([x for _, x in window(strain, d, 7, 1)], 3)
                avg_prior = mean(prior) if prior else None
                gap = _sub(v["day_strain"], t)
                risk_parts = [z != "green",
                              None if avg_prior is None else avg_prior > 14,
                              None if gap is None else gap > 2]
                risk = False if False in risk_parts else (None if None in risk_parts else True)
                out[(u, d)] = {"recovery_zone": z, "recommended_strain_min": lo, "recommended_strain_max": hi,
                               "target_strain": t, "day_strain": v["day_strain"], "strain_gap": gap,
                               "gap_category": cat_gap(gap), "avg_strain_prior_7d": avg_prior,
                               "overtraining_risk": risk}
        return out

    def recovery_volatility(self):
        out = {}
        for u in self.users():
            rec = self.series(u, "recovery_score", self.recovery)
            for d, r in rec.items():
                w7 = need([v for _, v in window(rec, d, 6, 0)], 3)
                w7p = need([v for _, v in window(rec, d, 13, 7)], 3)
                w30 = need([v for _, v in window(rec, d, 29, 0)], 10)
                v7, v7p = (stdev(w7) if w7 else None), (stdev(w7p) if w7p else None)
                v30 = stdev(w30) if w30 else None
                a30 = mean(w30) if w30 else None
                out[(u, d)] = {"volatility_7d": v7, "volatility_30d": v30, "avg_recovery_30d": a30,
                               "cv_30d": _div(v30, a30), "volatility_trend": _sub(v7, v7p),
                               "volatility_category": cat_volatility(v30)}
        return out

    def autonomic_balance(self):
        out = {}
        for u in self.users():
            # A row per day with a positive HRV; each baseline takes every
            # day on which its own measure was scored.
            daily = self.daily(u)
            ln = {d: math.log(v["hrv"]) for d, v in daily.items() if v["hrv"] is not None and v["hrv"] > 0}
            rhr = {d: v["rhr"] for d, v in daily.items() if v["rhr"] is not None}
            resp = {d: v["resp"] for d, v in daily.items() if v["resp"] is not None}
            for d in ln:
                v = daily[d]
                w7 = need([x for _, x in window(ln, d, 6, 0)], 3)
                hrv_7d = mean(w7) if w7 else None
                cv = 100 * stdev(w7) / mean(w7) if w7 else None

                def base(series):
                    vals = need([x for _, x in window(series, d, 60, 1)], 14)
                    return (mean(vals), stdev(vals)) if vals else (None, None)
                bm, bsd = base(ln)
                rm, rsd = base(rhr)
                pm, psd = base(resp)
                z_hrv = _div(_sub(ln[d], bm), bsd)
                z_rhr = _div(_sub(v["rhr"], rm), rsd)
                z_resp = _div(_sub(v["resp"], pm), psd)
                score = None
                if None not in (z_hrv, z_rhr, z_resp):
                    score = max(0.0, min(100.0, 50 + 10 * (0.45 * z_hrv - 0.35 * z_rhr - 0.20 * z_resp)))
                low = None if bm is None else bm - 0.5 * bsd
                high = None if bm is None else bm + 0.5 * bsd
                state = None
                if None not in (hrv_7d, low, high):
                    state = "Parasympathetic" if hrv_7d > high else "Balanced" if hrv_7d >= low else "Sympathetic"
                out[(u, d)] = {"ln_rmssd": ln[d], "hrv_7d": hrv_7d, "hrv_cv_7d": cv, "hrv_baseline": bm,
                               "hrv_baseline_sd": bsd, "swc_low": low, "swc_high": high,
                               "rhr_baseline": rm, "rhr_baseline_sd": rsd, "resp_baseline": pm,
                               "resp_baseline_sd": psd,
                               "hrv_rhr_ratio": _div(v["hrv"], v["rhr"]), "z_hrv": z_hrv, "z_rhr": z_rhr,
                               "z_resp": z_resp, "balance_score": score, "balance_state": state,
                               "balance_category": cat_balance(score)}
        return out

    def seasonal_adaptation(self):
        out = {}
        for u in self.users():
            hemi = self.hemispheres.get(u, "north")
            daily = {d: v for d, v in self.daily(u).items()
                     if v["recovery_score"] is not None or v["day_strain"] is not None}
            groups = {}
            for d, v in daily.items():
                year, season, start = season_of(d, hemi)
                groups.setdefault((year, season, start), []).append((d, v))
            for (year, season, start), items in groups.items():
                def avg(rows, f):
                    vals = [f(v) for _, v in rows if f(v) is not None]
                    return mean(vals) if len(vals) >= SEASON_MIN else None
                lnf = lambda v: math.log(v["hrv"]) if v["hrv"] else None
                fields = {"recovery": lambda v: v["recovery_score"], "ln": lnf, "rhr": lambda v: v["rhr"],
                          "skin": lambda v: v["skin"], "strain": lambda v: v["day_strain"]}
                season_means = {k: avg(items, f) for k, f in fields.items()}
                before = [(d, v) for d, v in daily.items() if d < start]
                base, sd = {}, {}
                for k, f in fields.items():
                    vals = [f(v) for _, v in before if f(v) is not None]
                    base[k] = mean(vals) if len(vals) >= 30 else None
                    sd[k] = stdev(vals) if len(vals) >= 30 else None
                dev = {"recovery": _sub(season_means["recovery"], base["recovery"]),
                       "ln": _sub(season_means["ln"], base["ln"]),
                       "rhr": _sub(base["rhr"], season_means["rhr"]),
                       "skin": _sub(season_means["skin"], base["skin"])}
                z = {k: _div(dev[k], sd[k]) for k in dev}
                index = None
                if None not in z.values():
                    index = 0.4 * z["recovery"] + 0.3 * z["ln"] + 0.2 * z["rhr"] + 0.1 * z["skin"]
                out[(u, year, season)] = {
                    "days": len(items),
                    "recovery_days": sum(1 for _, v in items if v["recovery_score"] is not None),
                    "avg_recovery": season_means["recovery"], "avg_day_strain": season_means["strain"],
                    "avg_resting_heart_rate": season_means["rhr"], "avg_skin_temp_celsius": season_means["skin"],
                    "avg_ln_rmssd": season_means["ln"], "baseline_days": len(before),
                    "baseline_recovery": base["recovery"], "recovery_deviation": dev["recovery"],
                    "rhr_deviation": dev["rhr"], "z_recovery": z["recovery"], "z_hrv": z["ln"],
                    "z_rhr": z["rhr"], "z_skin": z["skin"], "adaptation_index": index,
                    "adaptation_category": cat_adaptation(dev["recovery"]), "season_start": start}
        return out

    def training_load(self):
        out = {}
        for u in self.users():
            strain = self.series(u, "day_strain", self.strain)
            e7 = e28 = None
            for n, d in enumerate(sorted(strain), start=1):
                s = strain[d]
                e7 = s if e7 is None else e7 + 2 / 8 * (s - e7)
                e28 = s if e28 is None else e28 + 2 / 29 * (s - e28)
                acute = e7 if n >= 7 else None
                chronic = e28 if n >= 28 else None
                w7 = need([v for _, v in window(strain, d, 6, 0)], 4)
                w28 = need([v for _, v in window(strain, d, 27, 0)], 14)
                a7, c28 = (mean(w7) if w7 else None), (mean(w28) if w28 else None)
                acwr = _div(acute, chronic)
                out[(u, d)] = {"day_strain": s, "acute_load_ewma": acute, "chronic_load_ewma": chronic,
                               "acwr_ewma": acwr, "acute_load_7d": a7, "chronic_load_28d": c28,
                               "acwr_rolling": _div(a7, c28), "load_zone": cat_load(acwr)}
        return out
