#!/usr/bin/env bash
# Benchmarks the d_back Python package (crates/d-back-py, the Rust engine)
# against the pure-Python d-back 0.0.18 from PyPI, running the same unchanged
# producer script (bench/python_producer.py) on each, in one run, and prints
# the suite's table plus the two ratios that matter for Python bots:
#
#   - delivered messages/s to 1,000 clients while Python calls
#     broadcast_message as fast as it can;
#   - joins/s of 1,000 clients while Python callbacks answer every join.
#
#   ./scripts/bench-python.sh                     # defaults: 1,000 clients
#   ./scripts/bench-python.sh --runs 3 --secs 10  # more arguments go to `bench_load suite`
#
# Needs cargo and python3 (3.9+, with venv; PyPI the first time). The two
# interpreters live in throwaway virtualenvs: target/bench-venv (d-back==0.0.18,
# shared with scripts/bench.sh) and target/bench-py-venv (this package, built
# with maturin). Server logs go to target/bench-logs/, the table to
# target/bench-python-last.md. Not part of ./scripts/test.sh: timings depend on
# the machine and on whatever else it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "scripts/bench-python.sh: $tool is not installed; the benchmark needs cargo and python3 (3.9+ with venv)" >&2
    exit 1
  fi
done

make_venv() { # dir, packages...
  local dir=$1
  shift
  rm -rf "$dir"
  python3 -m venv "$dir" || {
    echo "scripts/bench-python.sh: python3 -m venv failed; install the venv module (e.g. apt-get install python3-venv)" >&2
    exit 1
  }
  "$dir/bin/pip" install --quiet --disable-pip-version-check "$@" || {
    echo "scripts/bench-python.sh: pip could not install $*; is PyPI reachable?" >&2
    exit 1
  }
}

theirs=target/bench-venv
if ! "$theirs/bin/python" -c 'import importlib.metadata as m; assert m.version("d-back") == "0.0.18"' 2>/dev/null; then
  echo "scripts/bench-python.sh: creating $theirs with d-back==0.0.18 from PyPI" >&2
  make_venv "$theirs" d-back==0.0.18
fi

ours=target/bench-py-venv
if ! "$ours/bin/python" -c 'import maturin' 2>/dev/null; then
  echo "scripts/bench-python.sh: creating $ours with maturin from PyPI" >&2
  make_venv "$ours" 'maturin>=1.9.4,<2'
fi
echo "scripts/bench-python.sh: building and installing crates/d-back-py into $ours" >&2
PATH="$PWD/$ours/bin:$PATH" "$ours/bin/pip" install --quiet --disable-pip-version-check \
  --no-build-isolation --no-deps --force-reinstall ./crates/d-back-py

cargo build --release --locked -p d-back --example bench_load

ulimit -n "$(ulimit -Hn)"
echo "load before the run: $(uptime)" >&2
echo "In the table, 'ours' is the d_back package on the Rust engine and 'd-back' the pure-Python 0.0.18;"
echo "both run bench/python_producer.py unchanged."
echo
target/release/examples/bench_load suite --no-bare \
  --ours "$ours/bin/python bench/python_producer.py" \
  --theirs "$theirs/bin/python bench/python_producer.py" \
  --scenarios join,fanout --clients 1000 --fanout-clients 1000 \
  "$@" | tee target/bench-python-last.md
echo "load after the run: $(uptime)" >&2

# The two goals, from the table's ours/d-back column.
python3 - target/bench-python-last.md <<'PY'
import sys

rows = [line.split("|")[1:-1] for line in open(sys.argv[1]) if line.startswith("|")]
header = [cell.strip() for cell in rows[0]]
ratio_col = next(i for i, name in enumerate(header) if "/" in name and "d-back" in name)
goals = {
    ("fan-out, 1000 clients, max rate", "delivered msgs/s"): ("messages/s, Python broadcasting flat out", 20),
    ("join storm, 1000 clients", "joins/s"): ("joins/s, Python callbacks answering", 3),
}
print()
for cells in rows[2:]:
    key = (cells[0].strip(), cells[1].strip())
    if key in goals:
        what, goal = goals[key]
        print(f"{what}: package/d-back 0.0.18 = {cells[ratio_col].strip()} (goal >= {goal}x)")
PY
