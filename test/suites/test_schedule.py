"""test_schedule.py -- whoop.schedule() / whoop.unschedule() with and without pg_cron.

The test cluster preloads pg_cron with cron.database_name = postgres, so the
suite's own database is "another database": schedule() needs dblink there,
and says how to do without it.  A job scheduled every minute is waited for
(pg_cron 1.4 has no seconds schedules: up to about two minutes) to prove
that it really runs the pipeline.  Two small extra clusters cover pg_cron
absent and pg_cron living in the extension's own database.
"""

import unittest

import harness
from harness import psql, scalar, rows
from test_warehouse import install_extension, query

DB = "wh_schedule"
JOB = "whoop_pipeline_" + DB


def setUpModule():
    install_extension(DB)
    psql("create extension if not exists pg_cron", dbname="postgres")


def tearDownModule():
    psql("select cron.unschedule(jobid) from cron.job where database = '%s'" % DB, dbname="postgres")
    psql("drop database if exists %s with (force)" % DB, dbname="postgres")


def jobs():
    """jobs: this database's pg_cron jobs (pg_cron's tables live in database postgres)."""
    return [
        dict(zip(("jobid", "jobname", "schedule", "command", "database", "username", "active"), r))
        for r in rows("select jobid, jobname, schedule, command, database, username, active from cron.job "
                      "where database = '%s' order by jobid" % DB, dbname="postgres")]


class OtherDatabase(unittest.TestCase):
    """pg_cron lives in database postgres; the extension in wh_schedule."""

    def setUp(self):
        psql("drop extension if exists dblink")

    def test_not_scheduled_at_install(self):
        self.assertEqual(jobs(), [])

    def test_without_dblink_a_clear_error_with_the_command(self):
        with self.assertRaises(harness.SQLError) as cm:
            psql("select whoop.schedule('15 * * * *')")
        self.assertEqual(cm.exception.sqlstate, "55000")
        self.assertIn('pg_cron runs in database "postgres", not in "%s"' % DB, cm.exception.output)
        self.assertIn("HINT:  Run in database postgres: select cron.schedule_in_database('%s', '15 * * * *', "
                      "'CALL whoop.run_pipeline()', '%s');" % (JOB, DB), cm.exception.output)
        with self.assertRaises(harness.SQLError) as cm:
            psql("select whoop.unschedule()")
        self.assertEqual(cm.exception.sqlstate, "55000")

    def test_with_dblink_job_row_idempotent_and_unschedule(self):
        psql("create extension dblink")
        try:
            first = scalar("select whoop.schedule()")
            again = scalar("select whoop.schedule()")
            self.assertEqual(first, again)
            self.assertEqual(jobs(), [{"jobid": first, "jobname": JOB, "schedule": "0 */3 * * *",
                                       "command": "CALL whoop.run_pipeline()", "database": DB,
                                       "username": "postgres", "active": "t"}])
            self.assertEqual(scalar("select whoop.schedule('*/10 * * * *')"), first)
            self.assertEqual([j["schedule"] for j in jobs()], ["*/10 * * * *"])
            self.assertEqual(scalar("select whoop.unschedule()"), "t")
            self.assertEqual(jobs(), [])
            self.assertEqual(scalar("select whoop.unschedule()"), "f")
        finally:
            psql("select whoop.unschedule()")

    def test_bad_schedule(self):
        psql("create extension dblink")
        with self.assertRaises(harness.SQLError) as cm:
            psql("select whoop.schedule('')")
        self.assertEqual(cm.exception.sqlstate, "22023")
        with self.assertRaises(harness.SQLError):
            psql("select whoop.schedule('not a schedule')")
        self.assertEqual(jobs(), [])

    def test_the_job_really_runs_the_pipeline(self):
        psql("create extension dblink")
        before = int(scalar("select count(*) from whoop.run_log where step = 'pipeline'"))
        psql("select whoop.schedule('* * * * *')")
        try:
            done = harness.wait_until(lambda: int(scalar(
                "select count(*) from whoop.run_log where step = 'pipeline' and status <> 'running'")) > before,
                timeout=150, interval=2)
            self.assertTrue(done, "no pipeline run within 150 s")
        finally:
            psql("select whoop.unschedule()")
        run = query("select * from whoop.run_log where step = 'pipeline' order by run_id desc limit 1")[0]
        self.assertIn(run["status"], ("ok", "warn"))
        steps = dict(rows("select step, status from whoop.run_log where run_id = %d" % run["run_id"]))
        self.assertEqual(steps["refresh"], "ok")
        details = rows("select d.status, d.command from cron.job_run_details d where d.database = '%s' "
                       "and d.status <> 'running'" % DB, dbname="postgres")
        self.assertIn(["succeeded", "CALL whoop.run_pipeline()"], details)


class OtherClusters(unittest.TestCase):
    """pg_cron absent, and pg_cron in the extension's own database."""

    def cluster(self, settings):
        c = harness.Cluster(settings).init().start()
        self.addCleanup(c.destroy)
        env = c.env()

        def run(sql, db="postgres"):
            return harness.psql(sql, dbname=db, extra_env=env)

        def setup(db):
            run("create database %s" % db)
            run("create extension whoop_fdw", db)
        return run, setup, env

    def test_pg_cron_absent(self):
        run, setup, _ = self.cluster({"shared_preload_libraries": "''"})
        setup("whoop_nocron")
        for call in ("select whoop.schedule()", "select whoop.unschedule()"):
            with self.assertRaises(harness.SQLError) as cm:
                run(call, "whoop_nocron")
            self.assertEqual(cm.exception.sqlstate, "55000")
            self.assertIn("pg_cron is not available in this cluster", cm.exception.output)
            self.assertIn("HINT:  Install pg_cron", cm.exception.output)

    def test_pg_cron_in_the_same_database(self):
        run, setup, env = self.cluster({"cron.database_name": "'whoop_local'"})
        setup("whoop_local")
        with self.assertRaises(harness.SQLError) as cm:
            run("select whoop.schedule()", "whoop_local")
        self.assertEqual(cm.exception.sqlstate, "55000")
        self.assertIn("HINT:  Run CREATE EXTENSION pg_cron;", cm.exception.output)
        run("create extension pg_cron", "whoop_local")
        jobid = run("select whoop.schedule('30 4 * * *')", "whoop_local").strip()
        self.assertEqual(run("select whoop.schedule('30 4 * * *')", "whoop_local").strip(), jobid)
        got = harness.rows("select jobid, jobname, schedule, command, database from cron.job",
                           dbname="whoop_local", extra_env=env)
        self.assertEqual(got, [[jobid, "whoop_pipeline_whoop_local", "30 4 * * *", "CALL whoop.run_pipeline()",
                                "whoop_local"]])
        self.assertEqual(run("select whoop.unschedule()", "whoop_local").strip(), "t")
        self.assertEqual(run("select count(*) from cron.job", "whoop_local").strip(), "0")


if __name__ == "__main__":
    unittest.main()
