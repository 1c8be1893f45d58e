"""chaos_lib.py -- plumbing for the reliability suites (test_chaos.py).

  DB        one database on one cluster (the suite's shared cluster, or a
            private harness.Cluster a test kills and restarts), with psql
            helpers that carry the cluster's libpq environment
  Session   a long-lived psql session (one backend) fed statement by
            statement through a pipe, for concurrency tests
  digest    a content hash of every raw table, mart and metric view that
            leaves out load timestamps, so two databases synced at different
            moments (or one synced through faults and crashes) compare equal
            exactly when they hold the same data; live_digest leaves out
            tombstones too (and the sync marks), for a warehouse that learnt
            of deletions against one loaded after them
"""

import json
import os
import subprocess
import threading
import time

import harness
from harness import SQLError

RAW_TABLES = ["raw_cycle", "raw_recovery", "raw_sleep", "raw_workout", "raw_profile",
              "raw_body_measurement"]
# when a row was loaded, not what it says: differs between equal warehouses
LOAD_TIME_COLUMNS = {"_extracted_at", "observed_at", "valid_from", "valid_to",
                     "last_success_at", "last_attempt_at", "last_error"}
RECORD_KEYS = {"cycle": ("raw_cycle", "id"), "recovery": ("raw_recovery", "cycle_id"),
               "sleep": ("raw_sleep", "id"), "workout": ("raw_workout", "id")}


class DB:
    """DB is database NAME on the cluster whose libpq environment is ENV
    (None: the suite's shared cluster from the runner's environment)."""

    def __init__(self, name, env=None):
        self.name = name
        self.env = dict(env or {})

    def psql(self, sql, check=True, timeout=600, dbname=None):
        return harness.psql(sql, dbname=dbname or self.name, extra_env=self.env,
                            check=check, timeout=timeout)

    def rows(self, sql, **kw):
        out = self.psql(sql, **kw)
        return [line.split("|") for line in out.splitlines() if line != ""]

    def scalar(self, sql, **kw):
        out = self.psql(sql, **kw).strip()
        return out.splitlines()[-1] if out else None

    def query(self, sql):
        """query returns the rows of a SELECT as dicts."""
        return json.loads(self.psql("select coalesce(json_agg(t), '[]') from (%s) t" % sql))

    def command(self):
        return ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.name]

    def full_env(self):
        env = dict(os.environ)
        env.update(self.env)
        return env

    def notices(self, sql, timeout=600):
        """notices runs SQL and returns (exit code, stdout + stderr) with NOTICEs."""
        proc = subprocess.run(self.command(), input=sql, capture_output=True, text=True,
                              timeout=timeout, env=self.full_env())
        return proc.returncode, proc.stdout + proc.stderr

    def background(self, sql):
        """background starts SQL in a psql of its own; returns the Popen."""
        proc = subprocess.Popen(self.command() + ["-c", sql], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.full_env())
        return proc

    def create(self):
        """create (re)creates the database with whoop_fdw installed."""
        self.psql("drop database if exists %s with (force)" % self.name, dbname="postgres")
        self.psql("create database %s" % self.name, dbname="postgres")
        self.psql("create extension whoop_fdw")
        return self

    def drop(self):
        self.psql("drop database if exists %s with (force)" % self.name, dbname="postgres",
                  check=False)

    def link(self, sim, options=None, import_into=None):
        """link creates server sim (OPTIONS added), a user mapping and links
        every athlete of SIM with a fresh refresh token; returns user_ids."""
        accounts = sim.accounts()
        opts = {"api_url": sim.api_url, "oauth_url": sim.oauth_url}
        opts.update(options or {})
        sql = ["create server sim foreign data wrapper whoop_fdw options (%s);"
               % ", ".join("%s %s" % (k, harness.quote_literal(v)) for k, v in opts.items()),
               "create user mapping for current_user server sim options (client_id %s, "
               "client_secret %s);" % (harness.quote_literal(accounts["client_id"]),
                                       harness.quote_literal(accounts["client_secret"]))]
        if import_into:
            sql.append("create schema %s; import foreign schema whoop from server sim into %s;"
                       % (import_into, import_into))
        self.psql("\n".join(sql))
        return [self.add_account(a["refresh_token"]) for a in accounts["athletes"]]

    def add_account(self, refresh_token):
        return int(self.scalar("select whoop.add_account('sim', %s)"
                               % harness.quote_literal(refresh_token)))

    def pipeline(self, timeout=900):
        """pipeline runs CALL whoop.run_pipeline(); returns (run_id, {step: row}, output)."""
        before = int(self.scalar("select coalesce(max(run_id), 0) from whoop.run_log"))
        code, out = self.notices("call whoop.run_pipeline()", timeout=timeout)
        if code != 0:
            raise SQLError(out)
        run = int(self.scalar("select max(run_id) from whoop.run_log where step = 'pipeline'"))
        assert run > before, out
        steps = {r["step"]: r for r in self.query(
            "select * from whoop.run_log where run_id = %d" % run)}
        return run, steps, out

    def relations(self):
        """relations: what the warehouse holds -- raw tables, sync marks,
        every materialized view and maintained object of the extension and
        the daily_scores view."""
        views = [r[0] for r in self.rows("select view_name from whoop.refresh_plan "
                                         "order by refresh_order")]
        return (["whoop." + t for t in RAW_TABLES] + ["whoop.sync_state"] + views
                + ["whoop_internal.daily_scores"])

    def digest_sql(self, relation, where=None):
        """digest_sql: one query giving (rows, md5 of the sorted rows) of RELATION
        (those meeting WHERE, over alias t, if given), load timestamps left out;
        a user_sk (a hash of when a dim_user version was first seen) is
        replaced by the member and the version's number."""
        cols = [r[0] for r in self.rows(
            "select attname from pg_attribute where attrelid = '%s'::regclass "
            "and attnum > 0 and not attisdropped order by attnum" % relation)]
        exprs = []
        for c in cols:
            if c in LOAD_TIME_COLUMNS:
                continue
            exprs.append("v.version" if c == "user_sk" else 't."%s"' % c)
        join = ""
        if "user_sk" in cols:
            join = (" left join (select user_sk, user_id || '#' || row_number() over "
                    "(partition by user_id order by valid_from) as version "
                    "from whoop.dim_user) v on v.user_sk = t.user_sk")
        return ("select count(*) || ':' || md5(coalesce(string_agg(r, E'\\n' order by r), '')) "
                "from (select row(%s)::text as r from %s t%s%s) s"
                % (", ".join(exprs), relation, join, "" if where is None else " where " + where))

    def digest(self):
        """digest: {relation: 'rows:md5'} for every relation of the warehouse."""
        rels = self.relations()
        sql = " union all ".join("select %s, (%s)" % (harness.quote_literal(r), self.digest_sql(r))
                                 for r in rels)
        return {r[0]: r[1] for r in self.rows(sql)}

    def live_digest(self):
        """live_digest: {relation: 'rows:md5'} like digest, but the raw tables
        without their tombstones (deleted_at set) and without sync_state,
        whose marks say when and how the warehouse learnt things, not what
        it holds: equal for a warehouse that tombstoned deletions and one
        fully loaded after them."""
        tombstoned = {r[0] for r in self.rows(
            "select attrelid::regclass::text from pg_attribute where attname = 'deleted_at' "
            "and attrelid = any (array[%s]::regclass[])"
            % ", ".join(harness.quote_literal("whoop." + t) for t in RAW_TABLES))}
        rels = [r for r in self.relations() if r != "whoop.sync_state"]
        sql = " union all ".join(
            "select %s, (%s)" % (harness.quote_literal(r),
                                 self.digest_sql(r, "t.deleted_at is null" if r in tombstoned
                                                 else None))
            for r in rels)
        return {r[0]: r[1] for r in self.rows(sql)}

    def live_raw_matches_simulator(self, sim, kinds=tuple(RECORD_KEYS)):
        """live_raw_matches_simulator returns the differences between the raw
        tables' live rows (tombstones left out) of KINDS and every record of
        those kinds the simulator serves (empty: identical)."""
        problems = []
        for kind in kinds:
            table, key = RECORD_KEYS[kind]
            served = {str(r[key]): r for r in sim.records(kind)}
            live = "deleted_at is null" if kind != "cycle" else "true"
            stored = self.rows("select %s, record from whoop.%s where %s" % (key, table, live))
            keys = [k for k, _ in stored]
            if len(keys) != len(set(keys)):
                problems.append("%s: duplicate keys" % table)
            missing = set(served) - set(keys)
            extra = set(keys) - set(served)
            if missing or extra:
                problems.append("%s: %d missing, %d not served (live rows)"
                                % (table, len(missing), len(extra)))
            differ = sum(1 for k, rec in stored if k in served and json.loads(rec) != served[k])
            if differ:
                problems.append("%s: %d records differ from what is served" % (table, differ))
        return problems

    def tombstone_problems(self, sim):
        """tombstone_problems returns (problems, tombstones): every sleep, workout
        and recovery the simulator deleted that the raw tables hold must be a
        tombstone (a recovery: every stored one of the deleted sleep); tombstones
        counts the deleted records found stored as tombstones."""
        deleted = sim.control("GET", "deleted")["deleted"]
        problems = []
        tombstones = 0
        checks = [("raw_sleep", "id", [d["id"] for d in deleted.get("sleep", [])]),
                  ("raw_workout", "id", [d["id"] for d in deleted.get("workout", [])]),
                  ("raw_recovery", "sleep_id",
                   [d["sleep_id"] for d in deleted.get("recovery", [])])]
        for table, key, ids in checks:
            if not ids:
                continue
            found = self.rows("select %s, deleted_at is not null from whoop.%s where %s = any "
                              "(array[%s]::uuid[])" % (key, table, key,
                                                       ", ".join(harness.quote_literal(i)
                                                                 for i in ids)))
            live = sorted(k for k, dead in found if dead != "t")
            if live:
                problems.append("%s: %d deleted records live: %s" % (table, len(live), live[:3]))
            tombstones += sum(1 for _, dead in found if dead == "t")
        return problems, tombstones

    def raw_matches_simulator(self, sim):
        """raw_matches_simulator returns a list of differences between the raw
        tables and every record the simulator serves (empty: identical)."""
        problems = []
        for kind, (table, key) in RECORD_KEYS.items():
            served = {str(r[key]): r for r in sim.records(kind)}
            stored = self.rows("select %s, record from whoop.%s" % (key, table))
            keys = [k for k, _ in stored]
            if len(keys) != len(set(keys)):
                problems.append("%s: duplicate keys" % table)
            missing = set(served) - set(keys)
            extra = set(keys) - set(served)
            if missing or extra:
                problems.append("%s: %d missing, %d not served" % (table, len(missing), len(extra)))
            differ = sum(1 for k, rec in stored if k in served and json.loads(rec) != served[k])
            if differ:
                problems.append("%s: %d records differ from what is served" % (table, differ))
        return problems


def digest_differences(got, want):
    return sorted(r for r in set(got) | set(want) if got.get(r) != want.get(r))


class Session:
    """Session is one psql process (one backend) that runs statements sent
    to it one at a time; run() returns (ok, rows or error text)."""

    END = "__whoop_chaos_end__"

    def __init__(self, db):
        self.proc = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-d", db.name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1,
                                     env=db.full_env())
        self.errors = []
        self._lock = threading.Lock()
        self._drain = threading.Thread(target=self._read_errors, daemon=True)
        self._drain.start()

    def _read_errors(self):
        for line in self.proc.stderr:
            with self._lock:
                self.errors.append(line.rstrip("\n"))

    def run(self, sql):
        self.proc.stdin.write("%s;\n\\echo %s :ERROR\n" % (sql.rstrip().rstrip(";"), self.END))
        self.proc.stdin.flush()
        out = []
        while True:
            line = self.proc.stdout.readline()
            if line == "":
                return False, ["session ended"] + self.take_errors()
            line = line.rstrip("\n")
            if line.startswith(self.END):
                failed = line.split()[-1] == "true"
                if failed:
                    time.sleep(0.05)            # let the drain thread catch up
                    return False, self.take_errors()
                return True, out
            out.append(line)

    def take_errors(self):
        with self._lock:
            errors, self.errors = self.errors, []
        return errors

    def close(self):
        try:
            self.proc.stdin.write("\\q\n")
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self._drain.join(timeout=10)
        self.proc.stderr.close()
