#!/usr/bin/env python3
"""bench.py -- run whoop_fdw's benchmarks (test/bench/bench_*.py) on one throwaway cluster.

    bench.py                 every benchmark
    bench.py bench_rolling   only the named ones

Each benchmark module has main(cluster) and prints its own table of
measurements and ratios.  Started by test/bench/run_benchmarks.sh (make bench).
"""

import glob
import os
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(BENCH_DIR), "lib"))

import harness  # noqa: E402


def main(argv):
    names = sorted(os.path.basename(p)[:-3]
                   for p in glob.glob(os.path.join(BENCH_DIR, "bench_*.py"))
)
    if argv:
        names = [n for n in names if n in argv]
    cluster = harness.Cluster({"shared_buffers": "'1GB'", "work_mem": "'256MB'",
                               "max_parallel_workers_per_gather": "2"}).init().start()
    status = 0
    try:
        os.environ.update(cluster.env())
        for name in names:
            print("== %s" % name, flush=True)
            module = __import__(name)
            if module.main(cluster):
                status = 1
    finally:
        cluster.destroy()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
