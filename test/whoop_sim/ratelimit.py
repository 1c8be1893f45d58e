"""ratelimit.py -- the app's rate limits: a minute and a day window.

Rate limits: one app (the client id); every request under /developer and
/oauth counts, whatever its outcome.  Every such response (except a
`reset` fault) carries
    X-RateLimit-Limit: <closest>, <m>;window=<60*S>, <d>;window=<86400*S>
    X-RateLimit-Remaining: <left in the window closest to exhaustion>
    X-RateLimit-Reset: <whole real seconds until that window resets, >= 1>
(S = --rate-minute-seconds/60; windows are fixed, aligned to start-up or
the last /_sim/reset).  Past a limit => 429 JSON.  An unlimited window
(0) reports a limit of 1000000000.
"""

import math
import time

UNLIMITED = 1_000_000_000


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
