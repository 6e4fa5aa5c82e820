"""Each callback's contract: what it is given, what it may return, and what
the browser then sees; and that callbacks run on the caller's event loop."""

import asyncio
import urllib.request

from conftest import browser, run, serving
from d_back.server import WebSocketServer

SECRET = "222222222222222222"
OPEN = "111111111111111111"


def make_server() -> WebSocketServer:
    server = WebSocketServer(port=0, host="127.0.0.1")

    async def servers():
        return {
            OPEN: {"id": "open", "name": "Open", "default": True, "passworded": False},
            SECRET: {"id": "secret", "name": "Secret", "passworded": True, "password": "hunter2"},
            333333333333333333: {"id": 3, "name": "Numbers"},  # ints, as loose bots send them
        }

    async def users(server_id):
        return {"1": {"uid": "1", "username": f"user-of-{server_id}", "status": "idle", "roleColor": "#123456"}}

    server.on_get_server_data(servers)
    server.on_get_user_data(users)
    return server


def test_server_data_becomes_the_server_list_without_secrets():
    async def scenario():
        async with serving(make_server()) as server, browser(server) as client:
            listed = client.server_list["data"]
            assert listed[OPEN] == {"id": "open", "name": "Open", "default": True, "passworded": False}
            assert listed[SECRET]["passworded"] is True
            assert "hunter2" not in str(client.server_list)
            assert listed["333333333333333333"]["id"] == "3"
            joined = await client.join("3")
            assert joined["data"]["serverName"] == "Numbers"

    run(scenario())


def test_user_data_is_asked_with_the_snowflake_and_fills_server_join():
    async def scenario():
        async with serving(make_server()) as server, browser(server) as client:
            joined = await client.join("open")
            assert joined["data"]["users"] == {
                "1": {"uid": "1", "username": f"user-of-{OPEN}", "status": "idle", "roleColor": "#123456"}}
            assert "clientId" not in joined["data"]

    run(scenario())


def test_oauth_validation_true_admits_and_false_refuses_with_the_arguments_of_0_0_18():
    async def scenario():
        server = make_server()
        seen = []

        async def validate(token, user_info, server_id):
            seen.append((token, user_info, server_id))
            return token == "valid-token"

        server.on_validate_discord_user(validate)
        user = {"id": "80351110224678912", "username": "nelly"}
        async with serving(server), browser(server) as client:
            ok = await client.join("secret", discordToken="valid-token", discordUser=user)
            assert ok["type"] == "server-join"
            assert ok["data"]["request"] == {"server": "secret"}
            refused = await client.join("secret", discordToken="stolen", discordUser=user)
            assert refused == {"type": "error", "data": {
                "message": "Discord authentication failed. Please try logging in again."}}
            no_login = await client.join("secret")
            assert no_login["data"]["message"] == "This server requires Discord authentication. Please login with Discord."
            legacy = await client.join("secret", password="hunter2")
            assert legacy["type"] == "server-join"
            assert legacy["data"]["request"] == {"server": "secret"}, "the password is never echoed"
        assert seen[0] == ("valid-token", user, SECRET)
        assert seen[1][0] == "stolen"

    run(scenario())


def test_a_passworded_server_without_a_validator_refuses_logins():
    async def scenario():
        async with serving(make_server()) as server, browser(server) as client:
            refused = await client.join("secret", discordToken="anything", discordUser={"id": "1", "username": "x"})
            assert refused["type"] == "error"

    run(scenario())


def test_the_client_id_goes_into_server_join():
    async def scenario():
        server = make_server()
        asked = []

        async def client_id(server_id):
            asked.append(server_id)
            return "506432803173433344"

        server.on_get_client_id(client_id)
        async with serving(server), browser(server) as client:
            joined = await client.join("default")
            assert joined["data"]["clientId"] == "506432803173433344"
        assert asked == [OPEN]

    run(scenario())


def test_static_requests_serve_a_named_file_bytes_or_fall_through(tmp_path):
    page = tmp_path / "custom.html"
    page.write_text("<p>custom d-zone</p>")

    async def scenario():
        server = make_server()
        paths = []

        async def static(path):
            paths.append(path)
            if path == "/custom":
                return ("text/html", str(page))
            if path == "/bytes":
                return ("text/plain", b"raw body")
            if path == "/missing":
                return ("text/html", str(tmp_path / "nope.html"))
            return None

        server.on_static_request(static)
        async with serving(server):
            base = f"http://127.0.0.1:{server.local_port}"

            def get(path):
                try:
                    with urllib.request.urlopen(base + path, timeout=5) as response:
                        return response.status, response.headers["Content-Type"], response.read()
                except urllib.error.HTTPError as error:
                    return error.code, error.headers["Content-Type"], error.read()

            loop = asyncio.get_running_loop()
            status, kind, body = await loop.run_in_executor(None, get, "/custom")
            assert (status, kind, body) == (200, "text/html", b"<p>custom d-zone</p>")
            status, kind, body = await loop.run_in_executor(None, get, "/bytes")
            assert (status, body) == (200, b"raw body")
            status, _, _ = await loop.run_in_executor(None, get, "/missing")
            assert status == 404
            status, kind, body = await loop.run_in_executor(None, get, "/")
            assert status == 200 and b"<" in body, "None falls through to the built-in page"
        assert paths[:3] == ["/custom", "/bytes", "/missing"]

    run(scenario())


def test_callbacks_run_on_the_event_loop_that_started_the_server():
    async def scenario():
        loop = asyncio.get_running_loop()
        lock = asyncio.Lock()  # a loop-bound object, as a Red cog's config is
        loops = []
        server = WebSocketServer(port=0, host="127.0.0.1")

        async def servers():
            loops.append(asyncio.get_running_loop())
            async with lock:
                await asyncio.sleep(0)
            return {"5": {"id": "five", "name": "Five", "default": True, "passworded": False}}

        server.on_get_server_data(servers)
        async with serving(server), browser(server) as client:
            assert (await client.join("default"))["type"] == "server-join"
        assert loops and all(seen is loop for seen in loops)

    run(scenario())


def test_callbacks_set_while_serving_take_effect_and_plain_functions_work():
    async def scenario():
        async with serving() as server:
            async with browser(server) as client:
                assert "232769614004748288" in client.server_list["data"], "the built-in world"

            def servers():  # not async: accepted too
                return {"9": {"id": "nine", "name": "Nine", "default": True, "passworded": False}}

            server.on_get_server_data(servers)
            async with browser(server) as client:
                assert list(client.server_list["data"]) == ["9"]
            server._on_get_server_data = None  # back to the built-in world, as 0.0.18 allowed
            async with browser(server) as client:
                assert "232769614004748288" in client.server_list["data"]

    run(scenario())
