"""api.py -- the member endpoints under /developer: routing, scopes, records
by id and collections with their filters and paging.

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
"""

import uuid

from .response import Resp, err
from .times import parse_iso

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


class ApiEndpoints:
    """ApiEndpoints is the Simulator's part that answers /developer requests."""

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
