#!/usr/bin/env bash
# run_tests.sh -- the README's test command (make test): packages, build,
# install, then test/runner.py (throwaway cluster, simulator, every suite).
# Arguments name suites to run (default: all).  The last line printed is
# "N passed, N failed"; the exit status is non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

bash test/install_deps.sh || { echo "0 passed, 1 failed"; exit 1; }
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
if ! make -s >/dev/null || ! "${sudo[@]}" make -s install >/dev/null; then
	echo "build or install failed"
	echo "0 passed, 1 failed"
	exit 1
fi
exec /usr/bin/python3 test/runner.py "$@"
