"""physiology.py -- the deterministic athlete: physiology, schedule and one
WHOOP day after another.

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
"""

import bisect
import collections
import itertools
import math

from .catalog import (FIRST_NAMES, HOME_WEIGHTS, HOME_ZONES, LAST_NAMES, REGIONAL_SPORTS,
                      SHORT_SPORTS, SPORT_NAMES, SPORTS, TRIP_OFFSETS, TRIP_ZONES, ascii_fold,
                      clamp, det_uuid, rng)
from .records import ABSENT, ALCOHOL, ILL, JET, NAP, Index, Rec
from .times import DAY, HOUR, INF, MINUTE

V1_CUTOFF = 20332 * DAY           # 2025-09-01T00:00Z: legacy ids end here
STEP_COUNT_FROM = 20240 * DAY     # 2025-06-01: some cycles carry step_count
STRAIN_SCALE = 5.5               # strain = 21 * (1 - exp(-load / STRAIN_SCALE))


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
                t = (t0, n, TRIP_ZONES[rt.choice(choices)])
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
