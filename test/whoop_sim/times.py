"""times.py -- the simulator's time: epoch milliseconds, ISO-8601 as WHOOP
writes it, and home time zones with real DST rules (us, eu, au)."""

from datetime import date, datetime, timedelta, timezone

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
INF = float("inf")
EPOCH_ORD = date(1970, 1, 1).toordinal()

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
