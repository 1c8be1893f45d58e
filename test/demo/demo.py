#!/usr/bin/env python3
"""demo.py -- the main job (make demo): a WHOOP warehouse from scratch.

Started by test/demo/demo.sh after the packages, the build and `make install`.
It starts a throwaway PostgreSQL cluster (pg_cron preloaded) and the bundled
WHOOP simulator (one athlete, two years, up to today), creates the
extension, links the account the way a real user does (authorize URL ->
code -> connect_account), runs the pipeline, prints the run log, the quality
checks and the psql report (whoop.report), and writes the HTML report
(whoop.report_html) to test/out/whoop_report.html.  The
cluster and the simulator keep running so you can connect; `make demo-stop`
(demo.py stop) ends them.

A demo belongs to its clone: its state (the cluster's directory, the
simulator's process) is kept in the clone's git-ignored test/out/, so a
demo in another clone, or another user's, is neither stopped nor replaced
by this one.  Headings are bold only on a terminal, and never when
NO_COLOR is set (https://no-color.org).

    demo.py            run the demo (stopping this clone's previous one)
    demo.py stop       stop what this clone's last demo left running
"""

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

TEST_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TEST_DIR, "lib"))

import harness  # noqa: E402

# this clone's demo state and HTML report (whoop.report_html), in the git-ignored test/out/
STATE_FILE = os.path.join(TEST_DIR, "out", "demo.json")
REPORT_FILE = os.path.join(TEST_DIR, "out", "whoop_report.html")
REDIRECT_URI = "https://localhost/callback"


def say(text):
    """say prints a heading: bold on a terminal, plain into a pipe or a file or under NO_COLOR."""
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        print("\n\033[1m== %s\033[0m" % text, flush=True)
    else:
        print("\n== %s" % text, flush=True)


def process_start(pid):
    """process_start is the start time of process PID (clock ticks after boot), None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    # the command name in parentheses may hold blanks; starttime is field 22
    return int(stat.rsplit(")", 1)[1].split()[19])


def stop():
    """stop ends the cluster and simulator of this clone's last demo."""
    if not os.path.exists(STATE_FILE):
        print("no demo is running")
        return 0
    state = json.load(open(STATE_FILE))
    # the pid is the simulator's only while that process has the start time
    # recorded: once the simulator has died (or after a reboot) the number
    # may be another process's
    pid = state["simulator_pid"]
    if process_start(pid) == state.get("simulator_started"):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    cluster = harness.Cluster()
    shutil.rmtree(cluster.dir, ignore_errors=True)     # the fresh one Cluster() made; the demo's is in the state
    cluster.dir, cluster.data = state["cluster_dir"], state["cluster_data"]
    cluster.destroy()
    os.unlink(STATE_FILE)
    print("demo cluster and simulator stopped")
    return 0


def psql_show(sql, db="whoop_demo"):
    """psql_show prints query results the way psql shows them to a person."""
    subprocess.run(["psql", "-X", "-q", "-d", db, "-v", "ON_ERROR_STOP=1",
                    "-P", "footer=off", "-c", sql], check=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "stop":
        return stop()
    if os.path.exists(STATE_FILE):
        stop()
    started = time.time()

    say("starting a throwaway PostgreSQL cluster with pg_cron")
    cluster = harness.Cluster().init().start()
    os.environ.update(cluster.env())
    print("cluster in %s, port %d" % (cluster.dir, cluster.port))

    say("starting the WHOOP simulator: one athlete, two years of data up to today")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    # the simulator outlives this script: its output goes to a file, not a pipe
    sim_out = os.path.join(cluster.dir, "simulator.out")
    with open(sim_out, "w") as out:
        sim = subprocess.Popen(harness.SIMULATOR + ["--port", "0", "--seed", "7",
                                                    "--athletes", "1", "--days", "730", "--now", now,
                                                    "--rate-per-minute", "0", "--rate-per-day", "0"],
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    if not harness.wait_until(lambda: open(sim_out).readline().strip().isdigit(), timeout=60):
        raise RuntimeError("the simulator did not start: " + open(sim_out).read()[-2000:])
    port = int(open(sim_out).readline())
    base = "http://127.0.0.1:%d" % port
    accounts = json.load(urllib.request.urlopen(base + "/_sim/accounts"))
    os.makedirs(os.path.dirname(STATE_FILE), exist_ok=True)
    with open(STATE_FILE, "w") as f:
        json.dump({"cluster_dir": cluster.dir, "cluster_data": cluster.data, "simulator_pid": sim.pid,
                   "simulator_started": process_start(sim.pid), "port": cluster.port}, f)
    print("simulator at %s (same URL layout as api.prod.whoop.com)" % base)

    say("CREATE EXTENSION, a server for the WHOOP app, a user mapping with its credentials")
    harness.psql("create database whoop_demo", dbname="postgres")
    os.environ["WHOOP_TEST_DB"] = "whoop_demo"
    setup = """
create extension whoop_fdw;
create server whoop foreign data wrapper whoop_fdw
    options (api_url '{base}/developer', oauth_url '{base}/oauth/oauth2');
create user mapping for current_user server whoop
    options (client_id '{client_id}', client_secret '{client_secret}');
create schema whoop_api;
import foreign schema whoop from server whoop into whoop_api;
""".format(base=base, **accounts)
    print(setup.strip())
    harness.psql(setup)

    say("linking the account like a person would: authorize URL, log in, code, connect_account")
    url = harness.scalar("select whoop.authorize_url('whoop', '%s')" % REDIRECT_URI)
    print("select whoop.authorize_url('whoop', '%s');\n  -> %s" % (REDIRECT_URI, url))

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    try:
        urllib.request.build_opener(NoRedirect).open(url)
        raise RuntimeError("the authorization server did not redirect")
    except urllib.error.HTTPError as e:
        location = e.headers["Location"]
    code = re.search(r"[?&]code=([^&]+)", location).group(1)
    print("the browser is sent to %s..." % location[:60])
    user_id = harness.scalar("select whoop.connect_account('whoop', '%s', '%s')"
                             % (code, REDIRECT_URI))
    print("select whoop.connect_account('whoop', code => '...', redirect_uri => '%s');\n  -> %s"
          % (REDIRECT_URI, user_id))
    psql_show("select server_name, user_id, first_name, last_name, status, access_expires_at "
              "from whoop.accounts")

    say("CALL whoop.run_pipeline(): sync -> refresh -> quality checks")
    t0 = time.time()
    harness.psql("call whoop.run_pipeline()")
    print("pipeline took %.1f s" % (time.time() - t0))
    psql_show("select step, status, row_count, round(extract(epoch from finished_at - started_at)::numeric, 2) "
              "as seconds, detail from whoop.run_log "
              "where run_id = (select max(run_id) from whoop.run_log) order by started_at")

    say("quality checks of the run")
    psql_show("select status, count(*) as checks, "
              "coalesce(string_agg(check_name || ' (' || object_name || ')', ', ' order by check_name) "
              "filter (where status <> 'pass'), '') as not_passing "
              "from whoop.quality_log where run_id = (select max(run_id) from whoop.run_log "
              "where step = 'pipeline') group by status order by status")

    say("the report: select * from whoop.report(%s, 14)" % user_id)
    print(harness.psql("select * from whoop.report(%s, 14)" % user_id), end="")

    say("the HTML report: select whoop.report_html(%s, 90)" % user_id)
    html = harness.psql("select whoop.report_html(%s, 90)" % user_id)
    os.makedirs(os.path.dirname(REPORT_FILE), exist_ok=True)
    with open(REPORT_FILE, "w") as f:
        f.write(html)
    print("wrote %s (%d KB): open it in a browser" % (REPORT_FILE, len(html) // 1024))

    elapsed = time.time() - started
    say("done in %.0f s -- the HTML report is %s; the cluster and the simulator keep running"
        % (elapsed, REPORT_FILE))
    print("""
connect:        psql -h 127.0.0.1 -p {port} -U postgres whoop_demo
try:            select * from whoop.report(days => 30);
                select * from whoop.daily_summary order by day desc limit 14;
                select * from whoop.recovery_momentum order by day desc limit 14;
                select * from whoop_api.cycle where start > now() - interval '3 days';
                explain verbose select * from whoop_api.sleep where start > now() - interval '7 days';
stop it:        make demo-stop

For a real WHOOP account (https://developer.whoop.com: create an app, note its client id
and secret, and register a redirect URI), in your own database:

    create extension whoop_fdw;
    create server whoop foreign data wrapper whoop_fdw;        -- defaults: api.prod.whoop.com
    create user mapping for current_user server whoop
        options (client_id '...', client_secret '...');
    select whoop.authorize_url('whoop', 'https://your.registered/redirect');
    -- open that URL, log in, copy the code parameter of the page you land on:
    select whoop.connect_account('whoop', code => '...', redirect_uri => 'https://your.registered/redirect');
    call whoop.run_pipeline();
    select whoop.schedule('0 */3 * * *');                      -- with pg_cron
""".format(port=cluster.port))
    print("The HTML report: %s" % REPORT_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
