"""test_refresh.py -- whoop.refresh() maintains the facts and metrics per member.

The facts and metrics are views over tables in whoop_internal that
whoop.refresh() keeps up to date: only the members queued by the change
capture triggers are recomputed (incremental), or everything (full).  On the
hand-built warehouse fixture (three members), after a mixed series of
changes, every one of the twelve maintained objects (the nine facts and
metrics and the three intermediates they read) must equal a full rebuild
row for row (EXCEPT ALL both ways: floats bit for bit); only the changed
members' rows may be rewritten; a failed refresh leaves the queue and the
rows as they were; full => true, the never-built state and a TRUNCATE take
the full path; REFRESH MATERIALIZED VIEW on a former materialized view
fails with 42809.
"""

import json
import os
import re
import subprocess
import unittest

import harness
import warehouse_fixture as fx
from harness import psql, rows, scalar

DB = "wh_refresh"
# the intermediates' views are in whoop_internal: only definitions read them
INTERMEDIATES = ["cycle_day", "cycle_workouts", "daily_scores"]
MAINTAINED = ["cycle_day", "cycle_workouts", "fact_daily_recovery", "fact_daily_strain", "daily_scores",
              "recovery_momentum", "strain_recovery_efficiency", "training_readiness_gap",
              "recovery_volatility", "autonomic_balance", "seasonal_adaptation", "training_load"]
A, B, C = fx.USER_A, fx.USER_B, fx.USER_C
# the members in the change capture queue (a member changed twice is in it twice)
QUEUED = ("select string_agg(u::text, ',' order by u) "
          "from (select distinct user_id u from whoop_internal.refresh_queue) q")


def query(sql):
    """query runs a SELECT and returns its rows as dicts (through json)."""
    return json.loads(psql("select coalesce(json_agg(t), '[]') from (%s) t" % sql))


def refresh(full=False):
    """refresh runs whoop.refresh() and returns {view_name: log row}."""
    res = query("select * from whoop.refresh(full => %s)" % ("true" if full else "false"))
    return {r["view_name"]: r for r in res}


def view(name):
    """view is the qualified name of the view over a maintained object's rows."""
    return ("whoop_internal." if name in INTERMEDIATES else "whoop.") + name


def differences(name):
    """differences counts the rows in which the maintained object NAME and a
    full rebuild (its definition, evaluated now) differ, both ways."""
    return int(scalar("select count(*) from ((select * from %s except all "
                      "select * from whoop_internal.%s_def) union all "
                      "(select * from whoop_internal.%s_def except all select * from %s)) d"
                      % (view(name), name, name, view(name))))


def row_versions(name):
    """row_versions maps each row key of whoop_internal.NAME_rows to its xmin."""
    return {tuple(r[:2]): r[2] for r in harness.rows(
        "select user_id, %s, xmin::text from whoop_internal.%s_rows"
        % ({"seasonal_adaptation": "year || season", "cycle_day": "cycle_id",
            "cycle_workouts": "cycle_id"}.get(name, "day"), name))}


# test_7's team: the fixture's members copied 300 times with new member
# and record ids (uuids derived from the old ones, so a recovery still names
# its sleep), into the raw tables and every maintained rows table.
TEAM_COPIES = """
insert into whoop.raw_cycle
select id + k * 1000000000, user_id + k * 10000, start, "end", timezone_offset, score_state,
       created_at, updated_at, record, _extracted_at
from whoop.raw_cycle, generate_series(1::bigint, 300) k;
insert into whoop.raw_sleep
select md5(id::text || k)::uuid, cycle_id + k * 1000000000, user_id + k * 10000, start, "end",
       timezone_offset, nap, score_state, created_at, updated_at, record, _extracted_at, deleted_at
from whoop.raw_sleep, generate_series(1::bigint, 300) k;
insert into whoop.raw_recovery
select cycle_id + k * 1000000000, md5(sleep_id::text || k)::uuid, user_id + k * 10000, score_state,
       created_at, updated_at, record, _extracted_at, deleted_at
from whoop.raw_recovery, generate_series(1::bigint, 300) k;
insert into whoop.raw_workout
select md5(id::text || k)::uuid, user_id + k * 10000, start, "end", timezone_offset, sport_name,
       score_state, created_at, updated_at, record, _extracted_at, deleted_at
from whoop.raw_workout, generate_series(1::bigint, 300) k;
do $$
declare
    v_rows regclass;
    v_columns text;
begin
    for v_rows in select format('whoop_internal.%I', c.relname)::regclass
                  from pg_class c
                  where c.relnamespace = 'whoop_internal'::regnamespace and c.relkind = 'r'
                    and c.relname like '%\\_rows' loop
        -- the ids as the raw copies above have them
        select string_agg(case when a.attname = 'user_id' then 'user_id + k * 10000'
                               when a.attname = 'cycle_id' then 'cycle_id + k * 1000000000'
                               when a.attname in ('sleep_id', 'main_sleep_id')
                                   then format('md5(%I::text || k)::uuid', a.attname)
                               else quote_ident(a.attname) end, ', ' order by a.attnum)
        into v_columns
        from pg_attribute a
        where a.attrelid = v_rows and a.attnum > 0 and not a.attisdropped;
        execute format('insert into %s select %s from %s, generate_series(1::bigint, 300) k',
                       v_rows, v_columns, v_rows);
    end loop;
end $$;
"""

# every maintained object emptied and unbuilt: the next refresh is a first build
UNBUILD = ("do $$ declare m record; begin for m in select name from whoop_internal.maintained loop "
           "execute format('truncate whoop_internal.%I', m.name || '_rows'); end loop; end $$; "
           "update whoop_internal.maintained set built = false, row_count = 0")


def setUpModule():
    psql("drop database if exists %s with (force)" % DB, dbname="postgres")
    psql("create database %s" % DB, dbname="postgres")
    psql("create extension whoop_fdw", dbname=DB)
    os.environ["WHOOP_TEST_DB"] = DB
    psql(fx.load_sql(fx.build()))


def tearDownModule():
    psql("drop database if exists %s with (force)" % DB, dbname="postgres")


# A new day for a member: a copy of their last cycle one day later, with its
# main sleep and recovery (new ids).
NEW_DAY = """
with c as (
    insert into whoop.raw_cycle (id, user_id, start, "end", timezone_offset, score_state, created_at, updated_at, record)
    select id + 100000000, user_id, start + interval '1 day', "end" + interval '1 day', timezone_offset,
           score_state, created_at + interval '1 day', updated_at + interval '1 day', record
    from whoop.raw_cycle where user_id = %(u)d and "end" is not null order by start desc limit 1
    returning id
)
select 1;
insert into whoop.raw_sleep (id, cycle_id, user_id, start, "end", timezone_offset, nap, score_state, created_at, updated_at, record)
select md5(s.id::text || 'next')::uuid, s.cycle_id + 100000000, s.user_id, s.start + interval '1 day',
       s."end" + interval '1 day', s.timezone_offset, s.nap, s.score_state, s.created_at + interval '1 day',
       s.updated_at + interval '1 day', s.record
from whoop.raw_sleep s
where s.cycle_id = (select max(id) - 100000000 from whoop.raw_cycle where user_id = %(u)d);
insert into whoop.raw_recovery (cycle_id, sleep_id, user_id, score_state, created_at, updated_at, record)
select r.cycle_id + 100000000, md5(r.sleep_id::text || 'next')::uuid, r.user_id, r.score_state,
       r.created_at + interval '1 day', r.updated_at + interval '1 day', r.record
from whoop.raw_recovery r
where r.cycle_id = (select max(id) - 100000000 from whoop.raw_cycle where user_id = %(u)d);
"""

# A re-scored recovery and sleep in the middle of a member's history.
RESCORE = """
update whoop.raw_recovery
   set record = jsonb_set(record, '{score,recovery_score}', to_jsonb(least((record #>> '{score,recovery_score}')::float8 + 7.25, 99.5))),
       updated_at = updated_at + interval '1 hour'
 where cycle_id = (select cycle_id from whoop.raw_recovery where user_id = %(u)d and score_state = 'SCORED'
                   order by cycle_id offset 20 limit 1);
update whoop.raw_sleep
   set record = jsonb_set(record, '{score,respiratory_rate}', to_jsonb(17.125)),
       updated_at = updated_at + interval '1 hour'
 where id = (select id from whoop.raw_sleep where user_id = %(u)d and score_state = 'SCORED' and not nap
             order by start offset 30 limit 1);
"""

# A new workout (a copy of one, an hour later) and a tombstoned one.
WORKOUTS = """
insert into whoop.raw_workout (id, user_id, start, "end", timezone_offset, sport_name, score_state, created_at, updated_at, record)
select md5(w.id::text || 'again')::uuid, w.user_id, w.start + interval '1 hour', w."end" + interval '1 hour',
       w.timezone_offset, w.sport_name, w.score_state, w.created_at, w.updated_at, w.record
from whoop.raw_workout w where w.user_id = %(u)d and w.score_state = 'SCORED' order by w.start offset 5 limit 1;
update whoop.raw_workout set deleted_at = now()
 where id = (select id from whoop.raw_workout where user_id = %(u)d and score_state = 'SCORED' order by start offset 10 limit 1);
"""

PROFILE = """
insert into whoop.raw_profile (user_id, observed_at, email, first_name, last_name, record)
select user_id, observed_at + interval '40 days', 'new@example.org', first_name, 'Renamed', record
from whoop.raw_profile where user_id = %(u)d order by observed_at desc limit 1;
"""

REMOVE = """
delete from whoop.raw_workout where user_id = %(u)d;
delete from whoop.raw_recovery where user_id = %(u)d;
delete from whoop.raw_sleep where user_id = %(u)d;
delete from whoop.raw_cycle where user_id = %(u)d;
"""


class RefreshTest(unittest.TestCase):
    """The incremental path against full rebuilds, in order."""

    def assertEqualToFull(self):
        for name in MAINTAINED:
            self.assertEqual(differences(name), 0, name)

    def test_01_first_refresh_is_full_and_keeps_the_indexes(self):
        self.assertEqual(scalar("select count(*) from whoop_internal.maintained where built"), "0")
        # the first build loads each rows table without its indexes and
        # builds them afterwards: the same indexes and constraints come back
        indexes = ("select c.relname, i.relname, pg_get_indexdef(x.indexrelid), "
                   "coalesce(pg_get_constraintdef(con.oid), '') "
                   "from whoop_internal.maintained m "
                   "join pg_class c on c.oid = format('whoop_internal.%I', m.name || '_rows')::regclass "
                   "join pg_index x on x.indrelid = c.oid join pg_class i on i.oid = x.indexrelid "
                   "left join pg_constraint con on con.conindid = x.indexrelid "
                   "order by 1, 2")
        before = rows(indexes)
        self.assertEqual(len([r for r in before if r[3].startswith("PRIMARY KEY")]), len(MAINTAINED))
        res = refresh()
        self.assertEqual(rows(indexes), before)
        self.assertEqual({res[view(n)]["mode"] for n in MAINTAINED}, {"full"})
        self.assertEqual({r["status"] for r in res.values()}, {"ok"})
        self.assertEqual(res["whoop.dim_user"]["mode"], "concurrently")
        self.assertGreater(res["whoop.fact_daily_recovery"]["row_count"], 200)
        self.assertEqual(scalar("select count(*) from whoop_internal.refresh_queue"), "0")
        self.assertEqualToFull()

    def test_02_empty_queue_rewrites_nothing(self):
        before = {n: row_versions(n) for n in MAINTAINED}
        res = refresh()
        self.assertEqual({res[view(n)]["mode"] for n in MAINTAINED}, {"incremental"})
        self.assertEqual({res[view(n)]["members"] for n in MAINTAINED}, {0})
        for n in MAINTAINED:
            self.assertEqual(row_versions(n), before[n], n)
            self.assertEqual(res[view(n)]["row_count"],
                             int(scalar("select count(*) from %s" % view(n))), n)

    def test_03_mixed_changes_equal_full_rebuild(self):
        before = {n: row_versions(n) for n in MAINTAINED}
        psql(NEW_DAY % {"u": A} + RESCORE % {"u": A} + WORKOUTS % {"u": B} + PROFILE % {"u": B})
        self.assertEqual(scalar(QUEUED), "%d,%d" % (A, B))
        res = refresh()
        for n in MAINTAINED:
            r = res[view(n)]
            self.assertEqual((r["status"], r["mode"], r["members"]), ("ok", "incremental", 2), n)
            self.assertEqual(r["row_count"], int(scalar("select count(*) from %s" % view(n))), n)
            # member C's rows were not rewritten; A's and B's were
            after = row_versions(n)
            self.assertEqual({k: v for k, v in after.items() if k[0] == str(C)},
                             {k: v for k, v in before[n].items() if k[0] == str(C)}, n)
            self.assertTrue(all(v not in before[n].values() for k, v in after.items() if k[0] == str(A)), n)
        self.assertEqualToFull()
        # the new day, the new dim_user version and the workouts arrived
        self.assertEqual(scalar("select count(*) from whoop.dim_user where user_id = %d and last_name = 'Renamed'" % B), "1")
        self.assertEqual(scalar("select count(distinct user_sk) from whoop.fact_daily_strain where user_id = %d" % B), "2")
        # a settings change and a member removed
        psql("update whoop.user_settings set hemisphere = 'north' where user_id = %d" % B)
        psql(REMOVE % {"u": C})
        res = refresh()
        self.assertEqual({res[view(n)]["members"] for n in MAINTAINED}, {2})
        self.assertEqual(scalar("select count(*) from whoop.fact_daily_recovery where user_id = %d" % C), "0")
        self.assertEqualToFull()

    def test_04_failed_refresh_leaves_queue_and_rows(self):
        psql(RESCORE % {"u": A})
        psql("update whoop.raw_recovery set record = jsonb_set(record, '{score,recovery_score}', '\"x\"') "
             "where cycle_id = (select cycle_id from whoop.fact_daily_recovery where user_id = %d "
             "and recovery_score is not null order by day desc limit 1)" % A)
        queue = scalar(QUEUED)
        before = {n: row_versions(n) for n in MAINTAINED}
        res = refresh()
        self.assertEqual(res["whoop.fact_daily_recovery"]["status"], "failed")
        self.assertIn("22P02", res["whoop.fact_daily_recovery"]["error"])
        self.assertEqual(res["whoop.recovery_momentum"]["status"], "skipped")
        self.assertEqual(res["whoop.fact_daily_strain"]["status"], "ok")
        self.assertEqual(res["whoop.training_load"]["status"], "ok")
        self.assertEqual(scalar(QUEUED), queue)
        for n in ("fact_daily_recovery", "recovery_momentum", "autonomic_balance"):
            self.assertEqual(row_versions(n), before[n], n)
        # repaired, the next refresh catches up
        psql("update whoop.raw_recovery set record = jsonb_set(record, '{score,recovery_score}', '55.5') "
             "where record #>> '{score,recovery_score}' = 'x'")
        res = refresh()
        self.assertEqual({r["status"] for r in res.values()}, {"ok"})
        self.assertEqual(scalar("select count(*) from whoop_internal.refresh_queue"), "0")
        self.assertEqualToFull()

    def test_05_full_and_truncate_take_the_full_path(self):
        res = refresh(full=True)
        self.assertEqual({res[view(n)]["mode"] for n in MAINTAINED}, {"full"})
        self.assertEqualToFull()
        psql("create temp table keep as select * from whoop.raw_workout; "
             "truncate whoop.raw_workout; insert into whoop.raw_workout select * from keep")
        self.assertEqual(scalar("select count(*) from whoop_internal.maintained where built"), "0")
        res = refresh()
        self.assertEqual({res[view(n)]["mode"] for n in MAINTAINED}, {"full"})
        self.assertEqualToFull()
        res = refresh()
        self.assertEqual({res[view(n)]["mode"] for n in MAINTAINED}, {"incremental"})

    def test_06_refresh_materialized_view_fails(self):
        for n in MAINTAINED:
            with self.assertRaises(harness.SQLError) as cm:
                psql("refresh materialized view %s" % view(n))
            self.assertEqual(cm.exception.sqlstate, "42809", n)

    def test_07_per_member_plans(self):
        """Every definition restricted to one member reads the raw tables
        through indexes (the member id reaches every scan)."""
        # On three members the planner rightly reads whole tables; the
        # question is the plan at a team's size.  In a transaction that is
        # rolled back, the fixture's members are copied 300 times (new
        # member and record ids) into the raw and rows tables, and analyzed.
        plans = psql("begin; " + TEAM_COPIES + "analyze; " + "".join(
            "explain (costs off) select d.* from unnest('{%d}'::bigint[]) u(user_id) "
            "cross join lateral (select * from whoop_internal.%s_def x "
            "where x.user_id = u.user_id offset 0) d; " % (A, n) for n in MAINTAINED) + "rollback")
        plans = re.split(r"\n(?=Nested Loop\n)", plans)
        self.assertEqual(len(plans), len(MAINTAINED))
        for n, plan in zip(MAINTAINED, plans):
            self.assertTrue(plan.startswith("Nested Loop\n  ->  Function Scan on unnest u"), n + "\n" + plan)
            self.assertNotRegex(plan, r"Seq Scan on (raw_|\w+_rows)", n + "\n" + plan)
            # and no index is read whole: every index scan of them has a condition
            lines = plan.splitlines()
            for i, line in enumerate(lines):
                if re.search(r"Index (Only )?Scan (Backward )?using \S+ on (raw_|\w+_rows)", line):
                    self.assertIn("Index Cond:", lines[i + 1] if i + 1 < len(lines) else "",
                                  n + "\n" + plan)

    def test_08_plan_and_lineage(self):
        plan = query("select view_name, method, upstream::text[] from whoop.refresh_plan order by refresh_order")
        names = [p["view_name"] for p in plan]
        self.assertEqual(names[:2], ["whoop.dim_date", "whoop.dim_user"])
        for p in plan:
            for u in p["upstream"]:
                self.assertLess(names.index(u), names.index(p["view_name"]))
        self.assertEqual(scalar("select depends_on_type from whoop.lineage where object = 'whoop.fact_daily_strain' "
                                "and depends_on = 'whoop.dim_user'"), "materialized view")

    def test_09_dim_date_reads_its_bounds_off_indexes(self):
        """dim_date's definition finds the first and last days of the raw
        tables with index scans (min/max), not by reading them whole, at a
        team's size."""
        definition = psql("select pg_get_viewdef('whoop.dim_date'::regclass)").strip().rstrip(";")
        plan = psql("begin; " + TEAM_COPIES + "analyze; explain (costs off) " + definition
                    + "; rollback")
        self.assertNotRegex(plan, r"Seq Scan on raw_", plan)
        for index in ("raw_cycle_start_idx", "raw_cycle_coalesce_idx", "raw_sleep_end_idx"):
            self.assertRegex(plan, r"Index (Only )?Scan (Backward )?using %s on raw_" % index, plan)

    def test_10_a_change_never_waits_for_a_running_refresh(self):
        """A member's raw rows change while a refresh that took that member
        from the queue has not committed: the write goes through at once (it
        does not wait for the refresh) and the member is queued again."""
        gate_key = 7401301

        def gate_lock_count(state):
            return int(scalar("select count(*) from pg_locks where locktype = 'advisory' "
                              "and objid = %d and %s" % (gate_key, state)))
        psql(RESCORE % {"u": A})
        self.assertEqual(scalar(QUEUED), str(A))
        # the gate: a session holding an advisory lock, so that the
        # refresher's transaction stays open after its refresh
        gate = subprocess.Popen(["psql", "-X", "-q", "-d", DB], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        refresher = None
        try:
            gate.stdin.write("select pg_advisory_lock(%d);\n" % gate_key)
            gate.stdin.flush()
            self.assertTrue(harness.wait_until(lambda: gate_lock_count("granted") > 0, timeout=120))
            refresher = subprocess.Popen(
                ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB, "-c", "begin",
                 "-c", "select count(*) from whoop.refresh()",
                 "-c", "select pg_advisory_lock_shared(%d)" % gate_key, "-c", "commit"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            self.assertTrue(harness.wait_until(lambda: gate_lock_count("not granted") > 0, timeout=120),
                            "the refresher did not reach the gate")
            # with a unique key on the queue this waited for the refresher
            # (until the gate opened): lock_timeout turns that into an error
            psql("set lock_timeout = '10s'; " + RESCORE % {"u": A})
            gate.stdin.write("select pg_advisory_unlock_all();\n\\q\n")
            gate.stdin.flush()
            _, err = refresher.communicate(timeout=300)
            self.assertEqual(refresher.returncode, 0, err)
        finally:
            for proc in (gate, refresher):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        # the refresher took the first change; the second is queued for the next
        self.assertEqual(scalar(QUEUED), str(A))
        res = refresh()
        self.assertEqual({res[view(n)]["members"] for n in MAINTAINED}, {1})
        self.assertEqual(scalar("select count(*) from whoop_internal.refresh_queue"), "0")
        self.assertEqualToFull()

    def test_11_jit_only_for_full_rebuilds(self):
        """With JIT forced on for every plan, no incremental statement of
        whoop.refresh() is JIT-compiled, a full rebuild's statements are (as
        the caller asked), and the caller's setting is back afterwards."""
        if scalar("select pg_jit_available()") != "t":
            self.skipTest("this server has no JIT provider")

        def compiled_writes(full):
            # without parallel workers every query runs in this session, as
            # INSERT ... SELECT: into the rows table, or for a full rebuild of
            # a table with rows, into the temporary table of its changes
            plans, out = harness.nested_plans(
                "set jit = on; set jit_above_cost = 0; set max_parallel_workers_per_gather = 0; "
                "select count(*) from whoop.refresh(full => %s); "
                "set auto_explain.log_min_duration = -1; select current_setting('jit')"
                % ("true" if full else "false"), r"insert into \S+_(rows|changes) select")
            self.assertEqual(len(plans), len(MAINTAINED), out)
            self.assertIn("\non\n", out)
            return sum("\nJIT:" in p for p in plans)
        self.assertEqual(compiled_writes(full=True), len(MAINTAINED))
        psql(RESCORE % {"u": A} + RESCORE % {"u": B})
        self.assertEqual(compiled_writes(full=False), 0)
        self.assertEqualToFull()

    def test_12_first_build_leaves_indexes_it_cannot_recreate_whole(self):
        """A first build drops no index whose comment or storage parameters
        its statements would lose: those stay, with their settings."""
        psql("comment on index whoop_internal.training_load_rows_pkey is 'a dashboard needs it'; "
             "alter index whoop_internal.recovery_volatility_rows_pkey set (fillfactor = 80)")
        kept = ("select c.oid, obj_description(c.oid, 'pg_class'), c.reloptions from pg_class c "
                "where c.oid in ('whoop_internal.training_load_rows_pkey'::regclass, "
                "'whoop_internal.recovery_volatility_rows_pkey'::regclass) order by 1")
        before = rows(kept)
        # never built: every rows table emptied by TRUNCATE, loaded without
        # the indexes it may drop
        psql(UNBUILD)
        res = refresh()
        self.assertEqual({(res[view(n)]["status"], res[view(n)]["mode"]) for n in MAINTAINED}, {("ok", "full")})
        self.assertEqual(rows(kept), before)
        self.assertEqualToFull()

    def test_13_full_over_built_rows_rewrites_only_what_differs(self):
        """full => true over built tables computes the definitions side by
        side and rewrites only the rows that differ from them: a value off in
        its 15th digit, a row missing and a row too many are repaired; every
        other row keeps its version, and the row counts stay exact."""
        off = ("select user_id, day from whoop_internal.fact_daily_strain_rows "
               "where day_strain > 0 order by user_id, day offset 7 limit 1")
        missing = "select user_id, day from whoop_internal.training_load_rows order by user_id, day offset 9 limit 1"
        off_key = tuple(rows(off)[0])
        missing_key = tuple(rows(missing)[0])
        before = {n: row_versions(n) for n in MAINTAINED}
        psql("update whoop_internal.fact_daily_strain_rows set day_strain = day_strain * (1 + 1e-15) "
             "where (user_id, day) in (%s); "
             "delete from whoop_internal.training_load_rows where (user_id, day) in (%s); "
             "insert into whoop_internal.recovery_momentum_rows "
             "select (jsonb_populate_record(null::whoop_internal.recovery_momentum_rows, "
             "to_jsonb(r) || '{\"day\": \"2099-01-01\"}')).* "
             "from whoop_internal.recovery_momentum_rows r limit 1" % (off, missing))
        self.assertEqual(differences("fact_daily_strain"), 2)
        res = refresh(full=True)
        self.assertEqual({(res[view(n)]["status"], res[view(n)]["mode"]) for n in MAINTAINED}, {("ok", "full")})
        self.assertEqualToFull()
        self.assertEqual(scalar("select count(*) from whoop_internal.recovery_momentum_rows "
                                "where day = '2099-01-01'"), "0")
        for n in MAINTAINED:
            count = int(scalar("select count(*) from %s" % view(n)))
            self.assertEqual(res[view(n)]["row_count"], count, n)
            self.assertEqual(scalar("select row_count from whoop_internal.maintained where name = '%s'" % n),
                             str(count), n)
            after = row_versions(n)
            changed = {k for k in after if after[k] != before[n].get(k)}
            gone = set(before[n]) - set(after)
            if n == "fact_daily_strain":
                self.assertEqual((changed, gone), ({off_key}, set()), n)
            elif n == "training_load":
                self.assertEqual((changed, gone), ({missing_key}, set()), n)
            else:
                self.assertEqual((changed, gone), (set(), set()), n)
        # apply_changes() drops its table of changes: never another table
        with self.assertRaises(harness.SQLError) as cm:
            psql("select whoop_internal.apply_changes('whoop_internal.training_load_rows', "
                 "'whoop_internal.recovery_momentum_rows')")
        self.assertEqual(cm.exception.sqlstate, "22023")
        self.assertEqual(differences("recovery_momentum"), 0)

    def test_14_a_group_hands_out_its_longest_object_first(self):
        """The objects of a group go to the workers longest first, by their
        last full build in whoop.refresh_log (without workers the caller
        runs them one after the other, in that order)."""
        group = ["whoop.autonomic_balance", "whoop.strain_recovery_efficiency",
                 "whoop.training_readiness_gap", "whoop.seasonal_adaptation"]
        # their last full builds took 10, 40, 20 and 30 seconds
        psql("insert into whoop.refresh_log (run_id, view_name, refresh_order, mode, status, started_at, finished_at) "
             "select 0, v, 0, 'full', 'ok', now(), now() + s * interval '1 second' "
             "from unnest(array['%s'], array[10, 40, 20, 30]) t(v, s)" % "', '".join(group))
        psql(UNBUILD)
        psql("set max_parallel_workers_per_gather = 0; select count(*) from whoop.refresh()")
        started = [r[0] for r in rows("select view_name from whoop.refresh_log "
                                      "where run_id = (select max(run_id) from whoop.refresh_log) "
                                      "and view_name in ('%s') order by started_at" % "', '".join(group))]
        self.assertEqual(started, ["whoop.strain_recovery_efficiency", "whoop.seasonal_adaptation",
                                   "whoop.training_readiness_gap", "whoop.autonomic_balance"])
        self.assertEqualToFull()

    def test_15_a_full_build_reads_cycles_main_sleeps_and_recoveries_off_indexes(self):
        """What the full builds of cycle_day and cycle_workouts read of the
        cycles, the candidate main sleeps and the recoveries (ids, times,
        offsets, the sleep a recovery names) is held by indexes: at a team's
        size, with records of a real sync's size, on settled tables (all
        visible, as autovacuum leaves them), every scan of those raw tables
        is an index-only scan; none reads the records' jsonb.  (The
        fixture's records are smaller than WHOOP's, 0.5-1 KB at 2,000
        members x 2 years; with them a table costs the planner about what
        an index holding some of its columns does, so they are padded.)"""
        real_size = ("update whoop.raw_cycle set record = record || jsonb_build_object('pad', repeat('x', 400)); "
                     "update whoop.raw_sleep set record = record || jsonb_build_object('pad', repeat('x', 900)); "
                     "update whoop.raw_recovery set record = record || jsonb_build_object('pad', repeat('x', 400)); ")
        settled = ("update pg_class set relallvisible = relpages where oid in "
                   "('whoop.raw_cycle'::regclass, 'whoop.raw_sleep'::regclass, 'whoop.raw_recovery'::regclass); ")
        for name, indexes in (("cycle_day", {"raw_cycle_user_id_start_idx", "raw_sleep_main_sleeps_idx",
                                              "raw_recovery_sleep_ids_idx"}),
                              ("cycle_workouts", {"raw_cycle_user_id_start_idx"})):
            with self.subTest(name=name):
                plan = psql("begin; " + TEAM_COPIES + real_size + "analyze; " + settled
                            + "set max_parallel_workers_per_gather = 0; "
                            "explain (costs off) select * from whoop_internal.%s_def; rollback" % name)
                scans = re.findall(r"(Seq Scan|Bitmap Heap Scan|Index Scan|Index Only Scan)"
                                   r"(?: Backward)?(?: using (\S+))? on (raw_cycle|raw_sleep|raw_recovery)\b", plan)
                self.assertEqual({index for kind, index, table in scans}, indexes, plan)
                self.assertEqual({kind for kind, index, table in scans}, {"Index Only Scan"}, plan)


class LoadRowsTest(unittest.TestCase):
    """whoop_internal.load_rows(), with which a first build loads the
    objects that do not read each other: side by side in parallel workers
    when the targets allow it, else one after the other; the same rows,
    every failure raised, nothing half loaded."""

    # each query reports the process that computed its rows
    QUERIES = ("array['lt_a', 'lt_b']::regclass[], "
               "array['select pg_backend_pid(), g from generate_series(1, 3000) g', "
               "'select pg_backend_pid(), g from generate_series(1, 2000) g']")

    def setUp(self):
        psql("drop table if exists lt_a, lt_b; "
             "create table lt_a (pid integer not null, n integer); "
             "create table lt_b (pid integer not null, n integer)")
        self.addCleanup(psql, "drop table if exists lt_a, lt_b; drop role if exists lt_reader")

    def load(self, queries=None, before=""):
        """load runs load_rows in one session and returns its rows and, per
        table, how many rows this session's backend computed itself."""
        out = psql(before + "select target, row_count, started_at <= finished_at "
                   "from whoop_internal.load_rows(%s); "
                   "select (select count(*) from lt_a where pid = pg_backend_pid()), "
                   "(select count(*) from lt_b where pid = pg_backend_pid()), "
                   "(select count(distinct pid) from (select pid from lt_a union select pid from lt_b) p)"
                   % (queries or self.QUERIES))
        return [line.split("|") for line in out.split()]

    def test_parallel_workers_compute_and_the_caller_inserts(self):
        res = self.load(before="set max_parallel_workers_per_gather = 2; ")
        self.assertEqual(res[:2], [["lt_a", "3000", "t"], ["lt_b", "2000", "t"]])
        # with two workers the caller computes none of the rows (one worker
        # may take both tables when the other starts late)
        self.assertEqual(res[2][:2], ["0", "0"])
        self.assertIn(res[2][2], ("1", "2"))
        self.assertEqual(scalar("select count(distinct n) from lt_a"), "3000")

    def test_with_one_worker_the_caller_computes_too(self):
        res = self.load(before="set max_parallel_workers_per_gather = 1; ")
        self.assertEqual(res[:2], [["lt_a", "3000", "t"], ["lt_b", "2000", "t"]])
        # the caller computes one table or both (when its worker starts
        # late), and each table comes whole from one process
        self.assertIn(res[2], (["3000", "0", "2"], ["0", "2000", "2"], ["3000", "2000", "1"]))

    def test_a_target_with_an_index_loads_serially(self):
        psql("create index on lt_b (n)")
        res = self.load()
        self.assertEqual(res[:2], [["lt_a", "3000", "t"], ["lt_b", "2000", "t"]])
        self.assertEqual(res[2], ["3000", "2000", "1"])
        self.assertEqual(scalar("set enable_seqscan = off; select count(*) from lt_b where n > 1000"), "1000")

    def test_parallel_workers_off_loads_serially(self):
        res = self.load(before="set max_parallel_workers_per_gather = 0; ")
        self.assertEqual(res[2], ["3000", "2000", "1"])

    def test_a_workers_error_is_raised_and_nothing_is_loaded(self):
        with self.assertRaises(harness.SQLError) as cm:
            self.load("array['lt_a', 'lt_b']::regclass[], "
                      "array['select 1, g from generate_series(1, 3000) g', "
                      "'select 1, 1 / (g - 1500) from generate_series(1, 2000) g']")
        self.assertEqual(cm.exception.sqlstate, "22012")
        self.assertIn("parallel worker", str(cm.exception))
        self.assertEqual((scalar("select count(*) from lt_a"), scalar("select count(*) from lt_b")), ("0", "0"))

    def test_bad_rows_are_refused(self):
        cases = [
            # a null where the table says NOT NULL, inserted by the caller
            ("'select null::integer, g from generate_series(1, 10) g'", "23502"),
            # columns that do not match the table's
            ("'select g::text, g from generate_series(1, 10) g'", "42804"),
            ("'select g from generate_series(1, 10) g'", "42804"),
            # only SELECTs
            ("'delete from lt_a returning pid, n'", "22023"),
        ]
        for query, state in cases:
            with self.subTest(query=query):
                with self.assertRaises(harness.SQLError) as cm:
                    self.load("array['lt_a', 'lt_b']::regclass[], "
                              "array['select 1, 1', %s]" % query)
                self.assertEqual(cm.exception.sqlstate, state, str(cm.exception))
        with self.assertRaises(harness.SQLError) as cm:
            psql("select * from whoop_internal.load_rows(array['lt_a']::regclass[], array[]::text[])")
        self.assertEqual(cm.exception.sqlstate, "2202E")

    def test_needs_insert_on_every_target(self):
        psql("create role lt_reader; grant select on lt_a, lt_b to lt_reader; "
             "grant insert on lt_a to lt_reader")
        with self.assertRaises(harness.SQLError) as cm:
            psql("set role lt_reader; select * from whoop_internal.load_rows(%s)" % self.QUERIES)
        self.assertEqual(cm.exception.sqlstate, "42501")
        self.assertIn("lt_b", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
