"""test_upgrade.py -- ALTER EXTENSION whoop_fdw UPDATE from the released 1.0.

Installs 1.0 exactly as released (built from the git commit RELEASED_1_0,
the one README.md names) into a private cluster, loads two athletes through
the simulator and runs the pipeline, then installs this tree (1.1) over it
-- as a package upgrade does: new module, new scripts -- and updates the
extension.  A second database on the same cluster gets a fresh 1.1 install
fed by a twin simulator (same seed, its own tokens).  Then:

  (a) the extension's objects are identical: a normalised
      `pg_dump --schema-only --binary-upgrade` (the one mode that prints
      extension members one by one) entry by entry, without the user's own
      servers, user mappings and foreign tables; the wrapper's handler and
      validator; the configuration tables; the member list from pg_depend;
  (b) no raw row, sync mark, account or token was lost by the update;
  (c) the pipeline runs after the update, and every raw table, mart and
      metric equals the fresh install's.

1.0 builds only on PostgreSQL 15 (it predates the 16-18 guards), so on
other versions the suite is skipped with that reason.
"""

import difflib
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import chaos_lib
import harness

ROOT = harness.ROOT
RELEASED_1_0 = "b3239757c9fb344cd33108967cdefe3d28f97a25"
PG_CONFIG = os.environ.get("PG_CONFIG", "pg_config")


def server_major():
    out = subprocess.run([PG_CONFIG, "--version"], capture_output=True, text=True).stdout
    return int(re.search(r"(\d+)", out).group(1))


def make(src, *args, destdir=None):
    """make runs PGXS make in SRC (optionally installing into DESTDIR)."""
    cmd = ["make", "-s", "-C", src, "PG_CONFIG=" + PG_CONFIG] + list(args)
    if destdir:
        cmd.append("DESTDIR=" + destdir)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("make %s in %s failed:\n%s%s" % (" ".join(args), src,
                                                          proc.stdout[-3000:], proc.stderr[-3000:]))


def normalised_schema_dump(db):
    """normalised_schema_dump: the database's schema as pg_dump prints it in
    binary-upgrade mode -- the one mode that prints an extension's member
    objects one by one (with -n it would leave them out) -- as a list of
    (header, body) entries, without the user's own objects and without
    what differs between two equal installs (OIDs, frozen transaction ids and
    other binary-upgrade plumbing, sequence positions, the random restrict key)."""
    cmd = [os.path.join(harness.PG_BINDIR, "pg_dump"), "--schema-only", "--binary-upgrade",
           "--no-owner", "-d", db.name]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=db.full_env(), check=True)
    entries, header, body = [], None, []
    skip = 0
    for line in proc.stdout.splitlines():
        if line.startswith("UPDATE pg_catalog.pg_class"):
            skip = 2            # SET relfrozenxid = ..., WHERE oid = ...: transaction ids
            continue
        if skip:
            skip -= 1
            continue
        if line.startswith("-- Name: "):
            if header:
                entries.append((header, "\n".join(body).strip()))
            header, body = line, []
            continue
        if ("binary_upgrade" in line or line.startswith("-- For binary upgrade")
                or line.startswith(("SELECT pg_catalog.setval", "\\restrict", "\\unrestrict"))
                or line.startswith("--") or line.strip() == ""):
            continue
        body.append(line)
    if header:
        entries.append((header, "\n".join(body).strip()))

    def user_object(header, body):
        kind = re.search(r"; Type: ([A-Z ]+);", header).group(1)
        if kind in ("SERVER", "USER MAPPING", "FOREIGN TABLE"):
            return True
        # comments and ACLs of those, and the database itself
        return (kind in ("COMMENT", "ACL", "DATABASE", "DATABASE PROPERTIES")
                and re.search(r"(SERVER|USER MAPPING|FOREIGN TABLE|DATABASE) ", header + body) is not None
                and "whoop_fdw" not in body)
    members = [e for e in entries if not user_object(*e)]
    assert any("whoop.recovery_momentum" in b for _, b in members), "no extension member dumped"
    return members


MEMBERS_SQL = """
select pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
from pg_catalog.pg_depend d
join pg_catalog.pg_extension x on x.oid = d.refobjid and x.extname = 'whoop_fdw'
where d.refclassid = 'pg_catalog.pg_extension'::regclass and d.deptype = 'e'
order by 1
"""

FDW_SQL = """
select w.fdwhandler::regproc, w.fdwvalidator::regproc
from pg_catalog.pg_foreign_data_wrapper w where w.fdwname = 'whoop_fdw'
"""

CONFIG_SQL = """
select c::regclass::text, coalesce(f, '')
from pg_catalog.pg_extension x,
     unnest(x.extconfig, x.extcondition) as u(c, f)
where x.extname = 'whoop_fdw' order by 1
"""


def token_table(db):
    """token_table: wherever this version keeps the tokens."""
    return db.scalar("select coalesce(to_regclass('whoop_internal.account'), "
                     "to_regclass('whoop.account'))::text")


def durable_state(db, columns=None):
    """durable_state: what an update must never lose -- every raw row and
    sync mark exactly, and every account with its tokens.  COLUMNS (the
    'columns' of an earlier state) digests only the columns that state had:
    columns an update adds are compared apart (they start NULL)."""
    state = {"columns": {}}
    for t in chaos_lib.RAW_TABLES + ["sync_state", "sync_log"]:
        cols = db.rows("select attname from pg_attribute where attrelid = 'whoop.%s'::regclass "
                       "and attnum > 0 and not attisdropped order by attnum" % t)
        cols = columns[t] if columns else [c[0] for c in cols]
        state["columns"][t] = cols
        row = "row(%s)::text" % ", ".join('t."%s"' % c for c in cols)
        state[t] = db.scalar("select count(*) || ':' || md5(coalesce(string_agg(%s, "
                             "E'\\n' order by %s), '')) from whoop.%s t" % (row, row, t))
    state["account"] = db.rows("select server_name, user_id, owner, status, refresh_token, "
                               "access_token, token_version from %s order by 1, 2"
                               % token_table(db))
    return state


@unittest.skipUnless(server_major() == 15,
                     "1.0 as released builds only on PostgreSQL 15 (no 16-18 guards yet)")
class UpgradeFrom10(unittest.TestCase):
    """One 1.0 install updated to 1.1, compared with a fresh 1.1 install."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="whoop_upgrade.")
        os.chmod(cls.tmp, 0o755)
        cls.destdir = os.path.join(cls.tmp, "install")
        os.mkdir(cls.destdir)
        src10 = os.path.join(cls.tmp, "src-1.0")
        os.mkdir(src10)
        archive = subprocess.run(["git", "-C", ROOT, "archive", RELEASED_1_0],
                                 capture_output=True)
        if archive.returncode != 0:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise unittest.SkipTest("this checkout has no git history with 1.0 (%s)"
                                    % RELEASED_1_0[:12])
        subprocess.run(["tar", "-x", "-C", src10], input=archive.stdout, check=True)
        make(src10)
        make(src10, "install", destdir=cls.destdir)

        cls.cluster = harness.Cluster(
            settings={"extension_destdir": "'%s'" % cls.destdir}).init().start()
        cls.sim = harness.Simulator("--athletes", "2", "--days", "90",
                                    "--rate-per-minute", "0", "--rate-per-day", "0").start()
        cls.twin = harness.Simulator("--athletes", "2", "--days", "90",
                                     "--rate-per-minute", "0", "--rate-per-day", "0").start()
        env = cls.cluster.env()
        cls.old = chaos_lib.DB("upgraded", env).create()
        cls.installed_version = cls.old.scalar(
            "select extversion from pg_extension where extname = 'whoop_fdw'")
        cls.old.link(cls.sim)
        cls.old_run = cls.old.pipeline()
        cls.before = durable_state(cls.old)
        # a database where views of the user's depend on the materialized
        # views 1.1 replaces: directly, and through whoop.daily_summary
        cls.users = chaos_lib.DB("refused", env).create()
        cls.users.psql("create view public.my_recovery as select user_id, day from whoop.fact_daily_recovery; "
                       "create view public.my_summary as select user_id, day from whoop.daily_summary;")

        # the package upgrade: 1.1's module and scripts replace 1.0's
        make(ROOT, "install", destdir=cls.destdir)
        cls.update_output = cls.old.psql("alter extension whoop_fdw update")
        try:
            cls.users.psql("alter extension whoop_fdw update")
            cls.refusal = None
        except harness.SQLError as e:
            cls.refusal = e
        cls.after = durable_state(cls.old, cls.before["columns"])
        cls.version = cls.old.scalar(
            "select extversion from pg_extension where extname = 'whoop_fdw'")

        cls.fresh = chaos_lib.DB("fresh", env).create()
        cls.fresh.link(cls.twin)

    @classmethod
    def tearDownClass(cls):
        for name in ("twin", "sim"):
            if getattr(cls, name, None):
                getattr(cls, name).stop()
        if getattr(cls, "cluster", None):
            cls.cluster.destroy()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_installed_10_loaded_data(self):
        self.assertEqual(self.installed_version, "1.0")
        _, steps, _ = self.old_run
        self.assertIn(steps["sync"]["status"], ("ok", "warn"))
        self.assertGreater(int(self.before["raw_cycle"].split(":")[0]), 100)

    def test_update_refuses_to_drop_user_objects(self):
        # 1.1 replaces the nine materialized views: views of the user's on
        # them stop the update, named, and are not dropped
        self.assertIsNotNone(self.refusal)
        self.assertEqual(self.refusal.sqlstate, "2BP01")
        self.assertRegex(self.refusal.output, r"view (public\.)?my_recovery")
        self.assertRegex(self.refusal.output, r"view (public\.)?my_summary")
        self.assertIn("drop them", self.refusal.output)
        self.assertEqual(self.users.scalar("select extversion from pg_extension where extname = 'whoop_fdw'"), "1.0")
        self.assertEqual(self.users.scalar("select count(*) from public.my_summary") != "", True)
        # dropped, the update goes through; the first refresh is full
        self.users.psql("drop view public.my_recovery, public.my_summary; alter extension whoop_fdw update")
        self.assertEqual(self.users.scalar("select extversion from pg_extension where extname = 'whoop_fdw'"), "1.1")
        modes = self.users.rows("select distinct mode from whoop.refresh() where view_name like 'whoop.fact%'")
        self.assertEqual(modes, [["full"]])

    def test_update_reaches_11(self):
        self.assertEqual(self.version, "1.1")
        self.assertEqual(self.fresh.scalar(
            "select extversion from pg_extension where extname = 'whoop_fdw'"), "1.1")

    def test_schema_dump_equals_fresh_install(self):
        got = normalised_schema_dump(self.old)
        want = normalised_schema_dump(self.fresh)
        self.assertGreater(len(want), 200)
        missing = [h for h, b in want if (h, b) not in got]
        extra = [h for h, b in got if (h, b) not in want]
        got_by, want_by = dict(got), dict(want)
        for header in sorted(set(missing) | set(extra)):
            with self.subTest(entry=header):
                diff = difflib.unified_diff((want_by.get(header) or "").splitlines(),
                                            (got_by.get(header) or "").splitlines(),
                                            "fresh 1.1", "1.0 updated", lineterm="")
                self.fail("\n".join(diff) or "entry order differs")
        self.assertEqual(len(got), len(want))

    def test_extension_members_equal_fresh_install(self):
        got = [r[0] for r in self.old.rows(MEMBERS_SQL)]
        want = [r[0] for r in self.fresh.rows(MEMBERS_SQL)]
        self.assertEqual(sorted(set(want) - set(got)), [], "missing after the update")
        self.assertEqual(sorted(set(got) - set(want)), [], "left over from 1.0")

    def test_wrapper_and_config_tables_equal_fresh_install(self):
        self.assertEqual(self.old.rows(FDW_SQL), self.fresh.rows(FDW_SQL))
        self.assertEqual(self.old.rows(CONFIG_SQL), self.fresh.rows(CONFIG_SQL))

    def test_no_raw_row_or_sync_mark_lost(self):
        for t in chaos_lib.RAW_TABLES + ["sync_state", "sync_log"]:
            with self.subTest(table=t):
                self.assertEqual(self.after[t], self.before[t])

    # columns the update fills, and with what: an endpoint synced under 1.0
    # had its whole history loaded (the backfill's history_from, -infinity)
    SET_BY_UPDATE = {("sync_state", "history_from"): (
        "endpoint in ('cycle', 'recovery', 'sleep', 'workout') and last_success_at is not null",
        "'-infinity'")}

    def test_columns_the_update_adds_start_null(self):
        added = 0
        for t, before in self.before["columns"].items():
            for (c,) in self.old.rows(
                    "select attname from pg_attribute where attrelid = 'whoop.%s'::regclass "
                    "and attnum > 0 and not attisdropped order by attnum" % t):
                if c in before:
                    continue
                added += 1
                with self.subTest(table=t, column=c):
                    where, value = self.SET_BY_UPDATE.get((t, c), ("false", None))
                    self.assertEqual(self.old.scalar(
                        'select count(*) from whoop.%s where "%s" is not null and not (%s)'
                        % (t, c, where)), "0")
                    if value is not None:
                        self.assertEqual(self.old.scalar(
                            'select count(*) filter (where "%s" is distinct from %s), count(*) '
                            'from whoop.%s where %s' % (c, value, t, where)).split("|")[0], "0")
                        self.assertNotEqual(self.old.scalar(
                            "select count(*) from whoop.%s where %s" % (t, where)), "0")
        self.assertGreater(added, 0)

    def test_no_account_or_token_lost(self):
        self.assertEqual(len(self.after["account"]), 2)
        self.assertEqual(self.after["account"], self.before["account"])

    def test_pipeline_after_update_equals_fresh_install(self):
        run, steps, out = self.old.pipeline()
        for step in ("sync", "refresh"):
            self.assertEqual(steps[step]["status"], "ok", out)
        _, fresh_steps, fresh_out = self.fresh.pipeline()
        self.assertEqual(fresh_steps["refresh"]["status"], "ok", fresh_out)
        got, want = self.old.digest(), self.fresh.digest()
        self.assertEqual(sorted(got), sorted(want))
        for relation in sorted(want):
            with self.subTest(relation=relation):
                self.assertEqual(got[relation], want[relation])
        self.assertEqual(self.old.raw_matches_simulator(self.sim), [])


if __name__ == "__main__":
    unittest.main()
