"""test_fuzz.py -- the libFuzzer targets of test/fuzz/, each for a bounded time.

Builds the targets (make -C test/fuzz: clang, libFuzzer, ASan, UBSan) and
runs each from its committed seed corpus for WHOOP_FUZZ_SECONDS (default 25)
with a fixed -seed, through test/fuzz/run.sh.  A crash, a sanitizer report
(memory error, undefined behaviour, a leak -- LeakSanitizer checks every
input) or a failed invariant ends libFuzzer with a non-zero status: the test
fails and shows the report and the offending input.  Each test prints the
executions it ran.  make fuzz FUZZ_SECONDS=600 runs the same targets longer.
"""

import os
import re
import subprocess
import unittest

FUZZ_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz")
SECONDS = int(os.environ.get("WHOOP_FUZZ_SECONDS", "25"))


class FuzzTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        proc = subprocess.run(["make", "-s", "-C", FUZZ_DIR], capture_output=True, text=True)
        if proc.returncode != 0:
            raise AssertionError("building the fuzz targets failed:\n%s%s"
                                 % (proc.stdout, proc.stderr[-4000:]))

    def fuzz(self, target):
        proc = subprocess.run(["bash", os.path.join(FUZZ_DIR, "run.sh"), target, str(SECONDS)],
                              capture_output=True, text=True, timeout=SECONDS * 4 + 120)
        out = proc.stdout + proc.stderr
        execs = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
        report = "\n".join(line for line in out.splitlines()
                           if not re.match(r"#\d+\s+(NEW|REDUCE|pulse|INITED)", line))
        self.assertEqual(proc.returncode, 0, "%s failed:\n%s" % (target, report[-12000:]))
        self.assertIsNotNone(execs, report[-4000:])
        print("\n    %s: %s executions in %d s, no crash, leak or undefined behaviour"
              % (target, execs.group(1), SECONDS), end=" ")

    def test_fuzz_page(self):
        self.fuzz("fuzz_page")

    def test_fuzz_parse(self):
        self.fuzz("fuzz_parse")

    def test_fuzz_token(self):
        self.fuzz("fuzz_token")

    def test_fuzz_webhook(self):
        self.fuzz("fuzz_webhook")


if __name__ == "__main__":
    unittest.main()
