"""world.py -- the simulator's world: the athletes, the simulator clock,
their generation (in forked helpers for many athletes), paging cursors,
record lookups, and records moved or deleted by the control plane."""

import bisect
import gc
import hashlib
import hmac
import os
import pickle
import signal
import tempfile
import time
import urllib.parse

from .catalog import rng
from .physiology import Athlete
from .times import DAY, iso

PARALLEL_FROM = 24               # athletes: from here helper processes generate (--jobs)


class World:
    """World: the athletes, generated up to `horizon_e`, and the simulator
    clock: frozen at now_fixed, or running at `rate` simulated ms per real ms
    from the anchor (real_a, sim_a), real ms of time.time()."""

    def __init__(self, seed, athletes, days, now_ms, frozen, no_body, jobs=2):
        self.seed = seed
        self.jobs = jobs
        self.frozen = frozen
        self.now_fixed = now_ms
        self.rate = 1.0
        self.real_a = time.time() * 1000
        self.sim_a = float(now_ms)
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
        self.deleted = {"sleep": [], "workout": [], "recovery": []}
        self.secret = hashlib.sha256(("whoop-sim:%s" % seed).encode()).digest()
        self.ensure()

    def now(self):
        if self.frozen:
            return self.now_fixed
        return int(self.sim_a + (time.time() * 1000 - self.real_a) * self.rate)

    def real_at(self, ms):
        """real_at: the wall-clock ms at which a running clock shows (showed) ms."""
        return self.real_a + (ms - self.sim_a) / self.rate

    def set_now(self, ms):
        if self.frozen:
            self.now_fixed = int(ms)
        else:
            self.real_a, self.sim_a = time.time() * 1000, float(ms)
        self.ensure()

    def run(self, rate):
        """run makes a frozen clock run from where it stands, at rate."""
        self.sim_a, self.real_a = float(self.now_fixed), time.time() * 1000
        self.frozen = False
        self.set_rate(rate)

    def set_rate(self, rate):
        """set_rate makes a running clock advance rate simulated seconds per
        real second from now on (now() goes on from where it is)."""
        if self.frozen:
            raise ValueError("a frozen clock (--now without --clock-rate) has no rate")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0 \
                or rate == float("inf"):
            raise ValueError("rate must be a number > 0")
        real = time.time() * 1000
        self.sim_a = self.sim_a + (real - self.real_a) * self.rate
        self.real_a, self.rate = real, float(rate)

    def ensure(self):
        """ensure generates every athlete up to two days past now, again
        while a fast clock ran past that during the generation."""
        while True:
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

    def recovery_of(self, sleep):
        """recovery_of: the recovery of a main sleep, or None (naps have none)."""
        rc = sleep.ath.by_id["recovery"].get(sleep.cyc)
        return rc if rc is not None and rc.sleep_id() == sleep.key else None

    def move(self, rec, start, end):
        """move gives a record a new start and end and re-sorts it; a main
        sleep's recovery, filtered and ordered by its sleep, moves along."""
        idx = rec.ath.indexes[rec.kind]
        idx.remove(rec)
        rec.start, rec.end, rec.sort_start = start, end, start
        idx.add(rec)
        rc = self.recovery_of(rec) if rec.kind == "sleep" else None
        if rc is not None:
            ridx = rec.ath.indexes["recovery"]
            ridx.remove(rc)
            rc.start, rc.end, rc.sort_start = start, end, start
            ridx.add(rc)

    def remove(self, rec, now, merged_into=None):
        """remove deletes a record for good: out of its index and the lookups
        by id (so 404 by id, absent from every list), into `deleted`."""
        ath = rec.ath
        ath.indexes[rec.kind].remove(rec)
        del ath.by_id[rec.kind][rec.key]
        if rec.kind == "sleep" and ath.main_sleep.get(rec.cyc) is rec:
            del ath.main_sleep[rec.cyc]
        if rec.kind == "recovery":
            entry = {"cycle_id": rec.key, "sleep_id": rec.sleep_id()}
        else:
            entry = {"id": rec.key}
        entry.update(user_id=ath.user_id, deleted_at=iso(now))
        if merged_into is not None:
            entry["merged_into"] = merged_into
        self.deleted[rec.kind].append(entry)
        return entry

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
