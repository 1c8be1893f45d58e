#!/usr/bin/env bash
# install_deps.sh -- install the Debian packages whoop_fdw builds, tests and demos with.
#
# Installs only what is missing (so a second run is quick and offline), with
# apt-get as root or through sudo otherwise.  Extra package names may be given
# as arguments: the test command adds chromium (the HTML report test),
# python3-yaml (the Grafana provisioning test), clang and libclang-rt-dev
# (the fuzz targets and the ASan build) and openssl (the TLS test's
# certificate); the benchmarks add python3-psycopg2.
set -euo pipefail

packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron
          libcurl4-openssl-dev libjson-c-dev pkg-config make gcc python3 "$@")

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
