"""simulator.py -- the simulator: all state behind one lock, and one request
through the rate limit, a queued fault or chaos, its endpoint and the
accounting the control plane reports; the webhooks it sends."""

import collections
import threading
import time

from .api import ApiEndpoints, route
from .control import ControlPlane
from .faults import FaultInjection
from .oauth import Auth, OAuthEndpoints
from .ratelimit import RateLimiter
from .response import Resp
from .times import parse_iso
from .webhooks import Webhooks
from .world import World


class Simulator(ApiEndpoints, OAuthEndpoints, ControlPlane, FaultInjection):
    """Simulator holds the world, the grants, the rate limiter, the queued
    faults, chaos, the accounting and the webhooks; handle() answers one
    request."""

    def __init__(self, args):
        now = parse_iso(args.now) if args.now else int(time.time() * 1000)
        rate = getattr(args, "clock_rate", None)
        self.world = World(args.seed, args.athletes, args.days, now,
                           args.now is not None or rate is not None,
                           set(args.no_body_for or []), args.jobs)
        if rate is not None:        # frozen while generating, then runs from `now`
            self.world.run(rate)
        self.auth = Auth(self.world, args.client_id, args.client_secret, args.redirect_uri,
                         args.token_ttl)
        self.max_page = args.max_page_size
        self.limiter = RateLimiter(args.rate_per_minute, args.rate_per_day, args.rate_minute_seconds)
        self.lock = threading.RLock()
        self.verbose = args.verbose and not args.quiet
        self.quiet = args.quiet
        self.bugs = 0
        self.reset_counters()
        self.hooks = Webhooks(self.world, self.auth, self.lock)
        if args.webhooks is not None:
            self.hooks.subscribe(args.webhooks)

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
