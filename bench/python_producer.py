"""The Python d-back (0.0.18) as the benchmark suite's reference producer.

Serves the same world as examples/bench_server.rs through d-back's public
callbacks -- one Discord server (snowflake 1000, public id "bench", the
default) with ten users -- and, while anyone has joined it, broadcasts chat
lines whose text is t=<nanoseconds since the UNIX epoch> with
``await server.broadcast_message(...)``:

    python bench/python_producer.py --port 3000 [--rate R]

No --rate: as fast as it can (yielding to the event loop between bursts, like
the Rust producer); --rate R: R broadcasts per second; --rate 0: none.
Broadcasting waits until the number of watchers has held still for half a
second, as in the Rust producer, so joins are not starved by broadcasts.
scripts/bench.sh runs it from a throwaway virtualenv with d-back==0.0.18.
"""

import argparse
import asyncio
import time

from d_back.server import WebSocketServer

SERVER = "1000"
BURST = 16
UIDS = [str(2000 + i) for i in range(10)]


async def server_data():
    return {SERVER: {"id": "bench", "name": "Bench", "default": True, "passworded": False}}


async def user_data(server_id):
    if server_id != SERVER:
        return {}
    return {
        uid: {"uid": uid, "username": f"user{uid}", "status": "online", "roleColor": "#7289da"}
        for uid in UIDS
    }


SETTLE = 0.5


class Settled:
    """Whether anyone watches and nobody joined or left for SETTLE seconds."""

    def __init__(self):
        self.watchers = 0
        self.since = time.monotonic()

    def check(self, server):
        now = sum(1 for ws in server.connections if getattr(ws, "discordServer", None) == SERVER)
        if now != self.watchers:
            self.watchers = now
            self.since = time.monotonic()
        return now > 0 and time.monotonic() - self.since >= SETTLE


async def produce(server, rate):
    n = 0
    settled = Settled()
    if rate is not None and rate <= 0:
        await asyncio.Event().wait()
    if rate is not None:
        period = 1.0 / rate
        due = time.monotonic()
        while True:
            due += period
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if settled.check(server):
                await server.broadcast_message(SERVER, UIDS[n % 10], f"t={time.time_ns()}", "bench")
                n += 1
    while True:
        if not settled.check(server):
            await asyncio.sleep(0.005)
            continue
        for _ in range(BURST):
            await server.broadcast_message(SERVER, UIDS[n % 10], f"t={time.time_ns()}", "bench")
            n += 1
        await asyncio.sleep(0)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=None)
    args = parser.parse_args()
    server = WebSocketServer(args.port, "127.0.0.1")
    server.on_get_server_data(server_data)
    server.on_get_user_data(user_data)
    await asyncio.gather(server.start(), produce(server, args.rate))


if __name__ == "__main__":
    asyncio.run(main())
