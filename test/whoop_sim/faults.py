"""faults.py -- queued faults and seeded chaos (POST /_sim/faults and
/_sim/chaos, see control.py), and what each does to an answer: replace it
before the request is processed, or mangle the one it gets."""

import random

from .response import HTML_ERR, Resp

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


class FaultInjection:
    """FaultInjection is the Simulator's part that picks a queued fault and applies one."""

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
