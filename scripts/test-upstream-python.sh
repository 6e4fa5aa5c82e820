#!/usr/bin/env bash
# Runs the Python d-back's own server test (tests/test_websocket_server.py from
# a checkout of https://github.com/NNTin/d-back) unchanged against the d_back
# package built from this repository:
#
#   git clone https://github.com/NNTin/d-back /tmp/d-back-upstream
#   ./scripts/test-upstream-python.sh /tmp/d-back-upstream
#
# The test starts `python -m d_back` on port 3000 and talks to it with its
# helper client, so port 3000 must be free. Its tests/ folder is copied to a
# temporary directory first: run from the checkout, `python -m d_back` would
# import the checkout's own pure-Python d_back instead of this package. Uses
# the virtualenv of scripts/test-python.sh (run that first).
set -euo pipefail
cd "$(dirname "$0")/.."

checkout=${1:-}
if [ -z "$checkout" ] || [ ! -f "$checkout/tests/test_websocket_server.py" ]; then
  echo "scripts/test-upstream-python.sh: give the path of a d-back checkout, e.g." >&2
  echo "  git clone https://github.com/NNTin/d-back /tmp/d-back-upstream && $0 /tmp/d-back-upstream" >&2
  exit 1
fi
python=target/py-venv/bin/python
if ! "$python" -c 'import d_back, websockets, pytest' 2>/dev/null; then
  echo "scripts/test-upstream-python.sh: $python lacks d_back, websockets or pytest; run ./scripts/test-python.sh first" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$checkout/tests" "$work/tests"
cd "$work"
"$OLDPWD/$python" -m pytest -p no:cacheprovider tests/test_websocket_server.py -v
