"""records.py -- one record (cycle, sleep, workout or recovery) and its
timeline, the JSON body built from its numbers when it is served, and the
per-athlete indexes that collections page through (see physiology.py,
DATA, for what the numbers mean)."""

import bisect
import math
import random

from .catalog import ROUTE_NAMES, SPORTS, ZONE_KEYS, clamp, rng
from .times import HOUR, INF, MINUTE, iso

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

    def changes(self):
        """changes: the simulator times at which the version served changes
        (it appears, is scored, is re-scored); a touched record only appears."""
        out = [self.created]
        if self.pending != INF and self.pending > self.created:
            out.append(self.pending)
        if self.rescore > self.created:
            out.append(self.rescore)
        return out

    def sleep_id(self):
        """sleep_id: a recovery's sleep, which also names its webhook events."""
        return self.fixed["sleep_id"] if self.fixed is not None else self.spec[0]

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
    """Records of one kind of one athlete, sorted by (sort_start, tb).

    span  the longest reach of a record past its sort_start (overlap filters)
    lag   the longest time from a record's sort_start to the last change of
          its served version (the webhook scanner's window)
    """
    __slots__ = ("keys", "recs", "span", "lag")

    def __init__(self):
        self.keys, self.recs, self.span, self.lag = [], [], 0, 0

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
        last = rec.created           # inline Rec.changes(): called per generated record
        if rec.pending != INF and rec.pending > last:
            last = rec.pending
        if rec.rescore > last:
            last = rec.rescore
        if last - rec.sort_start > self.lag:
            self.lag = last - rec.sort_start

    def remove(self, rec):
        i = bisect.bisect_left(self.keys, (rec.sort_start, rec.tb))
        while self.recs[i] is not rec:
            i += 1
        del self.keys[i]
        del self.recs[i]
