#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser a stranger reaches with bytes of
# their choosing (fuzz/fuzz_targets/): the WebSocket frame reader, the d-zone
# message decoder, static file serving, the data file parser and the ingest
# API bodies. Each target runs for a bounded time.
#
#   ./scripts/fuzz.sh                  # every target, 60 s each
#   ./scripts/fuzz.sh --seconds 10     # every target, 10 s each
#   ./scripts/fuzz.sh frame_reader     # one target
#
# Needs the nightly Rust toolchain (rustup toolchain install nightly) and
# cargo-fuzz, which this installs from crates.io when it is missing. Crashes
# land in fuzz/artifacts/<target>/; keep each as a regression input in
# crates/d-back/tests/fuzz.rs once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frame_reader message_decoder static_path data_file ingest_body)
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: fuzzing needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
  cargo install cargo-fuzz --locked --quiet || {
    echo "scripts/fuzz.sh: could not install cargo-fuzz; is crates.io reachable?" >&2
    exit 1
  }
fi

# Seed corpora from the examples, so the fuzzer starts from real inputs.
mkdir -p fuzz/corpus/data_file fuzz/corpus/message_decoder
{ printf '\x00'; cat crates/d-back/examples/world.toml; } > fuzz/corpus/data_file/world.toml
{ printf '\x01'; cat crates/d-back/examples/world.json; } > fuzz/corpus/data_file/world.json
printf '%s' '{"type":"connect","data":{"server":"dworld"}}' > fuzz/corpus/message_decoder/connect

cd fuzz
for target in "${targets[@]}"; do
  echo "== fuzzing $target for ${seconds}s" >&2
  cargo +nightly fuzz run --release "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536
done
echo "fuzzing: ${#targets[@]} targets ran ${seconds}s each with no crash" >&2
