#!/bin/sh
# Starts TurboWarp's cloud server (github.com/TurboWarp/cloud-server, Node.js;
# not on a package registry) for the CloudLink load generator, which appends
# `--host H --port P`: the port goes to the server as PORT (it listens on
# every interface; the generator only connects over loopback).
#
#   git clone https://github.com/TurboWarp/cloud-server /tmp/turbowarp-cloud-server
#   (cd /tmp/turbowarp-cloud-server && npm ci --omit=dev)
#   # 1,000 clients in one project is past its limit of 128 a room:
#   sed -i 's/this.maxClients = 128;/this.maxClients = 100000;/' /tmp/turbowarp-cloud-server/src/Room.js
#   TURBOWARP_DIR=/tmp/turbowarp-cloud-server target/release/cloudlink_bench \
#     --ours "target/release/cloudlink --message-rate 0 --log-level warn --store memory --max-room-clients 100000" \
#     --python bench/turbowarp_server.sh --python-name TurboWarp --scenarios scratch,scratch-batched,scratch-rate
set -eu
dir="${TURBOWARP_DIR:?set TURBOWARP_DIR to a checkout of TurboWarp/cloud-server with its npm dependencies installed}"
port=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    *) shift ;;
  esac
done
[ -n "$port" ] || { echo "bench/turbowarp_server.sh: no --port given" >&2; exit 2; }
cd "$dir"
PORT="$port" exec node src/index.js
