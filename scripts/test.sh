#!/usr/bin/env bash
# Runs every test of d-back: unit tests, integration tests over real sockets,
# the CLI tests against the built binary, and the documentation examples.
# Needs only the Rust toolchain (cargo); nothing else is installed or skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo is not installed; install Rust from https://rustup.rs and try again" >&2
  exit 1
fi

cargo test --locked "$@"
