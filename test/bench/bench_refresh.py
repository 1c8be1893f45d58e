"""bench_refresh.py -- whoop.refresh() at 2,000 members x 2 years.

Syncs ATHLETES simulator athletes x 730 days through the FDW (rate limits
off), then clones their raw rows in SQL into 2,000 members (new user_ids,
cycle ids and uuids, derived deterministically from the originals and the
copy number) before the first refresh.  Then, side by side in one run:
  1. after a VACUUM ANALYZE of the raw tables (autovacuum's visit, which
     a real sync of this size would long have had) and before each full
     build a checkpoint and autovacuum's end (settle()), whoop.refresh() the
     first time (never built: full), the objects that do not read each
     other loaded side by side by parallel workers
     (whoop_internal.load_rows()); then the same first build with parallel
     workers off, one object after the other, then side by side again;
  2. a typical 5-minute batch -- BATCH members changed: a new day, re-scored
     recoveries, new and tombstoned workouts -- then whoop.refresh()
     (incremental), and a refresh with nothing queued;
  3. the incremental result against a full rebuild (EXCEPT ALL both ways,
     the three intermediates too);
  4. whoop.refresh(full => true) over the built tables (side by side, only
     the rows that differ from the definitions rewritten), and its result
     against a full rebuild;
  5. 1.0's refresh: the nine facts and metrics as materialized views over the
     same definitions (bench_mv.<name> = whoop_internal.<name>_def's query, with
     the intermediates computed inline as 1.0 did: whoop.stg_cycle_day for
     whoop_internal.cycle_day, the definitions of cycle_workouts and
     daily_scores for theirs), refreshed
     once plainly and once CONCURRENTLY, in refresh order.
Prints times and ratios; asserts nothing about time.
"""

import re
import sys
import time

import harness
from harness import psql, rows, scalar

ATHLETES = 100
COPIES = 20             # the originals and 19 clones: 2,000 members
DAYS = 730
BATCH = 30

MAINTAINED = ["fact_daily_recovery", "fact_daily_strain", "recovery_momentum",
              "strain_recovery_efficiency", "training_readiness_gap", "recovery_volatility",
              "autonomic_balance", "seasonal_adaptation", "training_load"]
# maintained too, their views in whoop_internal; 1.0 computed them inline
INTERMEDIATES = {"cycle_day": "whoop.stg_cycle_day", "cycle_workouts": "whoop_internal.cycle_workouts_def",
                 "daily_scores": "whoop_internal.daily_scores_def"}
# a maintained object never built: emptied, the next refresh builds it whole
UNBUILD_SQL = """
do $$ declare m record; begin
for m in select name from whoop_internal.maintained loop
  execute format('truncate whoop_internal.%I', m.name || '_rows');
end loop; end $$;
update whoop_internal.maintained set built = false, row_count = 0;
"""

# clone k of a member: user_id + k * 10^12, cycle id + k * 10^13, uuids md5(id || '/' || k)
CLONE_SQL = """
insert into whoop.raw_cycle (id, user_id, start, "end", timezone_offset, score_state, created_at, updated_at, record, _extracted_at)
select c.id + k * 10000000000000, c.user_id + k * 1000000000000, c.start, c."end", c.timezone_offset, c.score_state,
       c.created_at, c.updated_at, c.record, c._extracted_at
from whoop.raw_cycle c cross join generate_series(1, %(n)d) k;
insert into whoop.raw_sleep (id, cycle_id, user_id, start, "end", timezone_offset, nap, score_state, created_at, updated_at, record, _extracted_at, deleted_at)
select md5(s.id::text || '/' || k)::uuid, s.cycle_id + k * 10000000000000, s.user_id + k * 1000000000000, s.start, s."end",
       s.timezone_offset, s.nap, s.score_state, s.created_at, s.updated_at, s.record, s._extracted_at, s.deleted_at
from whoop.raw_sleep s cross join generate_series(1, %(n)d) k;
insert into whoop.raw_recovery (cycle_id, sleep_id, user_id, score_state, created_at, updated_at, record, _extracted_at, deleted_at)
select r.cycle_id + k * 10000000000000, md5(r.sleep_id::text || '/' || k)::uuid, r.user_id + k * 1000000000000, r.score_state,
       r.created_at, r.updated_at, r.record, r._extracted_at, r.deleted_at
from whoop.raw_recovery r cross join generate_series(1, %(n)d) k;
insert into whoop.raw_workout (id, user_id, start, "end", timezone_offset, sport_name, score_state, created_at, updated_at, record, _extracted_at, deleted_at)
select md5(w.id::text || '/' || k)::uuid, w.user_id + k * 1000000000000, w.start, w."end", w.timezone_offset, w.sport_name,
       w.score_state, w.created_at, w.updated_at, w.record, w._extracted_at, w.deleted_at
from whoop.raw_workout w cross join generate_series(1, %(n)d) k;
insert into whoop.raw_profile (user_id, observed_at, email, first_name, last_name, record)
select p.user_id + k * 1000000000000, p.observed_at, p.email, p.first_name, p.last_name, p.record
from whoop.raw_profile p cross join generate_series(1, %(n)d) k;
insert into whoop.raw_body_measurement (user_id, observed_at, height_meter, weight_kilogram, max_heart_rate, record)
select b.user_id + k * 1000000000000, b.observed_at, b.height_meter, b.weight_kilogram, b.max_heart_rate, b.record
from whoop.raw_body_measurement b cross join generate_series(1, %(n)d) k;
analyze whoop.raw_cycle, whoop.raw_sleep, whoop.raw_recovery, whoop.raw_workout, whoop.raw_profile,
        whoop.raw_body_measurement;
"""

# The batch: members picked evenly; a third get a new day (a copy of their
# last finished cycle a day later, with its sleeps and recovery), a third a
# re-scored recovery, the rest a new workout or a tombstoned one.
BATCH_SQL = """
create temp table batch as
select user_id, row_number() over (order by user_id) % 6 as kind
from (select distinct user_id from whoop.raw_cycle) u
order by hashint8(user_id) limit {batch};
create temp table last_cycle as
select distinct on (c.user_id) c.* from whoop.raw_cycle c join batch b using (user_id)
where b.kind in (0, 1) and c."end" is not null order by c.user_id, c.start desc;
insert into whoop.raw_cycle (id, user_id, start, "end", timezone_offset, score_state, created_at, updated_at, record, _extracted_at)
select id + 500000000000, user_id, start + interval '1 day', "end" + interval '1 day', timezone_offset, score_state,
       created_at + interval '1 day', updated_at + interval '1 day', record, _extracted_at
from last_cycle;
insert into whoop.raw_sleep (id, cycle_id, user_id, start, "end", timezone_offset, nap, score_state, created_at, updated_at, record, _extracted_at)
select md5(s.id::text || 'next')::uuid, s.cycle_id + 500000000000, s.user_id, s.start + interval '1 day', s."end" + interval '1 day',
       s.timezone_offset, s.nap, s.score_state, s.created_at + interval '1 day', s.updated_at + interval '1 day', s.record, s._extracted_at
from whoop.raw_sleep s join last_cycle c on c.id = s.cycle_id;
insert into whoop.raw_recovery (cycle_id, sleep_id, user_id, score_state, created_at, updated_at, record, _extracted_at)
select r.cycle_id + 500000000000, md5(r.sleep_id::text || 'next')::uuid, r.user_id, r.score_state,
       r.created_at + interval '1 day', r.updated_at + interval '1 day', r.record, r._extracted_at
from whoop.raw_recovery r join last_cycle c on c.id = r.cycle_id;
update whoop.raw_recovery r
   set record = jsonb_set(r.record, '{{score,recovery_score}}',
                          to_jsonb(least((r.record #>> '{{score,recovery_score}}')::float8 + 5, 99))),
       updated_at = r.updated_at + interval '1 hour'
from (select distinct on (x.user_id) x.cycle_id from whoop.raw_recovery x join batch b using (user_id)
      where b.kind in (2, 3) and x.score_state = 'SCORED' order by x.user_id, x.cycle_id desc offset 0) t
where r.cycle_id = t.cycle_id;
insert into whoop.raw_workout (id, user_id, start, "end", timezone_offset, sport_name, score_state, created_at, updated_at, record, _extracted_at)
select md5(w.id::text || 'again')::uuid, w.user_id, w.start + interval '2 hours', w."end" + interval '2 hours', w.timezone_offset,
       w.sport_name, w.score_state, w.created_at, w.updated_at, w.record, w._extracted_at
from (select distinct on (x.user_id) x.* from whoop.raw_workout x join batch b using (user_id)
      where b.kind = 4 and x.score_state = 'SCORED' order by x.user_id, x.start desc) w;
update whoop.raw_workout w set deleted_at = now()
from (select distinct on (x.user_id) x.id from whoop.raw_workout x join batch b using (user_id)
      where b.kind = 5 and x.deleted_at is null order by x.user_id, x.start desc) t
where w.id = t.id;
"""


def timed(sql):
    started = time.perf_counter()
    psql(sql, timeout=7200)     # a full rebuild on a busy 2-core machine takes minutes
    return time.perf_counter() - started


def last_refresh_per_object():
    """last_refresh_per_object names each object of the newest refresh with its seconds, in refresh order."""
    return "  " + ", ".join("%s %s s" % (name.split(".")[1], seconds) for name, seconds in rows(
        "select view_name, round(extract(epoch from duration)::numeric, 2) "
        "from whoop.refresh_log where run_id = (select max(run_id) from whoop.refresh_log) "
        "order by refresh_order"))


def differences(what):
    """differences counts, per maintained object, the rows in which it and
    its definition evaluated now differ (EXCEPT ALL both ways), prints the
    verdict on WHAT and returns the counts."""
    diffs = {}
    for n in list(INTERMEDIATES) + MAINTAINED:
        v = ("whoop_internal." if n in INTERMEDIATES else "whoop.") + n
        diffs[n] = int(scalar(timeout=7200, sql="select count(*) from ((select * from %s except all select * from whoop_internal.%s_def) "
                              "union all (select * from whoop_internal.%s_def except all select * from %s)) d"
                              % (v, n, n, v)))
    print("%s vs a full rebuild: %s" % (what, "identical (all twelve, EXCEPT ALL both ways)"
                                        if not any(diffs.values()) else "DIFFERENT: %s" % diffs), flush=True)
    return diffs


def settle():
    """settle starts a timed build on a quiet server: it writes out what the
    step before dirtied (a checkpoint) and waits, up to five minutes, until
    no autovacuum worker runs (a build's new tables draw one: millions of
    rows inserted).  Else a build would share the two cores and the disk with
    work that a real server does between refreshes, not during one."""
    psql("checkpoint")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and scalar(
            "select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'") != "0":
        time.sleep(1)
    psql("checkpoint")


def main(cluster):
    t0 = time.perf_counter()
    sim = harness.Simulator("--athletes", str(ATHLETES), "--days", str(DAYS),
                            "--rate-per-minute", "0", "--rate-per-day", "0").start()
    try:
        harness.fresh_database("bench_refresh")
        harness.link_simulator(sim, import_into=None)
        sync_time = timed("call whoop.sync()")
        print("sync: %d athletes x %d days in %.1f s (simulator started %.1f s before)"
              % (ATHLETES, DAYS, sync_time, time.perf_counter() - t0 - sync_time))
    finally:
        sim.stop()

    clone_time = timed(CLONE_SQL % {"n": COPIES - 1})
    members = int(scalar("select count(distinct user_id) from whoop.raw_cycle"))
    print("cloned into %d members in %.1f s: %s raw cycles, %s sleeps, %s recoveries, %s workouts"
          % (members, clone_time, *rows("select (select count(*) from whoop.raw_cycle), "
                                         "(select count(*) from whoop.raw_sleep), (select count(*) from whoop.raw_recovery), "
                                         "(select count(*) from whoop.raw_workout)")[0]))

    # A sync of this size takes hours, in which autovacuum has visited the
    # raw tables: the clone, minutes old, gets that visit now, so that the
    # first builds below all read settled tables (hint bits set, statistics
    # taken) instead of the first one paying for it.
    settle_time = timed("vacuum analyze whoop.raw_cycle, whoop.raw_sleep, whoop.raw_recovery, "
                        "whoop.raw_workout, whoop.raw_profile")
    print("vacuum analyze of the raw tables: %.1f s" % settle_time)

    # first builds, alternating: side by side (parallel workers), one after
    # the other (none), side by side again; each on a settled server
    settle()
    first_full = timed("select count(*) from whoop.refresh()")
    sizes = dict(rows("select name, row_count from whoop_internal.maintained"))
    print("rows: " + ", ".join("%s %s" % (n, sizes[n]) for n in list(INTERMEDIATES) + MAINTAINED))
    print("whoop.refresh() first (never built, full), side by side: %.1f s" % first_full)
    print(last_refresh_per_object(), flush=True)
    psql(UNBUILD_SQL)
    settle()
    serial_full = timed("set max_parallel_workers_per_gather = 0; select count(*) from whoop.refresh()")
    print("whoop.refresh() first again, parallel workers off (one object after the other): %.1f s"
          % serial_full)
    print(last_refresh_per_object(), flush=True)
    psql(UNBUILD_SQL)
    settle()
    again_full = timed("select count(*) from whoop.refresh()")
    print("whoop.refresh() first again, side by side: %.1f s; side by side %.2fx faster (mean of two)"
          % (again_full, serial_full / ((first_full + again_full) / 2)))
    print(last_refresh_per_object(), flush=True)
    empty = timed("select count(*) from whoop.refresh()")
    psql(BATCH_SQL.format(batch=BATCH), timeout=7200)
    # a member changed by several statements is queued once for each
    queued = int(scalar("select count(distinct user_id) from whoop_internal.refresh_queue"))
    incremental = timed("select count(*) from whoop.refresh()")
    per_object = last_refresh_per_object()
    print("whoop.refresh() after a batch changing %d members: %.2f s (incremental); with nothing queued: %.2f s"
          % (queued, incremental, empty))
    print(per_object)

    sys.stdout.flush()
    diffs = differences("incremental result")
    settle()
    second_full = timed("select count(*) from whoop.refresh(full => true)")
    print("whoop.refresh(full => true) over built tables (only the rows that differ rewritten): %.1f s"
          % second_full)
    print(last_refresh_per_object(), flush=True)
    full_diffs = differences("full => true's result")
    diffs.update({n + " (full => true)": d for n, d in full_diffs.items()})
    # 1.0's way: the nine as materialized views over the same definitions
    psql("create schema bench_mv")
    for n in MAINTAINED:
        key = rows("select string_agg(a.attname, ', ' order by k.o) from pg_index i "
                   "cross join lateral unnest(i.indkey) with ordinality k(attnum, o) "
                   "join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum "
                   "where i.indrelid = 'whoop_internal.%s_rows'::regclass and i.indisprimary" % n)[0][0]
        query = psql("select pg_get_viewdef('whoop_internal.%s_def'::regclass)" % n).strip().rstrip(";")
        for name, inline in INTERMEDIATES.items():
            # (the deparsed query's keywords are upper case, its aliases lower)
            query = re.sub(r"\bwhoop_internal\.%s\b(?!_)(?:\s+([a-z_][a-z0-9_]*))?" % name,
                           lambda m: "(select * from %s) %s" % (inline, m.group(1) or name), query)
        psql("create materialized view bench_mv.%s as %s with no data; "
             "create unique index on bench_mv.%s (%s)" % (n, query, n, key))
    settle()
    plain = {}
    for n in MAINTAINED:
        plain[n] = timed("set work_mem = '64MB'; refresh materialized view bench_mv.%s" % n)
    settle()
    conc = {}
    for n in MAINTAINED:
        conc[n] = timed("set work_mem = '64MB'; refresh materialized view concurrently bench_mv.%s" % n)
    print("1.0's refresh of the nine as materialized views (s):")
    print("  %-28s %8s %13s" % ("view", "plain", "concurrently"))
    for n in MAINTAINED:
        print("  %-28s %8.1f %13.1f" % (n, plain[n], conc[n]))
    print("  %-28s %8.1f %13.1f" % ("all nine", sum(plain.values()), sum(conc.values())))
    psql("drop schema bench_mv cascade")

    print("ratios: incremental vs 1.0 concurrently %.0fx, vs full %.0fx; full vs 1.0 concurrently %.1fx"
          % (sum(conc.values()) / incremental, second_full / incremental, sum(conc.values()) / second_full))
    return 1 if any(diffs.values()) else 0


if __name__ == "__main__":
    sys.exit(main(None))
