#!/usr/bin/env python3
"""runner.py -- run every whoop_fdw test suite and print the totals.

Started by test/run_tests.sh after the build and install.  It creates a
throwaway cluster (pg_cron preloaded), starts a WHOOP simulator for the
pg_regress suite, runs pg_regress on sql/ and then every
test/suites/test_*.py module (each in its own process, against the same
cluster), stops all it started -- also on failure -- and prints a summary
line per suite, named by the PostgreSQL major version under test ("pg17
test_fdw: 41 passed, 0 failed (12 s)"), and as its last line

    N passed, N failed

exiting non-zero when anything failed.

    runner.py                     every suite
    runner.py regress test_sim    only the named suites
    runner.py --module test_x     (internal) run one unittest module

WHOOP_LEAVE_OUT (space-separated) names suites (test_fuzz) or test classes
(test_dashboards.HtmlInChromium) not to run; the summary lists them.
"""

import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

TEST_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TEST_DIR)
SUITES_DIR = os.path.join(TEST_DIR, "suites")
# a suite imports the helpers in lib/ and may import another suite
# (test_schedule takes test_warehouse's); harness puts lib/ and test/ (the
# simulator package) into PYTHONPATH for every Python started from here
sys.path[:0] = [SUITES_DIR, os.path.join(TEST_DIR, "lib")]

import harness  # noqa: E402


def left_out():
    """left_out is the set of suites and module.Class names in WHOOP_LEAVE_OUT."""
    return set(os.environ.get("WHOOP_LEAVE_OUT", "").split())


def without_classes(suite, names):
    """without_classes drops the tests of the named module.Class (or the one
    test module.Class.method) from a suite."""
    kept = unittest.TestSuite()
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            kept.addTests(without_classes(test, names))
        elif ("%s.%s" % (type(test).__module__, type(test).__name__) not in names
              and test.id() not in names):
            kept.addTest(test)
    return kept


class TimedResult(unittest.TextTestResult):
    """TimedResult is unittest's text result that also keeps each test's
    wall-clock seconds, so a suite can name the tests that make it slow."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds = {}
        self._started = None

    def startTest(self, test):
        self._started = time.time()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.seconds[test.id()] = time.time() - self._started


def run_module(name, results_file):
    """run_module runs one unittest module, names its slowest tests and writes
    its counts as JSON."""
    module = __import__(name)
    suite = without_classes(unittest.defaultTestLoader.loadTestsFromModule(module),
                            left_out())
    t0 = time.time()
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, buffer=False,
                                     resultclass=TimedResult).run(suite)
    # what the tests themselves took; the rest is class and module fixtures
    slowest = sorted(result.seconds.items(), key=lambda kv: -kv[1])[:3]
    print("time: %.0f s in tests, %.0f s in fixtures; slowest: %s"
          % (sum(result.seconds.values()), time.time() - t0 - sum(result.seconds.values()),
             ", ".join("%s %.0f s" % (test.split(".", 1)[1], seconds)
                       for test, seconds in slowest)))
    # a test with failing subtests is one failed test, however many subtests failed
    failing = {getattr(test, "test_case", test).id()
               for test, _ in result.failures + result.errors}
    failed = len(failing) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped)
    with open(results_file, "w") as f:
        json.dump({"passed": passed, "failed": failed,
                   "skipped": len(result.skipped)}, f)
    return 0 if failed == 0 else 1


def run_regress(env):
    """run_regress runs pg_regress (make installcheck, then make installcheck-sim
    against a simulator); counts the ok/FAILED lines of both."""
    passed = failed = 0
    with harness.Simulator("--athletes", "2", "--days", "120",
                           "--rate-per-minute", "0", "--rate-per-day", "0") as sim:
        env = dict(env, WHOOP_SIM_URL=sim.base)
        # single-use credentials for the linking tests: psql reads them with
        # \getenv, so the expected output never shows them
        for i, athlete in enumerate(sim.accounts()["athletes"], 1):
            env["WHOOP_SIM_REFRESH_TOKEN_%d" % i] = athlete["refresh_token"]
            env["WHOOP_SIM_CODE_%d" % i] = athlete["code"]
        for target in ("installcheck", "installcheck-sim"):
            proc = subprocess.run(["make", "-s", "-C", ROOT, target], env=env,
                                  capture_output=True, text=True)
            out = proc.stdout + proc.stderr
            sys.stdout.write(out)
            # "test name ... ok" up to 15, TAP ("ok 3 - name", "not ok 3 - name") from 16
            p = len(re.findall(r"\.\.\.\s+ok\b|^ok \d+\s+[-+] ", out, re.M))
            f = len(re.findall(r"\.\.\.\s+FAILED\b|^not ok \d+\s+[-+] ", out, re.M))
            if proc.returncode != 0 and f == 0:
                f = 1
            if f:
                # pg_regress rewrites regression.diffs on every run: show it now
                diffs = os.path.join(ROOT, "regression.diffs")
                if os.path.exists(diffs):
                    sys.stdout.write(open(diffs).read()[-20000:])
            passed += p
            failed += f
    return passed, failed


def main(argv):
    if argv[:1] == ["--module"]:
        return run_module(argv[1], argv[2])

    wanted = set(argv)
    skipped = left_out()
    modules = sorted(os.path.basename(p)[:-3]
                     for p in glob.glob(os.path.join(SUITES_DIR, "test_*.py")))
    version = "pg%d" % harness.PG_MAJOR
    totals = {"passed": 0, "failed": 0}
    lines = []
    cluster = harness.Cluster().init().start()
    started = time.time()
    try:
        env = dict(os.environ, **cluster.env())
        env["WHOOP_SERVER_LOG"] = cluster.log
        if (not wanted or "regress" in wanted) and "regress" not in skipped:
            print("== suite %s regress (pg_regress on sql/)" % version, flush=True)
            t0 = time.time()
            p, f = run_regress(env)
            totals["passed"] += p
            totals["failed"] += f
            lines.append("%s regress: %d passed, %d failed (%.0f s)"
                         % (version, p, f, time.time() - t0))
        for name in modules:
            if (wanted and name not in wanted) or name in skipped:
                continue
            print("== suite %s %s" % (version, name), flush=True)
            t0 = time.time()
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
                results = tmp.name
            os.unlink(results)
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--module",
                                   name, results], env=env, cwd=SUITES_DIR)
            if os.path.exists(results):
                counts = json.load(open(results))
                os.unlink(results)
            else:
                counts = {"passed": 0, "failed": 1}
                print("suite %s crashed (exit %d)" % (name, proc.returncode))
            totals["passed"] += counts["passed"]
            totals["failed"] += counts["failed"]
            lines.append("%s %s: %d passed, %d failed (%.0f s)"
                         % (version, name, counts["passed"], counts["failed"], time.time() - t0))
    finally:
        if totals["failed"]:
            log = open(cluster.log, errors="replace").read()
            sys.stdout.write("---- server log (tail) ----\n" + log[-6000:] + "\n")
        cluster.destroy()
    print("---- summary %s (%.0f s)" % (version, time.time() - started))
    for line in lines:
        print(line)
    if skipped:
        print("%s left out: %s" % (version, " ".join(sorted(skipped))))
    print("%d passed, %d failed" % (totals["passed"], totals["failed"]))
    return 0 if totals["failed"] == 0 and totals["passed"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
