"""webhook_lib.py -- pieces the webhook benchmarks share (bench_webhooks,
bench_scale): a simulator with a running clock, whoop-webhookd over HTTPS
with a self-signed certificate, its login role, and the lag arithmetic
(percentiles, the raw rows' _extracted_at/deleted_at per changed record).
Not a benchmark itself (bench.py runs only bench_*.py).
"""

import datetime
import math
import os
import subprocess

import harness
from harness import psql, quote_literal, rows, scalar

ROOT = harness.ROOT
BINARY = os.path.join(ROOT, "webhookd", "whoop-webhookd")
RECEIVER_ROLE = "bench_webhookd"
KINDS = ("sleep", "workout", "recovery")


def realtime_simulator(*args):
    """realtime_simulator starts a simulator whose clock runs in real time
    (harness.Simulator always freezes it with --now)."""
    sim = harness.Simulator()
    sim.proc = subprocess.Popen(harness.SIMULATOR + ["--port", "0", "--seed", "42"] + list(args),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = sim.proc.stdout.readline()
    if not line.strip().isdigit():
        sim.stop()
        raise RuntimeError("simulator did not start: %r" % line)
    sim.port = int(line)
    return sim


class Receiver:
    """Receiver is a running whoop-webhookd over HTTPS, writing into one database."""

    def __init__(self, tmp, name, port, dbname):
        self.port = harness.free_port()
        self.cert = os.path.join(tmp, "cert.pem")
        self.log = os.path.join(tmp, name + ".log")
        self.config = os.path.join(tmp, name + ".conf")
        self.url = "https://127.0.0.1:%d/whoop/sim" % self.port
        conf = {"listen_address": "127.0.0.1", "port": self.port,
                "tls_cert": self.cert, "tls_key": os.path.join(tmp, "key.pem"),
                "conninfo": "host=127.0.0.1 port=%d dbname=%s user=%s"
                            % (port, dbname, RECEIVER_ROLE),
                "servers": "sim", "db_connections": 4}
        with open(self.config, "w") as f:
            f.write("# written by webhook_lib.py\n")
            for key, value in conf.items():
                f.write("%s = %s\n" % (key, value))
        self.proc = None

    def start(self):
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([BINARY, self.config], stderr=log,
                                         stdout=subprocess.DEVNULL)
        up = harness.wait_until(lambda: "listening on" in self.read_log()
                                or self.proc.poll() is not None, timeout=30)
        if not up or self.proc.poll() is not None:
            raise RuntimeError("whoop-webhookd did not start:\n" + self.read_log())
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def read_log(self):
        with open(self.log, errors="replace") as f:
            return f.read()


def parse_iso(text):
    """parse_iso reads the simulator's ISO-8601 time (2026-06-29T22:13:05.123Z) into epoch ms."""
    return round(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def percentile(values, p):
    """percentile is the nearest-rank P-th percentile of sorted VALUES."""
    return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]


def summary_row(label, values, unit=1000, width=34, digits=2):
    """summary_row formats count, median, p90, p99 and max of VALUES divided
    by UNIT (milliseconds to seconds by default)."""
    v = sorted(values)
    if not v:
        return "  %-*s %5d" % (width, label, 0)
    return "  %-*s %5d" % (width, label, len(v)) + "".join(
        " %8.*f" % (digits, x / unit)
        for x in (percentile(v, 50), percentile(v, 90), percentile(v, 99), v[-1]))


def make_certificate(tmp):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", os.path.join(tmp, "key.pem"),
                    "-out", os.path.join(tmp, "cert.pem")],
                   check=True, capture_output=True)


def receiver_role():
    """receiver_role creates the receiver's login role, granted only whoop_webhook
    (which the first CREATE EXTENSION whoop_fdw of the cluster makes)."""
    psql("do $$ begin if not exists (select from pg_roles where rolname = %s) then "
         "create role %s login in role whoop_webhook; end if; end $$"
         % (quote_literal(RECEIVER_ROLE), RECEIVER_ROLE), dbname="postgres")


def session_requests(sql, dbname):
    """session_requests runs SQL in one session and returns the WHOOP requests it made."""
    return int(scalar(sql + "; select requests from whoop.fetch_stats()", dbname=dbname))


def effects(db, records):
    """effects: epoch ms of the raw row's _extracted_at and deleted_at per
    (kind, id) in RECORDS (a recovery by its sleep's id)."""
    out = {}
    for kind in KINDS:
        ids = [rid for k, rid in records if k == kind]
        if not ids:
            continue
        key = "sleep_id" if kind == "recovery" else "id"
        for rid, extracted, deleted in rows(
                "select %s, extract(epoch from _extracted_at) * 1000, "
                "extract(epoch from deleted_at) * 1000 from whoop.raw_%s "
                "where %s = any(%s::uuid[])"
                % (key, kind, key, quote_literal("{" + ",".join(ids) + "}")), dbname=db):
            out[(kind, rid)] = (float(extracted), float(deleted) if deleted else None)
    return out
