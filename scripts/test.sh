#!/usr/bin/env bash
# Runs every test of d-back: unit tests, integration tests over real sockets,
# the CLI tests against the built binary, the browser test of the built-in
# page in headless Chromium, and the documentation examples.
#
# Needs the Rust toolchain and Chromium. Chromium is installed with apt-get
# when it is missing and we may (root on Debian/Ubuntu); otherwise this stops
# and says how to install it. Nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo is not installed; install Rust from https://rustup.rs and try again" >&2
  exit 1
fi

find_chromium() {
  if [ -n "${D_BACK_CHROMIUM:-}" ]; then echo "$D_BACK_CHROMIUM"; return 0; fi
  command -v chromium || command -v chromium-browser || command -v google-chrome || return 1
}

if ! find_chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing Chromium for the browser test (apt-get install chromium)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
  fi
  if ! find_chromium >/dev/null; then
    echo "scripts/test.sh: the browser test needs Chromium. Install it (e.g. 'sudo apt-get install chromium')" >&2
    echo "or set D_BACK_CHROMIUM to a Chromium or Chrome binary, then run this again." >&2
    exit 1
  fi
fi

cargo test --workspace --locked "$@"

# The library alone, as a program that embeds it builds it (no command-line
# dependencies).
cargo build -p d-back --no-default-features --lib --locked
