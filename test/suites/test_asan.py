"""test_asan.py -- pg_regress and the parsing and privilege suites against an ASan/UBSan build.

Runs test/asan/check_asan.py --quick: whoop_fdw built with gcc
-fsanitize=address,undefined, loaded into a server with the ASan runtime
preloaded; first two deliberate bugs must be reported (so a clean run means
something), then pg_regress, test_fdw's ScanTest and test_security run
against it, and any sanitizer report or crashed server process fails the
test.  make check-asan runs the full set (all of test_fdw but the RSS test,
test_security, test_rolling).
"""

import os
import re
import subprocess
import sys
import unittest

CHECK_ASAN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "asan", "check_asan.py")


class AsanTest(unittest.TestCase):

    def test_quick_suites_under_asan(self):
        env = dict(os.environ)
        for key in ("PGHOST", "PGPORT", "WHOOP_TEST_DB", "WHOOP_SERVER_LOG"):
            env.pop(key, None)
        proc = subprocess.run([sys.executable, CHECK_ASAN, "--quick"], capture_output=True, text=True, env=env,
                              timeout=1800)
        out = proc.stdout + proc.stderr
        summary = re.search(r"check-asan: (\d+) passed, (\d+) failed, (\d+) sanitizer reports",
                            out)
        self.assertEqual(proc.returncode, 0, out[-15000:])
        self.assertIsNotNone(summary, out[-4000:])
        print("\n    " + summary.group(0), end=" ")


if __name__ == "__main__":
    unittest.main()
