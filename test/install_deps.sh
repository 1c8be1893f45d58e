#!/usr/bin/env bash
# install_deps.sh -- install the Debian packages whoop_fdw builds, tests and demos with.
#
# Installs only what is missing (so a second run is quick and offline), with
# apt-get as root or through sudo otherwise.  The PostgreSQL packages follow
# the installation pg_config names ($PG_CONFIG selects another, as for PGXS;
# a path /usr/lib/postgresql/NN/bin/pg_config names version NN even before
# it is installed); with none installed, the distribution's default version
# (the one its "postgresql" package depends on).  Extra package names may be
# given as arguments: the test command adds chromium (the HTML report test),
# python3-yaml (the Grafana provisioning test), clang and libclang-rt-dev
# (the fuzz targets and the ASan build), openssl (the TLS test's
# certificate) and debootstrap (the chroots of the other PostgreSQL
# versions); the benchmarks add python3-psycopg2.
set -euo pipefail

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive

# pg_major prints the PostgreSQL major version to install packages for.
pg_major() {
	local pg_config=${PG_CONFIG:-pg_config} major
	if [[ $pg_config =~ ^/usr/lib/postgresql/([0-9]+)/bin/pg_config$ ]]; then
		echo "${BASH_REMATCH[1]}"
		return
	fi
	major=$("$pg_config" --version 2>/dev/null | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p' || true)
	if [ -z "$major" ]; then
		major=$(apt-cache depends postgresql 2>/dev/null | sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n 1)
		if [ -z "$major" ]; then
			"${sudo[@]}" apt-get update -q >&2
			major=$(apt-cache depends postgresql | sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n 1)
		fi
	fi
	[ -n "$major" ] || { echo "install_deps.sh: cannot tell which PostgreSQL to install for" >&2; return 1; }
	echo "$major"
}

major=$(pg_major)
packages=("postgresql-$major" "postgresql-server-dev-$major" "postgresql-$major-cron"
          libcurl4-openssl-dev libjson-c-dev libmicrohttpd-dev libpq-dev pkg-config make gcc python3 "$@")

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
