"""__main__.py -- the simulator's command line: python3 -m whoop_sim.

COMMAND LINE
    python3 -m whoop_sim --port 0 --seed 42 --athletes 1 --days 730 \\
                         --now 2026-06-30T12:00:00Z

  with test/ on the module path (PYTHONPATH; test/lib/harness.py sets it).

  The first line on stdout is the bound port (flushed); nothing else is
  written to stdout.  Serves until killed; SIGTERM/SIGINT exit cleanly (0).

  --port N                 TCP port on 127.0.0.1 (0 = any free port)
  --seed N                 data seed (default 42); same seed + flags => the
                           same bytes in every response body
  --athletes N             number of WHOOP members (default 1)
  --days N                 days of history up to now (default 730)
  --now ISO                freeze the simulator ("data") clock at ISO; without
                           it the clock is real time.  Record visibility and
                           "end defaults to now" use this clock.  With
                           --clock-rate the clock is not frozen: it starts at
                           ISO once the data is generated and runs at the rate.
  --clock-rate X           a running data clock advances X simulated seconds a
                           real second (X > 0; default 1, real time): records
                           appear, get scored and emit their webhooks as the
                           scaled clock passes them.  Without --now it starts
                           at the real time the process started, once the
                           data is generated.  Real time still:
                           token lifetimes, rate-limit windows (a benchmark at
                           rate X passes --rate-minute-seconds 60/X for WHOOP's
                           limits per simulated minute and day), webhook retry
                           delays (--webhook-retry-scale), signature timestamps
                           and the knobs' duplicate_ms/reorder_ms.
                           POST /_sim/clock {"rate": X} changes it at run time.
  --token-ttl S            access-token lifetime in real seconds (3600): tokens
                           expire on the real clock, as at WHOOP
  --rate-per-minute N      per-app requests per "minute" (100; 0 = unlimited)
  --rate-per-day N         per-app requests per "day" (10000; 0 = unlimited)
  --rate-minute-seconds S  real seconds a rate-limit minute lasts (60); a day
                           window is 1440 such minutes
  --max-page-size N        largest accepted `limit` (25)
  --client-id S            OAuth client id (sim-client)
  --client-secret S        OAuth client secret (sim-secret)
  --redirect-uri U         the one registered redirect URI
                           (https://localhost/callback)
  --no-body-for N          athlete N (1-based index; a value larger than
                           --athletes is taken as a user_id) has no body
                           measurement (404).  Repeatable.
  --jobs N                 processes generating the data at start-up (default
                           2: from 24 athletes on, forked helpers generate all
                           but the first 1/N of them; 1: this process alone).
                           Same data either way.
  --webhook-url URL        register the app's webhook subscription at
                           start-up (as POST /_sim/webhooks {"url": URL}
                           would; https, or http to 127.0.0.1)
  --webhook-ca-file F      the CA (PEM) that signs the receiver's certificate
                           (default: the system's CAs)
  --webhook-retry-scale X  WHOOP's retry delays (1, 5, 10, 20, 30 minutes)
                           divided by X (default 1)
  --quiet                  nothing at all on stderr
  --verbose                one line per request on stderr (default: none)
"""

import argparse
import signal
import sys

from .server import Handler, Server
from .simulator import Simulator
from .times import parse_iso
from .webhooks import Subscription


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m whoop_sim",
                                description="WHOOP API simulator (see whoop_sim/__main__.py)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--athletes", type=int, default=1)
    p.add_argument("--days", type=int, default=730)
    p.add_argument("--now", default=None)
    p.add_argument("--clock-rate", type=float, default=None)
    p.add_argument("--token-ttl", type=int, default=3600)
    p.add_argument("--rate-per-minute", type=int, default=100)
    p.add_argument("--rate-per-day", type=int, default=10000)
    p.add_argument("--rate-minute-seconds", type=float, default=60)
    p.add_argument("--max-page-size", type=int, default=25)
    p.add_argument("--client-id", default="sim-client")
    p.add_argument("--client-secret", default="sim-secret")
    p.add_argument("--redirect-uri", default="https://localhost/callback")
    p.add_argument("--no-body-for", type=int, action="append")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--webhook-url", default=None)
    p.add_argument("--webhook-ca-file", default=None)
    p.add_argument("--webhook-retry-scale", type=float, default=1.0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.athletes < 1 or args.days < 1 or args.max_page_size < 1 or args.rate_minute_seconds <= 0:
        p.error("--athletes, --days, --max-page-size and --rate-minute-seconds must be positive")
    if args.clock_rate is not None and not 0 < args.clock_rate < float("inf"):
        p.error("--clock-rate must be a number > 0")
    if args.now is not None:
        try:
            parse_iso(args.now)
        except ValueError:
            p.error("--now must be an ISO-8601 date-time with a zone")

    args.webhooks = None        # the subscription's settings, checked before generating
    if args.webhook_url is not None:
        args.webhooks = {"url": args.webhook_url, "retry_scale": args.webhook_retry_scale}
        if args.webhook_ca_file is not None:
            args.webhooks["ca_file"] = args.webhook_ca_file
        try:
            Subscription(args.webhooks)
        except ValueError as e:
            p.error("--webhook-url/--webhook-ca-file/--webhook-retry-scale: %s" % e)
    elif args.webhook_ca_file is not None:
        p.error("--webhook-ca-file needs --webhook-url")

    def stop(*_):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)

    sim = Simulator(args)
    server = Server(("127.0.0.1", args.port), Handler)
    server.sim = sim
    sys.stdout.write("%d\n" % server.server_address[1])
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
