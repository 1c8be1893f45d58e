#!/usr/bin/env bash
# demo.sh -- the README's first command (make demo): install what is missing,
# build, install the extension, then run test/demo/demo.py (a throwaway cluster,
# the WHOOP simulator, one athlete linked and modelled, the report).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${1:-}" = stop ]; then
	exec /usr/bin/python3 test/demo/demo.py stop
fi
bash test/install_deps.sh
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
make -s
# sudo resets the environment: name the installation (PG_CONFIG) explicitly
"${sudo[@]}" make -s install ${PG_CONFIG:+PG_CONFIG="$PG_CONFIG"}
exec /usr/bin/python3 test/demo/demo.py
