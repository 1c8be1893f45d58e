#!/usr/bin/env bash
# run_tests.sh -- the README's test command (make test).
#
# First on this machine's PostgreSQL (the installation pg_config names, or
# $PG_CONFIG): install the packages that are missing, build, install into a
# private staging directory, then test/runner.py (throwaway cluster,
# simulator, every suite).  Then, for each other major version in
# WHOOP_PG_VERSIONS (default "15 17 18"), the same inside a cached Debian
# chroot that has that version (test/pg_chroot.sh), without the suites that
# need a browser, clang or the sanitizers (CHROOT_LEAVE_OUT: they test the
# parsers and the page rendering, not the server), without the Debian
# package build, which is tested for the host's version, and without
# test_demo, which tests the demo script alone and needs a pseudo-terminal
# the chroots do not mount; and without the webhook receiver's header
# slowloris test, which fails with libmicrohttpd 1.0 (trixie, forky) --
# a known gap, see README "Webhooks".
#
# The other versions run in the background beside this machine's (below).
#
# Arguments name suites to run on each version (default: all).  Every suite's
# summary line names its version ("pg17 test_fdw: ..."); the last line
# printed is "N passed, N failed" over all versions, and the exit status is
# non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

versions=${WHOOP_PG_VERSIONS:-15 17 18}
CHROOT_LEAVE_OUT="test_dashboards.HtmlInChromium test_fuzz test_asan test_package test_demo test_webhookd.ReceiverTest.test_slowloris_is_cut_off_while_others_are_served"
started=$(date +%s)

# chromium renders the HTML report in test_dashboards; python3-yaml lets it
# parse the Grafana provisioning files; clang builds the fuzz targets and
# the ASan build; openssl makes test_security's and test_webhookd's
# certificates; build-essential, debhelper and postgresql-all build and test
# the Debian package (test_package)
leave_out=" ${WHOOP_LEAVE_OUT:-} "
extras=(python3-yaml openssl)
[[ $leave_out == *" test_package "* ]] || extras+=(build-essential debhelper postgresql-all)
[[ $leave_out == *" test_dashboards "* || $leave_out == *" test_dashboards.HtmlInChromium "* ]] ||
	extras+=(chromium)
[[ $leave_out == *" test_fuzz "* && $leave_out == *" test_asan "* ]] || extras+=(clang libclang-rt-dev)

bash test/install_deps.sh "${extras[@]}" || { echo "0 passed, 1 failed"; exit 1; }
here=$("${PG_CONFIG:-pg_config}" --version | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
[ -n "$here" ] || { echo "no PostgreSQL found by ${PG_CONFIG:-pg_config}"; echo "0 passed, 1 failed"; exit 1; }
others=()
for v in $versions; do
	[ "$v" = "$here" ] || others+=("$v")
done
if [ ${#others[@]} -gt 0 ] && ! command -v debootstrap >/dev/null; then
	bash test/install_deps.sh "${extras[@]}" debootstrap || { echo "0 passed, 1 failed"; exit 1; }
fi

logs=$(mktemp -d --suffix=.whoop_fdw_tests -p /tmp)
destdir=$(mktemp -d --suffix=.whoop_fdw_install -p /tmp)
# the versions running in the background, each the leader of its own
# process group; on any exit they are stopped (pg_chroot.sh then stops what
# runs in its chroot and unmounts) before the logs go
background=()
stop_background() {
	local pid
	for pid in "${background[@]}"; do
		kill -TERM -- "-$pid" 2>/dev/null
	done
	wait
}
trap 'stop_background; rm -rf "$destdir" "$logs"' EXIT
# a chroot run cleans up after Ctrl-C and exits; so does the whole command
trap 'exit 130' INT
trap 'exit 143' TERM

# run_here builds whoop_fdw, installs it into a staging directory that the
# test clusters load from before the system installation (so tests never
# touch the system installation and need no root), and runs the suites.
run_here() {
	chmod 755 "$destdir"    # the postgres OS user reads it
	if ! make -s WERROR=1 >/dev/null || ! make -s WERROR=1 install DESTDIR="$destdir" >/dev/null; then
		echo "pg$here: build or install failed"
		echo "0 passed, 1 failed"
		return 1
	fi
	WHOOP_EXTENSION_DESTDIR="$destdir" /usr/bin/python3 test/runner.py "$@"
}

# run_chroot runs the suites for version $1 in its chroot.
run_chroot() {
	local v=$1 sudo=()
	shift
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	"${sudo[@]}" env WHOOP_LEAVE_OUT="${WHOOP_LEAVE_OUT:-} $CHROOT_LEAVE_OUT" \
		${WHOOP_CHROOT_DIR:+WHOOP_CHROOT_DIR=$WHOOP_CHROOT_DIR} \
		${WHOOP_DEBIAN_MIRROR:+WHOOP_DEBIAN_MIRROR=$WHOOP_DEBIAN_MIRROR} \
		bash test/pg_chroot.sh run "$v" "$@"
}

# where_is prints where version $1 runs: on this machine or in which chroot.
where_is() {
	local suite
	if [ "$1" = "$here" ]; then
		suite=${WHOOP_CHROOT_SUITE:+in the $WHOOP_CHROOT_SUITE chroot}
		echo "${suite:-on this machine}"
	elif suite=$(bash test/pg_chroot.sh suite "$1" 2>/dev/null); then
		echo "in a Debian $suite chroot"
	else
		echo "nowhere: no Debian release ships it"
	fi
}

# run_version runs version $1's suites with output to the standard output and
# $logs/pgN.log, and writes its seconds to $logs/pgN.seconds; its status is
# the suites'.
run_version() {
	local v=$1 t0 status
	shift
	t0=$(date +%s)
	if [ "$v" = "$here" ]; then
		echo "==== PostgreSQL $v $(where_is "$v") ($("${PG_CONFIG:-pg_config}" --bindir))"
		run_here "$@" 2>&1 | tee "$logs/pg$v.log"
	else
		echo "==== PostgreSQL $v $(where_is "$v")"
		run_chroot "$v" "$@" 2>&1 | tee "$logs/pg$v.log"
	fi
	status=${PIPESTATUS[0]}
	echo $(( $(date +%s) - t0 )) > "$logs/pg$v.seconds"
	return "$status"
}

# The other versions run in the background, beside this machine's, each
# building its chroot first if it is not cached: the suites wait on servers,
# simulators and timers about half the time (one core of two busy), and one
# version after another took 55 minutes in CI.  This machine's version
# writes to the terminal as it goes; each other version's output follows,
# whole, when it is done.
status=0
for v in $versions; do
	[ "$v" = "$here" ] && continue
	set -m    # its own process group, which the EXIT trap can stop whole
	run_version "$v" "$@" < /dev/null > "$logs/pg$v.out" 2>&1 &
	background+=($!)
	set +m
done
for v in $versions; do
	[ "$v" = "$here" ] || continue
	run_version "$v" "$@" || status=1
done
for i in "${!background[@]}"; do
	wait "${background[$i]}" || status=1
done
background=()
summary=()
for v in $versions; do
	[ "$v" = "$here" ] || cat "$logs/pg$v.out"
	summary+=("$v|$(cat "$logs/pg$v.seconds" 2>/dev/null || echo 0)|$(where_is "$v")")
done
if [ ${#summary[@]} -eq 1 ]; then
	# the version's own last line is the total, unless it never got that far
	tail -n 1 "$logs/pg${summary[0]%%|*}.log" | grep -Eq '^[0-9]+ passed, [0-9]+ failed$' ||
		{ echo "0 passed, 1 failed"; status=1; }
	exit $status
fi

passed=0
failed=0
echo "==== summary, PostgreSQL $versions ($(( $(date +%s) - started )) s)"
for entry in "${summary[@]}"; do
	IFS='|' read -r v seconds where <<< "$entry"
	log=$logs/pg$v.log
	last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
	[ -n "$last" ] || { last="0 passed, 1 failed"; status=1; }
	# the runner's suite lines: from its "---- summary" to its totals
	awk '/^---- summary/ { on = 1; next } on && /^[0-9]+ passed, [0-9]+ failed$/ { exit } on' "$log" |
		grep -E "^pg$v " ||
		{ echo "pg$v: no suite ran; its output ended:"; tail -n 15 "$log" | sed 's/^/    /'; }
	p=${last%% passed*}
	f=${last#*, }
	f=${f%% failed*}
	passed=$(( passed + p ))
	failed=$(( failed + f ))
	echo "pg$v: $p passed, $f failed ($seconds s, $where)"
done
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ] || status=1
echo "$passed passed, $failed failed"
exit $status
