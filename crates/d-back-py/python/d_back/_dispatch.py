"""Runs the engine's questions as the server's callbacks on its event loop.

The engine posts a question (which servers exist, who is in one, is this login
genuine, ...) to a mailbox from one of its threads and wakes this loop; the
loop takes every waiting question at once and answers each in its own task, so
a slow callback delays nobody else. Whatever the callback does -- returns,
raises, hangs past ``callback_timeout``, returns nonsense -- the engine gets an
answer or a reason, and the browser an ``error`` frame in the worst case.
"""

import asyncio
import inspect
import json
import logging
import os
from typing import Any, Set

from d_back import _engine

log = logging.getLogger("d_back")

if hasattr(asyncio, "timeout"):  # Python 3.11+: no extra task per call

    async def _within(awaitable: Any, seconds: float) -> Any:
        async with asyncio.timeout(seconds):
            return await awaitable

else:

    async def _within(awaitable: Any, seconds: float) -> Any:
        return await asyncio.wait_for(awaitable, seconds)


class Dispatcher:
    """The loop's end of one running server's mailbox."""

    def __init__(self, server: Any, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._server = server
        self._loop = loop
        self._timeout = timeout
        # Tasks are kept here until done: the loop holds only weak references.
        self._tasks: Set["asyncio.Task[None]"] = set()
        self.mailbox = _engine.Mailbox(self._wake)

    def _wake(self) -> None:
        """Called from an engine thread: only schedules the drain on the loop."""
        self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        for hook, args, reply in self.mailbox.take():
            task = self._loop.create_task(self._answer(hook, args, reply))
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
