"""A callback that raises, hangs or answers nonsense fails that one request
with an ``error`` frame; the server stays up and serves the next one."""

import asyncio
import urllib.error
import urllib.request

from conftest import browser, run, serving
from d_back.server import WebSocketServer

PROVIDER_FAILED = "Sorry, the server could not load that Discord server right now. Please try again."


def test_a_raising_callback_becomes_an_error_frame_and_the_server_stays_up():
    async def scenario():
        server = WebSocketServer(port=0, host="127.0.0.1")
        broken = {"users": True}

        async def servers():
            return {"1": {"id": "one", "name": "One", "default": True, "passworded": False}}

        async def users(server_id):
            if broken["users"]:
                raise RuntimeError("the guild cache is not ready")
            return {"7": {"uid": "7", "username": "ok", "status": "online", "roleColor": "#ffffff"}}

        server.on_get_server_data(servers)
        server.on_get_user_data(users)
        async with serving(server), browser(server) as client:
            failed = await client.join("default")
            assert failed == {"type": "error", "data": {"message": PROVIDER_FAILED}}
            broken["users"] = False
            joined = await client.join("default")
            assert joined["type"] == "server-join", "the same connection may try again"
            assert list(joined["data"]["users"]) == ["7"]

    run(scenario())


def test_a_raising_server_list_still_lets_the_browser_connect():
    async def scenario():
        server = WebSocketServer(port=0, host="127.0.0.1")

        async def servers():
            raise KeyError("config")

        server.on_get_server_data(servers)
        async with serving(server):
            import json

            import websockets

            async with websockets.connect(f"ws://127.0.0.1:{server.local_port}/") as socket:
                first = json.loads(await asyncio.wait_for(socket.recv(), 5))
                assert first["type"] == "error"
            assert server.local_port is not None

    run(scenario())


def test_a_slow_callback_is_cancelled_and_answered_with_an_error():
    async def scenario():
        server = WebSocketServer(port=0, host="127.0.0.1")
        server.callback_timeout = 0.3
        cancelled = asyncio.Event()

        async def servers():
            return {"1": {"id": "one", "name": "One", "default": True, "passworded": False}}

        async def users(server_id):
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        server.on_get_server_data(servers)
        server.on_get_user_data(users)
        async with serving(server), browser(server) as client:
            failed = await client.join("default")
            assert failed["data"]["message"] == PROVIDER_FAILED
            await asyncio.wait_for(cancelled.wait(), 5)
            # Another browser is served meanwhile.
            async with browser(server) as other:
                assert "1" in other.server_list["data"]

    run(scenario())


def test_a_callback_returning_nonsense_fails_that_request_only():
    async def scenario():
        server = WebSocketServer(port=0, host="127.0.0.1")

        async def servers():
            return {"1": {"id": "one", "name": "One", "default": True, "passworded": False}}

        async def users(server_id):
            return ["not", "a", "dict"]

        server.on_get_server_data(servers)
        server.on_get_user_data(users)
        async with serving(server), browser(server) as client:
            assert (await client.join("default"))["data"]["message"] == PROVIDER_FAILED

    run(scenario())


def test_a_raising_validator_refuses_the_login():
    async def scenario():
        server = WebSocketServer(port=0, host="127.0.0.1")

        async def servers():
            return {"1": {"id": "locked", "name": "Locked", "passworded": True}}

        async def validate(token, user, server_id):
            raise ConnectionError("discord.com unreachable")

        server.on_get_server_data(servers)
        server.on_validate_discord_user(validate)
        async with serving(server), browser(server) as client:
            refused = await client.join("locked", discordToken="t", discordUser={"id": "1", "username": "u"})
            assert refused["data"]["message"] == "Discord authentication failed. Please try logging in again."

    run(scenario())


def test_a_raising_static_callback_answers_500():
    async def scenario():
        server = WebSocketServer(port=0, host="127.0.0.1")

        async def static(path):
            raise ValueError("bad path")

        server.on_static_request(static)
        async with serving(server):
            url = f"http://127.0.0.1:{server.local_port}/index.html"

            def get():
                try:
                    return urllib.request.urlopen(url, timeout=5).status
                except urllib.error.HTTPError as error:
                    return error.code

            assert await asyncio.get_running_loop().run_in_executor(None, get) == 500

    run(scenario())
