#!/usr/bin/env bash
# run_benchmarks.sh -- make bench: build, install into a private staging
# directory, start one throwaway cluster and run test/bench/bench_*.py (or the
# named ones) against it.  Benchmarks print ratios measured side by side in
# one run; they assert nothing about time.
set -uo pipefail
cd "$(dirname "$0")/../.."

bash test/install_deps.sh python3-psycopg2 || exit 1
destdir=$(mktemp -d --suffix=.whoop_fdw_install -p /tmp)
chmod 755 "$destdir"
trap 'rm -rf "$destdir"' EXIT
make -s >/dev/null && make -s install DESTDIR="$destdir" >/dev/null || exit 1
export WHOOP_EXTENSION_DESTDIR="$destdir"
/usr/bin/python3 test/bench/bench.py "$@"
