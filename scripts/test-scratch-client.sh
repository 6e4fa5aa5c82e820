#!/usr/bin/env bash
# Checks the `cloudlink` server's Scratch cloud variables against a real
# client: scratchattach (PyPI), the Python library Scratch and TurboWarp
# makers use for cloud bots, with its TurboWarp connection pointed at our
# server (get_tw_cloud(..., cloud_host=...)), in a throwaway virtualenv under
# target/scratch-client-venv. It proves that what scratchattach sends is
# applied and echoed exactly (set_var, and set_vars' several messages in one
# frame), and that the values survive a SIGTERM and restart on the same store:
# a new connection gets every one on joining, exactly as set
# (scripts/scratch-client-check.py says exactly what is checked).
#
# Needs python3 (3.10 or later) with venv and pip access to PyPI
# (SCRATCH_CLIENT_PYTHON picks another interpreter; CLOUDLINK_BIN a built
# server). Nothing is skipped: anything missing stops this with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
me=scripts/test-scratch-client.sh

python="${SCRATCH_CLIENT_PYTHON:-$(command -v python3 || true)}"
if [ -z "$python" ] || ! "$python" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
  echo "$me: scratchattach needs python3 (3.10 or later) with venv." >&2
  echo "Install it (e.g. 'sudo apt-get install python3 python3-venv') or set SCRATCH_CLIENT_PYTHON" >&2
  echo "to a Python 3.10+ interpreter, then run this again." >&2
  exit 1
fi

venv=target/scratch-client-venv
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" || {
    echo "$me: '$python -m venv $venv' failed; install the venv module (e.g. 'sudo apt-get install python3-venv')" >&2
    exit 1
  }
fi
# scratchattach 2.2.6 and the versions of its dependencies it installed with
# when this test was written, so that a new release changes nothing here
# until it is chosen.
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "scratchattach==2.2.6" "websocket-client==1.9.2" "requests==2.34.2" "urllib3==2.8.0" \
  "certifi==2026.10.19.post1" "charset-normalizer==3.5.3" "idna==3.20" "bs4==0.0.2" \
  "beautifulsoup4==4.15.0" "soupsieve==4.1.4" "SimpleWebSocketServer==0.1.2" \
  "typing-extensions==4.16.0" "browser-cookie3==0.20.1" "jeepney==0.9.0" "lz4==4.4.5" \
  "pycryptodomex==3.24.2" || {
  echo "$me: pip could not install scratchattach 2.2.6 into $venv; is PyPI reachable?" >&2
  exit 1
}

tmp="$(mktemp -d)"
# shellcheck source=scripts/lib/cloudlink-server.sh
. scripts/lib/cloudlink-server.sh
trap 'stop_server; rm -rf "$tmp"' EXIT

# SIGTERM, as systemd or `docker stop` sends: the server writes every change
# to the store before it exits. Waits at most 10 s for that.
term_server() {
  kill -TERM "$server"
  for _ in $(seq 1 100); do
    if ! kill -0 "$server" 2>/dev/null; then
      local status=0
      wait "$server" || status=$?
      server=""
      if [ "$status" -ne 0 ]; then
        echo "$me: cloudlink exited with status $status after SIGTERM:" >&2
        cat "$tmp/server-first.log" >&2
        exit 1
      fi
      return 0
    fi
    sleep 0.1
  done
  echo "$me: cloudlink was still running 10 s after SIGTERM" >&2
  exit 1
}

# The check bounds every wait itself; the timeout is for a hang it did not foresee.
check() {
  local status=0
  timeout 60 "$venv/bin/python" scripts/scratch-client-check.py "$1" "$url" || status=$?
  if [ "$status" -eq 124 ]; then
    echo "$me: scripts/scratch-client-check.py $1 did not finish within 60 s" >&2
  fi
  [ "$status" -eq 0 ] || exit "$status"
}

version="$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("scratchattach"))')"
start_server first --store "$tmp/cloud.redb" --message-rate 0
echo "scratchattach $version sets cloud variables on $url"
check set

term_server
start_server second --store "$tmp/cloud.redb" --message-rate 0
echo "scratchattach $version joins again after a restart on the same store, at $url"
check rejoin
