"""Shared helpers for the d_back package tests: a server on a free loopback
port, and browsers that speak the d-zone protocol over real WebSockets.

The tests are plain functions that run one asyncio scenario each under
``run()``, with a bound on its duration, so no pytest plugin is needed.
"""

import asyncio
import contextlib
import json
import signal
from typing import Any, AsyncIterator, Dict, Optional

import pytest
import websockets

from d_back.server import WebSocketServer

# A test run started in the background by a non-interactive shell (a CI job,
# `cmd &`) inherits SIGINT ignored, and so would every interpreter the Ctrl-C
# tests start: they would wait for an interrupt that never comes. Ctrl-C is
# what those tests are about, so it is handled as in a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: Upper bound for one scenario; every wait inside is bounded more tightly.
SCENARIO_SECONDS = 30
#: How long a browser waits for an expected frame.
FRAME_SECONDS = 5


def run(scenario: Any, seconds: float = SCENARIO_SECONDS) -> Any:
    """Runs one async scenario in a fresh event loop, failing it after ``seconds``."""

    async def bounded() -> Any:
        return await asyncio.wait_for(scenario, seconds)

    return asyncio.run(bounded())


async def started(server: WebSocketServer) -> "asyncio.Task[None]":
    """``asyncio.create_task(server.start())`` as d-cogs does, then waits until it listens."""
    task = asyncio.create_task(server.start())
    for _ in range(500):
        if server.local_port is not None:
            return task
        if task.done():
            task.result()  # raises why it could not start
        await asyncio.sleep(0.01)
    raise AssertionError("the server did not start listening within 5 s")


@contextlib.asynccontextmanager
async def serving(server: Optional[WebSocketServer] = None) -> AsyncIterator[WebSocketServer]:
    """A started server on a free loopback port, stopped afterwards."""
    server = server or WebSocketServer(port=0, host="127.0.0.1")
    task = await started(server)
    try:
        yield server
    finally:
        await server.stop()
        await asyncio.wait_for(task, FRAME_SECONDS)


class Browser:
    """A d-zone client: one WebSocket, JSON frames."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket

    async def send(self, frame: Dict[str, Any]) -> None:
        await self.socket.send(json.dumps(frame))

    async def recv(self, seconds: float = FRAME_SECONDS) -> Dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.socket.recv(), seconds))

    async def expect(self, kind: str, seconds: float = FRAME_SECONDS) -> Dict[str, Any]:
        """The next frame of type ``kind``, skipping others (the built-in world's activity)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            frame = await self.recv(max(0.01, deadline - loop.time()))
            if frame["type"] == kind:
                return frame

    async def join(self, server: Any = "default", **auth: Any) -> Dict[str, Any]:
        """Sends ``connect`` and returns the answer: ``server-join`` or ``error``."""
        await self.send({"type": "connect", "data": {"server": server, **auth}})
        while True:
            frame = await self.recv()
            if frame["type"] in ("server-join", "error"):
                return frame


@contextlib.asynccontextmanager
async def browser(server: WebSocketServer, path: str = "/ws") -> AsyncIterator[Browser]:
    """A connected browser whose ``server-list`` is in ``.server_list``."""
    async with websockets.connect(f"ws://127.0.0.1:{server.local_port}{path}") as socket:
        client = Browser(socket)
        client.server_list = await client.expect("server-list")
        yield client


async def eventually(condition: Any, seconds: float = FRAME_SECONDS) -> None:
    """Waits until ``condition()`` is true, polling; fails after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def free_port() -> int:
    """A loopback port nobody listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
