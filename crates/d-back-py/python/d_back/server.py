"""``WebSocketServer``: d-back 0.0.18's server API, served by the Rust engine.

Everything a d-back 0.0.18 program calls is here with the same names,
signatures and return shapes: the five ``on_*`` callback setters, the
coroutines ``start()``, ``stop()`` and ``run_forever()``, the three
broadcasts, and the ``port``, ``host``, ``static_dir`` and ``connections``
attributes. The engine answers every connection on its own threads; it asks
this module only for what your callbacks know, and runs them on the event loop
that called ``start()``.

Where behaviour differs from 0.0.18 on purpose (one shared world per Discord
server, fail-closed logins, no echoed secrets, bounded slow clients, a wrong
static directory is an error), docs/switching-from-python.md says why.
"""

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Tuple, Union

from d_back import _engine
from d_back._dispatch import Dispatcher
from d_back.mock import MockDataProvider

log = logging.getLogger("d_back")

__all__ = ["WebSocketServer", "main", "main_sync", "parse_args", "get_version"]


class Connection:
    """One open WebSocket connection as ``server.connections`` shows it.

    ``discordServer`` is the snowflake of the Discord server it watches, or
    None before it joins one (the attribute d-back 0.0.18 set on its
    connections). The connection itself belongs to the engine.
    """

    __slots__ = ("discordServer",)

    def __init__(self, discord_server: Optional[str]) -> None:
        self.discordServer = discord_server

    def __repr__(self) -> str:
        return f"<d_back connection watching {self.discordServer}>"


class Connections:
    """The open connections, live: ``len()``, truth and iteration.

    ``len(server.connections)`` counts every open WebSocket, joined or not;
    iterating gives a snapshot with one :class:`Connection` per open socket.
    """

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __len__(self) -> int:
        return self._engine.connections()

    def __bool__(self) -> bool:
        return self._engine.connections() > 0

    def __iter__(self) -> Iterator[Connection]:
        total = self._engine.connections()
        views: List[Connection] = []
        for server, watchers in self._engine.watchers():
            views.extend([Connection(server)] * watchers)
        del views[total:]
        views.extend([Connection(None)] * (total - len(views)))
        return iter(views)

    def __repr__(self) -> str:
        return f"<d_back connections: {len(self)} open>"


class _Callback:
    """A ``_on_*`` attribute that also tells the engine whether it is set.

    The engine answers from the built-in world without asking Python when a
    callback is not set, so it needs to know; assigning the attribute directly
    (as some 0.0.18 programs do) works like calling the setter.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name
        self.hook = name[1:]

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        return obj.__dict__.get(self.attr)

    def __set__(self, obj: Any, callback: Any) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"{self.hook} needs an async callable, not {type(callback).__name__}")
        obj.__dict__[self.attr] = callback
        obj._engine.set_hook(self.hook, callback is not None)


def _settler(loop: asyncio.AbstractEventLoop, future: "asyncio.Future[Any]") -> Callable[[Optional[str], Optional[int]], None]:
    """A ``done(error, port)`` the engine may call from any thread to settle ``future``."""

    def settle(error: Optional[str], port: Optional[int]) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(port)
        else:
            future.set_exception(OSError(error))

    def done(error: Optional[str], port: Optional[int]) -> None:
        try:
            loop.call_soon_threadsafe(settle, error, port)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    return done


def _resolve(future: "Optional[asyncio.Future[Any]]") -> None:
    """Resolves a future of any loop, from the loop that is running now."""
    if future is None or future.done():
        return
    loop = future.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is running:
        future.set_result(None)
    else:
        try:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))
        except RuntimeError:
            pass


class WebSocketServer:
    """The d-zone WebSocket + HTTP server, with d-back 0.0.18's API.

    ``port`` 0 picks a free port (see :attr:`local_port`). ``static_dir``
    None serves the built-in page; set it to a directory to serve that
    instead. ``callback_timeout`` (seconds, default 5) bounds each callback:
    one that takes longer is cancelled and the browser gets an ``error``
    (the engine gives up on any answer after 10 s, whatever this says).
    All of these are read by ``start()``.
    """

    _on_get_server_data = _Callback()
    _on_get_user_data = _Callback()
    _on_static_request = _Callback()
    _on_validate_discord_user = _Callback()
    _on_get_client_id = _Callback()

    def __init__(self, port: int = 3000, host: str = "localhost") -> None:
        self.port = port
        self.host = host
        self.static_dir: Optional[Union[str, Path]] = None
        self.callback_timeout = 5.0
        self._engine = _engine.Engine()
        self.connections = Connections(self._engine)
        self.mock_provider = MockDataProvider(self)
        self._starting: "Optional[asyncio.Future[Any]]" = None
        self._stopping: "Optional[asyncio.Future[Any]]" = None
        self._stopped: "Optional[asyncio.Future[Any]]" = None
        self._dispatcher: Optional[Dispatcher] = None

    # -- callbacks -----------------------------------------------------------

    def on_get_server_data(self, callback: Callable[[], Awaitable[Dict[str, Dict[str, Any]]]]) -> None:
        """``async def callback() -> {snowflake: {"id", "name", "default", "passworded"}}``.

        Asked for every new connection (its ``server-list``) and every join.
        """
        self._on_get_server_data = callback

    def on_get_user_data(self, callback: Callable[[str], Awaitable[Dict[str, Dict[str, Any]]]]) -> None:
        """``async def callback(server_id) -> {uid: {"uid", "username", "status", "roleColor"}}``.

        Asked when the first browser joins a Discord server; while anyone
        watches it, broadcasts keep that roster current for later joiners.
        """
        self._on_get_user_data = callback

    def on_static_request(self, callback: Callable[[str], Awaitable[Optional[Tuple[str, Any]]]]) -> None:
        """``async def callback(path) -> None | (content_type, file_path)``.

        None lets the server answer as usual; a file path is read and served
        with that content type (404 if it is missing). ``bytes`` in place of
        the path are served as the body.
        """
        self._on_static_request = callback

    def on_validate_discord_user(self, callback: Callable[[str, Dict[str, Any], str], Awaitable[bool]]) -> None:
        """``async def callback(token, user_info, server_id) -> bool`` for passworded servers.

        ``user_info`` is ``{"id", "username"}`` as the browser claims it.
        Without this callback no one gets into a passworded server (the
        built-in OAuth2 demo server aside).
        """
        self._on_validate_discord_user = callback

    def on_get_client_id(self, callback: Callable[[str], Awaitable[Optional[str]]]) -> None:
        """``async def callback(server_id) -> str``: the Discord OAuth2 application id for ``server-join``."""
        self._on_get_client_id = callback

    # -- life cycle ----------------------------------------------------------

    @property
    def local_port(self) -> Optional[int]:
        """The port actually bound while serving (useful with ``port=0``), else None."""
        return self._engine.local_port

    async def start(self) -> None:
        """Starts serving and returns when the server stops (after ``stop()``).

        ``asyncio.create_task(server.start())`` runs it in the background;
        cancelling that task stops the server. Raises ``OSError`` when it
        cannot listen (port in use, unknown host, missing static directory).
        """
        stopped = await self._listen()
        log.info("d-back serving on ws://%s:%s", self.host, self.local_port)
        await self._serve_until(stopped)

    async def run_forever(self) -> None:
        """Serves until cancelled (Ctrl-C under ``asyncio.run``) or ``stop()``."""
        stopped = await self._listen()
        log.info("d-back serving on ws://%s:%s (with HTTP)", self.host, self.local_port)
        await self._serve_until(stopped)

    async def stop(self) -> None:
        """Stops accepting, closes every WebSocket (1001) and waits for them, at most 2 s."""
        if self._starting is not None:
            try:
                await asyncio.shield(self._starting)
            except Exception:
                pass
        if self._stopping is not None:
            await asyncio.shield(self._stopping)
            return
        if not self._engine.serving:
            _resolve(self._stopped)
            return
        loop = asyncio.get_running_loop()
        self._stopping = loop.create_future()
        try:
            self._engine.stop(_settler(loop, self._stopping))
            await asyncio.shield(self._stopping)
        finally:
            self._stopping = None
            if self._dispatcher is not None:
                self._dispatcher.close()
                self._dispatcher = None
            _resolve(self._stopped)

    async def _listen(self) -> "asyncio.Future[Any]":
        """Binds and returns a future that resolves when the server has stopped."""
        if self._starting is not None or self._engine.serving:
            raise RuntimeError("the server is already running; await stop() before starting it again")
        loop = asyncio.get_running_loop()
        dispatcher = Dispatcher(self, loop, float(self.callback_timeout))
        bound = loop.create_future()
        static_dir = None if self.static_dir is None else str(self.static_dir)
        self._engine.start(
            str(self.host), int(self.port), static_dir, dispatcher.mailbox,
            float(self.callback_timeout), _settler(loop, bound),
        )
        self._starting = bound
        self._dispatcher = dispatcher
        try:
            await asyncio.shield(bound)
        except OSError:
            dispatcher.close()
            self._dispatcher = None
            raise
        except asyncio.CancelledError:
            # Binding finishes regardless; stop what it started.
            self._starting = None
            if not bound.cancelled():
                try:
                    await bound
                except Exception:
                    raise asyncio.CancelledError from None
                await self.stop()
            raise
        finally:
            self._starting = None
        self._stopped = loop.create_future()
        return self._stopped

    async def _serve_until(self, stopped: "asyncio.Future[Any]") -> None:
        try:
            await asyncio.shield(stopped)
        except asyncio.CancelledError:
            await self.stop()
            raise

    # -- broadcasts ----------------------------------------------------------

    async def broadcast_message(self, server: str, uid: str, message: str, channel: str) -> None:
        """Shows ``message`` as a speech bubble over user ``uid`` to everyone watching ``server``."""
        self._engine.broadcast_message(str(server), str(uid), str(message), str(channel))

    async def broadcast_presence(
        self,
        server: str,
        uid: str,
        status: str,
        username: Optional[str] = None,
        role_color: Optional[str] = None,
        delete: bool = False,
    ) -> None:
        """Tells everyone watching ``server`` that ``uid`` is now ``status``.

        Send ``username`` (and ``role_color``) when the user may be new to the
        browsers; ``delete=True`` removes the user. ``status`` is ``online``,
        ``idle``, ``dnd`` or ``offline`` (``invisible`` counts as offline);
        anything else raises ``ValueError``.
        """
        self._engine.broadcast_presence(
            str(server), str(uid), str(status),
            None if username is None else str(username),
            None if role_color is None else str(role_color),
            bool(delete),
        )

    async def broadcast_client_id_update(self, server: str, client_id: str) -> None:
        """Changes the OAuth2 client id that browsers watching ``server`` log in with."""
        self._engine.broadcast_client_id(str(server), str(client_id))


# -- the command line ----------------------------------------------------------


def get_version() -> str:
    """The package version (also served at ``/api/version``)."""
    return _engine.ENGINE_VERSION


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The ``d_back`` command's options."""
    parser = argparse.ArgumentParser(
        prog="d_back",
        description="d-back: the backend of the d-zone visualiser, serving its built-in world "
        "(WebSocket and HTTP on one port).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=3000, help="port to listen on (0 picks a free one)")
    parser.add_argument("--host", default="localhost", help="host name or address to listen on (0.0.0.0 for every interface)")
    parser.add_argument("--static-dir", default=None, help="serve static files from this directory instead of the built-in page")
    parser.add_argument("--log-level", default="info", help="engine log filter: error, warn, info, debug, or e.g. d_back=debug")
    parser.add_argument("--version", action="version", version=f"%(prog)s {get_version()}")
    return parser.parse_args(argv)


async def main(argv: Optional[List[str]] = None) -> int:
    """Runs the server from the command line until Ctrl-C or SIGTERM; returns the exit code."""
    args = parse_args(argv)
    try:
        _engine.init_logging(args.log_level)
    except ValueError as error:
        print(f"d_back: error: {error}", file=sys.stderr)
        return 2
    server = WebSocketServer(port=args.port, host=args.host)
    if args.static_dir is not None:
        server.static_dir = Path(args.static_dir)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is not None and sys.platform != "win32":
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        stopped = await server._listen()
    except OSError as error:
        print(f"d_back: error: {error}", file=sys.stderr)
        return 1
    print(
        f"d-back {get_version()} serving http://{args.host}:{server.local_port}/ "
        "(WebSocket on the same address); Ctrl-C stops it",
        flush=True,
    )
    try:
        await server._serve_until(stopped)
    except asyncio.CancelledError:
        return 0
    return 0


def main_sync(argv: Optional[List[str]] = None) -> None:
    """Entry point of ``d_back`` and ``python -m d_back``."""
    try:
        code = asyncio.run(main(argv))
    except KeyboardInterrupt:
        print("d-back stopped", file=sys.stderr)
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main_sync()
