#!/usr/bin/env bash
# Benchmarks our CloudLink server side by side with the Python CloudLink server
# (cloudlink 0.2.0.1 from PyPI), on loopback, with the same client load for
# both, and prints one markdown table with ours, Python and ours/Python:
#
#   - gmsg fan-out: 1,000 CL4 clients in `default`, one sender sending gmsg
#   - Scratch set fan-out: 1,000 Scratch clients in one project, one sender setting a variable
#   - idle memory: server RSS per identified (handshake + setid) CL4 client
#
#   ./scripts/bench-cloudlink.sh                          # all three, defaults
#   ./scripts/bench-cloudlink.sh --runs 3 --secs 10       # medians of 3 runs, 10 s each
#   ./scripts/bench-cloudlink.sh --idle-clients 1000,10000
#   ./scripts/bench-cloudlink.sh --smoke                  # a few clients for a second: does it work?
#
# Arguments go to `cloudlink_bench` (see `target/release/cloudlink_bench --help`).
# Our server runs with `--message-rate 0`: its default per-client rate limit
# (60 messages/s) would otherwise stop the sender, and the Python server has
# none. The Python server runs from a throwaway virtualenv under
# target/cloudlink-bench-venv (delete it to start afresh; the first run needs
# PyPI). Server logs go to target/cloudlink-bench-logs/, the last table to
# target/bench-cloudlink-last.md.
#
# Not part of ./scripts/test.sh: timings depend on the machine and on whatever
# else runs on it, so run this when the machine is quiet; the table ends with
# the load average before and after.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/bench-cloudlink.sh: cargo is not installed; install Rust from https://rustup.rs" >&2
  exit 1
fi

# cloudlink 0.2.0.1 requires Python >= 3.11 and was released for 3.11.
python=${CLOUDLINK_BENCH_PYTHON:-$(command -v python3.11 || echo /usr/bin/python3.11)}
if ! [ -x "$python" ] || ! "$python" -c 'import sys, venv; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  echo "scripts/bench-cloudlink.sh: the Python CloudLink server needs Python 3.11 with its venv module," >&2
  echo "and '$python' is not that. Install it (Debian/Ubuntu: 'sudo apt-get install python3.11 python3.11-venv')" >&2
  echo "or set CLOUDLINK_BENCH_PYTHON to a Python 3.11 interpreter, then run this again." >&2
  exit 1
fi

# cloudlink declares only lower bounds for its dependencies, and their newest
# versions break it (websockets 14+ dropped the `request_headers` its Scratch
# handshake reads), so the venv pins the versions its own repository pins.
venv=target/cloudlink-bench-venv
pins=(cloudlink==0.2.0.1 websockets==10.4 cerberus==1.3.4 ujson==5.7.0 snowflake-id==0.0.2)
check='import importlib.metadata as m
for pin in __import__("sys").argv[1:]:
    name, version = pin.split("==")
    assert m.version(name) == version, pin'
if ! "$venv/bin/python" -c "$check" "${pins[@]}" 2>/dev/null; then
  echo "scripts/bench-cloudlink.sh: creating $venv with ${pins[*]}" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}" || {
    echo "scripts/bench-cloudlink.sh: pip could not install ${pins[*]}; is PyPI reachable?" >&2
    exit 1
  }
fi

ours=()
if [ -f crates/cloudlink/Cargo.toml ]; then
  cargo build --release --locked -p cloudlink -p cloudlink-bench --bin cloudlink --bin cloudlink_bench
  # One project of 1,000 clients is past the default of 128 a project.
  ours=(--ours "target/release/cloudlink --message-rate 0 --log-level warn --store memory --max-room-clients 100000")
else
  echo "scripts/bench-cloudlink.sh: crates/cloudlink is not on this branch; measuring the Python server only" >&2
  cargo build --release --locked -p cloudlink-bench --bin cloudlink_bench
fi

# 1,000 to 10,000 connections on each side: lift the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)"
out=target/bench-cloudlink-last.md
before=$(uptime)
echo "load before the run: $before" >&2
target/release/cloudlink_bench "${ours[@]}" \
  --python "$venv/bin/python bench/cloudlink_server.py" \
  "$@" >"$out.partial"
after=$(uptime)
{
  cat "$out.partial"
  echo
  echo "Machine load before: \`$before\`  "
  echo "Machine load after: \`$after\`"
} >"$out"
rm -f "$out.partial"
cat "$out"
