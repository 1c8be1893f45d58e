"""test_dashboards.py -- the Grafana dashboard, the psql report and the HTML report.

Builds demo-like data once: the WHOOP simulator (two athletes, fifteen
months, fixed seed and "now") through the FDW and CALL whoop.run_pipeline().
Then:

  * the dashboard JSON and the provisioning files are checked for shape
    (ids, grid, datasource, queries, the athlete variable, units, thresholds);
  * every panel query is expanded exactly as Grafana's PostgreSQL datasource
    expands it (GrafanaExpander below) and run as a login role that holds
    only whoop_reader -- what Grafana connects as -- for both athletes, over a
    range with data, a short range and a range without data, and its result
    is checked against the column shape its panel type needs;
  * whoop.daily_summary, whoop.report() and whoop.report_html() give
    sensible results, escape what they show, and the reader may use them;
  * whoop.report_kpis() equals a plain computation over the facts for
    ranges as the reports and as Grafana give them, with a day whose sleep
    is scored but whose recovery is not, and the KPI panels, the text
    report and the HTML report show exactly its numbers;
  * the HTML report renders in headless Chromium: a screenshot
    (docs/report.png, committed, rewritten by this test), the DOM has the
    four SVG charts and the tables, and the console shows no script error.
"""

import datetime as dt
import decimal
import html
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import unittest

import harness
from harness import psql, rows, scalar

ROOT = harness.ROOT
DASHBOARD = os.path.join(ROOT, "grafana", "dashboards", "whoop.json")
DATASOURCE_YAML = os.path.join(ROOT, "grafana", "provisioning", "datasources", "whoop.yaml")
PROVIDER_YAML = os.path.join(ROOT, "grafana", "provisioning", "dashboards", "whoop.yaml")
SCREENSHOT = os.path.join(ROOT, "docs", "report.png")

DB = "wh_dashboards"
GRAFANA_ROLE = "whoop_test_grafana"     # a login role granted whoop_reader, as the README advises
SIM_NOW = "2026-06-30T12:00:00Z"
NOW = dt.datetime(2026, 6, 30, 12, 0, tzinfo=dt.timezone.utc)

SIM = None
USERS = []

UTC = dt.timezone.utc
NUMERIC_TYPES = {"smallint", "integer", "bigint", "numeric", "real", "double precision"}
PANEL_TYPES = {"row", "timeseries", "barchart", "xychart", "stat", "gauge", "table", "piechart"}
METRIC_ROWS = {                          # row title fragment -> the view its panels read
    "Recovery momentum": "recovery_momentum",
    "Strain-recovery efficiency": "strain_recovery_efficiency",
    "Training readiness gap": "training_readiness_gap",
    "Recovery volatility": "recovery_volatility",
    "Autonomic balance": "autonomic_balance",
    "Seasonal adaptation": "seasonal_adaptation",
    "Training load": "training_load",
}
RECOVERY_STEPS = [(None, "red"), (34, "#EAB839"), (67, "green")]
KPI_SOURCE = "from whoop.report_kpis($athlete, $__timeFrom(), $__timeTo())"
KPI_PANELS = {"Average recovery", "Risk days", "Days tracked", "Recovery zones", "Average HRV",
              "Average strain and sleep"}
KPI_COLUMNS = ["recovery_days", "strain_days", "mean_recovery", "green_days", "yellow_days", "red_days",
               "mean_hrv", "mean_resting_hr", "mean_hours_asleep", "mean_day_strain", "risk_days",
               "latest_recovery_day", "latest_recovery", "latest_recovery_zone",
               "latest_volatility_category", "latest_volatility_30d", "latest_balance_state",
               "latest_balance_score", "latest_load_zone", "latest_acwr",
               "season_year", "season", "season_recovery_days", "season_adaptation_category", "season_recovery",
               "season_baseline_recovery"]
KPI_FLOATS = {"mean_recovery", "mean_hrv", "mean_resting_hr", "mean_hours_asleep", "mean_day_strain",
              "latest_recovery", "latest_volatility_30d", "latest_balance_score", "latest_acwr",
              "season_recovery", "season_baseline_recovery"}


# ---------------------------------------------------------------------------
# Grafana's query expansion, reproduced.
#
# A panel's rawSql goes through three steps before PostgreSQL sees it:
#
# 1. The browser (SqlDatasource.applyTemplateVariables -> templateSrv.replace
#    with SqlDatasource.interpolateVariable) replaces template variables
#    matched by templateSrv's regex
#        \$(\w+) | \[\[(\w+?)(?::(\w+))?\]\] | \${(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?}
#    -- $var, [[var]], ${var}, ${var:format}.  A single-value variable's text
#    value is inserted raw with ' doubled (multi-value / include-all ones
#    would be quoted); the built-ins $__interval, $__interval_ms, $__from,
#    $__to are scoped variables replaced the same way.  A name that is not a
#    variable stays as it is (that is how $__timeFilter(...) survives).
# 2. The backend's sqleng.Interpolate replaces, as plain strings,
#        $__interval_ms      -> the interval in milliseconds
#        $__interval         -> gtime.FormatInterval(interval): 1d, 2h, 10m, 5s, 50ms
#        $__unixEpochFrom()  -> from, Unix seconds;  $__unixEpochTo() likewise
# 3. The PostgreSQL macro engine (grafana-postgresql-datasource/macros.go)
#    replaces every match of \$([_a-zA-Z0-9]+)\(([^\)]*)\) -- so a macro's
#    argument cannot contain ")" -- splitting the argument on "," and
#    trimming spaces:
#        $__time(c)            -> c AS "time"
#        $__timeEpoch(c)       -> extract(epoch from c) as "time"
#        $__timeFilter(c)      -> c BETWEEN '<from>' AND '<to>'
#        $__timeFrom()         -> '<from>'        $__timeTo() -> '<to>'
#        $__timeGroup(c,'5m')  -> floor(extract(epoch from c)/300)*300
#                                 (+ AS "time" when a "," follows the macro:
#                                 pre-5.3 compatibility)
#        $__timeGroupAlias(c,'5m') -> the same + AS "time"
#        $__unixEpochFilter(c) -> c >= <from s> AND c <= <to s>
#        $__unixEpochGroup(c,'5m') -> floor((c)/300)*300 (Alias: + AS "time")
#    with <from>/<to> formatted as Go's time.RFC3339Nano in UTC
#    (2018-04-12T18:00:00Z, fractional seconds without trailing zeros:
#    1960-02-01T07:00:00.5Z); any other $name(...) is an error.
# Recent Grafana releases also strip SQL comments before step 3; the
# dashboard has none (test_no_sql_comments), so every release sees the same
# text.

TEMPLATE_RE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")
MACRO_RE = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")


class MacroError(Exception):
    pass


def rfc3339nano(t):
    """rfc3339nano formats an aware datetime like Go's t.UTC().Format(time.RFC3339Nano)."""
    t = t.astimezone(UTC)
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        s += ("." + "%06d" % t.microsecond).rstrip("0")
    return s + "Z"


def format_interval(seconds):
    """format_interval is gtime.FormatInterval: the largest whole unit."""
    ms = int(round(seconds * 1000))
    for unit, size in (("y", 365 * 86400000), ("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000),
                       ("ms", 1)):
        if ms >= size:
            return "%d%s" % (ms // size, unit)
    return "1ms"


def parse_interval(text):
    """parse_interval is the subset of gtime.ParseInterval a dashboard would use: N ms/s/m/h/d/w."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text.strip().strip("'"))
    if not m:
        raise MacroError("error parsing interval %s" % text)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def go_float(x):
    """go_float prints a float64 like Go's %v (300, 0.02, 86400)."""
    return ("%r" % float(x)).rstrip("0").rstrip(".") if x != int(x) else "%d" % x


class GrafanaExpander:
    """Expands a panel's rawSql as Grafana's PostgreSQL datasource does (see above)."""

    def __init__(self, start, end, variables, interval_seconds=86400):
        self.start, self.end = start, end
        self.variables = dict(variables)
        self.interval = interval_seconds

    def expand(self, sql):
        return self.macros(self.global_macros(self.template(sql)))

    def template(self, sql):
        scoped = dict(self.variables)
        scoped["__interval"] = format_interval(self.interval)
        scoped["__interval_ms"] = str(int(self.interval * 1000))
        scoped["__from"] = str(int(self.start.timestamp() * 1000))
        scoped["__to"] = str(int(self.end.timestamp() * 1000))

        def repl(m):
            name = m.group(1) or m.group(2) or m.group(4)
            fmt = m.group(3) or m.group(6)
            if name not in scoped:
                return m.group(0)
            value = str(scoped[name])
            if fmt in (None, "raw") or name.startswith("__"):
                return value if fmt == "raw" or name.startswith("__") else value.replace("'", "''")
            if fmt == "sqlstring":
                return "'" + value.replace("'", "''") + "'"
            if fmt == "csv":
                return value
            raise MacroError("format %s not reproduced here" % fmt)
        return TEMPLATE_RE.sub(repl, sql)

    def global_macros(self, sql):
        sql = sql.replace("$__interval_ms", str(int(self.interval * 1000)))
        sql = sql.replace("$__interval", format_interval(self.interval))
        sql = sql.replace("$__unixEpochFrom()", str(int(self.start.timestamp())))
        sql = sql.replace("$__unixEpochTo()", str(int(self.end.timestamp())))
        return sql

    def macros(self, sql):
        def repl(m):
            name = m.group(1)
            if name == "__timeGroup":
                i = sql.find(m.group(0))
                if i >= 0 and sql[i + len(m.group(0)):i + len(m.group(0)) + 1] == ",":
                    name = "__timeGroupAlias"
            args = [a.strip(" ") for a in m.group(2).split(",")]
            return self.macro(name, args)
        return MACRO_RE.sub(repl, sql)

    def macro(self, name, args):
        frm, to = rfc3339nano(self.start), rfc3339nano(self.end)
        if name == "__time":
            return '%s AS "time"' % args[0]
        if name == "__timeEpoch":
            return 'extract(epoch from %s) as "time"' % args[0]
        if name == "__timeFilter":
            return "%s BETWEEN '%s' AND '%s'" % (args[0], frm, to)
        if name == "__timeFrom":
            return "'%s'" % frm
        if name == "__timeTo":
            return "'%s'" % to
        if name in ("__timeGroup", "__timeGroupAlias"):
            if len(args) < 2:
                raise MacroError("macro %s needs time column and interval" % name)
            if len(args) == 3:
                raise MacroError("fill modes are not reproduced here")
            secs = go_float(parse_interval(args[1]))
            out = "floor(extract(epoch from %s)/%s)*%s" % (args[0], secs, secs)
            return out + (' AS "time"' if name == "__timeGroupAlias" else "")
        if name == "__unixEpochFilter":
            return "%s >= %d AND %s <= %d" % (args[0], int(self.start.timestamp()), args[0], int(self.end.timestamp()))
        if name in ("__unixEpochGroup", "__unixEpochGroupAlias"):
            secs = go_float(parse_interval(args[1]))
            out = "floor((%s)/%s)*%s" % (args[0], secs, secs)
            return out + (' AS "time"' if name == "__unixEpochGroupAlias" else "")
        raise MacroError('unknown macro "%s"' % name)


# ---------------------------------------------------------------------------

def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def data_panels(dash):
    return [p for p in dash["panels"] if p["type"] != "row"]


def reader_query(sql, tz="Pacific/Chatham"):
    """reader_query runs one query as the Grafana login role; returns ([(name, type)], rows).

    The session time zone is an odd one (UTC+12:45) on purpose: no panel
    may depend on it."""
    out = psql("%s\n\\gdesc\n\\echo ---rows---\n%s\n;" % (sql, sql), user=GRAFANA_ROLE,
               extra_env={"PGTZ": tz})
    desc, data = out.split("---rows---\n", 1)
    cols = [tuple(line.split("|", 1)) for line in desc.splitlines() if line]
    return cols, [line.split("|") for line in data.splitlines() if line != ""]


def setUpModule():
    global SIM, USERS
    SIM = harness.Simulator("--athletes", "2", "--days", "450", "--seed", "7", "--now", SIM_NOW,
                            "--rate-per-minute", "0", "--rate-per-day", "0").start()
    harness.fresh_database(DB)
    USERS = harness.link_simulator(SIM, import_into=None)
    psql("call whoop.run_pipeline()")
    status = scalar("select status from whoop.run_log where step = 'refresh' order by id desc limit 1")
    if status != "ok":
        raise RuntimeError("the pipeline's refresh did not succeed: %s" % status)
    psql("drop role if exists %s; create role %s login in role whoop_reader;" % (GRAFANA_ROLE, GRAFANA_ROLE),
         dbname="postgres")


def tearDownModule():
    if SIM:
        SIM.stop()
    psql("drop database if exists %s with (force)" % DB, dbname="postgres")
    psql("drop role if exists %s" % GRAFANA_ROLE, dbname="postgres")


# ---------------------------------------------------------------------------

class Expander(unittest.TestCase):
    """The expander against the expansions Grafana's own tests assert (macros_test.go)."""

    def setUp(self):
        self.start = dt.datetime(2018, 4, 12, 18, 0, tzinfo=UTC)
        self.g = GrafanaExpander(self.start, self.start + dt.timedelta(minutes=5), {"athlete": "42"},
                                 interval_seconds=600)

    def test_time_macros(self):
        self.assertEqual(self.g.expand("select $__time(time_column)"), 'select time_column AS "time"')
        self.assertEqual(self.g.expand("WHERE $__timeFilter(time_column)"),
                         "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'")
        self.assertEqual(self.g.expand("select $__timeFrom()"), "select '2018-04-12T18:00:00Z'")
        self.assertEqual(self.g.expand("select $__timeTo()"), "select '2018-04-12T18:05:00Z'")
        self.assertEqual(self.g.expand("select $__unixEpochFilter(time)"),
                         "select time >= %d AND time <= %d" % (1523556000, 1523556300))
        half = GrafanaExpander(dt.datetime(1960, 2, 1, 7, 0, 0, 500000, tzinfo=UTC),
                               dt.datetime(1980, 2, 3, 8, 0, 0, 500000, tzinfo=UTC), {})
        self.assertEqual(half.expand("WHERE $__timeFilter(time_column)"),
                         "WHERE time_column BETWEEN '1960-02-01T07:00:00.5Z' AND '1980-02-03T08:00:00.5Z'")

    def test_time_group(self):
        self.assertEqual(self.g.expand("SELECT $__timeGroup(time_column,'5m')"),
                         "SELECT floor(extract(epoch from time_column)/300)*300")
        self.assertEqual(self.g.expand("SELECT $__timeGroup(time_column,'5m'), value"),
                         'SELECT floor(extract(epoch from time_column)/300)*300 AS "time", value')
        self.assertEqual(self.g.expand("$__timeGroupAlias(time_column , '5m')"),
                         'floor(extract(epoch from time_column)/300)*300 AS "time"')
        self.assertEqual(self.g.expand("SELECT $__unixEpochGroup(time_column+time_adjustment,'5m')"),
                         "SELECT floor((time_column+time_adjustment)/300)*300")

    def test_interval_and_variables(self):
        self.assertEqual(self.g.expand("SELECT $__interval, $__interval_ms"), "SELECT 10m, 600000")
        self.assertEqual(format_interval(86400), "1d")
        self.assertEqual(format_interval(0.05), "50ms")
        self.assertEqual(self.g.expand("where user_id = $athlete or user_id = ${athlete} or user_id = [[athlete]]"),
                         "where user_id = 42 or user_id = 42 or user_id = 42")
        quoted = GrafanaExpander(self.start, self.start, {"who": "O'Brien"})
        self.assertEqual(quoted.expand("name = '$who' or name = ${who:sqlstring}"),
                         "name = 'O''Brien' or name = 'O''Brien'")
        self.assertEqual(self.g.expand("select $unknown"), "select $unknown")

    def test_unknown_macro_is_an_error(self):
        with self.assertRaises(MacroError):
            self.g.expand("select $__nope(x)")


class Dashboard(unittest.TestCase):
    """The dashboard JSON and the provisioning files, without a database."""

    @classmethod
    def setUpClass(cls):
        cls.dash = load_dashboard()
        cls.panels = data_panels(cls.dash)

    def test_schema_and_settings(self):
        d = self.dash
        self.assertGreaterEqual(d["schemaVersion"], 36)
        self.assertEqual(d["uid"], "whoop-fdw")
        self.assertEqual(d["timezone"], "utc")       # WHOOP days are shown at 00:00 UTC
        self.assertTrue(d["time"]["from"].startswith("now-"))
        self.assertIsNone(d.get("id"))
        self.assertEqual({p["type"] for p in d["panels"]} - PANEL_TYPES, set())
        self.assertEqual(PANEL_TYPES - {p["type"] for p in d["panels"]}, set(), "every panel type is used")

    def test_ids_unique_and_grid(self):
        ids = [p["id"] for p in self.dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        cells = {}
        for p in self.dash["panels"]:
            g = p["gridPos"]
            self.assertTrue(0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    self.assertNotIn((x, y), cells, "%s overlaps %s" % (p["title"], cells.get((x, y))))
                    cells[(x, y)] = p["title"]

    def test_rows(self):
        rows_ = [p for p in self.dash["panels"] if p["type"] == "row"]
        self.assertEqual(rows_[0]["title"], "Overview")
        titles = [r["title"] for r in rows_[1:]]
        self.assertEqual(len(titles), 7)
        # each metric row's panels read that metric's view
        current = None
        for p in self.dash["panels"]:
            if p["type"] == "row":
                current = next((v for k, v in METRIC_ROWS.items() if k in p["title"]), None)
                if p["title"] != "Overview":
                    self.assertIsNotNone(current, p["title"])
                continue
            if current:
                self.assertIn("whoop.%s" % current, p["targets"][0]["rawSql"], p["title"])

    def test_every_panel_has_a_datasource_and_a_query(self):
        for p in self.panels:
            self.assertEqual(p["datasource"]["uid"], "whoop", p["title"])
            self.assertEqual(len(p["targets"]), 1, p["title"])
            t = p["targets"][0]
            self.assertEqual(t["datasource"]["uid"], "whoop", p["title"])
            self.assertTrue(t["rawQuery"], p["title"])
            self.assertIn(t["format"], ("time_series", "table"), p["title"])
            self.assertTrue(t["rawSql"].strip(), p["title"])
            self.assertTrue(p.get("description"), p["title"])

    def test_every_query_uses_the_athlete_and_the_time_range(self):
        for p in self.panels:
            sql = p["targets"][0]["rawSql"]
            if KPI_SOURCE in sql:
                continue        # the range is the call's arguments (test_kpi_panels_read_report_kpis)
            self.assertRegex(sql, r"user_id = \$athlete\b", p["title"])
            self.assertTrue("$__timeFilter(" in sql or ("$__timeFrom()" in sql and "$__timeTo()" in sql), p["title"])
            for arg in re.findall(r"\$__timeFilter\(([^\)]*)\)", sql):
                # Grafana compares with a timestamp literal: the day is cast to
                # timestamp (not timestamptz: independent of the session zone)
                self.assertTrue(arg.endswith("::timestamp"), (p["title"], arg))

    def test_kpi_panels_read_report_kpis(self):
        # the KPI panels compute nothing: they pick columns of the one function the reports read
        kpi = [p for p in self.panels if KPI_SOURCE in p["targets"][0]["rawSql"]]
        self.assertEqual({p["title"] for p in kpi}, KPI_PANELS)
        for p in kpi:
            sql = p["targets"][0]["rawSql"]
            self.assertRegex(sql, r'^select \w+ as "[^"]+"(, \w+ as "[^"]+")*\n%s$' % re.escape(KPI_SOURCE),
                             p["title"])
            for column in re.findall(r'(\w+) as "', sql):
                self.assertIn(column, KPI_COLUMNS, p["title"])

    def test_no_sql_comments(self):
        for p in self.panels:
            sql = p["targets"][0]["rawSql"]
            self.assertNotIn("--", sql, p["title"])
            self.assertNotIn("/*", sql, p["title"])

    def test_athlete_variable(self):
        var = {v["name"]: v for v in self.dash["templating"]["list"]}["athlete"]
        self.assertEqual(var["type"], "query")
        self.assertEqual(var["datasource"]["uid"], "whoop")
        self.assertIn("from whoop.dim_user where is_current", var["query"])
        self.assertIn("__value", var["query"])
        self.assertIn("__text", var["query"])
        self.assertFalse(var["multi"] or var["includeAll"])    # single value: inserted unquoted

    def test_units_and_thresholds(self):
        by_title = {p["title"]: p for p in self.panels}
        for title in ("Recovery", "Average recovery"):
            d = by_title[title]["fieldConfig"]["defaults"]
            self.assertEqual(d["unit"], "percent")
            self.assertEqual([(s["value"], s["color"]) for s in d["thresholds"]["steps"]], RECOVERY_STEPS)
        self.assertEqual(by_title["HRV"]["fieldConfig"]["defaults"]["unit"], "ms")
        self.assertEqual(by_title["Resting HR"]["fieldConfig"]["defaults"]["unit"], "suffix: bpm")
        self.assertEqual(by_title["Hours asleep"]["fieldConfig"]["defaults"]["unit"], "suffix: h")
        self.assertEqual(by_title["Day strain"]["fieldConfig"]["defaults"]["max"], 21)
        self.assertEqual(by_title["Recovery"]["options"]["colorMode"], "background")
        load = by_title["Acute:chronic workload ratio"]["fieldConfig"]["defaults"]
        self.assertEqual([s["value"] for s in load["thresholds"]["steps"]], [None, 0.8, 1.3, 1.5])
        for p in self.panels:
            for o in p["fieldConfig"].get("overrides", []):
                self.assertEqual(o["matcher"]["id"], "byName", p["title"])
        # the Recovery panel's colours follow the zones, and its description says their edges as
        # the rule has them (33.5 is red: "red <= 33" would be wrong)
        self.assertIn("(green from 67, yellow from 34 to below 67, red below 34)",
                      by_title["Recovery"]["description"])

    def test_provisioning_files(self):
        ds = open(DATASOURCE_YAML).read()
        self.assertRegex(ds, r"(?m)^\s+uid: whoop$")
        self.assertRegex(ds, r"(?m)^\s+type: postgres$")
        for key, var in (("url", "${WHOOP_PGHOST}:${WHOOP_PGPORT}"), ("user", "${WHOOP_PGUSER}"),
                         ("database", "${WHOOP_PGDATABASE}"), ("password", "${WHOOP_PGPASSWORD}")):
            self.assertRegex(ds, r"(?m)^\s+%s: %s$" % (key, re.escape(var)))
        prov = open(PROVIDER_YAML).read()
        self.assertRegex(prov, r"(?m)^\s+path: \$\{WHOOP_DASHBOARDS_DIR\}$")
        readme = open(os.path.join(ROOT, "README.md")).read()
        config = "\n".join(line for line in (ds + prov).splitlines() if not line.lstrip().startswith("#"))
        variables = set(re.findall(r"\$\{(\w+)\}", config))
        self.assertEqual(variables, {"WHOOP_PGHOST", "WHOOP_PGPORT", "WHOOP_PGUSER", "WHOOP_PGPASSWORD",
                                     "WHOOP_PGDATABASE", "WHOOP_PGSSLMODE", "WHOOP_DASHBOARDS_DIR"})
        for var in variables:
            self.assertTrue(var in readme, "README documents %s" % var)
        try:
            import yaml
        except ImportError:
            return
        src = yaml.safe_load(ds)["datasources"][0]
        self.assertEqual((src["uid"], src["type"], src["access"]), ("whoop", "postgres", "proxy"))
        self.assertEqual(src["secureJsonData"]["password"], "${WHOOP_PGPASSWORD}")
        self.assertEqual(yaml.safe_load(prov)["providers"][0]["type"], "file")


class PanelQueries(unittest.TestCase):
    """Every panel query, expanded as Grafana does, run as the Grafana login role."""

    @classmethod
    def setUpClass(cls):
        cls.dash = load_dashboard()
        cls.panels = data_panels(cls.dash)
        first = scalar("select min(day) from whoop.fact_daily_strain")
        cls.full = (dt.datetime.fromisoformat(first).replace(tzinfo=UTC), NOW)

    def run_panel(self, p, start, end, athlete):
        g = GrafanaExpander(start, end, {"athlete": str(athlete)})
        sql = g.expand(p["targets"][0]["rawSql"])
        self.assertNotRegex(sql, r"\$\w", p["title"])     # nothing left unexpanded
        try:
            return sql, reader_query(sql)
        except harness.SQLError as e:
            self.fail("%s: %s\n%s" % (p["title"], e.output, sql))

    def check_shape(self, p, cols, data):
        title, fmt = p["title"], p["targets"][0]["format"]
        names = [c[0] for c in cols]
        types = [c[1] for c in cols]
        self.assertEqual(len(set(names)), len(names), title)
        if fmt == "time_series":
            self.assertEqual(names[0], "time", title)
            self.assertEqual(types[0], "timestamp without time zone", title)
            self.assertGreaterEqual(len(cols), 2, title)
            for n, t in cols[1:]:
                self.assertIn(t, NUMERIC_TYPES, (title, n))
            times = [r[0] for r in data]
            self.assertEqual(times, sorted(times), "%s: sorted by time" % title)
            self.assertEqual(len(times), len(set(times)), "%s: one row per time" % title)
        elif p["type"] in ("stat", "gauge", "piechart"):
            self.assertEqual(len(data), 1, title)
            for n, t in cols:
                self.assertIn(t, NUMERIC_TYPES, (title, n))
        elif p["type"] == "barchart":
            self.assertEqual(names[0], p["options"]["xField"], title)
            self.assertEqual(types[0], "text", title)
            for n, t in cols[1:]:
                self.assertIn(t, NUMERIC_TYPES, (title, n))
        elif p["type"] == "xychart":
            self.assertEqual(len(cols), 2, title)
            for n, t in cols:
                self.assertIn(t, NUMERIC_TYPES, (title, n))
        elif p["type"] == "table":
            self.assertGreaterEqual(len(cols), 3, title)
        else:
            self.fail("unexpected panel %s %s" % (p["type"], title))
        for o in p["fieldConfig"].get("overrides", []):
            self.assertIn(o["matcher"]["options"], names, "%s: override names a returned column" % title)

    def test_every_panel_over_the_whole_range(self):
        risk = {int(r[0]): int(r[1]) for r in rows(
            "select user_id, count(*) filter (where overtraining_risk) from whoop.training_readiness_gap group by 1")}
        self.assertTrue(any(risk.values()), "the data has overtraining-risk days")
        for athlete in USERS:
            for p in self.panels:
                with self.subTest(panel=p["title"], athlete=athlete):
                    sql, (cols, data) = self.run_panel(p, self.full[0], self.full[1], athlete)
                    # risk days are rare: an athlete without any sees none, and 0
                    only_risk = re.search(r"overtraining_risk|risk_days", p["targets"][0]["rawSql"]) is not None
                    if only_risk and risk.get(athlete, 0) == 0:
                        if p["type"] == "table":
                            self.assertEqual(data, [], p["title"])
                        else:
                            self.assertEqual(data, [["0"]], p["title"])
                        self.check_shape(p, cols, data)
                        continue
                    self.assertGreater(len(data), 0, "%s: no rows\n%s" % (p["title"], sql))
                    self.check_shape(p, cols, data)
                    numbers = [float(v) for r in data for (n, t), v in zip(cols, r)
                               if t in NUMERIC_TYPES and v != ""]
                    self.assertTrue(any(numbers), "%s: only zeros or NULLs" % p["title"])
                    if only_risk and p["type"] == "table":
                        self.assertEqual(len(data), risk[athlete], p["title"])

    def test_the_time_picker_drives_every_panel(self):
        week = (NOW - dt.timedelta(days=7), NOW)
        empty = (dt.datetime(2001, 1, 1, tzinfo=UTC), dt.datetime(2001, 3, 1, tzinfo=UTC))
        athlete = USERS[0]
        for p in self.panels:
            with self.subTest(panel=p["title"]):
                _, (cols, data) = self.run_panel(p, empty[0], empty[1], athlete)
                numbers = [v for r in data for (n, t), v in zip(cols, r) if t in NUMERIC_TYPES]
                self.assertTrue(all(v in ("", "0") for v in numbers), "%s: %r" % (p["title"], data[:3]))
                _, (cols, data) = self.run_panel(p, week[0], week[1], athlete)
                if p["targets"][0]["format"] == "time_series":
                    self.assertGreater(len(data), 0, p["title"])
                    self.assertLessEqual(len(data), 7, p["title"])
                    for r in data:
                        t = dt.datetime.fromisoformat(r[0]).replace(tzinfo=UTC)
                        self.assertTrue(week[0] <= t <= week[1], (p["title"], r[0]))

    def test_panels_follow_the_athlete(self):
        p = next(p for p in self.panels if p["title"] == "Recovery")
        got = [self.run_panel(p, self.full[0], self.full[1], a)[1][1] for a in USERS]
        self.assertNotEqual(got[0], got[1])
        self.assertEqual(len(got[0]), int(scalar("select count(recovery_score) from whoop.fact_daily_recovery "
                                                 "where user_id = %d" % USERS[0])))

    def test_the_athlete_variable_query(self):
        var = self.dash["templating"]["list"][0]
        cols, data = reader_query(GrafanaExpander(*self.full, {}).expand(var["query"]))
        self.assertEqual([c[0] for c in cols], ["__value", "__text"])
        self.assertEqual(sorted(int(r[0]) for r in data), sorted(USERS))
        self.assertTrue(all(r[1] for r in data))

    def test_the_role_reads_nothing_else(self):
        with self.assertRaises(harness.SQLError) as cm:
            reader_query("select count(*) from whoop.raw_cycle")
        self.assertEqual(cm.exception.sqlstate, "42501")


# The same numbers computed without whoop.report_kpis(): a calendar of the
# days, each fact and metric joined to its day, plain aggregates; the
# latest values as the first element of an array ordered by day, newest
# first; the season as the one with the greatest start up to the last day.
PLAIN_KPIS = """
select k.*, a.year, a.season, a.recovery_days, a.adaptation_category, a.avg_recovery, a.baseline_recovery
from (
select count(r.recovery_score), count(s.day_strain), avg(r.recovery_score),
       count(*) filter (where r.recovery_zone = 'green'), count(*) filter (where r.recovery_zone = 'yellow'),
       count(*) filter (where r.recovery_zone = 'red'),
       avg(r.hrv_rmssd_milli), avg(r.resting_heart_rate), avg(r.hours_asleep), avg(s.day_strain),
       count(*) filter (where g.overtraining_risk),
       max(r.day) filter (where r.recovery_score is not null),
       (array_agg(r.recovery_score order by c.day desc) filter (where r.recovery_score is not null))[1],
       (array_agg(r.recovery_zone order by c.day desc) filter (where r.recovery_score is not null))[1],
       (array_agg(v.volatility_category order by c.day desc) filter (where v.volatility_category is not null))[1],
       (array_agg(v.volatility_30d order by c.day desc) filter (where v.volatility_category is not null))[1],
       (array_agg(b.balance_state order by c.day desc) filter (where b.balance_state is not null))[1],
       (array_agg(b.balance_score order by c.day desc) filter (where b.balance_state is not null))[1],
       (array_agg(l.load_zone order by c.day desc) filter (where l.load_zone is not null))[1],
       (array_agg(l.acwr_ewma order by c.day desc) filter (where l.load_zone is not null))[1]
from (select d::date as day from generate_series(date '%(first)s', date '%(last)s', interval '1 day') d) c
left join whoop.fact_daily_strain s on s.user_id = %(user)d and s.day = c.day
left join whoop.fact_daily_recovery r on r.user_id = %(user)d and r.day = c.day
left join whoop.training_readiness_gap g on g.user_id = %(user)d and g.day = c.day
left join whoop.recovery_volatility v on v.user_id = %(user)d and v.day = c.day
left join whoop.autonomic_balance b on b.user_id = %(user)d and b.day = c.day
left join whoop.training_load l on l.user_id = %(user)d and l.day = c.day
) k
left join whoop.seasonal_adaptation a
    on a.user_id = %(user)d
   and a.season_start = (select max(x.season_start) from whoop.seasonal_adaptation x
                         where x.user_id = %(user)d and x.season_start <= date '%(last)s')
"""


def plain_kpis(user, first, last):
    """plain_kpis: PLAIN_KPIS for USER's days FIRST ... LAST as {column: text or None}."""
    values = rows(PLAIN_KPIS % {"user": user, "first": first.isoformat(), "last": last.isoformat()})[0]
    return {c: (v if v != "" else None) for c, v in zip(KPI_COLUMNS, values)}


def grafana_days(start, end):
    """grafana_days: the first and last day $__timeFilter(day::timestamp) keeps of START ... END (UTC):
    a day counts when its 00:00 lies in the range."""
    first = start.date() if start.time() == dt.time(0) else start.date() + dt.timedelta(days=1)
    return first, end.date()


def pg_round(text, places):
    """pg_round: a double precision as psql prints it, shown the way round(x::numeric, places)::text
    shows it -- the cast keeps 15 significant digits, round() takes halves away from zero."""
    if text is None:
        return None
    d = decimal.Decimal("%.15g" % float(text))
    return str(d.quantize(decimal.Decimal(1).scaleb(-places), rounding=decimal.ROUND_HALF_UP))


def midnight(day):
    return dt.datetime.combine(day, dt.time(0), tzinfo=UTC)


def report_range(user, days):
    """report_range: the days whoop.report() and whoop.report_html() cover for USER and DAYS: the last
    DAYS days of the member's data, all of it when it has fewer."""
    first, last = (dt.date.fromisoformat(d) for d in
                   rows("select min(day), max(day) from whoop.fact_daily_strain where user_id = %d" % user)[0])
    if days - 1 >= (last - first).days:
        return first, last
    return last - dt.timedelta(days=days - 1), last


def range_text(user, days):
    """range_text: how the reports' headers describe the range of report_range(USER, DAYS)."""
    first, last = report_range(user, days)
    n = (last - first).days + 1
    return "%d %s%s" % (n, "day" if n == 1 else "days", ", all of the member's data" if n < days else "")


class Kpis(unittest.TestCase):
    """whoop.report_kpis(): its numbers, and that every consumer shows exactly them.

    For the class, one day of the first athlete has a scored sleep but an
    unscorable recovery (the simulator scores both or neither): its sleep
    counts in the mean hours asleep, its recovery in nothing.  And the
    second athlete's latest day with an autonomic balance state has a sleep
    without a respiratory rate: that day keeps its state but has no balance
    score."""

    @classmethod
    def setUpClass(cls):
        first = scalar("select min(day) from whoop.fact_daily_strain")
        cls.ranges = {
            "all data": (dt.datetime.fromisoformat(first).replace(tzinfo=UTC), NOW),
            "last week, from noon": (NOW - dt.timedelta(days=7), NOW),
            "90 days, odd ends": (dt.datetime(2026, 3, 31, 23, 59, 59, 500000, tzinfo=UTC),
                                  dt.datetime(2026, 6, 29, tzinfo=UTC)),
            "January, midnight to midnight": (dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 2, 1, tzinfo=UTC)),
            "within one day": (dt.datetime(2026, 5, 5, 1, tzinfo=UTC), dt.datetime(2026, 5, 5, 23, tzinfo=UTC)),
            "before any data": (dt.datetime(2001, 1, 1, tzinfo=UTC), dt.datetime(2001, 3, 1, tzinfo=UTC)),
        }
        user = USERS[0]
        cls.cycle, cls.day = rows(
            "select cycle_id, day from whoop.fact_daily_recovery where user_id = %d and recovery_score is not null "
            "and hours_asleep is not null and day <= (select max(day) - 2 from whoop.fact_daily_strain "
            "where user_id = %d) order by day desc limit 1" % (user, user))[0]
        cls.sleep, cls.respiratory_rate = rows(
            "select r.sleep_id, r.respiratory_rate from whoop.fact_daily_recovery r "
            "where r.user_id = %d and r.day = (select max(b.day) from whoop.autonomic_balance b "
            "where b.user_id = %d and b.balance_state is not null)" % (USERS[1], USERS[1]))[0]
        psql("update whoop.raw_recovery set score_state = 'UNSCORABLE' where cycle_id = %s; "
             "update whoop.raw_sleep set record = record #- '{score,respiratory_rate}' where id = '%s'; "
             "select * from whoop.refresh();" % (cls.cycle, cls.sleep))

    @classmethod
    def tearDownClass(cls):
        psql("update whoop.raw_recovery set score_state = 'SCORED' where cycle_id = %s; "
             "update whoop.raw_sleep set record = jsonb_set(record, '{score,respiratory_rate}', '%s') where id = '%s'; "
             "select * from whoop.refresh();" % (cls.cycle, cls.respiratory_rate, cls.sleep))

    def assertKpi(self, column, got, want, msg):
        if column in KPI_FLOATS and got is not None and want is not None:
            # the same values summed in another order may differ in the last bits
            self.assertAlmostEqual(float(got), float(want), delta=1e-9 * max(1, abs(float(want))),
                                   msg="%s: %s" % (msg, column))
        else:
            self.assertEqual(got, want, "%s: %s" % (msg, column))

    def assertKpis(self, got, want, msg):
        for c in KPI_COLUMNS:
            self.assertKpi(c, got[c], want[c], msg)

    def kpis(self, user, start, end):
        cols, data = reader_query("select * from whoop.report_kpis(%d, '%s', '%s')"
                                  % (user, rfc3339nano(start), rfc3339nano(end)))
        self.assertEqual([c[0] for c in cols], KPI_COLUMNS)
        self.assertEqual(len(data), 1)
        return {c: (v if v != "" else None) for c, v in zip(KPI_COLUMNS, data[0])}

    def test_the_day_without_a_scored_recovery(self):
        r = rows("select recovery_score, hours_asleep from whoop.fact_daily_recovery where cycle_id = %s" % self.cycle)
        self.assertEqual(r[0][0], "")
        self.assertNotEqual(r[0][1], "")
        first, last = report_range(USERS[0], 14)
        self.assertTrue(first <= dt.date.fromisoformat(self.day) <= last)
        k = self.kpis(USERS[0], midnight(first), midnight(last))
        all_nights = scalar("select avg(hours_asleep) from whoop.fact_daily_recovery where user_id = %d "
                            "and day between '%s' and '%s'" % (USERS[0], first, last))
        scored_only = scalar("select avg(hours_asleep) from whoop.fact_daily_recovery where user_id = %d "
                             "and day between '%s' and '%s' and recovery_score is not null" % (USERS[0], first, last))
        self.assertNotEqual(pg_round(all_nights, 6), pg_round(scored_only, 6))
        self.assertEqual(pg_round(k["mean_hours_asleep"], 9), pg_round(all_nights, 9))

    def test_a_balance_state_without_a_score(self):
        first, last = report_range(USERS[1], 14)
        k = self.kpis(USERS[1], midnight(first), midnight(last))
        self.assertIsNotNone(k["latest_balance_state"])
        self.assertIsNone(k["latest_balance_score"])
        line = psql("select * from whoop.report(%d, 14)" % USERS[1]).split("\n")[2]
        self.assertIn(" · balance %s · load " % k["latest_balance_state"], line)
        self.assertNotIn("score", line)

    def test_kpis_equal_a_plain_computation_over_the_facts(self):
        for name, (start, end) in self.ranges.items():
            first, last = grafana_days(start, end)
            for user in USERS:
                with self.subTest(range=name, user=user):
                    want = plain_kpis(user, first, last)
                    self.assertKpis(self.kpis(user, start, end), want, name)
                    if name == "all data":
                        self.assertGreater(int(want["risk_days"]) + int(want["recovery_days"]), 300)
                        self.assertIsNotNone(want["season"])
                    if name == "before any data":
                        self.assertEqual((want["recovery_days"], want["mean_recovery"]), ("0", None))
        # two dates: those days, both included
        for user in USERS:
            first, last = report_range(user, 30)
            got = self.kpis(user, midnight(first), midnight(last))
            self.assertKpis(got, plain_kpis(user, first, last), "30 days by date")

    def test_kpi_panels_show_the_plain_numbers(self):
        panels = [p for p in data_panels(load_dashboard()) if p["title"] in KPI_PANELS]
        self.assertEqual(len(panels), len(KPI_PANELS))
        for name, (start, end) in self.ranges.items():
            for user in USERS:
                want = plain_kpis(user, *grafana_days(start, end))
                for p in panels:
                    with self.subTest(range=name, user=user, panel=p["title"]):
                        sql = p["targets"][0]["rawSql"]
                        cols, data = reader_query(GrafanaExpander(start, end, {"athlete": str(user)}).expand(sql))
                        column = dict((alias, c) for c, alias in re.findall(r'(\w+) as "([^"]+)"', sql))
                        if len(cols) == 1 and data == []:
                            data = [[""]]       # one NULL: psql prints an empty line, reader_query drops it
                        self.assertEqual(len(data), 1)
                        for (alias, _), value in zip(cols, data[0]):
                            self.assertKpi(column[alias], value or None, want[column[alias]], p["title"])

    def test_report_text_shows_the_kpis(self):
        for user in USERS:
            for days in (1, 14, 120, 2147483647):
                with self.subTest(user=user, days=days):
                    k = plain_kpis(user, *report_range(user, days))
                    lines = psql("select * from whoop.report(%d, %d)" % (user, days)).split("\n")
                    self.assertTrue(lines[0].endswith("(%s)" % range_text(user, days)), lines[0])

                    def shown(c, places):
                        return pg_round(k[c], places) or "-"
                    self.assertEqual(lines[1], "recovery %s %% avg (%s green, %s yellow, %s red) · HRV %s ms · "
                                     "RHR %s bpm · strain %s · asleep %s h · risk days %s"
                                     % (shown("mean_recovery", 0), k["green_days"], k["yellow_days"],
                                        k["red_days"], shown("mean_hrv", 0), shown("mean_resting_hr", 0),
                                        shown("mean_day_strain", 1), shown("mean_hours_asleep", 1), k["risk_days"]))
                    volatility = balance = load = "-"
                    if k["latest_volatility_category"]:
                        volatility = "%s (sd %s)" % (k["latest_volatility_category"], shown("latest_volatility_30d", 1))
                    if k["latest_balance_state"]:
                        balance = k["latest_balance_state"]
                        if k["latest_balance_score"] is not None:
                            balance += " (score %s)" % pg_round(k["latest_balance_score"], 0)
                    if k["latest_load_zone"]:
                        load = "%s (ACWR %s)" % (k["latest_load_zone"], shown("latest_acwr", 2))
                    self.assertEqual(lines[2], "latest: volatility %s · balance %s · load %s"
                                     % (volatility, balance, load))
                    self.assertIsNotNone(k["season"])
                    baseline = k["season_baseline_recovery"]
                    if k["season_recovery"] is None:
                        n = int(k["season_recovery_days"])
                        self.assertLess(n, 14)
                        self.assertEqual(lines[3], "season: %s %s, too few days yet (%d %s with a scored recovery)"
                                         % (k["season_year"], k["season"], n, "day" if n == 1 else "days"))
                    else:
                        self.assertEqual(lines[3], "season: %s %s, %s (recovery %s %%%s)"
                                         % (k["season_year"], k["season"],
                                            k["season_adaptation_category"] or "no baseline yet",
                                            shown("season_recovery", 0),
                                            " vs %s %% before it" % pg_round(baseline, 0) if baseline else ""))

    def test_report_html_shows_the_kpis(self):
        for user in USERS:
            for days in (14, 90, 2147483647):
                with self.subTest(user=user, days=days):
                    k = plain_kpis(user, *report_range(user, days))
                    page = psql("select whoop.report_html(%d, %d)" % (user, days))
                    self.assertIn("(%s) · %s of them with a scored recovery</p>" % (range_text(user, days),
                                                                                  k["recovery_days"]), page)
                    section = re.search(r'<section class="kpis">(.*?)</section>', page).group(1)
                    got = {label: re.sub(r"<[^>]+>", "", value) for value, label in
                           re.findall(r'<div class="kpi"><b[^>]*>(.*?)</b><span>(.*?)</span></div>', section)}

                    def shown(c, places, unit=""):
                        return pg_round(k[c], places) + unit if k[c] is not None else "–"
                    day = dt.date.fromisoformat(k["latest_recovery_day"])
                    self.assertEqual(got, {
                        "latest recovery (%s)" % day.strftime("%d %b"): shown("latest_recovery", 0, " %"),
                        "average recovery": shown("mean_recovery", 0, " %"),
                        "green · yellow · red days": "%s · %s · %s" % (k["green_days"], k["yellow_days"],
                                                                        k["red_days"]),
                        "average HRV": shown("mean_hrv", 0) + " ms",
                        "average resting HR": shown("mean_resting_hr", 0) + " bpm",
                        "average day strain": shown("mean_day_strain", 1),
                        "average asleep": shown("mean_hours_asleep", 1) + " h",
                        "overtraining-risk days": k["risk_days"],
                    })
                    self.assertIn("· %s of them with a scored recovery</p>" % k["recovery_days"], page)


class Reports(unittest.TestCase):
    """whoop.daily_summary, whoop.report() and whoop.report_html() on the simulator data."""

    def test_daily_summary_has_a_row_per_member_day(self):
        self.assertEqual(scalar("select count(*) from whoop.daily_summary"),
                         scalar("select count(*) from whoop.fact_daily_strain"))
        self.assertEqual(scalar("select count(*) from (select user_id, day from whoop.daily_summary "
                                "group by 1, 2 having count(*) > 1) d"), "0")

    def test_daily_summary_agrees_with_the_marts_and_metrics(self):
        bad = scalar("""
            select count(*) from whoop.daily_summary d
            join whoop.fact_daily_recovery r using (user_id, day)
            join whoop.fact_daily_strain s using (user_id, day)
            left join whoop.recovery_momentum m using (user_id, day)
            left join whoop.training_readiness_gap g using (user_id, day)
            left join whoop.training_load l using (user_id, day)
            where d.recovery is distinct from round(r.recovery_score::numeric)
               or d.recovery_zone is distinct from r.recovery_zone
               or d.hrv_ms is distinct from round(r.hrv_rmssd_milli::numeric, 1)
               or d.day_strain is distinct from round(s.day_strain::numeric, 1)
               or d.momentum_category is distinct from m.momentum_category
               or d.gap_category is distinct from g.gap_category
               or d.overtraining_risk is distinct from g.overtraining_risk
               or d.load_zone is distinct from l.load_zone""")
        self.assertEqual(bad, "0")
        self.assertGreater(int(scalar("select count(*) from whoop.daily_summary where recovery is not null "
                                      "and momentum_category is not null and balance_state is not null "
                                      "and load_zone is not null and name is not null")), 300)

    def test_the_reader_may_use_the_summary_and_the_reports(self):
        n = scalar("select count(*) from whoop.daily_summary", user=GRAFANA_ROLE)
        self.assertGreater(int(n), 0)
        self.assertGreater(len(psql("select * from whoop.report(%d, 7)" % USERS[0], user=GRAFANA_ROLE)), 0)
        self.assertTrue(psql("select whoop.report_html(%d, 30)" % USERS[0],
                             user=GRAFANA_ROLE).startswith("<!DOCTYPE html>"))

    def test_report_text(self):
        lines = psql("select * from whoop.report(%d, 14)" % USERS[0]).split("\n")[:-1]
        last = scalar("select max(day) from whoop.fact_daily_strain where user_id = %d" % USERS[0])
        first = (dt.date.fromisoformat(last) - dt.timedelta(days=13)).isoformat()
        name = scalar("select name from whoop.dim_user where is_current and user_id = %d" % USERS[0])
        self.assertEqual(lines[0], "%s · member %d · %s to %s (14 days)" % (name, USERS[0], first, last))
        self.assertTrue(lines[1].startswith("recovery "), lines[1])
        self.assertTrue(lines[2].startswith("latest: volatility "), lines[2])
        header = next(i for i, l in enumerate(lines) if l.startswith("day "))
        days = [l for l in lines[header + 1:] if re.match(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d\d-\d\d ", l)]
        expect = int(scalar("select count(*) from whoop.daily_summary where user_id = %d and day between '%s' and '%s'"
                            % (USERS[0], first, last)))
        self.assertEqual(len(days), expect)
        self.assertGreaterEqual(expect, 10)
        for line in lines:
            self.assertLessEqual(len(line), 120, line)
            self.assertEqual(line, line.rstrip(), "no trailing blanks")
        both = psql("select * from whoop.report(null, 3)")
        for u in USERS:
            self.assertIn("member %d ·" % u, both)
        self.assertEqual(psql("select * from whoop.report(4242, 7)").strip(), "no data for member 4242")
        with self.assertRaises(harness.SQLError) as cm:
            psql("select * from whoop.report(null, 0)")
        self.assertEqual(cm.exception.sqlstate, "22023")

    def test_report_html(self):
        page = psql("select whoop.report_html(%d, 120)" % USERS[0])
        self.assertTrue(page.startswith("<!DOCTYPE html>"))
        self.assertEqual(page.count("<svg"), 4)
        self.assertEqual(page.count("</svg>"), 4)
        self.assertEqual(page.count("<table"), expected_tables(USERS[0], 120))
        lowered = page.lower()
        for forbidden in ("<script", "src=", "href=", "url(", "@import", "<link", "<iframe", "javascript:"):
            self.assertNotIn(forbidden, lowered)
        self.assertEqual(re.findall(r"https?://[^\"' ]+", page), ["http://www.w3.org/2000/svg"] * 4)
        # the zone edges as the rule has them: red below 34, not "up to 33" (33.5 is red)
        legend = re.search(r'<text class="lg"[^>]*>(.*?)</text>', page).group(1)     # the recovery chart's
        self.assertEqual(re.sub(r"<[^>]+>", "", legend), "■ green ≥ 67  ■ yellow 34 to below 67  ■ red below 34")
        self.assertIn("Zones: recovery green from 67, yellow from 34 to below 67, red below 34.", page)
        for wrong in ("≤ 33", "<= 33", "34–66", "34-66"):
            self.assertNotIn(wrong, page)
        with self.assertRaises(harness.SQLError) as cm:
            psql("select whoop.report_html(null)")         # two members: which one?
        self.assertEqual(cm.exception.sqlstate, "22023")
        with self.assertRaises(harness.SQLError) as cm:
            psql("select whoop.report_html(4242)")
        self.assertEqual(cm.exception.sqlstate, "P0002")

    def test_days_beyond_the_history(self):
        # any number of days: the whole history, never a date out of range (it was a bare 22008)
        user = USERS[0]
        first, last = report_range(user, 2147483647)
        self.assertGreater((last - first).days, 400)
        n = (last - first).days + 1
        for days, text in ((2147483647, "%d days, all of the member's data" % n),
                           (n + 1, "%d days, all of the member's data" % n), (n, "%d days" % n)):
            with self.subTest(days=days):
                lines = psql("select * from whoop.report(%d, %d)" % (user, days)).split("\n")
                self.assertTrue(lines[0].endswith(" · %s to %s (%s)" % (first, last, text)), lines[0])
                page = psql("select whoop.report_html(%d, %d)" % (user, days))
                self.assertIn("%s to %s (%s) ·" % (first.strftime("%d %b %Y"), last.strftime("%d %b %Y"), text),
                              page)
                self.assertIn("whoop.report_html(%d, %d)." % (user, days), page)

    def test_html_escape(self):
        self.assertEqual(scalar("select whoop_internal.html_escape($$<a href=\"x\">Tom & 'Jerry'</a>$$)"),
                         "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;")
        self.assertEqual(scalar("select whoop_internal.html_escape(null) is null"), "t")

    def test_names_cannot_inject_markup(self):
        evil = "<script>alert(1)</script><b onmouseover=\"x\">Eve & 'Co'"
        user = USERS[1]
        psql("insert into whoop.raw_profile (user_id, observed_at, email, first_name, last_name, record) "
             "values (%d, now(), 'eve@example.org', %s, 'O''Hara', '{}')" % (user, harness.quote_literal(evil)))
        try:
            psql("select * from whoop.refresh()")
            page = psql("select whoop.report_html(%d, 30)" % user)
            self.assertNotIn("<script", page.lower())
            self.assertNotIn("<b onmouseover", page)
            self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;&lt;b onmouseover=&quot;x&quot;&gt;Eve &amp; "
                          "&#39;Co&#39; O&#39;Hara", page)
        finally:
            psql("delete from whoop.raw_profile where email = 'eve@example.org'; select * from whoop.refresh();")


def expected_tables(user, days):
    """expected_tables: six category tables and the seasons, plus the risk days if there are any."""
    risk = scalar("select count(*) from whoop.training_readiness_gap where user_id = %d and overtraining_risk "
                  "and day > (select max(day) from whoop.fact_daily_strain where user_id = %d) - %d"
                  % (user, user, days))
    return 7 + (int(risk) > 0)


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(args, tmp, timeout=180):
    """run_chromium runs headless Chromium with a fresh profile; returns (stdout, stderr)."""
    profile = tempfile.mkdtemp(prefix="profile.", dir=tmp)
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0"] + args
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp)
    if proc.returncode != 0:
        raise AssertionError("chromium failed (%d): %s" % (proc.returncode, proc.stderr[-3000:]))
    return proc.stdout, proc.stderr


def console_errors(log):
    """console_errors: the page's script errors and console messages in Chromium's log."""
    return [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


class HtmlInChromium(unittest.TestCase):
    """The HTML report rendered by headless Chromium (Debian package chromium)."""

    WINDOW = (1060, 2060)

    @classmethod
    def setUpClass(cls):
        if not chromium():
            raise AssertionError("chromium is not installed (test/install_deps.sh chromium)")
        cls.tmp = tempfile.mkdtemp(prefix="whoop_report.")
        cls.page = os.path.join(cls.tmp, "report.html")
        with open(cls.page, "w") as f:
            f.write(psql("select whoop.report_html(%d, 90)" % USERS[0]))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_the_error_check_sees_script_errors(self):
        bad = os.path.join(self.tmp, "bad.html")
        with open(bad, "w") as f:
            f.write("<!DOCTYPE html><html><body><script>undefined_function_here();</script></body></html>")
        _, log = run_chromium(["--dump-dom", "file://" + bad], self.tmp)
        self.assertTrue(any("undefined_function_here" in line for line in console_errors(log)), log[-2000:])

    def test_dom_has_the_charts_and_no_errors(self):
        dom, log = run_chromium(["--dump-dom", "file://" + self.page], self.tmp)
        self.assertEqual(console_errors(log), [])
        self.assertEqual(len(re.findall(r"<svg\b", dom)), 4)
        charts = re.findall(r"<svg\b[^>]*>(.*?)</svg>", dom, re.S)
        self.assertEqual(len(charts), 4)
        titles = [re.search(r"<title>(.*?)</title>", c).group(1) for c in charts]
        self.assertEqual(titles, ["Recovery (%)", "Heart-rate variability (rMSSD, ms, log scale)",
                                  "Day strain vs recommended target", "Acute:chronic workload ratio (day strain)"])
        for title, chart in zip(titles, charts):
            # data drawn: dots or bars, or line segments in the paths
            points = len(re.findall(r"<circle\b", chart)) + len(re.findall(r'<rect x="[0-9.]+" y="[0-9.]+" width="[0-9.]+" '
                                                                      r'height="[0-9.]+" fill="#[0-9a-f]+"/>', chart))
            points += sum(len(re.findall(r"[ML]", d)) for d in re.findall(r'<path [^>]*d="([^"]*)"', chart))
            self.assertGreater(points, 60, title)
        self.assertEqual(len(re.findall(r"<table\b", dom)), expected_tables(USERS[0], 90))
        name = scalar("select name from whoop.dim_user where is_current and user_id = %d" % USERS[0])
        self.assertIn("<h1>%s</h1>" % name, dom)

    # What the test adds to a copy of the page (the report itself runs no
    # script): every text of every chart with its box, in the chart's
    # coordinates, written into the DOM that --dump-dom prints.
    PROBE = """<script>
window.addEventListener('load', function () {
  var out = [];
  document.querySelectorAll('svg.chart').forEach(function (svg, i) {
    var box = svg.viewBox.baseVal;
    svg.querySelectorAll('text').forEach(function (t) {
      var b = t.getBBox();
      out.push([i, t.getAttribute('class'), t.textContent, b.x, b.y, b.width, b.height, box.width, box.height]);
    });
  });
  var pre = document.createElement('pre');
  pre.id = 'measured';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""

    def test_no_text_leaves_its_chart(self):
        # The report's charts, and charts of 14 days to a year ending 27 November ... 7 December
        # 2026: ending on 1 December puts "Dec 2026" in the last slot of a month axis, ending on
        # a Monday (30 November, 7 December) a day label in the last slot of a week axis.
        ranges = [(days, dt.date(2026, 11, 27) + dt.timedelta(days=i))
                  for days in (14, 30, 63, 64, 90, 365) for i in range(11)]
        extra = psql("select string_agg(whoop_internal.report_chart('edge', null, r.last_day - (r.days - 1), "
                     "r.last_day, 0, 100, array[0, 100], array['0', '100'], null, null), '' order by r.i) "
                     "from unnest(array[%s], array[%s]::date[]) with ordinality r(days, last_day, i)"
                     % (", ".join(str(d) for d, _ in ranges), ", ".join("'%s'" % l for _, l in ranges)))
        probe = os.path.join(self.tmp, "probe.html")
        with open(self.page) as f, open(probe, "w") as out:
            out.write(f.read().replace("</body>", "<section>%s</section>%s</body>" % (extra, self.PROBE)))
        dom, log = run_chromium(["--dump-dom", "file://" + probe], self.tmp)
        self.assertEqual(console_errors(log), [])
        measured = json.loads(html.unescape(re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S).group(1)))
        self.assertEqual(len({m[0] for m in measured}), 4 + len(ranges))
        boxes = {}
        for chart, cls, text, x, y, w, h, width, height in measured:
            name = "report chart %d" % chart if chart < 4 else "%d days to %s" % ranges[chart - 4]
            self.assertTrue(0 <= x and x + w <= width and 0 <= y and y + h <= height,
                            "%s: %r at x %.1f ... %.1f, y %.1f ... %.1f, outside 0 ... %d, 0 ... %d"
                            % (name, text, x, x + w, y, y + h, width, height))
            boxes[chart, cls] = (x, x + w)
        month_end = [m for m in measured if m[0] == 4 + ranges.index((90, dt.date(2026, 12, 1))) and m[1] == "xl"]
        self.assertEqual(month_end[-1][2], "Dec 2026")
        for chart in range(4):
            self.assertLess(boxes[chart, "ct"][1], boxes[chart, "lg"][0], "legend runs into the title")

    def test_screenshot(self):
        os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
        shot = os.path.join(self.tmp, "report.png")
        _, log = run_chromium(["--hide-scrollbars", "--screenshot=" + shot,
                               "--window-size=%d,%d" % self.WINDOW, "file://" + self.page], self.tmp)
        self.assertEqual(console_errors(log), [])
        self.assertEqual(png_size(shot), self.WINDOW)
        self.assertGreater(os.path.getsize(shot), 20000)      # not a blank page
        shutil.copyfile(shot, SCREENSHOT)


if __name__ == "__main__":
    unittest.main()
