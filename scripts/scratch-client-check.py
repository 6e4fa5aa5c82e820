"""scratchattach's TurboWarp cloud connection against a running `cloudlink` server.

Usage: python scratch-client-check.py set    ws://127.0.0.1:PORT/
       python scratch-client-check.py rejoin ws://127.0.0.1:PORT/

set: connects to project PROJECT with scratchattach.get_tw_cloud(...,
cloud_host=URL), the way a project owner's bot does, sets one variable with
set_var and then several at once with set_vars (scratchattach sends those as
one WebSocket frame of newline-separated messages), and checks that the server
echoes every set back, in order, each value exactly as sent.

rejoin: run after the server was stopped and started again on the same store.
A new scratchattach connection to the same project must be sent every variable
on joining, each with the last value set, exactly as it was set: "0123" stays
the text 0123, a long decimal keeps every digit, a number stays a number.

Frames are read from the connection's own WebSocket (`cloud.websocket`):
scratchattach's get_var ignores what arrives in its first half second, which
is exactly when a server sends the stored variables. Every wait is bounded;
any failure is printed and the exit code is 1.
"""

import json
import sys
import time

import scratchattach
import websocket

PROJECT = "1234567"
WAIT = 10  # seconds for everything one phase expects to receive
PROBLEMS = []  # what went wrong while reading frames

FIRST = ("score", "7")  # set_var, later overwritten by set_vars
MANY = {  # set_vars: one frame, one line per variable
    "score": "0123",
    "pi": "3.14159265358979323846264338327950288419716939937510582097494459",
    "balance": "-0.50",
    "big": "123456789012345678901234567890",
    "lives": 42,
}
# What a player who joins later must get.
STORED = {"☁ " + name: value for name, value in [FIRST, *MANY.items()]}


def show(value):
    return f"{value!r} ({type(value).__name__})"


def same(got, want):
    """Equal and of the same JSON kind: the text "42" is not the number 42."""
    return type(got) is type(want) and got == want


def connect(url):
    cloud = scratchattach.get_tw_cloud(
        PROJECT, purpose="cloudlink real-client test", contact="scripts/test-scratch-client.sh", cloud_host=url
    )
    try:
        cloud.connect()
    except Exception as error:
        raise SystemExit(f"FAIL scratchattach could not connect to {url}: {error!r}")
    return cloud


def receive(cloud, done):
    """Reads frames until done(messages) or WAIT seconds; returns every message."""
    messages = []
    deadline = time.monotonic() + WAIT
    while not done(messages):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        cloud.websocket.settimeout(left)
        try:
            frame = cloud.websocket.recv()
        except websocket.WebSocketTimeoutException:
            break
        except (websocket.WebSocketConnectionClosedException, OSError) as error:
            PROBLEMS.append(f"the connection ended while waiting: {error!r}")
            break
        for line in frame.splitlines():
            if line.strip():
                try:
                    messages.append(json.loads(line))
                except ValueError:
                    PROBLEMS.append(f"the server sent a line that is not JSON: {line!r}")
    return messages


def phase_set(url):
    cloud = connect(url)
    sent_frames = []
    send = cloud.websocket.send

    def record(payload, *args, **kwargs):
        sent_frames.append(payload)
        return send(payload, *args, **kwargs)

    cloud.websocket.send = record

    cloud.set_var(*FIRST)
    cloud.set_vars(MANY)
    expected = [("☁ " + FIRST[0], FIRST[1])] + [("☁ " + name, value) for name, value in MANY.items()]

    failures = []
    batch = sent_frames[-1] if sent_frames else ""
    if len(sent_frames) != 2 or len(batch.splitlines()) != len(MANY):
        failures.append(f"set_vars was meant to send one frame of {len(MANY)} lines; sent {sent_frames!r}")

    def echoes(messages):
        return [m for m in messages if m.get("method") == "set"]

    got = echoes(receive(cloud, lambda ms: len(echoes(ms)) >= len(expected)))
    cloud.disconnect()

    if len(got) < len(expected):
        failures.append(f"the server echoed {len(got)} of {len(expected)} sets within {WAIT} s: {got!r}")
    for (name, value), echo in zip(expected, got):
        if echo.get("name") != name or not same(echo.get("value"), value):
            failures.append(
                f"set {name} = {show(value)}; echoed {echo.get('name')} = {show(echo.get('value'))}"
            )
        else:
            print(f"ok   echoed {name} = {show(value)}")
    return failures


def phase_rejoin(url):
    cloud = connect(url)

    def latest(messages):
        values = {}
        for m in messages:
            if m.get("method") == "set":
                values[m.get("name")] = m.get("value")
        return values

    got = latest(receive(cloud, lambda ms: STORED.keys() <= latest(ms).keys()))
    cloud.disconnect()

    failures = []
    for name, value in STORED.items():
        if name not in got:
            failures.append(f"{name} was not sent on joining within {WAIT} s (expected {show(value)})")
        elif not same(got[name], value):
            failures.append(f"{name} came back as {show(got[name])}; it was set to {show(value)}")
        else:
            print(f"ok   after restart {name} = {show(value)}")
    for name in got.keys() - STORED.keys():
        failures.append(f"{name} = {show(got[name])} was sent on joining but never set")
    return failures


def main(phase, url):
    checked = {"set": phase_set, "rejoin": phase_rejoin}[phase](url)
    failures = PROBLEMS + checked
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    if failures:
        print(f"scratchattach {scratchattach_version()} ({phase}): {len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print(f"scratchattach {scratchattach_version()} ({phase}): every check passed")
    return 0


def scratchattach_version():
    from importlib.metadata import version

    return version("scratchattach")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("set", "rejoin"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
