#!/usr/bin/env bash
# run_tests.sh -- the README's test command (make test): packages, build,
# install, then test/runner.py (throwaway cluster, simulator, every suite).
# chromium renders the HTML report in test_dashboards; python3-yaml lets it
# parse the Grafana provisioning files; libmicrohttpd-dev and libpq-dev build
# whoop-webhookd, the webhook receiver.
# Arguments name suites to run (default: all).  The last line printed is
# "N passed, N failed"; the exit status is non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

bash test/install_deps.sh chromium python3-yaml clang libclang-rt-dev openssl build-essential debhelper postgresql-all libmicrohttpd-dev libpq-dev ||
	{ echo "0 passed, 1 failed"; exit 1; }

# Install into a private staging directory that the test clusters load from
# (Debian's extension_destdir), so tests never touch the system installation
# and need no root.  It must be readable by the postgres OS user.
destdir=$(mktemp -d --suffix=.whoop_fdw_install -p /tmp)
chmod 755 "$destdir"
trap 'rm -rf "$destdir"' EXIT
if ! make -s WERROR=1 >/dev/null || ! make -s WERROR=1 install DESTDIR="$destdir" >/dev/null; then
	echo "build or install failed"
	echo "0 passed, 1 failed"
	exit 1
fi
export WHOOP_EXTENSION_DESTDIR="$destdir"
/usr/bin/python3 test/runner.py "$@"
