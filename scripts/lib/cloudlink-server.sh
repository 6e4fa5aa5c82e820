# Sourced by the scripts that check real clients against `cloudlink`: builds
# the binary (or takes $CLOUDLINK_BIN), starts it on a free loopback port and
# learns its address from the start-up banner. The caller sets `me` (its name,
# for messages) and `tmp` (a directory for the logs) first.

cloudlink_binary="${CLOUDLINK_BIN:-}"
if [ -z "$cloudlink_binary" ]; then
  cargo build --locked --quiet --bin cloudlink
  cloudlink_binary=target/debug/cloudlink
fi
server=""
url=""

# start_server NAME ARGS...: starts cloudlink with ARGS, logging to
# $tmp/server-NAME.log; sets $server (its pid) and $url, or exits saying why.
start_server() {
  local name="$1"
  shift
  local log="$tmp/server-$name.log"
  : >"$log"
  "$cloudlink_binary" --host 127.0.0.1 --port 0 "$@" 2>"$log" &
  server=$!
  url=""
  for _ in $(seq 1 100); do
    url="$(grep -o 'serving ws://[^ ]*' "$log" | head -n1 | cut -d' ' -f2 || true)"
    [ -n "$url" ] && return 0
    if ! kill -0 "$server" 2>/dev/null; then
      echo "$me: cloudlink did not start ($name):" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$me: cloudlink did not say where it serves within 10 s ($name)" >&2
  exit 1
}

# Stops the server started last, if it still runs.
stop_server() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  server=""
}
