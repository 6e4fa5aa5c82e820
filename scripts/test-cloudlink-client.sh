#!/usr/bin/env bash
# Checks the `cloudlink` server against the real CloudLink 0.2.0 client: the
# PyPI `cloudlink` package's own Python client, in a throwaway virtualenv
# under target/cloudlink-venv. Two clients set usernames, link a room and
# exchange gmsg, gvar, pmsg, pvar and direct messages
# (scripts/cloudlink-client-check.py says exactly what is checked).
#
# Needs Python 3.11 with venv (the package requires it) and pip access to
# PyPI. Nothing is skipped: anything missing stops this with a message.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${CLOUDLINK_PYTHON:-$(command -v python3.11 || true)}"
if [ -z "$python" ] || ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "scripts/test-cloudlink-client.sh: the real CloudLink client needs Python 3.11 with venv." >&2
  echo "Install it (e.g. 'sudo apt-get install python3.11 python3.11-venv') or set CLOUDLINK_PYTHON" >&2
  echo "to a Python 3.11 interpreter, then run this again." >&2
  exit 1
fi

venv=target/cloudlink-venv
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# cloudlink 0.2.0.1 with the versions of its dependencies it was released
# with (python/requirements.txt of 0.2.0): its client breaks on websockets 14
# and later, which pip would otherwise pick.
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "cloudlink==0.2.0.1" "websockets==10.4" "ujson==5.7.0" "snowflake-id==0.0.2" "cerberus==1.3.4"

me=scripts/test-cloudlink-client.sh
tmp="$(mktemp -d)"
# shellcheck source=scripts/lib/cloudlink-server.sh
. scripts/lib/cloudlink-server.sh
trap 'stop_server; rm -rf "$tmp"' EXIT
start_server client --store "$tmp/cloud.redb"

echo "real CloudLink 0.2.0.1 client against $url"
"$venv/bin/python" scripts/cloudlink-client-check.py "$url"
