#!/usr/bin/env bash
# Tests the d_back Python package (crates/d-back-py): builds it with maturin,
# installs it into a throwaway virtualenv and runs its pytest suite, which
# drives real servers over real WebSockets on loopback.
#
#   ./scripts/test-python.sh            # every Python test
#   ./scripts/test-python.sh -k cli     # arguments go to pytest
#
# Needs python3 (3.9 or later) with the venv module, and PyPI the first time:
# the virtualenv (target/py-venv; delete it to start afresh) gets maturin,
# pytest and websockets. D_BACK_PYTHON picks another interpreter. Nothing is
# skipped: a missing tool stops this with a message saying what to install,
# and a run that collects no tests fails.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${D_BACK_PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "scripts/test-python.sh: $python is not installed; the Python package tests need Python 3.9+ with venv" >&2
  echo "(e.g. 'sudo apt-get install python3 python3-venv'), or set D_BACK_PYTHON to an interpreter." >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
  echo "scripts/test-python.sh: $python is $("$python" -V 2>&1); the d_back package needs Python 3.9 or later" >&2
  exit 1
fi

venv=target/py-venv
if ! "$venv/bin/python" -c 'import maturin, pytest, websockets' >/dev/null 2>&1; then
  echo "scripts/test-python.sh: creating $venv with maturin, pytest and websockets from PyPI" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv" || {
    echo "scripts/test-python.sh: '$python -m venv' failed; install the venv module (e.g. 'sudo apt-get install python3-venv')" >&2
    exit 1
  }
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'maturin>=1.9.4,<2' pytest websockets || {
    echo "scripts/test-python.sh: pip could not install maturin, pytest and websockets; is PyPI reachable?" >&2
    exit 1
  }
fi

# maturin's build backend runs the maturin executable from PATH. The dev
# profile reuses what `cargo test` already compiled; a release build of the
# whole engine would add minutes and test nothing more.
export PATH="$PWD/$venv/bin:$PATH"
export MATURIN_PEP517_ARGS="--profile dev"
echo "scripts/test-python.sh: building (dev profile) and installing crates/d-back-py" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation --no-deps \
  --force-reinstall ./crates/d-back-py

status=0
"$venv/bin/python" -m pytest crates/d-back-py/tests "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "scripts/test-python.sh: pytest collected no tests; that counts as a failure" >&2
  exit 1
fi
exit "$status"
