#!/usr/bin/env bash
# Benchmarks d-back side by side with the Python d-back (0.0.18, from PyPI) and
# a bare tokio + tungstenite WebSocket server, on loopback, and prints one table
# with every figure and the ratios ours/d-back and ours/bare.
#
#   ./scripts/bench.sh                      # every scenario, defaults
#   ./scripts/bench.sh --runs 3 --slow-secs 60
#   ./scripts/bench.sh --scenarios fanout --fanout-clients 1000
#   ./scripts/bench.sh --scenarios cluster   # three nodes through Redis vs one node
#
# Arguments go to `bench_load suite` (see `--help` there). Needs cargo,
# python3 (with venv and network access to PyPI the first time) and, for the
# cluster scenario, redis-server. The Python
# reference lives in a throwaway virtualenv under target/bench-venv (delete it
# to start afresh); server logs go to target/bench-logs/ and the last table to
# target/bench-last.md. Not part of ./scripts/test.sh: timings depend on the
# machine and on whatever else it runs, so run it when the machine is quiet.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "scripts/bench.sh: $tool is not installed; the benchmark needs cargo and python3" >&2
    exit 1
  fi
done

if ! command -v redis-server >/dev/null 2>&1; then
  echo "scripts/bench.sh: the cluster scenario needs redis-server; install it (e.g. 'sudo apt-get install redis-server')" >&2
  exit 1
fi

venv=target/bench-venv
if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("d-back") == "0.0.18"' 2>/dev/null; then
  echo "scripts/bench.sh: creating $venv with d-back==0.0.18 from PyPI" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" || {
    echo "scripts/bench.sh: python3 -m venv failed; install the venv module (e.g. apt-get install python3-venv)" >&2
    exit 1
  }
  "$venv/bin/pip" install --quiet --disable-pip-version-check d-back==0.0.18 || {
    echo "scripts/bench.sh: pip could not install d-back==0.0.18; is PyPI reachable?" >&2
    exit 1
  }
fi

cargo build --release --locked --example bench_server --example bench_load

# Up to 19,000 connections per process on each side: lift the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)"
echo "load before the run: $(uptime)" >&2
target/release/examples/bench_load suite \
  --ours target/release/examples/bench_server \
  --theirs "$venv/bin/python bench/python_producer.py" \
  "$@" | tee target/bench-last.md
echo "load after the run: $(uptime)" >&2
