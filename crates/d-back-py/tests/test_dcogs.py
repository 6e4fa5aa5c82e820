"""The d-cogs (Red-DiscordBot plugin) usage pattern, end to end.

The cog builds ``WebSocketServer(port, host)``, registers all five callbacks
as bound methods of a manager object that reads its bot, runs
``asyncio.create_task(server.start())``, broadcasts from Discord events with
keyword arguments, reports ``len(server.connections)`` and calls ``stop()``
on unload -- and a reload starts it again in the same process.
"""

import asyncio

from conftest import browser, eventually, run, started
from d_back.server import WebSocketServer

GUILD = "111111111111111111"
OTHER = "222222222222222222"


class FakeBot:
    """What the cog reads from discord.py: guilds and their members."""

    guilds = {
        GUILD: {"name": "Alpha", "passworded": False, "members": {"1001": ("alice", "online", "#ff0000")}},
        OTHER: {"name": "Beta", "passworded": False, "members": {"2001": ("bob", "idle", "#00ff00")}},
    }


class Manager:
    """Shaped like d-cogs' WebSocketServerManager."""

    def __init__(self, bot: FakeBot, port: int = 0) -> None:
        self.bot = bot
        self.asked = []
        self.server = WebSocketServer(port=port, host="127.0.0.1")
        self.server.on_get_server_data(self.get_server_data)
        self.server.on_get_user_data(self.get_user_data)
        self.server.on_validate_discord_user(self.validate_discord_user)
        self.server.on_get_client_id(self.get_client_id)
        self.server.on_static_request(self.handle_static_request)

    async def get_server_data(self):
        data = {}
        for snowflake, guild in self.bot.guilds.items():
            data[snowflake] = {"id": guild["name"][:1].upper(), "name": guild["name"], "default": False,
                               "passworded": guild["passworded"]}
        data[next(iter(data))]["default"] = True
        return data

    async def get_user_data(self, discord_server_id=None):
        self.asked.append(discord_server_id)
        guild = self.bot.guilds.get(discord_server_id)
        if not guild:
            return {}
        return {uid: {"uid": uid, "username": name, "status": status, "roleColor": color}
                for uid, (name, status, color) in guild["members"].items()}

    async def validate_discord_user(self, token, user_info, discord_server_id):
        return token == "good"

    async def get_client_id(self, discord_server_id=None):
        return "506432803173433344"

    async def handle_static_request(self, path):
        return None


def test_the_cog_life_cycle_serves_broadcasts_counts_stops_and_restarts():
    async def scenario():
        manager = Manager(FakeBot())
        server = manager.server
        task = await started(server)  # asyncio.create_task(server.start())

        async with browser(server) as first, browser(server) as second, browser(server) as elsewhere:
            assert set(first.server_list["data"]) == {GUILD, OTHER}
            assert first.server_list["data"][GUILD] == {"id": "A", "name": "Alpha", "default": True, "passworded": False}

            joined = await first.join("default")
            assert joined["type"] == "server-join"
            assert joined["data"]["serverName"] == "Alpha"
            assert joined["data"]["clientId"] == "506432803173433344"
            assert joined["data"]["users"] == {
                "1001": {"uid": "1001", "username": "alice", "status": "online", "roleColor": "#ff0000"}}
            assert joined["data"]["request"] == {"server": "default"}
            assert (await second.join("A"))["type"] == "server-join"
            assert (await elsewhere.join("B"))["data"]["serverName"] == "Beta"
            assert GUILD in manager.asked and OTHER in manager.asked

            assert len(server.connections) == 3
            watching = sorted(c.discordServer for c in server.connections)
            assert watching == sorted([GUILD, GUILD, OTHER])

            # ListenerManager.handle_member_update / handle_member_join
            await server.broadcast_presence(server=GUILD, uid="1002", status="dnd", username="carol", role_color="#0000ff")
            # handle_message
            await server.broadcast_message(server=GUILD, uid="1002", message="hi all", channel="42")
            # handle_member_remove
            await server.broadcast_presence(server=GUILD, uid="1001", status="offline", delete=True)
            # the setclientid command
            await server.broadcast_client_id_update(GUILD, "999999999999999999")
            # the customization page calls them positionally
            await server.broadcast_message(GUILD, "1002", "positional", "42")

            for client in (first, second):
                presence = await client.expect("presence")
                assert presence == {"type": "presence", "server": GUILD, "data": {
                    "uid": "1002", "status": "dnd", "username": "carol", "roleColor": "#0000ff"}}
                message = await client.expect("message")
                assert message["data"] == {"uid": "1002", "message": "hi all", "channel": "42"}
                removed = await client.expect("presence")
                assert removed["data"] == {"uid": "1001", "status": "offline", "delete": True}
                update = await client.expect("update-clientid")
                assert update == {"type": "update-clientid", "server": GUILD, "data": {"clientId": "999999999999999999"}}
                assert (await client.expect("message"))["data"]["message"] == "positional"

            # The other guild's browser saw none of it.
            await server.broadcast_message(OTHER, "2001", "only for beta", "7")
            assert (await elsewhere.expect("message"))["data"]["message"] == "only for beta"

            # A later joiner gets the current roster: carol in, alice out.
            async with browser(server) as late:
                users = (await late.join("A"))["data"]["users"]
                assert set(users) == {"1002"}
                assert (await late.join("A"))["data"]["clientId"] == "999999999999999999"

            # cog_unload
            await server.stop()
            await asyncio.wait_for(task, 5)
            assert len(server.connections) == 0
            closed = 0
            for client in (first, second, elsewhere):
                try:
                    await client.recv(2)
                except Exception:
                    closed += 1
            assert closed == 3

        # Broadcasting while stopped is harmless, as before.
        await server.broadcast_message(GUILD, "1001", "nobody listens", "1")

        # A reload: the same object starts again in the same process.
        task = await started(server)
        async with browser(server) as again:
            assert (await again.join("default"))["data"]["serverName"] == "Alpha"
            assert len(server.connections) == 1
        await server.stop()
        await asyncio.wait_for(task, 5)

    run(scenario())


def test_connections_counts_browsers_before_and_after_they_join():
    async def scenario():
        server = Manager(FakeBot()).server
        task = await started(server)
        async with browser(server) as one:
            await eventually(lambda: len(server.connections) == 1)
            assert [c.discordServer for c in server.connections] == [None]
            await one.join("default")
            assert [c.discordServer for c in server.connections] == [GUILD]
        await eventually(lambda: len(server.connections) == 0)
        assert not server.connections
        await server.stop()
        await task

    run(scenario())
