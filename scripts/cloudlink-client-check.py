"""Two real CloudLink 0.2.0 Python clients against a running `cloudlink` server.

Usage: python cloudlink-client-check.py ws://127.0.0.1:PORT

alice and bob connect with the `cloudlink` package's own client, set their
usernames, link a room, and exchange gmsg, gvar, pmsg, pvar and direct
messages. Every step must be seen by the other side within a few seconds;
any failure is printed and the exit code is 1.
"""

import asyncio
import sys

from cloudlink import client as cloudlink_client

WAIT = 10  # seconds for any one expected message


class Peer:
    """One real client, with everything it received kept by command."""

    def __init__(self, name):
        self.name = name
        self.client = cloudlink_client()
        self.client.logging.basicConfig(level=self.client.logging.WARNING)
        self.received = asyncio.Queue()
        self.named = asyncio.Event()
        self.user = None

        async def keep(message):
            await self.received.put(message)

        for bind in (
            self.client.on_gmsg,
            self.client.on_gvar,
            self.client.on_pmsg,
            self.client.on_pvar,
            self.client.on_direct,
            self.client.on_ulist,
        ):
            bind(keep)

        @self.client.on_connect
        async def connected():
            await self.client.protocol.set_username(self.name)

        @self.client.on_username_set
        async def named(id, username, uuid):
            self.user = {"id": id, "username": username, "uuid": uuid}
            self.named.set()

    async def request(self, message):
        """Sends a message with a listener and returns the server's answer."""
        return await asyncio.wait_for(self.client.send_packet_and_wait(message), WAIT)

    async def expect(self, cmd, check):
        """Waits for a message of `cmd` that passes `check`; others are skipped."""

        async def find():
            while True:
                message = await self.received.get()
                if message.get("cmd") == cmd and check(message):
                    return message

        return await asyncio.wait_for(find(), WAIT)


async def scenario(url, alice, bob):
    failures = []

    async def step(what, action):
        try:
            await action
            print(f"ok   {what}")
        except Exception as error:  # a timeout or a failed check
            failures.append(what)
            print(f"FAIL {what}: {error!r}")

    await step("alice sets her username", asyncio.wait_for(alice.named.wait(), WAIT))
    await step("bob sets his username", asyncio.wait_for(bob.named.wait(), WAIT))
    if failures:
        return failures

    async def link(peer):
        answer = await peer.request({"cmd": "link", "val": ["lobby"], "listener": f"link_{peer.name}"})
        assert answer["code_id"] == 100, answer

    await step("alice links the room lobby", link(alice))
    await step("bob links the room lobby", link(bob))
    await step(
        "alice sees bob join lobby",
        alice.expect("ulist", lambda m: m["mode"] == "add" and m["val"]["username"] == "bob" and m["rooms"] == "lobby"),
    )

    alice.client.send_packet({"cmd": "gmsg", "val": "hello lobby", "rooms": "lobby"})
    await step("bob gets alice's gmsg", bob.expect("gmsg", lambda m: m["val"] == "hello lobby" and m["rooms"] == "lobby"))

    bob.client.send_packet({"cmd": "gvar", "name": "score", "val": 42, "rooms": "lobby"})
    await step("alice gets bob's gvar", alice.expect("gvar", lambda m: m["name"] == "score" and m["val"] == 42))

    async def private(cmd, extra):
        answer = await alice.request({"cmd": cmd, "id": "bob", "val": {"secret": cmd}, "listener": cmd, **extra})
        assert answer["code_id"] == 100, answer
        got = await bob.expect(cmd, lambda m: m["val"] == {"secret": cmd})
        assert got["origin"]["username"] == "alice", got
        assert got["rooms"] == "lobby", got

    await step("alice pmsgs bob", private("pmsg", {}))
    await step("alice pvars bob", private("pvar", {"name": "hidden"}))

    async def direct(target, label):
        bob.client.send_packet({"cmd": "direct", "id": target, "val": label})
        got = await alice.expect("direct", lambda m: m["val"] == label)
        assert got["origin"]["username"] == "bob", got

    await step("bob sends alice a direct by UUID", direct(alice.user["uuid"] if alice.user else "", "by uuid"))
    await step("bob sends alice a direct by username", direct("alice", "by name"))

    return failures


async def main(url):
    alice, bob = Peer("alice"), Peer("bob")
    runs = [asyncio.create_task(peer.client.__run__(url)) for peer in (alice, bob)]
    try:
        failures = await scenario(url, alice, bob)
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
    if failures:
        print(f"{len(failures)} step(s) failed with the real CloudLink client", file=sys.stderr)
        return 1
    print("the real CloudLink client works with this server")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(main(sys.argv[1])))
