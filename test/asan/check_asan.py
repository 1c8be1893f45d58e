#!/usr/bin/env python3
"""check_asan.py -- the test suites against a server running whoop_fdw built with ASan and UBSan.

make check-asan runs this (after test/install_deps.sh).  It

  1. builds whoop_fdw with gcc -fsanitize=address,undefined
     -fno-sanitize-recover=all -fno-wrapv (so signed overflow counts as the
     undefined behaviour it is) in a scratch copy of the tree, and installs
     it into a private directory;
  2. starts a throwaway cluster whose processes have gcc's ASan runtime
     preloaded (the server itself is not instrumented: the module's code is
     what is checked, against every allocation the process makes; see
     asan_gettext_shim.c for the one other library preloaded), with
     detect_leaks=0 -- PostgreSQL frees by memory context and at exit, which
     LeakSanitizer would report as leaks; the fuzz targets check leaks --
     and every report written to a file;
  3. checks that the backends really run the instrumented module under the
     runtime, and that two deliberate bugs built the same way (asan_canary.c:
     a heap overflow, a signed overflow) are reported; then runs pg_regress
     on sql/ and the integration suites against that server;
  4. fails if a suite failed, a server process died of a signal, or any
     sanitizer report was written, and prints the reports.

    check_asan.py            pg_regress, test_fdw (all but MemoryTest, whose
                             RSS figures mean nothing under ASan),
                             test_security, test_rolling
    check_asan.py --quick    pg_regress, test_fdw's ScanTest (every endpoint,
                             column and pushdown path) and test_security (what
                             CI runs, through test_asan.py)

The last line is "check-asan: N passed, N failed, N sanitizer reports".
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ASAN_DIR = os.path.dirname(os.path.abspath(__file__))
TEST_DIR = os.path.dirname(ASAN_DIR)
ROOT = os.path.dirname(TEST_DIR)
sys.path[:0] = [TEST_DIR, os.path.join(TEST_DIR, "lib")]

import harness  # noqa: E402
import runner  # noqa: E402

FULL = ["test_fdw.ScanTest", "test_fdw.AccountTest", "test_fdw.FaultTest",
        "test_fdw.RateLimitTest", "test_security", "test_rolling"]
QUICK = ["test_fdw.ScanTest", "test_security"]

SANITIZE = ("-fsanitize=address,undefined -fno-sanitize-recover=all -fno-wrapv "
            "-fno-omit-frame-pointer -g -O1")


def build(scratch, destdir):
    """build compiles the instrumented module in a copy of the tree and installs it."""
    src = os.path.join(scratch, "src")
    os.makedirs(src)
    for name in ("Makefile", "whoop_fdw.control"):
        shutil.copy(os.path.join(ROOT, name), src)
    # make builds whoop-webhookd too (all: webhookd), so its sources come along
    for name in ("fdw", "extension", "webhookd"):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(src, name),
                        ignore=shutil.ignore_patterns("*.o", "*.so", "*.bc", "whoop-webhookd",
                                                      "whoop-webhookd.service"))
    for cmd in (["make", "-s", "-C", src, "COPT=" + SANITIZE],
                ["make", "-s", "-C", src, "install", "DESTDIR=" + destdir]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit("ASan build failed:\n" + proc.stdout + proc.stderr)
    module = glob.glob(os.path.join(destdir, "**", "whoop_fdw.so"), recursive=True)[0]
    symbols = subprocess.run(["nm", "-D", module], capture_output=True, text=True).stdout
    if "__asan_report" not in symbols or "__ubsan_handle" not in symbols:
        raise SystemExit("%s is not instrumented" % module)
    return module


def build_shim(scratch):
    """build_shim compiles asan_gettext_shim.c (see there why it is needed)."""
    shim = os.path.join(scratch, "asan_gettext_shim.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", shim,
                    os.path.join(ASAN_DIR, "asan_gettext_shim.c")], check=True)
    return shim


def check_canaries(scratch, reports, log):
    """check_canaries shows that the setup reports a heap overflow and a
    signed overflow in a module built like whoop_fdw (asan_canary.c), then
    clears those reports and waits for the server to recover from them."""
    canary = os.path.join(scratch, "asan_canary.so")
    include = harness.pg_config("--includedir-server")
    subprocess.run(["gcc", "-shared", "-fPIC", "-I" + include, "-o", canary,
                    os.path.join(ASAN_DIR, "asan_canary.c")] + SANITIZE.split(), check=True)
    harness.psql("create database asan_probe", dbname="postgres")
    for function, argument, expected in (("asan_canary_overflow", 8, "heap-buffer-overflow"),
                                         ("asan_canary_signed_overflow", 2147483647,
                                          "signed integer overflow")):
        harness.psql("create function %s(int) returns %s language c strict as '%s'"
                     % (function, "void" if "signed" not in function else "int", canary),
                     dbname="asan_probe")
        harness.psql("select %s(%d)" % (function, argument), dbname="asan_probe", check=False)
        # UBSan, loaded with the module, may write to the server log instead
        found = [open(p, errors="replace").read()
                 for p in glob.glob(os.path.join(reports, "*")) + [log]]
        if not any(expected in text for text in found):
            raise SystemExit("the sanitizers did not report the canary's %s" % expected)
        for path in glob.glob(os.path.join(reports, "*")):
            os.unlink(path)
        if not harness.wait_until(lambda: harness.psql("select 1", dbname="postgres",
                                                       check=False).strip() == "1", timeout=60):
            raise SystemExit("the server did not recover from the canary")
    harness.psql("drop database asan_probe", dbname="postgres")
    print("== canaries: heap-buffer-overflow and signed integer overflow reported", flush=True)


def runtime(name):
    path = subprocess.run(["gcc", "-print-file-name=" + name], capture_output=True,
                          text=True).stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        raise SystemExit("gcc's %s not found (install gcc's sanitizer runtimes)" % name)
    return os.path.realpath(path)


def check_backend(module):
    """check_backend makes sure a backend runs the instrumented module under the runtime."""
    harness.psql("create database asan_probe", dbname="postgres")
    harness.psql("create extension whoop_fdw", dbname="asan_probe")
    maps = harness.psql("select count(*) from whoop.fetch_stats(); "
                        "select pg_read_file('/proc/self/maps')", dbname="asan_probe")
    harness.psql("drop database asan_probe", dbname="postgres")
    if "libasan" not in maps or module not in maps:
        raise SystemExit("the backend does not run %s under the ASan runtime" % module)


def run_suites(names, env):
    """run_suites runs unittest names (module or module.Class) in one process."""
    proc = subprocess.run([sys.executable, "-m", "unittest", "-v"] + names, cwd=runner.SUITES_DIR,
                          env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    sys.stdout.write(out)
    ran = re.search(r"Ran (\d+) tests?", out)
    total = int(ran.group(1)) if ran else 0
    bad = re.search(r"FAILED \((.*)\)", out)
    failed = sum(int(n) for n in re.findall(r"(?:failures|errors)=(\d+)", bad.group(1))) \
        if bad else (0 if proc.returncode == 0 else max(total, 1))
    skipped = re.search(r"skipped=(\d+)", out)
    return total - failed - (int(skipped.group(1)) if skipped else 0), failed


def main(argv):
    suites = QUICK if "--quick" in argv else FULL
    started = time.time()
    scratch = tempfile.mkdtemp(prefix="whoop_asan.")
    os.chmod(scratch, 0o755)
    destdir = os.path.join(scratch, "install")
    reports = os.path.join(scratch, "reports")
    os.makedirs(reports)
    os.chmod(reports, 0o777)
    cluster = None
    passed = failed = 0
    crashes_before = 0
    try:
        module = build(scratch, destdir)
        env = {
            "LD_PRELOAD": runtime("libasan.so") + " " + build_shim(scratch),
            "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:abort_on_error=1:"
                            "detect_stack_use_after_return=0:log_path=%s/asan" % reports,
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:log_path=%s/ubsan" % reports,
        }
        cluster = harness.Cluster(settings=harness.staged_install_settings(destdir),
                                  env=env).init().start()
        test_env = dict(os.environ, **cluster.env())
        test_env["WHOOP_SERVER_LOG"] = cluster.log
        test_env.pop("WHOOP_TEST_DB", None)
        os.environ.update(cluster.env())

        check_backend(module)
        print("== ASan module: %s, runtime preloaded" % module, flush=True)
        check_canaries(scratch, reports, cluster.log)
        crashes_before = open(cluster.log, errors="replace").read().count("terminated by signal")

        print("== suite regress (pg_regress on sql/)", flush=True)
        p, f = runner.run_regress(test_env)
        passed, failed = passed + p, failed + f
        print("== suites %s" % " ".join(suites), flush=True)
        p, f = run_suites(suites, test_env)
        passed, failed = passed + p, failed + f
    finally:
        if cluster is not None:
            cluster.stop()
            log = open(cluster.log, errors="replace").read()
            crashes = re.findall(r".*terminated by signal.*", log)[crashes_before:]
            inline = [line for line in re.findall(
                r".*(?:AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer).*", log)
                if "asan_canary" not in line]
            found = sorted(glob.glob(os.path.join(reports, "*")))
            for path in found:
                print("---- sanitizer report %s" % path)
                print(open(path, errors="replace").read()[-8000:])
            for line in crashes + inline:
                print("---- server log: " + line)
            failed += len(crashes)
            shutil.rmtree(cluster.dir, ignore_errors=True)
            print("---- check-asan (%.0f s)" % (time.time() - started))
            print("check-asan: %d passed, %d failed, %d sanitizer reports"
                  % (passed, failed, len(found) + len(inline)))
            status = 0 if failed == 0 and not found and not inline and passed > 0 else 1
        else:
            status = 1
        shutil.rmtree(scratch, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
