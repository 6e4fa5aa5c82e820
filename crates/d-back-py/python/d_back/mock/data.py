"""``MockDataProvider``: the built-in world's data, with d-back 0.0.18's methods.

The world itself lives in the Rust engine, which also runs its activity (random
status changes and chat lines) while anyone watches a server with no callbacks
registered. This class reads the same world, so a bot can start from the
built-in data, or feed it to its own callbacks.
"""

import asyncio
import copy
import functools
import json
import random
from typing import Any, Dict, Optional

from d_back import _engine

#: The lines the simulated users say (the engine's built-in world says the same).
MOCK_MESSAGES = ["hello", "how are you?", "this is a test message", "D-Zone rocks!", "what's up?"]

#: The channel simulated chat lines are said in.
MOCK_CHANNEL = "527964146659229701"

STATUSES = ("online", "idle", "dnd", "offline")


@functools.lru_cache(maxsize=1)
def _world() -> Dict[str, Any]:
    return json.loads(_engine.mock_world_json())


class MockDataProvider:
    """The built-in world's servers and users, and per-connection simulators.

    ``server_instance`` is accepted for compatibility with d-back 0.0.18 and
    not needed.
    """

    def __init__(self, server_instance: Any = None) -> None:
        self.server = server_instance

    def get_mock_server_data(self) -> Dict[str, Dict[str, Any]]:
        """Every built-in server by snowflake: ``{"id", "name", "passworded", "default"?}``."""
        return copy.deepcopy(_world()["servers"])

    def get_mock_user_data(self, discord_server_id: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
        """The users of one built-in server by uid; ``{}`` for an unknown server or None."""
        if discord_server_id is None:
            return {}
        return copy.deepcopy(_world()["users"].get(str(discord_server_id), {}))

    async def periodic_status_updates(self, websocket: Any) -> None:
        """Sends a random user a random status every 4 s to ``websocket``.

        ``websocket`` is any object with ``discordServer`` and an async ``send``
        (a ``websockets`` connection, say). The engine runs this activity
        itself for its own connections; this is for your own sockets.
        """
        server = websocket.discordServer
        uids = list(self.get_mock_user_data(server))
        while uids:
            await asyncio.sleep(4)
            presence = {"uid": random.choice(uids), "status": random.choice(STATUSES)}
            await websocket.send(json.dumps({"type": "presence", "server": server, "data": presence}))

    async def periodic_messages(self, websocket: Any) -> None:
        """Has a random user say a random line every 5 s to ``websocket`` (see above)."""
        server = websocket.discordServer
        uids = list(self.get_mock_user_data(server))
        while uids:
            await asyncio.sleep(5)
            line = {"uid": random.choice(uids), "message": random.choice(MOCK_MESSAGES), "channel": MOCK_CHANNEL}
            await websocket.send(json.dumps({"type": "message", "server": server, "data": line}))
