"""harness.py -- shared plumbing for whoop_fdw's integration suites.

Standard library only.  Every suite is a unittest module
(test/suites/test_*.py); test/runner.py runs one module and records its
pass/fail counts for the totals line.  The pieces here:

  Simulator   start the simulator package (test/whoop_sim/) on a free
              loopback port, talk to its /_sim/ control plane
  Database    run SQL through psql against the cluster the runner started
              (libpq environment: PGHOST, PGPORT, PGUSER, PGPASSWORD ...)
  Cluster     a throwaway cluster (the runner's, and suites' own)
  SimulatorSuite
              the base class of a suite's test class that needs a
              simulator, a fresh database and the athletes linked
"""

import json
import os
import re
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

LIB_DIR = os.path.dirname(os.path.abspath(__file__))
TEST_DIR = os.path.dirname(LIB_DIR)
ROOT = os.path.dirname(TEST_DIR)
PYTHON = sys.executable or "python3"
# the simulator is the package test/whoop_sim: every Python this process
# starts (simulators, suites, the demo) finds it and the helpers here
os.environ["PYTHONPATH"] = os.pathsep.join(
    [TEST_DIR, LIB_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                           if p and p not in (TEST_DIR, LIB_DIR)])
SIMULATOR = [PYTHON, "-m", "whoop_sim"]    # the command that starts a simulator


class Simulator:
    """A running WHOOP API simulator (a child process) and its control plane.

    Use as a context manager, or call start()/stop().  Extra command-line
    flags are passed through: Simulator("--athletes", "3", "--days", "60").
    Defaults: --seed 42 --now 2026-06-30T12:00:00Z unless given.
    """

    def __init__(self, *args):
        args = list(args)
        if "--seed" not in args:
            args += ["--seed", "42"]
        if "--now" not in args:
            args += ["--now", "2026-06-30T12:00:00Z"]
        self.args = args
        self.proc = None
        self.port = None

    def start(self):
        self.proc = subprocess.Popen(
            SIMULATOR + ["--port", "0"] + self.args,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError("simulator did not start: %r %s" % (line, err))
        self.port = int(line)
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream:
                    stream.close()
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def api_url(self):
        return self.base + "/developer"

    @property
    def oauth_url(self):
        return self.base + "/oauth/oauth2"

    def request(self, method, path, body=None, headers=None, form=None, timeout=30):
        """request sends one HTTP request; returns (status, headers, body bytes)."""
        data = None
        hdrs = dict(headers or {})
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=hdrs)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def control(self, method, path, body=None):
        """control calls /_sim/<path> and returns the decoded JSON answer."""
        # a call that makes the simulator wait (flush_webhooks' timeout_ms)
        # gets that long and the usual 30 s on top, not a socket timeout first
        waits = body.get("timeout_ms", 0) / 1000 if isinstance(body, dict) else 0
        status, _, data = self.request(method, "/_sim/" + path.lstrip("/"), body,
                                       timeout=30 + waits)
        if status >= 300:
            raise RuntimeError("simulator control %s %s: %d %s"
                               % (method, path, status, data[:300]))
        return json.loads(data) if data else None

    def accounts(self):
        return self.control("GET", "accounts")

    def stats(self):
        return self.control("GET", "stats")

    def reset(self):
        return self.control("POST", "reset")

    def fault(self, **spec):
        return self.control("POST", "faults", spec)

    # -- small conveniences over the control plane (see whoop_sim/control.py) --

    def chaos(self, **spec):
        return self.control("POST", "chaos", spec)

    def clock(self, now=None, advance_seconds=None):
        """clock reads the simulator clock, or sets/advances it; returns ISO now."""
        if now is None and advance_seconds is None:
            return self.control("GET", "clock")["now"]
        body = {"now": now} if now is not None else {"advance_seconds": advance_seconds}
        return self.control("POST", "clock", body)["now"]

    def records(self, kind, user_id=None):
        """records: every visible record of kind as the API serves it, newest first."""
        q = "records?kind=" + kind + ("&user_id=%d" % user_id if user_id is not None else "")
        return self.control("GET", q)["records"]

    def touch(self, kind, id, set=None, unset=None):
        return self.control("POST", "touch", {"kind": kind, "id": id, "set": set or {},
                                              "unset": unset or []})

    def expire_tokens(self, user_id=None):
        return self.control("POST", "expire_tokens",
                            {} if user_id is None else {"user_id": user_id})

    def request_log(self):
        return self.control("GET", "requests")["requests"]

    def token(self, athlete=0):
        """token returns a fresh access token for athlete number `athlete` (0-based)."""
        acc = self.accounts()
        a = acc["athletes"][athlete]
        status, _, data = self.request("POST", "/oauth/oauth2/token", form={
            "grant_type": "refresh_token", "refresh_token": a["refresh_token"],
            "client_id": acc["client_id"], "client_secret": acc["client_secret"],
            "scope": "offline"})
        if status != 200:
            raise RuntimeError("simulator refused a refresh: %d %s" % (status, data[:200]))
        return json.loads(data)["access_token"]

    def api(self, path, token, **params):
        """api GETs an API path (without /developer); returns (status, headers, JSON or bytes)."""
        q = ("?" + urllib.parse.urlencode(params)) if params else ""
        status, headers, data = self.request(
            "GET", "/developer" + path + q, headers={"Authorization": "Bearer " + token})
        try:
            return status, headers, json.loads(data)
        except ValueError:
            return status, headers, data


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None



class SQLError(Exception):
    """A psql run that ended in an ERROR; .sqlstate and .message are parsed."""

    def __init__(self, output, sqlstate=None):
        super().__init__(output)
        self.output = output
        self.sqlstate = sqlstate


def psql(sql, dbname=None, user=None, timeout=600, extra_env=None, check=True,
         variables=None, with_messages=False):
    """psql runs SQL in one psql session and returns stdout (unaligned, tuples only).

    On error (check=True) raises SQLError carrying the SQLSTATE, which psql
    prints because of VERBOSITY verbose.  With with_messages, the NOTICEs
    and WARNINGs psql printed to stderr (default verbosity) follow stdout.
    """
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
           "-v", "VERBOSITY=%s" % ("default" if with_messages else "verbose"), "-F", "|"]
    if dbname or os.environ.get("WHOOP_TEST_DB"):
        cmd += ["-d", dbname or os.environ["WHOOP_TEST_DB"]]
    if user:
        cmd += ["-U", user]
    for k, v in (variables or {}).items():
        cmd += ["-v", "%s=%s" % (k, v)]
    env = dict(os.environ)
    env.update(extra_env or {})
    if not with_messages:
        env["PGOPTIONS"] = env.get("PGOPTIONS", "") + " -c client_min_messages=warning"
    proc = subprocess.run(cmd, input=sql, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if proc.returncode != 0 and check:
        sqlstate = None
        for line in proc.stderr.splitlines():
            if line.startswith("ERROR:"):
                parts = line.split()
                if len(parts) > 1 and len(parts[1].rstrip(":")) == 5:
                    sqlstate = parts[1].rstrip(":")
                break
        raise SQLError(proc.stderr.strip(), sqlstate)
    return proc.stdout + proc.stderr if with_messages else proc.stdout


def psql_full(sql, **kw):
    """psql_full runs SQL like psql() and returns stdout followed by stderr
    (where NOTICEs and WARNINGs go)."""
    return psql(sql, with_messages=True, **kw)


def nested_plans(sql, query_text, **kw):
    """nested_plans runs SQL in one session with auto_explain sending the
    plan of every statement, nested ones too, as a NOTICE; returns the plans
    whose query text matches the regular expression QUERY_TEXT (a plan that
    was JIT-compiled ends with a "JIT:" section), and the whole output."""
    out = psql_full("load 'auto_explain'; set auto_explain.log_min_duration = 0; "
                    "set auto_explain.log_nested_statements = on; set auto_explain.log_level = notice; "
                    + sql, **kw)
    plans = [p for p in out.split("NOTICE:  duration:") if re.search(r"Query Text: " + query_text, p)]
    return plans, out


def json_literal(value):
    """json_literal renders a JSON value as the body of an SQL string literal."""
    return json.dumps(value).replace("'", "''")


def rows(sql, **kw):
    """rows runs one query and returns its rows as lists of strings."""
    out = psql(sql, **kw)
    return [line.split("|") for line in out.splitlines() if line != ""]


def scalar(sql, **kw):
    out = psql(sql, **kw).strip()
    return out.splitlines()[-1] if out else None


def wait_until(predicate, timeout=30, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


PG_CONFIG = os.environ.get("PG_CONFIG") or "pg_config"


def pg_config(option):
    """pg_config asks the installation under test ($PG_CONFIG, as for PGXS) for OPTION."""
    return subprocess.run([PG_CONFIG, option], capture_output=True, text=True,
                          check=True).stdout.strip()


PG_BINDIR = os.environ.get("PG_BINDIR") or pg_config("--bindir")
PG_MAJOR = int(re.match(r"PostgreSQL (\d+)", pg_config("--version")).group(1))
# every psql the suites and pg_regress start is the one of that installation
os.environ["PATH"] = PG_BINDIR + os.pathsep + os.environ.get("PATH", "")


def staged_install_settings(destdir):
    """staged_install_settings are the server settings that load whoop_fdw
    from DESTDIR (make install DESTDIR=...), before the system installation.

    Debian's PostgreSQL up to 17 has extension_destdir, which prefixes every
    extension and module path; 18 has the core settings that search extra
    directories (and strips the $libdir/ of module_pathname to do so)."""
    if PG_MAJOR >= 18:
        return {"extension_control_path": "'%s:$system'" % (destdir + pg_config("--sharedir")),
                "dynamic_library_path": "'%s:$libdir'" % (destdir + pg_config("--pkglibdir"))}
    return {"extension_destdir": "'%s'" % destdir}


def free_port():
    """free_port asks the kernel for an unused loopback TCP port."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A throwaway PostgreSQL cluster in a temporary directory.

    initdb and postgres refuse to run as root, so as root every server
    command runs as the "postgres" OS user (runuser).  The server listens on
    127.0.0.1 and a socket directory inside the cluster directory, on a free
    port, so several clusters can run side by side.  ENV adds variables to
    the server's environment (check_asan.py preloads a sanitizer runtime).
    """

    def __init__(self, settings=None, env=None):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="whoop_cluster.")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.settings = {
            "shared_preload_libraries": "pg_cron",
            "cron.database_name": "postgres",
            "cron.use_background_workers": "on",
            "max_worker_processes": "32",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "'%s'" % self.dir,
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] '",
        }
        if os.environ.get("WHOOP_EXTENSION_DESTDIR"):
            self.settings.update(staged_install_settings(os.environ["WHOOP_EXTENSION_DESTDIR"]))
        self.settings.update(settings or {})
        self.server_env = dict(env or {})    # extra environment of the server processes
        self.as_root = os.geteuid() == 0

    def _run(self, cmd, check=True, timeout=120):
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        return subprocess.run(cmd, check=check, capture_output=True, text=True,
                              timeout=timeout, cwd="/")

    def init(self):
        if self.as_root:
            subprocess.run(["chown", "postgres:postgres", self.dir], check=True)
        self._run([os.path.join(PG_BINDIR, "initdb"), "-D", self.data, "-A", "trust",
                   "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"])
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            for k, v in self.settings.items():
                f.write("%s = %s\n" % (k, v))
        return self

    def start(self):
        env = ["env"] + ["%s=%s" % kv for kv in self.server_env.items()] if self.server_env else []
        self._run(env + [os.path.join(PG_BINDIR, "pg_ctl"), "-D", self.data, "-l", self.log,
                         "-o", "-p %d" % self.port, "-w", "-t", "60", "start"])
        return self

    def stop(self, mode="fast"):
        self._run([os.path.join(PG_BINDIR, "pg_ctl"), "-D", self.data, "-m", mode,
                   "-w", "-t", "60", "stop"], check=False)

    def destroy(self):
        self.stop("immediate")
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)

    def env(self):
        """env is the libpq environment that points psql and pg_regress here."""
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port),
                "PGUSER": "postgres", "PGDATABASE": "postgres"}


def fresh_database(name, extensions=("whoop_fdw",)):
    """fresh_database (re)creates database NAME with the given extensions.

    Every integration suite works in a database of its own, so suites never
    see each other's objects.  Later psql()/rows()/scalar() calls pick it up
    through WHOOP_TEST_DB.
    """
    psql("drop database if exists %s with (force)" % name, dbname="postgres")
    psql("create database %s" % name, dbname="postgres")
    for ext in extensions:
        psql("create extension if not exists %s cascade" % ext, dbname=name)
    os.environ["WHOOP_TEST_DB"] = name
    return name


def link_simulator(sim, server="sim", options=None, import_into="api",
                   import_options=None, athletes=None):
    """link_simulator points a whoop_fdw server at SIM and links its athletes.

    Creates the server (plus extra OPTIONS), a user mapping for the current
    role with the simulator's client credentials, imports the foreign
    tables into schema IMPORT_INTO, and links every athlete through
    whoop.add_account() (only the first ATHLETES of them if given).
    Returns the linked user_ids.
    """
    accounts = sim.accounts()
    opts = {"api_url": sim.api_url, "oauth_url": sim.oauth_url}
    opts.update(options or {})
    opt_sql = ", ".join("%s %s" % (k, quote_literal(v)) for k, v in opts.items())
    sql = ["create server %s foreign data wrapper whoop_fdw options (%s);" % (server, opt_sql),
           "create user mapping for current_user server %s options (client_id %s, client_secret %s);"
           % (server, quote_literal(accounts["client_id"]),
              quote_literal(accounts["client_secret"]))]
    if import_into:
        imp = ""
        if import_options:
            imp = " options (%s)" % ", ".join("%s %s" % (k, quote_literal(v))
                                              for k, v in import_options.items())
        sql.append("create schema if not exists %s;" % import_into)
        sql.append("import foreign schema whoop from server %s into %s%s;"
                   % (server, import_into, imp))
    psql("\n".join(sql))
    user_ids = []
    for athlete in accounts["athletes"][:athletes]:
        user_ids.append(int(scalar("select whoop.add_account(%s, %s)"
                                   % (quote_literal(server),
                                      quote_literal(athlete["refresh_token"])))))
    return user_ids


def quote_literal(value):
    return "'" + str(value).replace("'", "''") + "'"


class SimulatorSuite(unittest.TestCase):
    """SimulatorSuite is the setup the integration suites share, once per class.

    setUpClass starts a simulator with SIM_ARGS (cls.sim); with a DB, it
    (re)creates that database with EXTENSIONS, makes it the one psql(),
    rows() and scalar() use, and links the simulator's athletes through
    link_simulator(cls.sim, **LINK) (their user_ids in cls.users; LINK None
    links nobody).  A class that must do more calls super().setUpClass()
    first.  Everything is undone after the class -- also when setUpClass
    fails half-way, through class cleanups: DB is dropped, psql() gets its
    previous database back and the simulator stops.
    """

    SIM_ARGS = ()
    DB = None
    EXTENSIONS = ("whoop_fdw",)
    LINK = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sim = Simulator(*cls.SIM_ARGS).start()
        cls.addClassCleanup(cls.sim.stop)
        cls.users = []
        if cls.DB is None:
            return
        cls.addClassCleanup(cls._drop_database, os.environ.get("WHOOP_TEST_DB"))
        fresh_database(cls.DB, cls.EXTENSIONS)
        if cls.LINK is not None:
            cls.users = link_simulator(cls.sim, **cls.LINK)

    @classmethod
    def _drop_database(cls, previous):
        """_drop_database drops the class's database and restores psql()'s default."""
        psql("drop database if exists %s with (force)" % cls.DB, dbname="postgres")
        if previous is None:
            os.environ.pop("WHOOP_TEST_DB", None)
        else:
            os.environ["WHOOP_TEST_DB"] = previous
