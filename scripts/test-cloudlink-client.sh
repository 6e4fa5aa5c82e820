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

binary="${CLOUDLINK_BIN:-}"
if [ -z "$binary" ]; then
  cargo build --locked --quiet --bin cloudlink
  binary=target/debug/cloudlink
fi

log="$(mktemp)"
store="$(mktemp -d)"
"$binary" --host 127.0.0.1 --port 0 --store "$store/cloud.redb" 2>"$log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$log" "$store"' EXIT

url=""
for _ in $(seq 1 100); do
  url="$(grep -o 'serving ws://[^ ]*' "$log" | head -n1 | cut -d' ' -f2 || true)"
  [ -n "$url" ] && break
  if ! kill -0 "$server" 2>/dev/null; then
    echo "scripts/test-cloudlink-client.sh: cloudlink did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "scripts/test-cloudlink-client.sh: cloudlink did not say where it serves within 10 s" >&2
  exit 1
fi

echo "real CloudLink 0.2.0.1 client against $url"
"$venv/bin/python" scripts/cloudlink-client-check.py "$url"
