"""oauth.py -- OAuth 2.0 as WHOOP's Ory Hydra answers it: grants, codes and
rotating tokens, and the /oauth/oauth2 endpoints.

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

Access tokens live `ttl` REAL seconds (expires_in), whatever the data
clock does: WHOOP's clock is the real one, and so is the clock a client
judges expiry by.  A test that moves the data clock days ahead (/_sim/clock)
does not expire tokens; POST /_sim/expire_tokens does.
"""

import hmac
import secrets
import time
import urllib.parse

from .response import Resp, err

SCOPES = ("read:recovery", "read:cycles", "read:workout", "read:sleep",
          "read:profile", "read:body_measurement", "offline")
GRANT_ALL = ("offline",) + SCOPES[:-1]     # what /_sim/accounts grants


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
    def real_ms():
        """real_ms: the real clock, which token lifetimes run on."""
        return time.time() * 1000

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
        """issue rotates the grant's tokens and returns the token response
        (the access token lives ttl real seconds from now)."""
        if g.access is not None:
            self.access.pop(g.access, None)
        if g.refresh is not None:
            self.refresh.pop(g.refresh, None)
            g.refresh = None
        g.access = self._tok("ory_at_")
        g.access_exp = self.real_ms() + self.ttl * 1000
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
        """check returns (grant or None, state, user_id or None); expiry is
        judged on the real clock."""
        if token is None:
            return None, None, None
        g = self.access.get(token)
        if g is not None:
            if self.real_ms() < g.access_exp:
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
        """expire ends every (that athlete's) live access token now (real time)."""
        now = self.real_ms()
        n = 0
        for g in self.grants:
            if g.access is not None and g.access in self.access and (user_id is None or g.user_id == user_id):
                if g.access_exp > now:
                    g.access_exp = now
                    n += 1
        return n


class OAuthEndpoints:
    """OAuthEndpoints is the Simulator's part that answers /oauth/oauth2/auth and /token."""

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
