#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, integration tests over real
# sockets, the CLI tests against the built binaries, the browser test of
# d-back's built-in page in headless Chromium, the documentation examples,
# the d_back Python package's tests (scripts/test-python.sh), the
# cloudlink server against the real CloudLink Python client
# (scripts/test-cloudlink-client.sh) and its Scratch cloud variables against
# scratchattach, across a restart (scripts/test-scratch-client.sh), and the
# CloudLink benchmark's load generator in smoke mode.
#
# Needs the Rust toolchain, Chromium, redis-server (the cluster tests start
# their own on free loopback ports), python3 (3.9+, with venv; 3.10+ for
# scratchattach; PyPI the first time, for maturin, pytest, websockets and
# scratchattach) and Python 3.11 with venv (for the CloudLink client, from
# PyPI). Chromium and redis-server are installed with apt-get when they are
# missing and we may (root on Debian/Ubuntu); otherwise this stops and says
# how to install them.
# Nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
# A full run builds everything once; incremental state would only add disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo is not installed; install Rust from https://rustup.rs and try again" >&2
  exit 1
fi

# The Python package's tests run last; say now, not after the Rust tests, if they cannot.
if ! command -v "${D_BACK_PYTHON:-python3}" >/dev/null 2>&1; then
  echo "scripts/test.sh: the Python package tests need python3 (3.9+) with venv; install them" >&2
  echo "(e.g. 'sudo apt-get install python3 python3-venv') or set D_BACK_PYTHON, then run this again." >&2
  exit 1
fi

find_chromium() {
  if [ -n "${D_BACK_CHROMIUM:-}" ]; then echo "$D_BACK_CHROMIUM"; return 0; fi
  command -v chromium || command -v chromium-browser || command -v google-chrome || return 1
}

# Installs Debian's package $2 when the check $1 fails and we may; otherwise
# stops with how to install it ($3: what needs it, $4: another way, if any).
need() {
  local check=$1 package=$2 why=$3 other=${4:-}
  if ! $check >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "scripts/test.sh: installing $package for $why (apt-get install $package)" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq "$package" >/dev/null
    fi
  fi
  if ! $check >/dev/null; then
    echo "scripts/test.sh: $why needs $package. Install it (e.g. 'sudo apt-get install $package')" >&2
    echo "${other:+$other, }then run this again." >&2
    exit 1
  fi
}

find_redis() { command -v redis-server; }

need find_chromium chromium "the browser test" "or set D_BACK_CHROMIUM to a Chromium or Chrome binary"
need find_redis redis-server "the cluster tests"

cargo test --workspace --locked "$@"
# The library alone, as a program that embeds it builds it (no command-line
# dependencies).
cargo build -p d-back --no-default-features --lib --locked

./scripts/test-python.sh
./scripts/test-cloudlink-client.sh
./scripts/test-scratch-client.sh

# The CloudLink benchmark's load generator end to end in smoke mode: 20
# clients for a second per scenario against our server and against the Python
# CloudLink server (from the virtualenv test-cloudlink-client.sh made). It
# fails if a client cannot join or a message does not arrive; no timing is
# checked (scripts/bench-cloudlink.sh measures, on a quiet machine).
cargo build --locked --quiet -p cloudlink-bench --bin cloudlink_bench
target/debug/cloudlink_bench --smoke \
  --ours "target/debug/cloudlink --message-rate 0 --store memory" \
  --python "target/cloudlink-venv/bin/python bench/cloudlink_server.py" >/dev/null
echo "cloudlink_bench --smoke: every client joined and every message arrived"
