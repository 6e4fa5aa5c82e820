"""With no callbacks the engine serves its built-in world, as d-back 0.0.18
served its mock data: four servers, their users, and live activity."""

import asyncio
import json
import urllib.request

import d_back
from conftest import browser, run, serving
from d_back import MockDataProvider

DWORLD = "232769614004748288"


def test_the_built_in_world_lists_joins_and_comes_alive():
    async def scenario():
        async with serving() as server, browser(server) as client, browser(server) as second:
            listed = client.server_list["data"]
            assert listed == MockDataProvider().get_mock_server_data()
            assert len(listed) == 4 and listed[DWORLD]["default"] is True
            joined = await client.join(None)  # the d-zone client's first visit
            assert joined["data"]["request"] == {"server": "default"}
            assert joined["data"]["users"] == MockDataProvider().get_mock_user_data(DWORLD)
            await second.join("dworld")
            # The world's activity: a status change about every 4 s, the same for every watcher.
            first_event = await client.expect("presence", seconds=10)
            assert first_event["server"] == DWORLD
            assert await second.expect("presence", seconds=10) == first_event

    run(scenario())


def test_the_built_in_oauth_server_admits_any_named_user():
    async def scenario():
        async with serving() as server, browser(server) as client:
            joined = await client.join("oauth", discordToken="t", discordUser={"id": "1", "username": "me"})
            assert joined["data"]["serverName"] == "OAuth2 Protected Server"
            refused = await client.join("oauth")
            assert refused["type"] == "error"

    run(scenario())


def test_http_on_the_same_port_serves_the_page_and_the_version():
    async def scenario():
        async with serving() as server:
            base = f"http://127.0.0.1:{server.local_port}"

            def get(path):
                with urllib.request.urlopen(base + path, timeout=5) as response:
                    return response.read()

            loop = asyncio.get_running_loop()
            version = json.loads(await loop.run_in_executor(None, get, "/api/version"))
            assert version == {"version": d_back.__version__}
            assert b"<html" in (await loop.run_in_executor(None, get, "/")).lower()

    run(scenario())


def test_mock_data_provider_keeps_the_0_0_18_methods():
    provider = MockDataProvider(object())
    servers = provider.get_mock_server_data()
    assert servers[DWORLD]["name"] == "D-World"
    assert provider.get_mock_user_data() == {}
    assert provider.get_mock_user_data("no such server") == {}
    users = provider.get_mock_user_data("987654321098765432")
    assert len(users) == 21
    assert all(set(user) == {"uid", "username", "status", "roleColor"} for user in users.values())
    provider.get_mock_server_data()[DWORLD]["name"] = "changed"
    assert provider.get_mock_server_data()[DWORLD]["name"] == "D-World", "callers get copies"
