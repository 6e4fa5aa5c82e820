"""d-back: the backend of the d-zone visualiser, for Python programs.

This package keeps the public API of the pure-Python d-back 0.0.18 --
``WebSocketServer`` with its five callbacks and three broadcasts,
``MockDataProvider``, ``python -m d_back`` -- and serves it with the Rust
d-back engine: sockets, frames, fan-out and the built-in world run on the
engine's own threads, and Python runs only your callbacks and your calls
into the broadcasts.

    import asyncio
    from d_back.server import WebSocketServer

    async def main():
        server = WebSocketServer(port=3000, host="localhost")
        await server.run_forever()   # the built-in world at http://localhost:3000/

    asyncio.run(main())

Importing the package starts nothing; the engine's threads start with the
first ``start()``.
"""

from d_back._engine import ENGINE_VERSION as __version__
from d_back.mock import MockDataProvider
from d_back.server import WebSocketServer

__all__ = ["WebSocketServer", "MockDataProvider", "__version__"]
