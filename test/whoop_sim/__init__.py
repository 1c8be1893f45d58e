"""whoop_sim -- a loopback WHOOP developer API (v2) simulator for whoop_fdw.

Python 3 standard library only.  It speaks HTTP/1.1 with keep-alive on
127.0.0.1 and behaves like api.prod.whoop.com closely enough that a libcurl
client cannot tell the difference: OAuth 2.0 authorization code flow with
single-use rotating refresh tokens, bearer-protected member endpoints,
nextToken paging, overlap start/end filtering, rate-limit headers and 429s,
signed webhooks with WHOOP's retries, plus a control plane (/_sim/) to
steer time, change and delete records, inject faults and inspect what a
client did.  All data is generated deterministically from --seed.

    python3 -m whoop_sim --port 0 --seed 42    (test/ on the module path;
                                                see __main__.py)

MODULES (imports point down this list, never up)
  times        epoch milliseconds, ISO-8601 as WHOOP writes it, home zones
               with their DST rules
  catalog      what the generator draws from: sports, names, route names,
               home zones, trip offsets; the seeded draws
  records      one record and its timeline, its JSON body (built when
               served), the per-athlete indexes
  physiology   the deterministic athlete: schedule and day generation (DATA)
  world        the athletes, the simulator clock, forked generation, paging
               cursors, record lookups, moves and deletions
  response     the answer one request gets, before HTTP
  ratelimit    the app's minute and day windows (Rate limits)
  faults       queued faults and seeded chaos, and what they do to an answer
  oauth        grants, codes and tokens; /oauth/oauth2 (OAuth)
  webhooks     the app's subscription, the events changes emit, signed
               deliveries with WHOOP's retries and seeded knobs (WEBHOOKS)
  api          /developer routing, scopes, collections and paging (API)
  control      the /_sim/ control plane (CONTROL PLANE): also deletes,
               merges and the webhook subscription
  simulator    all state behind one lock; one request through the rate
               limit, faults, chaos and its endpoint, and its accounting
  server       HTTP/1.1 on 127.0.0.1: keep-alive, bodies, resets, slow and
               partial answers
  __main__     the command line (COMMAND LINE)

NOT REPRODUCED
  The sleep stream, partner and v1 mapping endpoints; token reuse
  detection that revokes a whole grant (Hydra's behaviour) -- a spent
  refresh token just fails; auth-code expiry; the real error body formats
  (undocumented); per-IP limits; TLS on the API (webhooks do go out over
  https); several webhook URLs per app (one here); WHOOP's own retry
  timings and delivery timeout (undocumented: ours are in webhooks.py).
"""
