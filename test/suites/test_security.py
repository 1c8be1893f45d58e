"""test_security.py -- privileges and hostile input.

Who is who.  postgres (superuser) owns the extension, so whoop_internal.account --
every token -- is readable by it alone; it creates the server "sim" and
grants USAGE on it.  whoop_sec_alice, a plain role, keeps the app's client
secret in her user mapping, imports the foreign tables and links two WHOOP
members.  whoop_sec_mallory, another plain role of the same app (her own
user mapping, one member of her own), has USAGE on the server and SELECT on
alice's foreign tables, and tries to reach alice's secrets and accounts.

  PrivilegeTest  secrets stay hidden (tables, views, catalogs, functions,
                 EXPLAIN, error messages, the server log); another role's
                 accounts cannot be read, used, disconnected or taken over
  UrlTest        servers only reach https, or http on loopback addresses
  HostileTest    a scripted loopback "WHOOP": redirects are never followed
                 (not to file://, not to another host), bodies that are not
                 UTF-8, tokens with line breaks, absurd rate-limit resets
  InjectionTest  SQL in member names, option values, server names, import
                 prefixes and function arguments stays data; SECURITY DEFINER
                 functions pin search_path
  TlsTest        certificates are verified: a self-signed loopback https
                 server is refused
"""

import os
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness
from harness import psql, rows, scalar, SQLError, quote_literal

ALICE = "whoop_sec_alice"
MALLORY = "whoop_sec_mallory"
EVE = "whoop_sec_eve"
DB = "security"
from harness import ROOT

# statements whose errors the server log and the clients saw
SECRETS_USED = []


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def as_role(role, sql, **kw):
    return psql(sql, user=role, **kw)


def sql_error(sql, user=None):
    """sql_error runs SQL that must fail and returns the SQLError."""
    try:
        psql(sql, user=user)
    except SQLError as e:
        return e
    raise AssertionError("expected an error from: %s" % sql)


def setUpModule():
    harness.fresh_database(DB)
    for role in (ALICE, MALLORY, EVE):
        psql("do $$ begin if not exists (select from pg_roles where rolname = '%s') then "
             "create role %s login; end if; end $$" % (role, role), dbname="postgres")
    psql("create table public.canary (x int); insert into public.canary values (1)")


def canary_alive():
    return scalar("select count(*) from public.canary") == "1"


class FakeWhoop:
    """A scripted loopback HTTP(S) server standing in for a hostile WHOOP.

    routes maps (method, path) to (status, headers, body bytes); unknown
    routes answer 404.  A request under /api/ without an Authorization
    header (whoop_fdw's check of api_url before it links an account) is
    answered from (method, path, "anonymous"), by default 401 as WHOOP
    answers it.  Every request is recorded in .requests as (method, path).
    With tls=(certfile, keyfile) it speaks https.
    """

    def __init__(self, tls=None):
        self.routes = {}
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?")[0]
                outer.requests.append((self.command, path))
                if path.startswith("/api/") and self.headers.get("Authorization") is None:
                    status, headers, body = outer.routes.get(
                        (self.command, path, "anonymous"),
                        (401, {}, b'{"error":"unauthorized"}'))
                else:
                    status, headers, body = outer.routes.get(
                        (self.command, path), (404, {}, b'{"error":"not_found"}'))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def base(self, scheme="http", host="127.0.0.1"):
        return "%s://%s:%d" % (scheme, host, self.port)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


TOKEN_ANSWER = (b'{"access_token":"fake-access","expires_in":3600,"refresh_token":"fake-refresh",'
                b'"scope":"offline read:profile","token_type":"bearer"}')


class PrivilegeTest(unittest.TestCase):
    """Another role cannot read secrets or use accounts it does not own."""

    @classmethod
    def setUpClass(cls):
        cls.sim = harness.Simulator("--athletes", "3", "--days", "10",
                                    "--rate-per-minute", "0", "--rate-per-day", "0").start()
        acc = cls.sim.accounts()
        cls.secret = acc["client_secret"]
        cls.creds = "client_id %s, client_secret %s" % (quote_literal(acc["client_id"]),
                                                        quote_literal(acc["client_secret"]))
        # the extension owner lets the roles call whoop's functions and use the server
        psql("create server sim foreign data wrapper whoop_fdw options (api_url %s, "
             "oauth_url %s, max_retries '1', timeout_ms '5000');"
             "grant usage on schema whoop to %s, %s, %s;"
             "grant usage on foreign server sim to %s, %s, %s;"
             "create schema api authorization %s;"
             % (quote_literal(cls.sim.api_url), quote_literal(cls.sim.oauth_url),
                ALICE, MALLORY, EVE, ALICE, MALLORY, EVE, ALICE))
        as_role(ALICE, "create user mapping for current_user server sim options (%s);"
                "import foreign schema whoop from server sim into api;"
                "grant usage on schema api to %s;"
                "grant select on all tables in schema api to %s;" % (cls.creds, MALLORY, MALLORY))
        as_role(MALLORY, "create user mapping for current_user server sim options (%s)"
                % cls.creds)
        athletes = acc["athletes"]
        cls.alice_users = [int(scalar("select whoop.add_account('sim', %s)"
                                      % quote_literal(a["refresh_token"]), user=ALICE))
                           for a in athletes[:2]]
        cls.mallory_user = int(scalar("select whoop.add_account('sim', %s)"
                                      % quote_literal(athletes[2]["refresh_token"]),
                                      user=MALLORY))

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def setUp(self):
        self.sim.reset()

    def stored_tokens(self):
        return [t for r in rows("select refresh_token, access_token from whoop_internal.account")
                for t in r if t]

    def assert_no_secret(self, text):
        self.assertNotIn(self.secret, text)
        for token in self.stored_tokens() + SECRETS_USED:
            self.assertNotIn(token, text)

    def test_account_table_is_owner_only(self):
        for sql in ("select * from whoop_internal.account",
                    "select refresh_token from whoop_internal.account",
                    "copy whoop_internal.account to stdout",
                    "update whoop_internal.account set owner = current_user::regrole"):
            with self.subTest(sql=sql):
                self.assertEqual(sql_error(sql, user=MALLORY).sqlstate, "42501")
                self.assertEqual(sql_error(sql, user=ALICE).sqlstate, "42501")
        acl = scalar("select coalesce(relacl::text, '') from pg_class "
                     "where oid = 'whoop_internal.account'::regclass")
        self.assertNotIn("=r", acl.replace("postgres=", ""))

    def test_accounts_view_shows_own_accounts_without_tokens(self):
        cols = {r[0] for r in rows("select attname from pg_attribute where attnum > 0 "
                                   "and attrelid = 'whoop.accounts'::regclass")}
        self.assertFalse(cols & {"refresh_token", "access_token", "token_version"})
        seen = lambda role: sorted(int(r[0]) for r in rows(
            "select user_id from whoop.accounts", user=role))
        self.assertEqual(seen(MALLORY), [self.mallory_user])
        self.assertEqual(seen(ALICE), sorted(self.alice_users))
        self.assertEqual(seen(EVE), [])

    def test_catalogs_hide_user_mapping_options(self):
        # another role's mapping: options hidden; the catalog table: denied
        for role, other in ((MALLORY, ALICE), (ALICE, MALLORY), (EVE, ALICE)):
            with self.subTest(role=role):
                self.assertEqual(scalar("select coalesce(umoptions::text, 'hidden') "
                                        "from pg_user_mappings where usename = '%s'" % other,
                                        user=role), "hidden")
                self.assertEqual(sql_error("select umoptions from pg_user_mapping",
                                           user=role).sqlstate, "42501")
        own = scalar("select umoptions::text from pg_user_mappings where usename = '%s'"
                     % MALLORY, user=MALLORY)
        self.assertIn("client_secret", own)   # one's own, as postgres_fdw shows it
        # server options are world readable: secrets cannot be put there
        err = sql_error("create server leaky foreign data wrapper whoop_fdw "
                        "options (client_secret 'oops')")
        self.assertEqual(err.sqlstate, "HV00D")
        err = sql_error("create foreign table api.leaky (id bigint) server sim "
                        "options (endpoint 'cycle', client_secret 'oops')", user=ALICE)
        self.assertEqual(err.sqlstate, "HV00D")
        catalogs = psql("select srvoptions::text from pg_foreign_server; "
                        "select ftoptions::text from pg_foreign_table; "
                        "select fdwoptions::text from pg_foreign_data_wrapper", user=MALLORY)
        self.assert_no_secret(catalogs)

    def test_functions_and_explain_leak_nothing(self):
        out = as_role(MALLORY, "select whoop.authorize_url('sim', 'https://localhost/callback');"
                      "select * from whoop.fetch_stats();"
                      "explain (verbose, analyze, costs off, timing off, summary off) "
                      "select * from api.profile;"
                      "explain (verbose, format json) select * from api.cycle "
                      "where id = 1 and start > now() - interval '1 day'")
        self.assert_no_secret(out)
        self.assertIn("WHOOP accounts: 1", out)
        # no SQL-callable function of the extension hands out a token
        for fn in rows("select p.oid::regprocedure::text from pg_proc p join pg_depend d "
                       "on d.objid = p.oid and d.classid = 'pg_proc'::regclass "
                       "join pg_extension e on e.oid = d.refobjid "
                       "where e.extname = 'whoop_fdw' and d.deptype = 'e'"):
            self.assertFalse(re.search(r"token|secret", fn[0]), fn[0])

    def test_scans_use_only_own_accounts(self):
        mine = rows("select distinct user_id from api.cycle", user=MALLORY)
        self.assertEqual(mine, [[str(self.mallory_user)]])
        self.assertEqual(scalar("select count(*) from api.cycle where user_id = %d"
                                % self.alice_users[0], user=MALLORY), "0")
        self.assertEqual(scalar("select count(*) from api.sleep where user_id in (%d, %d)"
                                % tuple(self.alice_users), user=MALLORY), "0")
        asked = {r["bearer_user_id"] for r in self.sim.request_log()}
        self.assertEqual(asked, {self.mallory_user})
        # a role with no account of its own gets an error, not someone else's rows
        as_role(EVE, "create user mapping for current_user server sim options (%s)" % self.creds)
        as_role(ALICE, "grant usage on schema api to %s; grant select on api.cycle to %s"
                % (EVE, EVE))
        err = sql_error("select count(*) from api.cycle", user=EVE)
        self.assertEqual(err.sqlstate, "HV00N")
        self.assertIn("no WHOOP account is linked", err.output)

    def test_cannot_disconnect_or_take_over_another_roles_account(self):
        victim = self.alice_users[0]
        err = sql_error("select whoop.disconnect_account('sim', %d)" % victim, user=MALLORY)
        self.assertEqual(err.sqlstate, "42704")
        # a fresh grant of alice's member (say mallory phished a code): no takeover
        fresh = [a for a in self.sim.accounts()["athletes"] if a["user_id"] == victim][0]
        SECRETS_USED.append(fresh["refresh_token"])
        err = sql_error("select whoop.add_account('sim', %s)"
                        % quote_literal(fresh["refresh_token"]), user=MALLORY)
        self.assertEqual(err.sqlstate, "42501")
        self.assertIn("already linked to server \"sim\" by another role", err.output)
        self.assertEqual(scalar("select owner::text from whoop_internal.account where user_id = %d"
                                % victim), ALICE)
        self.assertEqual(scalar("select count(*) from api.profile where user_id = %d" % victim,
                                user=ALICE), "1")
        # nor can she change the server alice's mapping points at
        err = sql_error("alter server sim options (set api_url 'https://evil.example')",
                        user=MALLORY)
        self.assertEqual(err.sqlstate, "42501")

    def test_refused_user_mapping_statements_are_not_logged(self):
        # PostgreSQL refuses these before the validator runs; the statement
        # holds the secret, its message does not
        psql("create server if not exists sim_private foreign data wrapper whoop_fdw")
        attempts = [
            (ALICE, "create user mapping for current_user server sim "
                    "options (client_id 'c', client_secret '%s')", "already exists"),
            (ALICE, "create user mapping for whoop_sec_nobody server sim "
                    "options (client_id 'c', client_secret '%s')", "does not exist"),
            (ALICE, "create user mapping for current_user server no_such_server "
                    "options (client_id 'c', client_secret '%s')", "does not exist"),
            (ALICE, "alter user mapping for current_user server sim "
                    "options (add client_secret '%s')", "provided more than once"),
            (ALICE, "alter user mapping for current_user server sim "
                    "options (set client_typo '%s')", "not found"),
            (EVE, "create user mapping for current_user server sim_private "
                  "options (client_id 'c', client_secret '%s')", "permission denied"),
        ]
        secrets = []
        for number, (role, template, message) in enumerate(attempts):
            secret = "refused-mapping-secret-%d" % number
            secrets.append(secret)
            with self.subTest(statement=template):
                err = sql_error(template % secret, user=role)
                self.assertIn(message, err.output)
                self.assertNotIn(secret, err.output)
        # the next statement of a session is logged as usual
        psql("\\set ON_ERROR_STOP off\n"
             "create user mapping for current_user server sim options "
             "(client_id 'c', client_secret 'refused-mapping-secret-session');\n"
             "select 1/0 as whoop_statement_after_a_mapping;\n", user=ALICE, check=False)
        secrets.append("refused-mapping-secret-session")
        with open(os.environ["WHOOP_SERVER_LOG"], errors="replace") as f:
            log = f.read()
        self.assertIn('user mapping for "%s" already exists for server "sim"' % ALICE, log)
        self.assertIn("permission denied for foreign server sim_private", log)
        self.assertIn("STATEMENT:  select 1/0 as whoop_statement_after_a_mapping", log)
        for secret in secrets:
            self.assertNotIn(secret, log)

    def test_zz_errors_and_log_leak_nothing(self):
        # runs last: provoke errors whose statements carry secrets
        unspent = self.sim.accounts()["athletes"][0]
        SECRETS_USED.extend([unspent["refresh_token"], unspent["code"]])
        attempts = [
            (MALLORY, "select whoop.add_account('no_such_server', %s)"),
            (MALLORY, "select whoop.add_account('sim', %s || 'x')"),
            (ALICE, "select whoop.connect_account('no_such_server', %s, 'https://localhost/callback')"),
            (ALICE, "select whoop.connect_account('sim', %s || 'x', 'https://localhost/callback')"),
        ]
        psql("create server sim_unmapped foreign data wrapper whoop_fdw options (api_url %s, "
             "oauth_url %s); grant usage on foreign server sim_unmapped to %s"
             % (quote_literal(self.sim.api_url), quote_literal(self.sim.oauth_url), EVE))
        attempts.append((EVE, "select whoop.add_account('sim_unmapped', %s)"))
        attempts.append((ALICE, "alter user mapping for current_user server sim "
                                "options (add client_typo %s)"))
        outputs = []
        for role, template in attempts:
            with self.subTest(statement=template):
                secret = unspent["code"] if "connect" in template else unspent["refresh_token"]
                err = sql_error(template % quote_literal(secret), user=role)
                outputs.append(err.output)
                self.assertNotIn(secret, err.output)
        # a refused refresh of a stored token (alice's second member)
        stored = scalar("select refresh_token from whoop_internal.account where user_id = %d"
                        % self.alice_users[1])
        acc = self.sim.accounts()
        status, _, _ = self.sim.request("POST", "/oauth/oauth2/token", form={
            "grant_type": "refresh_token", "refresh_token": stored, "scope": "offline",
            "client_id": acc["client_id"], "client_secret": acc["client_secret"]})
        self.assertEqual(status, 200)
        self.sim.expire_tokens(self.alice_users[1])
        err = sql_error("select * from api.profile where user_id = %d" % self.alice_users[1],
                        user=ALICE)
        self.assertEqual(err.sqlstate, "28000")
        outputs.append(err.output)
        SECRETS_USED.append(stored)
        for out in outputs:
            self.assert_no_secret(out)
        with open(os.environ["WHOOP_SERVER_LOG"], errors="replace") as f:
            log = f.read()
        self.assertIn("WHOOP refused the refresh token", log)
        self.assertIn("no_such_server", log)
        self.assert_no_secret(log)
        self.assertEqual(rows("select last_error from whoop.accounts where user_id = %d"
                              % self.alice_users[1], user=ALICE)[0][0].count("invalid_grant"), 1)


class UrlTest(unittest.TestCase):
    """A server reaches only https, or plain http on a loopback address."""

    REJECTED = [
        "file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/",
        "dict://127.0.0.1:11211/", "ldap://127.0.0.1/", "HTTP://EXAMPLE.COM/",
        "http://example.com/developer", "http://127.example.com/", "http://127.0.0.1.nip.io/",
        "http://localhost.example.com/", "http://[::ffff:127.0.0.1]/",
        "http://user:pw@127.0.0.1/",
        "https://user:pw@api.prod.whoop.com/developer", "http://127.0.0.1@evil.example/",
        "https://api.prod.whoop.com/developer?x=1", "https://api.prod.whoop.com/developer#f",
        "localhost:8080", "//evil.example/x", "", "https://",
    ]
    # the numeric forms are what libcurl normalizes to 127.0.0.1 and connects to
    ACCEPTED = [
        "https://api.prod.whoop.com/developer", "http://127.0.0.1:1/developer",
        "http://127.1.2.3:9/", "http://localhost:1", "http://[::1]:1/",
        "http://0x7f000001:1/", "http://2130706433:1/",
    ]

    def test_server_urls(self):
        psql("drop server if exists urls cascade; "
             "create server urls foreign data wrapper whoop_fdw")
        for option in ("api_url", "oauth_url"):
            for url in self.REJECTED:
                with self.subTest(option=option, url=url):
                    psql("drop server if exists url_bad")
                    err = sql_error("create server url_bad foreign data wrapper whoop_fdw "
                                    "options (%s %s)" % (option, quote_literal(url)))
                    self.assertEqual(err.sqlstate, "HV024", err.output)
                    err = sql_error("alter server urls options (add %s %s)"
                                    % (option, quote_literal(url)))
                    self.assertEqual(err.sqlstate, "HV024", err.output)
            for url in self.ACCEPTED:
                with self.subTest(option=option, url=url):
                    psql("alter server urls options (add %s %s); alter server urls "
                         "options (drop %s)" % (option, quote_literal(url), option))
        psql("drop server urls")


class HostileTest(unittest.TestCase):
    """What a hostile or broken peer answers does not lead anywhere."""

    @classmethod
    def setUpClass(cls):
        cls.fake = FakeWhoop()
        cls.elsewhere = FakeWhoop()
        psql("create server hostile foreign data wrapper whoop_fdw options (api_url %s, "
             "oauth_url %s, max_retries '0', timeout_ms '5000');"
             "create user mapping for current_user server hostile "
             "options (client_id 'hostile-client', client_secret 'hostile-secret');"
             "create schema hostile;"
             "import foreign schema whoop limit to (profile, cycle) from server hostile "
             "into hostile;"
             % (quote_literal(cls.fake.base() + "/api"), quote_literal(cls.fake.base() + "/oauth")))

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()
        cls.elsewhere.stop()

    def setUp(self):
        self.fake.routes.clear()
        del self.fake.requests[:]
        del self.elsewhere.requests[:]
        self.fake.routes[("POST", "/oauth/token")] = (200, {}, TOKEN_ANSWER)

    def link_error(self):
        return sql_error("select whoop.add_account('hostile', 'some-refresh-token')")

    def test_redirects_are_not_followed(self):
        targets = ["file:///etc/passwd", self.elsewhere.base() + "/api/v2/user/profile/basic",
                   "https://127.0.0.1:1/", "gopher://127.0.0.1:%d/" % self.elsewhere.port]
        for status in (301, 302, 303, 307, 308):
            for target in targets:
                with self.subTest(status=status, target=target):
                    del self.fake.requests[:]
                    self.fake.routes[("GET", "/api/v2/user/profile/basic")] = (
                        status, {"Location": target}, b"{}")
                    err = self.link_error()
                    self.assertIn("HTTP %d" % status, err.output)
                    self.assertNotIn("root:", err.output)
                    # the check of api_url (no token), the grant, the profile
                    self.assertEqual(self.fake.requests,
                                     [("GET", "/api/v2/user/profile/basic"),
                                      ("POST", "/oauth/token"),
                                      ("GET", "/api/v2/user/profile/basic")])
                    # nor is the check's redirect followed, and no grant is spent then
                    del self.fake.requests[:]
                    self.fake.routes[("GET", "/api/v2/user/profile/basic", "anonymous")] = (
                        status, {"Location": target}, b"{}")
                    err = self.link_error()
                    self.assertIn("does not answer like the WHOOP API", err.output)
                    self.assertIn("HTTP %d" % status, err.output)
                    self.assertEqual(self.fake.requests, [("GET", "/api/v2/user/profile/basic")])
                    del self.fake.routes[("GET", "/api/v2/user/profile/basic", "anonymous")]
        # the token endpoint's redirect neither
        self.fake.routes[("POST", "/oauth/token")] = (
            307, {"Location": self.elsewhere.base() + "/oauth/token"}, b"{}")
        err = self.link_error()
        self.assertIn("HTTP 307", err.output)
        # nor a scan's
        self.fake.routes[("POST", "/oauth/token")] = (200, {}, TOKEN_ANSWER)
        self.fake.routes[("GET", "/api/v2/user/profile/basic")] = (200, {}, b'{"user_id": 4343}')
        self.assertEqual(scalar("select whoop.add_account('hostile', 'rt-4343')"), "4343")
        for target in ("file:///etc/passwd", self.elsewhere.base() + "/api/v2/cycle"):
            with self.subTest(scan_redirect=target):
                self.fake.routes[("GET", "/api/v2/cycle")] = (302, {"Location": target}, b"{}")
                err = sql_error("select count(*) from hostile.cycle where user_id = 4343")
                self.assertEqual(err.sqlstate, "HV000")
                self.assertIn("WHOOP API request failed with HTTP 302", err.output)
        self.fake.routes[("DELETE", "/api/v2/user/access")] = (204, {}, b"")
        psql("select whoop.disconnect_account('hostile', 4343)")
        self.assertEqual(self.elsewhere.requests, [])

    def test_body_that_is_not_utf8_is_rejected(self):
        self.fake.routes[("GET", "/api/v2/user/profile/basic")] = (
            200, {}, b'{"user_id": 7, "first_name": "Mall\xffory", "email": "m@example.com"}')
        err = self.link_error()
        self.assertEqual(err.sqlstate, "HV00A")
        self.assertIn("invalid UTF-8 in WHOOP response from GET /v2/user/profile/basic",
                      err.output)
        self.assertEqual(scalar("select count(*) from whoop_internal.account where user_id = 7"), "0")

    def test_token_with_line_break_is_rejected(self):
        self.fake.routes[("POST", "/oauth/token")] = (
            200, {}, b'{"access_token":"at\\r\\nX-Injected: 1","expires_in":3600}')
        err = self.link_error()
        self.assertEqual(err.sqlstate, "HV00A")
        self.assertIn("invalid access_token", err.output)
        self.assertEqual(self.fake.requests, [("GET", "/api/v2/user/profile/basic"),
                                              ("POST", "/oauth/token")])

    def test_invalid_json_names_endpoint_and_offset(self):
        self.fake.routes[("GET", "/api/v2/user/profile/basic")] = (
            200, {}, b'{"user_id": 7,, "email": "m@example.com"}')
        err = self.link_error()
        self.assertEqual(err.sqlstate, "HV00A")
        self.assertIn("invalid JSON in WHOOP response from GET /v2/user/profile/basic",
                      err.output)
        self.assertRegex(err.output, r"byte offset \d+ of \d+")

    def test_web_page_at_api_url_costs_no_grant(self):
        page = b"<!DOCTYPE html><html><body>Welcome to our shop</body></html>"
        self.fake.routes[("GET", "/api/v2/user/profile/basic", "anonymous")] = (200, {}, page)
        err = self.link_error()
        self.assertEqual(err.sqlstate, "HV00N")
        self.assertIn('api_url of server "hostile" does not answer like the WHOOP API', err.output)
        self.assertIn("answered HTTP 200, where the WHOOP API answers 401", err.output)
        self.assertIn("HINT:  Check the server's api_url", err.output)
        self.assertEqual(self.fake.requests, [("GET", "/api/v2/user/profile/basic")])

    def test_web_page_at_oauth_url_names_oauth_url(self):
        page = b"<!DOCTYPE html><html><body>Welcome to our shop</body></html>"
        for status in (200, 404):
            with self.subTest(status=status):
                self.fake.routes[("POST", "/oauth/token")] = (status, {}, page)
                err = self.link_error()
                self.assertIn("HINT:  Check the server's oauth_url", err.output)
                self.assertNotIn("Welcome", err.output)

    def test_absurd_rate_limit_reset_fails_fast_and_keeps_the_account(self):
        # link member 4242 with a token that expires within a second
        self.fake.routes[("POST", "/oauth/token")] = (200, {}, TOKEN_ANSWER.replace(
            b'"expires_in":3600', b'"expires_in":1'))
        self.fake.routes[("GET", "/api/v2/user/profile/basic")] = (
            200, {}, b'{"user_id": 4242, "first_name": "Hos", "last_name": "Tile"}')
        self.assertEqual(scalar("select whoop.add_account('hostile', 'rt-4242')"), "4242")
        time.sleep(1.2)
        # now the token endpoint says: come back in 68 years
        del self.fake.requests[:]
        self.fake.routes[("POST", "/oauth/token")] = (
            429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2147483647"},
            b'{"error":"rate_limited"}')
        err = sql_error("select count(*) from hostile.profile")
        self.assertIn("WHOOP rate limit exhausted", err.output)
        self.assertEqual(self.fake.requests, [("POST", "/oauth/token")])
        # a throttled refresh is no refusal: the account is still active
        self.assertEqual(scalar("select status from whoop.accounts where user_id = 4242"),
                         "active")
        self.fake.routes[("POST", "/oauth/token")] = (200, {}, TOKEN_ANSWER)
        self.assertEqual(scalar("select count(*) from hostile.profile"), "1")
        # and on the API itself
        self.fake.routes[("GET", "/api/v2/cycle")] = (
            429, {"X-RateLimit-Reset": "999999999"}, b"{}")
        self.assertIn("WHOOP rate limit exhausted",
                      sql_error("select count(*) from hostile.cycle").output)
        self.fake.routes[("DELETE", "/api/v2/user/access")] = (204, {}, b"")
        self.assertEqual(scalar("select whoop.disconnect_account('hostile', 4242)"), "t")

    def test_secret_not_in_log(self):
        with open(os.environ["WHOOP_SERVER_LOG"], errors="replace") as f:
            self.assertNotIn("hostile-secret", f.read())


class InjectionTest(unittest.TestCase):
    """Names, options and arguments are data, never SQL."""

    WEIRD = "we'ird \"srv\"; drop table public.canary; --"
    LONG = ("x'); drop table public.canary; -- " * 2)[:60]
    PREFIX = "p'\"; drop table public.canary; --_"

    @classmethod
    def setUpClass(cls):
        cls.sim = harness.Simulator("--athletes", "1", "--days", "10",
                                    "--rate-per-minute", "0", "--rate-per-day", "0").start()
        acc = cls.sim.accounts()
        cls.creds = "client_id %s, client_secret %s" % (quote_literal(acc["client_id"]),
                                                        quote_literal(acc["client_secret"]))
        cls.user_id = acc["athletes"][0]["user_id"]
        for name in (cls.WEIRD, cls.LONG):
            psql("create server %s foreign data wrapper whoop_fdw options (api_url %s, "
                 "oauth_url %s, update_window '3 days');"
                 "create user mapping for current_user server %s options (%s);"
                 % (quote_ident(name), quote_literal(cls.sim.api_url),
                    quote_literal(cls.sim.oauth_url), quote_ident(name), cls.creds))
            token = cls.sim.accounts()["athletes"][0]["refresh_token"]
            scalar("select whoop.add_account(%s, %s)" % (quote_literal(name),
                                                          quote_literal(token)))

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def tearDown(self):
        self.assertTrue(canary_alive())

    def test_member_names_are_data(self):
        evil = {"first_name": "'); drop table public.canary; --",
                "last_name": "\"; drop table public.canary; --",
                "email": "x'||pg_sleep(30)||'@example.com"}
        self.sim.touch("profile", self.user_id, set=evil)
        token = self.sim.accounts()["athletes"][0]["refresh_token"]
        scalar("select whoop.add_account(%s, %s)" % (quote_literal(self.WEIRD),
                                                      quote_literal(token)))
        self.assertEqual(scalar(
            "select count(*) from whoop.accounts where server_name = %s and first_name = %s "
            "and last_name = %s and email = %s"
            % tuple(quote_literal(v) for v in (self.WEIRD, evil["first_name"],
                                              evil["last_name"], evil["email"]))), "1")
        psql("call whoop.sync(server => %s, endpoint => 'profile')" % quote_literal(self.WEIRD))
        self.assertEqual(scalar("select first_name from whoop.raw_profile "
                                "order by observed_at desc limit 1"), evil["first_name"])

    def test_server_names_prefixes_and_options_are_data(self):
        psql("create schema inj")
        psql("import foreign schema whoop limit to (%s, %s) from server %s into inj "
             "options (table_prefix %s, update_window '2 days')"
             % (quote_ident(self.PREFIX + "cycle"), quote_ident(self.PREFIX + "profile"),
                quote_ident(self.WEIRD), quote_literal(self.PREFIX)))
        tables = sorted(r[0] for r in rows("select relname from pg_class "
                                           "where relnamespace = 'inj'::regnamespace"))
        self.assertEqual(tables, [self.PREFIX + "cycle", self.PREFIX + "profile"])
        self.assertEqual(scalar("select count(*) from inj.%s" % quote_ident(self.PREFIX + "profile")),
                         "1")
        self.assertIn("update_window=2 days", scalar(
            "select ftoptions::text from pg_foreign_table where ftrelid = 'inj.%s'::regclass"
            % quote_ident(self.PREFIX + "cycle").replace("'", "''")))
        # the sync imports its own tables from names it is given
        for name in (self.WEIRD, self.LONG):
            with self.subTest(server=name):
                psql("call whoop.sync(server => %s, endpoint => 'cycle')" % quote_literal(name))
                self.assertEqual(scalar("select status from whoop.sync_log where server_name = %s "
                                        "and endpoint = 'cycle' order by id desc limit 1"
                                        % quote_literal(name)), "ok")
        # a quote in a URL option is either refused or kept verbatim
        url = "http://127.0.0.1:1/x'); drop table public.canary; --"
        try:
            psql("create server quoted_url foreign data wrapper whoop_fdw options (api_url %s)"
                 % quote_literal(url))
            self.assertEqual(scalar("select option_value from pg_options_to_table("
                                    "(select srvoptions from pg_foreign_server "
                                    "where srvname = 'quoted_url'))"), url)
            psql("drop server quoted_url")
        except SQLError as e:
            self.assertEqual(e.sqlstate, "HV024")
        for sql, state in (
                ("create foreign table inj.t (id bigint) server %s options "
                 "(endpoint 'cycle''; drop table public.canary; --')" % quote_ident(self.WEIRD),
                 "HV024"),
                ("create foreign table inj.t (id bigint) server %s options "
                 "(endpoint 'cycle', update_window '1 day''; drop table public.canary; --')"
                 % quote_ident(self.WEIRD), "22007"),
                ("alter server %s options (add page_size '1; drop table public.canary')"
                 % quote_ident(self.WEIRD), "HV024"),
                ("import foreign schema whoop from server %s into inj options "
                 "(update_window 'x''; drop table public.canary; --')" % quote_ident(self.WEIRD),
                 "22007"),
                ("import foreign schema \"whoop'; drop table public.canary; --\" from server %s "
                 "into inj" % quote_ident(self.WEIRD), "HV00Q")):
            with self.subTest(sql=sql):
                self.assertEqual(sql_error(sql).sqlstate, state)

    def test_function_arguments_are_data(self):
        evil = "x\"; drop table public.canary; --"
        for sql, state in (
                ("call whoop.sync(server => %s)" % quote_literal(evil), "42704"),
                ("call whoop.sync(endpoint => 'cycle''; drop table public.canary; --')", "22023"),
                ("select whoop.authorize_url(%s, 'https://localhost/cb')" % quote_literal(evil),
                 "42704"),
                ("select whoop.add_account(%s, 'x')" % quote_literal(evil), "42704"),
                ("select whoop.disconnect_account(%s, 1)" % quote_literal(evil), "42704"),
                ("select whoop.disconnect_account(%s, 1)" % quote_literal(self.WEIRD), "42704")):
            with self.subTest(sql=sql):
                self.assertEqual(sql_error(sql).sqlstate, state)
        url = scalar("select whoop.authorize_url(%s, %s, %s)" % (
            quote_literal(self.WEIRD), quote_literal("https://x/cb?a=1&b='\"<>"),
            quote_literal("ab&c=d'e")))
        self.assertIn("redirect_uri=https%3A%2F%2Fx%2Fcb%3Fa%3D1%26b%3D%27%22%3C%3E", url)
        self.assertTrue(url.endswith("&state=ab%26c%3Dd%27e"), url)

    def test_security_definer_functions_pin_search_path(self):
        functions = rows(
            "select p.oid::regprocedure::text, p.prosecdef, "
            "coalesce(array_to_string(p.proconfig, ','), '') "
            "from pg_proc p where p.pronamespace = 'whoop'::regnamespace "
            "or p.oid in (select objid from pg_depend d join pg_extension e "
            "on e.oid = d.refobjid where e.extname = 'whoop_fdw' and d.deptype = 'e' "
            "and d.classid = 'pg_proc'::regclass)")
        self.assertGreater(len(functions), 10)
        definers = [f for f in functions if f[1] == "t"]
        print("\n    %d functions, %d SECURITY DEFINER" % (len(functions), len(definers)))
        for name, _, config in definers:
            with self.subTest(function=name):
                self.assertRegex(config, r"(^|,)search_path=")
                self.assertNotRegex(config, r"search_path=[^,]*\bpublic\b")


def make_certificate(directory):
    """make_certificate writes a self-signed certificate for 127.0.0.1/localhost."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


class TlsTest(unittest.TestCase):
    """https is verified: a self-signed certificate is refused."""

    def test_code_never_disables_verification(self):
        sources = [n for n in sorted(os.listdir(os.path.join(ROOT, "fdw")))
                   if n.endswith((".c", ".h"))]
        self.assertIn("http.c", sources)
        for name in sources:
            with open(os.path.join(ROOT, "fdw", name)) as f:
                text = f.read()
            for option in ("SSL_VERIFYPEER", "SSL_VERIFYHOST", "PROXY_SSL_VERIFY", "CAINFO",
                           "CAPATH", "SSL_OPTIONS", "PINNEDPUBLICKEY", "FOLLOWLOCATION, 1"):
                self.assertFalse(option in text, "%s sets %s" % (name, option))
        with open(os.path.join(ROOT, "fdw", "http.c")) as f:
            self.assertIn("CURLOPT_FOLLOWLOCATION, 0L", f.read())

    def test_self_signed_certificate_is_refused(self):
        if shutil.which("openssl") is None:
            self.skipTest("openssl is not installed: cannot make a certificate")
        directory = tempfile.mkdtemp()
        try:
            fake = FakeWhoop(tls=make_certificate(directory))
            fake.routes[("POST", "/oauth/token")] = (200, {}, TOKEN_ANSWER)
            # a plain loopback API that answers the check of api_url, so that
            # the token endpoint is reached over TLS too
            plain = FakeWhoop()
            try:
                for host in ("127.0.0.1", "localhost"):
                    for api, refused in ((fake.base("https", host), "the WHOOP API"),
                                         (plain.base(), "the WHOOP token endpoint")):
                        with self.subTest(host=host, refused=refused):
                            psql("drop server if exists tls cascade;"
                                 "create server tls foreign data wrapper whoop_fdw options "
                                 "(api_url %s, oauth_url %s, max_retries '0', timeout_ms '5000');"
                                 "create user mapping for current_user server tls options "
                                 "(client_id 'c', client_secret 'tls-secret')"
                                 % (quote_literal(api + "/api"),
                                    quote_literal(fake.base("https", host) + "/oauth")))
                            err = sql_error("select whoop.add_account('tls', 'x')")
                            self.assertEqual(err.sqlstate, "HV00N")
                            self.assertIn("could not reach %s" % refused, err.output)
                            self.assertRegex(err.output, r"SSL peer certificate|certificate")
                            self.assertEqual(fake.requests, [])
            finally:
                fake.stop()
                plain.stop()
                psql("drop server if exists tls cascade")
        finally:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
