"""test_lifecycle.py -- accounts, servers and the extension coming and going.

Each test exercises one lifecycle path end to end against the simulator
and checks that nothing is left behind that would break a later pipeline:
dropping a server forgets its accounts, tokens and sync marks and deletes
its applied webhook events (its dead letters stay); disconnecting
an account forgets its marks; DROP EXTENSION is refused while the pipeline
is scheduled in pg_cron; bad arguments to sync and run_pipeline are refused
before a run is recorded, as is a pipeline inside a transaction block; the
linking functions refuse NULL arguments; a sync that finds no account says
so.
"""

import os
import unittest

import chaos_lib
import harness
from harness import SQLError


def database(name):
    """database: a fresh database with whoop_fdw, also the one harness.psql uses."""
    os.environ["WHOOP_TEST_DB"] = name
    return chaos_lib.DB(name).create()


def sim():
    return harness.Simulator("--athletes", "2", "--days", "30",
                             "--rate-per-minute", "0", "--rate-per-day", "0")


class DropServer(unittest.TestCase):
    """DROP SERVER ... CASCADE takes its accounts and their state with it."""

    def setUp(self):
        self.sim_a, self.sim_b = sim().start(), sim().start()
        self.db = database("wh_lifecycle_server")
        harness.link_simulator(self.sim_a, server="team_a", import_into=None)
        harness.link_simulator(self.sim_b, server="team_b", import_into=None)
        self.db.pipeline()

    def tearDown(self):
        self.sim_a.stop()
        self.sim_b.stop()
        self.db.drop()

    def test_dropped_server_forgets_accounts_tokens_and_marks(self):
        self.assertEqual(self.db.scalar(
            "select count(*) from whoop.sync_state where server_name = 'team_a'"), "12")
        self.db.psql("drop server team_a cascade")
        self.assertEqual(self.db.rows("select server_name, count(*) from whoop_internal.account "
                                      "group by 1"), [["team_b", "2"]])
        self.assertEqual(self.db.scalar(
            "select count(*) from whoop.sync_state where server_name = 'team_a'"), "0")
        self.assertEqual(self.db.scalar("select count(*) from whoop.sync_state"), "12")

    def test_dropped_server_deletes_its_applied_webhook_events_only(self):
        # an applied and a queued event for a member of each server
        self.db.psql("insert into whoop.webhook_events (server_name, trace_id, user_id, event_type, record_id, "
                     "signed_at, status, applied_at, outcome) "
                     "select a.server_name, gen_random_uuid()::text, a.user_id, 'workout.deleted', gen_random_uuid(), "
                     "now(), s.status, case when s.status = 'applied' then now() end, "
                     "case when s.status = 'applied' then 'tombstoned' end "
                     "from (select distinct on (server_name) server_name, user_id from whoop_internal.account "
                     "      order by server_name, user_id) a "
                     "cross join (values ('applied'), ('queued')) s(status)")
        self.db.psql("drop server team_a cascade")
        self.assertEqual(self.db.rows("select server_name, status from whoop.webhook_events "
                                      "order by server_name, status"),
                         [["team_a", "dead"], ["team_b", "applied"], ["team_b", "queued"]])

    def test_pipeline_after_dropping_a_server_is_ok(self):
        self.db.psql("drop server team_a cascade")
        _, steps, out = self.db.pipeline()
        self.assertEqual(steps["sync"]["status"], "ok", out)
        self.assertEqual(steps["quality"]["status"], "ok", out)

    def test_raw_rows_stay(self):
        before = self.db.scalar("select count(*) from whoop.raw_cycle")
        self.db.psql("drop server team_a cascade")
        self.assertEqual(self.db.scalar("select count(*) from whoop.raw_cycle"), before)


class Disconnect(unittest.TestCase):
    """disconnect_account forgets the member's sync marks too."""

    def setUp(self):
        self.sim = sim().start()
        self.db = database("wh_lifecycle_disconnect")
        self.users = harness.link_simulator(self.sim, import_into=None)
        self.db.pipeline()

    def tearDown(self):
        self.sim.stop()
        self.db.drop()

    def test_disconnect_forgets_the_members_sync_marks(self):
        self.assertEqual(self.db.scalar("select whoop.disconnect_account('sim', %d)"
                                        % self.users[0]), "t")
        self.assertEqual(self.db.scalar("select count(*) from whoop.sync_state where user_id = %d"
                                        % self.users[0]), "0")
        self.assertEqual(self.db.scalar("select count(*) from whoop.sync_state where user_id = %d"
                                        % self.users[1]), "6")

    def test_pipeline_after_disconnect_is_ok(self):
        self.db.scalar("select whoop.disconnect_account('sim', %d)" % self.users[0])
        _, steps, out = self.db.pipeline()
        self.assertEqual(steps["quality"]["status"], "ok", out)
        detail = self.db.scalar("select detail from whoop.quality_log "
                                "where check_name = 'sync_freshness' order by id desc limit 1")
        self.assertEqual(detail.split(";")[0], "all 6 account endpoints synced within 2 days")

    def test_freshness_says_never_for_endpoints_that_never_synced(self):
        self.db.psql("insert into whoop.sync_state (server_name, user_id, endpoint) "
                     "values ('sim', 1, 'cycle')")
        row = self.db.rows("select status, failing_rows, detail from whoop.check_quality() "
                           "where check_name = 'sync_freshness'")[0]
        self.assertEqual(row[:2], ["fail", "1"])
        self.assertEqual(row[2], "1 of 13 account endpoints not synced within 2 days: "
                                 "1 never synced, 0 last synced over 7 days ago, 0 over 2 days ago")


class DropExtension(unittest.TestCase):
    """DROP EXTENSION whoop_fdw while its pipeline is scheduled in pg_cron
    (which lives in database postgres on the test cluster)."""

    DB = "wh_lifecycle_drop"

    def setUp(self):
        harness.psql("create extension if not exists pg_cron", dbname="postgres")
        self.db = database(self.DB)
        self.db.psql("create extension dblink")

    def tearDown(self):
        harness.psql("select cron.unschedule(jobid) from cron.job where database = '%s'"
                     % self.DB, dbname="postgres")
        self.db.drop()

    def jobs(self):
        return harness.scalar("select count(*) from cron.job where database = '%s'" % self.DB,
                              dbname="postgres")

    def test_refused_while_scheduled_with_a_hint(self):
        self.db.psql("select whoop.schedule('0 */3 * * *')")
        with self.assertRaises(SQLError) as cm:
            self.db.psql("drop extension whoop_fdw")
        self.assertEqual(cm.exception.sqlstate, "2BP01")
        self.assertIn("HINT:  Run SELECT whoop.unschedule(); first", cm.exception.output)
        self.assertEqual(self.jobs(), "1")
        self.assertEqual(self.db.scalar(
            "select count(*) from pg_extension where extname = 'whoop_fdw'"), "1")

    def test_allowed_after_unschedule_and_leaves_no_job(self):
        self.db.psql("select whoop.schedule('0 */3 * * *')")
        self.db.psql("select whoop.unschedule()")
        self.db.psql("drop extension whoop_fdw")
        self.assertEqual(self.jobs(), "0")

    def test_other_extensions_drop_freely(self):
        self.db.psql("select whoop.schedule('0 */3 * * *')")
        self.db.psql("create extension pg_trgm; drop extension pg_trgm")


class Arguments(unittest.TestCase):
    """NULLs and empty targets get a clear answer, and record no run."""

    @classmethod
    def setUpClass(cls):
        cls.sim = sim().start()
        cls.db = database("wh_lifecycle_args")
        harness.link_simulator(cls.sim, import_into=None)
        harness.psql("create server empty foreign data wrapper whoop_fdw")

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        cls.db.drop()

    def assertRefused(self, sql, sqlstate, message):
        runs = self.db.scalar("select count(*) from whoop.run_log")
        with self.assertRaises(SQLError) as cm:
            self.db.psql(sql)
        self.assertEqual(cm.exception.sqlstate, sqlstate, cm.exception.output)
        self.assertIn(message, cm.exception.output)
        self.assertIn("HINT:", cm.exception.output)
        self.assertEqual(self.db.scalar("select count(*) from whoop.run_log"), runs)
        self.assertEqual(self.db.scalar(
            "select count(*) from whoop.run_log where status = 'running'"), "0")

    def test_sync_full_null(self):
        self.assertRefused("call whoop.sync(full => null)", "22004",
                           "full must be true or false, not NULL")

    def test_run_pipeline_full_resync_null(self):
        self.assertRefused("call whoop.run_pipeline(null, null)", "22004",
                           "full_resync must be true or false, not NULL")

    def test_run_pipeline_inside_a_transaction_block(self):
        self.assertRefused("begin; call whoop.run_pipeline(); commit", "25001",
                           "whoop.run_pipeline() cannot run inside a transaction block")

    def test_sync_inside_a_transaction_block(self):
        self.assertRefused("begin; call whoop.sync(); commit", "25001",
                           "whoop.sync() cannot run inside a transaction block")

    def test_linking_functions_refuse_null_arguments(self):
        for sql, argument in (
                ("select whoop.connect_account(null, 'c', 'https://localhost/cb')", "server"),
                ("select whoop.connect_account('sim', null, 'https://localhost/cb')", "code"),
                ("select whoop.connect_account('sim', 'c', null)", "redirect_uri"),
                ("select whoop.add_account(null, 'x')", "server"),
                ("select whoop.add_account('sim', null)", "refresh_token"),
                ("select whoop.disconnect_account(null, 1)", "server"),
                ("select whoop.disconnect_account('sim', null)", "user_id"),
                ("select whoop.authorize_url(null, 'https://localhost/cb')", "server"),
                ("select whoop.authorize_url('sim', null)", "redirect_uri")):
            with self.subTest(sql=sql):
                self.assertRefused(sql, "22004", "%s must not be null" % argument)

    def test_sync_without_accounts_says_so(self):
        code, out = self.db.notices("call whoop.sync(server => 'empty')")
        self.assertEqual(code, 0, out)
        self.assertIn('NOTICE:  whoop.sync: no account to sync on server "empty"', out)
        self.assertIn("HINT:  Link one with whoop.connect_account()", out)

    def test_utc_offset_out_of_range_is_null(self):
        got = self.db.rows("select tz, coalesce(whoop_internal.utc_offset(tz)::text, 'NULL') "
                           "from unnest(array['+99:99', '+16:00', '+05:60', '+14:00', "
                           "'-09:30', '+0545', 'Z']) tz")
        self.assertEqual(got, [["+99:99", "NULL"], ["+16:00", "NULL"], ["+05:60", "NULL"],
                               ["+14:00", "14:00:00"], ["-09:30", "-09:30:00"],
                               ["+0545", "05:45:00"], ["Z", "00:00:00"]])


if __name__ == "__main__":
    unittest.main()
