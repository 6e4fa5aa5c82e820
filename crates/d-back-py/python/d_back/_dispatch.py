"""Runs the engine's questions as the server's callbacks on its event loop.

The engine posts a question (which servers exist, who is in one, is this login
genuine, ...) to a mailbox from one of its threads and wakes this loop by
writing a byte to a socket pair the loop watches -- without touching the
interpreter, so an engine thread can never trip over its shutdown. The loop
takes every waiting question at once and answers each in its own task, so a
slow callback delays nobody else. The finished ``start()`` and ``stop()``
come back the same way. Whatever the callback does -- returns,
raises, hangs past ``callback_timeout``, returns nonsense -- the engine gets an
answer or a reason, and the browser an ``error`` frame in the worst case.
"""

import asyncio
import inspect
import json
import logging
import os
import socket
import sys
import threading
from typing import Any, Optional, Set

from d_back import _engine

log = logging.getLogger("d_back")

if hasattr(asyncio, "timeout"):  # Python 3.11+: no extra task per call

    async def _within(awaitable: Any, seconds: float) -> Any:
        async with asyncio.timeout(seconds):
            return await awaitable

else:

    async def _within(awaitable: Any, seconds: float) -> Any:
        return await asyncio.wait_for(awaitable, seconds)


# Python 3.12+ can start a task eagerly: the callback runs at once, inside its
# task, and one that answers without waiting costs no extra trip round the loop.
_EAGER = sys.version_info >= (3, 12)


class Dispatcher:
    """The loop's end of one running server's mailbox."""

    def __init__(self, server: Any, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._server = server
        self._loop = loop
        self._timeout = timeout
        # Tasks are kept here until done: the loop holds only weak references.
        self._tasks: Set["asyncio.Task[None]"] = set()
        self._bell, ringer = socket.socketpair()
        ringer.setblocking(False)
        self.mailbox = _engine.Mailbox(ringer.detach())
        self._listener: Optional[threading.Thread] = None
        try:
            self._bell.setblocking(False)
            loop.add_reader(self._bell, self._on_bell)
        except NotImplementedError:
            # Event loops without add_reader (Windows' proactor): a thread
            # waits on the socket and hands each ring to the loop.
            self._bell.setblocking(True)
            self._listener = threading.Thread(target=self._listen, name="d-back-bell", daemon=True)
            self._listener.start()

    def _on_bell(self) -> None:
        try:
            self._bell.recv(4096)
        except (BlockingIOError, InterruptedError):
            pass
        self._drain()

    def _listen(self) -> None:
        while True:
            try:
                if not self._bell.recv(4096):
                    return
                self._loop.call_soon_threadsafe(self._drain)
            except (OSError, RuntimeError):
                return

    def close(self) -> None:
        """Stops watching the bell; the engine's later rings find nobody."""
        if self._listener is None:
            try:
                self._loop.remove_reader(self._bell)
            except (RuntimeError, ValueError):
                pass
        self._bell.close()

    def _drain(self) -> None:
        for hook, args, reply in self.mailbox.take():
            answer = self._answer(hook, args, reply)
            if _EAGER:
                task = asyncio.Task(answer, loop=self._loop, eager_start=True)
                if task.done():
                    continue
            else:
                task = self._loop.create_task(answer)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, hook: str, args: tuple, reply: Any) -> None:
        try:
            callback = getattr(self._server, "_" + hook)
            if callback is None:
                raise LookupError(f"no {hook} callback is registered")
            result = callback(*args)
            if inspect.isawaitable(result):
                result = await _within(result, self._timeout)
            _deliver(hook, result, reply)
        except asyncio.TimeoutError:
            log.warning("%s did not answer within %s s; the request fails", hook, self._timeout)
            reply.fail(f"{hook} did not answer within {self._timeout} s")
        except asyncio.CancelledError:
            reply.fail(f"{hook} was cancelled")
            raise
        except Exception as error:  # a bot's bug must not take the server down
            log.warning("%s raised %s: %s", hook, type(error).__name__, error, exc_info=error)
            reply.fail(f"{hook} raised {type(error).__name__}: {error}")


def _deliver(hook: str, result: Any, reply: Any) -> None:
    """Hands a callback's result to the engine in the shape it expects."""
    if hook == "on_static_request":
        if result is None:
            reply.json("null")
            return
        content_type, content = result
        if isinstance(content, (bytes, bytearray, memoryview)):
            reply.body(str(content_type), bytes(content))
        else:
            reply.file(str(content_type), os.fspath(content))
    elif hook == "on_validate_discord_user":
        reply.json("true" if result else "false")
    else:
        reply.json(json.dumps(result, default=str))
