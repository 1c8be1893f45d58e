"""test_restore.py -- pg_dump -Fc of a loaded warehouse, restored into a
fresh database of another cluster, exactly as README "Backup and restore"
says: pg_restore, then whoop.refresh().

The source database syncs two athletes and runs the pipeline; it is then
dumped.  The copy must hold the same raw rows, sync marks, accounts and
tokens before it does anything, and refresh() must rebuild every
materialized view and maintained object (whole: their rows are not dumped)
to the source's contents.  The copy must not use the
tokens that came along (the first copy that syncs would rotate them and log
every other out): its sync fails for every account with the hint to claim
them, WHOOP sees no request from it, and the source syncs on.  After
whoop.claim_accounts() the copy syncs.  A dump restored in the source's own
cluster is at home under the source's name, and not under another, where
disconnect_account forgets an account without revoking it.
"""

import os
import shutil
import subprocess
import tempfile
import unittest

import chaos_lib
import harness
from harness import SQLError

HISTORY = ("sync_log", "run_log", "refresh_log", "quality_log")
CLAIM_HINT = ("HINT: If this database is to take the accounts over, run "
              "SELECT whoop.claim_accounts(); here as the extension owner")


class DumpAndRestore(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="whoop_restore.")
        cls.sim = harness.Simulator("--athletes", "2", "--days", "90",
                                    "--rate-per-minute", "0", "--rate-per-day", "0").start()
        cls.source = chaos_lib.DB("restore_source").create()
        cls.source.link(cls.sim, import_into="whoop_api")
        _, cls.source_steps, cls.source_out = cls.source.pipeline()
        cls.source_digest = cls.source.digest()
        cls.source_accounts = cls.accounts(cls.source)
        cls.source_history = cls.history(cls.source)
        cls.dump = os.path.join(cls.tmp, "warehouse.dump")
        subprocess.run([os.path.join(harness.PG_BINDIR, "pg_dump"), "-Fc", "-f", cls.dump,
                        "-d", cls.source.name], check=True, env=cls.source.full_env())

        cls.cluster = harness.Cluster().init().start()
        cls.copy = chaos_lib.DB("restored", cls.cluster.env())
        cls.copy.psql("create database restored", dbname="postgres")
        cls.restore = cls.pg_restore(cls.copy)
        ok = cls.restore.returncode == 0
        cls.restored_accounts = cls.accounts(cls.copy) if ok else None
        cls.restored_raw = ({r: d for r, d in cls.copy.digest().items()
                             if r.startswith("whoop.raw_") or r == "whoop.sync_state"}
                            if ok else None)
        cls.restored_history = cls.history(cls.copy) if ok else None
        # the maintained tables (facts, metrics, intermediates) are not dumped: the
        # copy's are empty and marked for a full rebuild
        cls.restored_built = (cls.copy.rows("select name, built, row_count, "
                                            "(select count(*) from whoop.fact_daily_strain) "
                                            "from whoop_internal.maintained order by name")
                              if ok else None)

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        if getattr(cls, "cluster", None):
            cls.cluster.destroy()
        cls.source.drop()
        chaos_lib.DB("restore_sibling").drop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def pg_restore(cls, db):
        return subprocess.run(
            [os.path.join(harness.PG_BINDIR, "pg_restore"), "--exit-on-error", "-d", db.name,
             cls.dump], capture_output=True, text=True, env=db.full_env())

    @staticmethod
    def accounts(db):
        return db.rows("select server_name, user_id, status, refresh_token, token_version, "
                       "home_database from whoop_internal.account order by 1, 2")

    @staticmethod
    def history(db):
        return {t: db.scalar("select count(*) from whoop.%s" % t) for t in HISTORY}

    def setUp(self):
        self.assertEqual(self.restore.returncode, 0, self.restore.stderr[-3000:])

    def test_source_was_loaded(self):
        self.assertEqual(self.source_steps["sync"]["status"], "ok", self.source_out)
        self.assertGreater(int(self.source_digest["whoop.raw_cycle"].split(":")[0]), 100)

    def test_raw_rows_and_sync_marks_identical(self):
        for relation, digest in sorted(self.restored_raw.items()):
            with self.subTest(relation=relation):
                self.assertEqual(digest, self.source_digest[relation])

    def test_accounts_and_tokens_came_along_with_their_home(self):
        self.assertEqual(len(self.restored_accounts), 2)
        self.assertEqual(self.restored_accounts, self.source_accounts)
        self.assertEqual({a[-1] for a in self.restored_accounts}, {"restore_source"})

    def test_history_came_along(self):
        self.assertEqual(self.restored_history, self.source_history)

    def test_refresh_rebuilds_every_view_to_the_source_contents(self):
        self.assertEqual(len(self.restored_built), 12)     # the nine and the three intermediates
        self.assertEqual({(built, n, facts) for _, built, n, facts in self.restored_built}, {("f", "0", "0")})
        refreshed = self.copy.rows("select view_name, status from whoop.refresh()")
        self.assertGreater(len(refreshed), 10)
        self.assertEqual([v for v, status in refreshed if status != "ok"], [])
        got = self.copy.digest()
        for relation in sorted(self.source_digest):
            with self.subTest(relation=relation):
                self.assertEqual(got[relation], self.source_digest[relation])

    def test_copy_refuses_the_tokens_and_the_source_keeps_working(self):
        # runs before test_restored_copy_syncs_after_claim (name order)
        self.sim.reset()
        with self.assertRaises(SQLError) as cm:
            self.copy.psql("select count(*) from whoop_api.profile")
        self.assertEqual(cm.exception.sqlstate, "55000")
        self.assertIn('on server "sim" belongs to another database', cm.exception.output)
        self.assertIn('stored by database "restore_source"', cm.exception.output)
        self.assertIn("HINT:  If this database is to take the accounts over, run "
                      "SELECT whoop.claim_accounts();", cm.exception.output)
        run, steps, out = self.copy.pipeline()
        self.assertEqual(steps["sync"]["status"], "failed", out)
        errors = self.copy.rows("select error from whoop.sync_log where run_id = %d" % run)
        # 2 accounts x 4 endpoints: profile and body measurements are polled at most
        # daily (profile_poll_interval) and the source synced them moments ago
        self.assertEqual(len(errors), 8)
        for (error,) in errors:
            self.assertIn("belongs to another database", error)
            self.assertIn(CLAIM_HINT, error)
        self.assertEqual(self.sim.request_log(), [], "the copy must not reach WHOOP")
        self.assertEqual(self.copy.scalar(
            "select count(*) from whoop.accounts where status <> 'active'"), "0")
        # the source never noticed: it syncs with its tokens as before
        _, steps, out = self.source.pipeline()
        self.assertEqual(steps["sync"]["status"], "ok", out)
        self.assertEqual(self.source.scalar(
            "select count(*) from whoop.accounts where status <> 'active'"), "0")

    def test_restored_copy_syncs_after_claim(self):
        code, out = self.copy.notices("select whoop.claim_accounts()")
        self.assertEqual(code, 0, out)
        self.assertEqual(out.splitlines()[0], "2")
        self.assertIn('NOTICE:  claimed 2 WHOOP accounts for database "restored"', out)
        self.assertIn("must stop syncing them", out)
        self.assertEqual({a[-1] for a in self.accounts(self.copy)}, {"restored"})
        self.sim.touch("cycle", self.sim.records("cycle")[0]["id"],
                       set={"score": {"strain": 7.5}})
        run, steps, out = self.copy.pipeline()
        self.assertEqual(steps["sync"]["status"], "ok", out)
        # the run ids came along too: a new run does not reuse a restored one
        self.assertGreater(run, int(self.source.scalar("select max(run_id) from whoop.run_log")))
        # 2 accounts x 4 endpoints (profile and body measurements are polled at most daily)
        self.assertEqual(self.copy.scalar("select count(*) from whoop.sync_log where run_id = %d"
                                          % run), "8")
        self.assertEqual(self.copy.raw_matches_simulator(self.sim), [])
        self.assertEqual(self.copy.scalar(
            "select count(*) from whoop.accounts where status <> 'active'"), "0")
        # claimed once, nothing is left to claim
        self.assertEqual(self.copy.scalar("select whoop.claim_accounts()"), "0")

    def test_zz_in_its_own_cluster_home_is_the_database_name(self):
        # another database of the source's cluster is a copy ...
        sibling = chaos_lib.DB("restore_sibling")
        sibling.drop()
        sibling.psql("create database restore_sibling", dbname="postgres")
        restore = self.pg_restore(sibling)
        self.assertEqual(restore.returncode, 0, restore.stderr[-3000:])
        with self.assertRaises(SQLError) as cm:
            sibling.psql("select count(*) from whoop_api.profile")
        self.assertEqual(cm.exception.sqlstate, "55000")
        # disconnecting there forgets the account without revoking it at WHOOP,
        # which would log the original out
        self.sim.reset()
        user_id = int(self.source_accounts[0][1])
        code, out = sibling.notices("select whoop.disconnect_account('sim', %d)" % user_id)
        self.assertEqual(code, 0, out)
        self.assertEqual(out.splitlines()[0], "f")
        self.assertIn("WARNING:  WHOOP access of account %d was not revoked" % user_id, out)
        self.assertEqual(self.sim.request_log(), [])
        self.assertEqual(sibling.scalar("select whoop.claim_accounts()"), "1")
        sibling.drop()
        # ... the source restored in place, under its own name, is at home
        self.source.drop()
        self.source.psql("create database restore_source", dbname="postgres")
        restore = self.pg_restore(self.source)
        self.assertEqual(restore.returncode, 0, restore.stderr[-3000:])
        self.assertEqual(self.source.scalar("select whoop.claim_accounts()"), "0")


if __name__ == "__main__":
    unittest.main()
