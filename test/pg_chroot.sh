#!/usr/bin/env bash
# pg_chroot.sh -- run the test suites on another PostgreSQL major version, in
# a Debian chroot that has it.
#
#   pg_chroot.sh run VERSION [SUITE...]   build the chroot if it is not cached,
#                                         then build, install and test whoop_fdw in it
#   pg_chroot.sh build VERSION            only build (or complete) the chroot
#   pg_chroot.sh suite VERSION            print the Debian suite that ships VERSION
#
# Debian ships one PostgreSQL per release: 15 in bookworm, 17 in trixie, 18
# in testing (forky).  A chroot is a debootstrap --variant=minbase of that
# suite with the build and test packages, kept in $WHOOP_CHROOT_DIR
# (default /var/cache/whoop_fdw/chroots) as pgVERSION/.  It is built in
# pgVERSION.new/ and renamed when complete, so an interrupted build is
# never used.  Delete a directory to rebuild it with current packages.
# The mirror is the host's Debian mirror (the first http(s) URI of the
# host's own release in /etc/apt/sources.list*) unless WHOOP_DEBIAN_MIRROR
# names one.
#
# A run copies the source tree (less what .gitignore ignores: the host's
# objects are built for another version) to /build/whoop_fdw in the chroot,
# mounts /proc, /dev and a private /dev/shm (the server's shared memory), and
# runs test/run_tests.sh there with WHOOP_PG_VERSIONS=VERSION, so the same
# runner builds, installs and tests against that version.  The chroot
# shares the host's network, so the simulators on 127.0.0.1 work as they do
# on the host.  WHOOP_LEAVE_OUT passes through (test/runner.py).  On exit --
# also on failure, Ctrl-C or a kill -- whatever still runs inside the chroot
# is stopped and the mounts are undone; a lock per chroot lets the next run
# clean up after one that died without doing so.  Needs root (chroot, mount).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${WHOOP_CHROOT_DIR:-/var/cache/whoop_fdw/chroots}
# the packages the test command needs there (test/install_deps.sh checks
# them again inside): the build's, plus python3-yaml (test_dashboards),
# openssl and a CA store (test_security's TLS test: without a CA store
# libcurl refuses every certificate before it verifies the test's)
EXTRA_PACKAGES=(python3-yaml openssl ca-certificates)

usage() {
	echo "usage: $0 run|build|suite VERSION [SUITE...]" >&2
	exit 2
}

# suite_of prints the Debian suite whose PostgreSQL is major version $1.
suite_of() {
	case $1 in
		15) echo bookworm ;;
		17) echo trixie ;;
		18) echo testing ;;
		*) return 1 ;;
	esac
}

# host_mirror prints the host's Debian mirror URI for debootstrap.
host_mirror() {
	local codename
	if [ -n "${WHOOP_DEBIAN_MIRROR:-}" ]; then
		echo "$WHOOP_DEBIAN_MIRROR"
		return
	fi
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	{
		# one-line style: deb [options] URI SUITE COMPONENT...
		cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			awk -v s="$codename" '{
				line = $0
				gsub(/\[[^]]*\]/, " ", line)
				n = split(line, f, /[ \t]+/)
				if (f[1] == "" ) { for (i = 1; i < n; i++) f[i] = f[i + 1] }
				if (f[1] == "deb" && f[3] == s) print f[2]
			}'
		# deb822 style: stanzas of Types, URIs, Suites ...
		cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
			awk -v s="$codename" 'BEGIN { RS = ""; FS = "\n" }
			{
				types = uris = suites = ""
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^Types:/) types = " " substr($i, 7) " "
					if ($i ~ /^URIs:/) uris = substr($i, 6)
					if ($i ~ /^Suites:/) suites = " " substr($i, 8) " "
				}
				gsub(/[ \t]+/, " ", types); gsub(/[ \t]+/, " ", suites)
				if (types ~ / deb / && suites ~ (" " s " ")) {
					split(uris, u, " "); for (j in u) if (u[j] != "") print u[j]
				}
			}'
	} | grep -E '^https?://' | head -n 1 | grep . ||
		{ echo "pg_chroot.sh: no http(s) Debian mirror for '$codename' in /etc/apt/sources.list*; set WHOOP_DEBIAN_MIRROR" >&2
		  return 1; }
}

# packages_for prints the packages a chroot for major version $1 holds.
# From 18 on, Debian ships the JIT provider in a package of its own, which
# postgresql-18 only recommends (and --no-install-recommends skips): users
# have it, and test_refresh checks how whoop.refresh() uses JIT.
packages_for() {
	local jit=""
	[ "$1" -ge 18 ] && jit="postgresql-$1-jit"
	echo "postgresql-$1 postgresql-server-dev-$1 postgresql-$1-cron $jit libcurl4-openssl-dev" \
		"libjson-c-dev libmicrohttpd-dev libpq-dev pkg-config make gcc python3 ${EXTRA_PACKAGES[*]}"
}

# chroot_pids prints the processes whose root directory is $1.
chroot_pids() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"
	done
	return 0
}

# release stops what still runs inside chroot $1 and unmounts everything
# mounted below it, deepest first.
release() {
	local dir=$1 pids mounts m
	[ -d "$dir" ] || return 0
	pids=$(chroot_pids "$dir")
	if [ -n "$pids" ]; then
		kill -TERM $pids 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			pids=$(chroot_pids "$dir")
			[ -z "$pids" ] && break
			sleep 0.5
		done
		[ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
	fi
	# mountinfo's fifth field is the mount point, with spaces as \040
	mounts=$(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
	for m in $mounts; do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
}

# mount_into mounts what a chroot needs at $1; release undoes it.
mount_into() {
	local dir=$1
	mount -t proc proc "$dir/proc"
	mount --bind /dev "$dir/dev"
	mount -t tmpfs -o mode=1777 shm "$dir/dev/shm"
	cp -L /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
}

# in_chroot runs a command in chroot $1 with a clean environment.
in_chroot() {
	local dir=$1
	shift
	chroot "$dir" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

# MIRROR_PAUSES are the seconds to wait before each retry of a download from
# the mirror: a mirror in the middle of a sync (a point release) answers
# with missing files or hash mismatches for a minute or two, and one such
# answer in CI once failed a whole run.
MIRROR_PAUSES=(20 60 120)

# apt_install installs packages in chroot $1; when that fails it refreshes
# the package lists (the cached ones may no longer match the mirror) and
# tries again, after each of MIRROR_PAUSES.
apt_install() {
	local dir=$1 pause
	shift
	local cmd=(apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "$@")
	in_chroot "$dir" "${cmd[@]}" && return 0
	for pause in 0 "${MIRROR_PAUSES[@]}"; do
		sleep "$pause"
		in_chroot "$dir" apt-get update -q && in_chroot "$dir" "${cmd[@]}" && return 0
		echo "pg_chroot.sh: apt-get install failed; retrying" >&2
	done
	return 1
}

# bootstrap runs debootstrap for suite $1 into $2 from mirror $3, logging to
# $4, and tries again after each of MIRROR_PAUSES.
bootstrap() {
	local suite=$1 target=$2 mirror=$3 log=$4 pause
	for pause in 0 "${MIRROR_PAUSES[@]}"; do
		sleep "$pause"
		rm -rf "$target"
		debootstrap --variant=minbase "$suite" "$target" "$mirror" > "$log" 2>&1 && return 0
		echo "pg_chroot.sh: debootstrap $suite failed:" >&2
		tail -n 20 "$log" >&2
	done
	return 1
}

# build makes sure the chroot for version $1 exists with every package.
build() {
	local version=$1 suite dir new started mirror missing p
	suite=$(suite_of "$version")
	dir=$CACHE/pg$version
	new=$CACHE/pg$version.new
	if [ -f "$dir/.whoop_fdw_chroot" ]; then
		missing=()
		for p in $(packages_for "$version"); do
			in_chroot "$dir" dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed ||
				missing+=("$p")
		done
		[ ${#missing[@]} -eq 0 ] && return 0
		echo "pg$version chroot: installing ${missing[*]}"
		mount_into "$dir"
		apt_install "$dir" "${missing[@]}"
		release "$dir"
		return 0
	fi
	started=$(date +%s)
	mirror=$(host_mirror)
	command -v debootstrap >/dev/null ||
		{ echo "pg_chroot.sh: debootstrap is not installed (test/install_deps.sh debootstrap)" >&2; return 1; }
	echo "pg$version chroot: debootstrap --variant=minbase $suite $new $mirror"
	mkdir -p "$CACHE"
	bootstrap "$suite" "$new" "$mirror" "$CACHE/pg$version.debootstrap.log" || return 1
	# no service starts in the chroot, and no default cluster: the tests
	# make their own
	printf '#!/bin/sh\nexit 101\n' > "$new/usr/sbin/policy-rc.d"
	chmod 755 "$new/usr/sbin/policy-rc.d"
	mkdir -p "$new/etc/postgresql-common"
	echo "create_main_cluster = false" > "$new/etc/postgresql-common/createcluster.conf"
	mount_into "$new"
	# shellcheck disable=SC2046
	apt_install "$new" $(packages_for "$version")
	in_chroot "$new" apt-get clean
	release "$new"
	echo "$suite $(packages_for "$version")" > "$new/.whoop_fdw_chroot"
	mv "$new" "$dir"
	echo "pg$version chroot: built in $(( $(date +%s) - started )) s"
}

[ $# -ge 2 ] || usage
command=$1
version=$2
shift 2
suite_of "$version" >/dev/null ||
	{ echo "pg_chroot.sh: no Debian suite ships PostgreSQL $version (15: bookworm, 17: trixie, 18: testing)" >&2
	  exit 1; }
if [ "$command" = suite ]; then
	suite_of "$version"
	exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "pg_chroot.sh: needs root (chroot, mount)" >&2; exit 1; }

mkdir -p "$CACHE"
dir=$CACHE/pg$version
# one run per chroot at a time; whoever holds no lock left its mounts behind
exec 9> "$CACHE/pg$version.lock"
flock 9
trap 'release "$dir"; release "$CACHE/pg$version.new"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
release "$dir"
release "$CACHE/pg$version.new"

case $command in
	build)
		build "$version"
		;;
	run)
		build "$version"
		# what a killed run left: its clusters, its staging directories
		find "$dir/tmp" -mindepth 1 -delete
		rm -rf "$dir/build/whoop_fdw"
		mkdir -p "$dir/build/whoop_fdw"
		tar -C "$ROOT" --exclude-vcs --exclude-vcs-ignores -cf - . | tar -C "$dir/build/whoop_fdw" -xf -
		mount_into "$dir"
		status=0
		in_chroot "$dir" WHOOP_PG_VERSIONS="$version" WHOOP_LEAVE_OUT="${WHOOP_LEAVE_OUT:-}" \
			WHOOP_CHROOT_SUITE="$(suite_of "$version")" \
			bash /build/whoop_fdw/test/run_tests.sh "$@" || status=$?
		exit $status
		;;
	*)
		usage
		;;
esac
