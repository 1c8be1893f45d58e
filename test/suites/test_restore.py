"""test_restore.py -- pg_dump -Fc of a loaded warehouse, restored into a
fresh database of another cluster, exactly as README "Backup and restore"
says: pg_restore, then whoop.refresh().

The source database syncs two athletes and runs the pipeline; it is then
dumped and left alone (a copy that syncs rotates the refresh tokens, and
WHOOP honours only the newest).  The copy must hold the same raw rows,
sync marks, accounts and tokens before it does anything; refresh() must
rebuild every materialized view to the source's contents; and the copy
must sync with the tokens that came along.
"""

import os
import shutil
import subprocess
import tempfile
import unittest

import chaos_lib
import harness


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
        cls.dump = os.path.join(cls.tmp, "warehouse.dump")
        subprocess.run([os.path.join(harness.PG_BINDIR, "pg_dump"), "-Fc", "-f", cls.dump,
                        "-d", cls.source.name], check=True, env=cls.source.full_env())

        cls.cluster = harness.Cluster().init().start()
        cls.copy = chaos_lib.DB("restored", cls.cluster.env())
        cls.copy.psql("create database restored", dbname="postgres")
        cls.restore = subprocess.run(
            [os.path.join(harness.PG_BINDIR, "pg_restore"), "--exit-on-error", "-d", "restored",
             cls.dump], capture_output=True, text=True, env=cls.copy.full_env())
        cls.restored_accounts = cls.accounts(cls.copy) if cls.restore.returncode == 0 else None
        cls.restored_raw = ({r: d for r, d in cls.copy.digest().items()
                             if r.startswith("whoop.raw_") or r == "whoop.sync_state"}
                            if cls.restore.returncode == 0 else None)

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        if getattr(cls, "cluster", None):
            cls.cluster.destroy()
        cls.source.drop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @staticmethod
    def accounts(db):
        return db.rows("select server_name, user_id, status, refresh_token, token_version "
                       "from whoop_internal.account order by 1, 2")

    def setUp(self):
        self.assertEqual(self.restore.returncode, 0, self.restore.stderr[-3000:])

    def test_source_was_loaded(self):
        self.assertEqual(self.source_steps["sync"]["status"], "ok", self.source_out)
        self.assertGreater(int(self.source_digest["whoop.raw_cycle"].split(":")[0]), 100)

    def test_raw_rows_and_sync_marks_identical(self):
        for relation, digest in sorted(self.restored_raw.items()):
            with self.subTest(relation=relation):
                self.assertEqual(digest, self.source_digest[relation])

    def test_accounts_and_tokens_came_along(self):
        self.assertEqual(len(self.restored_accounts), 2)
        self.assertEqual(self.restored_accounts, self.source_accounts)

    def test_history_came_along(self):
        for table in ("sync_log", "run_log", "refresh_log", "quality_log"):
            with self.subTest(table=table):
                self.assertEqual(
                    self.copy.scalar("select count(*) from whoop.%s" % table),
                    self.source.scalar("select count(*) from whoop.%s" % table))

    def test_refresh_rebuilds_every_view_to_the_source_contents(self):
        refreshed = self.copy.rows("select view_name, status from whoop.refresh()")
        self.assertGreater(len(refreshed), 10)
        self.assertEqual([v for v, status in refreshed if status != "ok"], [])
        got = self.copy.digest()
        for relation in sorted(self.source_digest):
            with self.subTest(relation=relation):
                self.assertEqual(got[relation], self.source_digest[relation])

    def test_restored_copy_syncs_with_the_tokens_that_came_along(self):
        self.sim.touch("cycle", self.sim.records("cycle")[0]["id"],
                       set={"score": {"strain": 7.5}})
        run, steps, out = self.copy.pipeline()
        self.assertEqual(steps["sync"]["status"], "ok", out)
        # the run ids came along too: a new run does not reuse a restored one
        self.assertGreater(run, int(self.source.scalar("select max(run_id) from whoop.run_log")))
        self.assertEqual(self.copy.scalar("select count(*) from whoop.sync_log where run_id = %d"
                                          % run), "12")
        self.assertEqual(self.copy.raw_matches_simulator(self.sim), [])
        self.assertEqual(self.copy.scalar(
            "select count(*) from whoop.accounts where status <> 'active'"), "0")


if __name__ == "__main__":
    unittest.main()
