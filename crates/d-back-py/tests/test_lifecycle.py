"""Starting, stopping and restarting; what importing does (nothing); how
start-up problems are reported."""

import asyncio
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import browser, run, serving, started
from d_back.server import WebSocketServer


def test_importing_the_package_starts_no_thread():
    code = textwrap.dedent(
        """
        import os
        before = len(os.listdir("/proc/self/task"))
        import d_back, d_back.server
        server = d_back.server.WebSocketServer(port=0)
        print(before, len(os.listdir("/proc/self/task")))
        """
    )
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs Linux /proc to count threads")
    before, after = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                                   check=True).stdout.split()
    assert before == after


def test_stop_start_stop_in_one_process_many_times():
    async def scenario():
        server = WebSocketServer(port=0, host="127.0.0.1")
        for _ in range(3):
            task = await started(server)
            async with browser(server) as client:
                assert (await client.join("default"))["type"] == "server-join"
            await server.stop()
            await asyncio.wait_for(task, 5)
            assert server.local_port is None
        await server.stop()  # stopping a stopped server is harmless

    run(scenario())


def test_starting_twice_is_refused():
    async def scenario():
        async with serving() as server:
            with pytest.raises(RuntimeError, match="already running"):
                await server.start()

    run(scenario())


def test_a_port_in_use_raises_oserror_with_the_address():
    async def scenario():
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            server = WebSocketServer(port=port, host="127.0.0.1")
            with pytest.raises(OSError, match=str(port)):
                await server.start()
            assert server.local_port is None
            # It can still start elsewhere afterwards.
            server.port = 0
            task = await started(server)
            await server.stop()
            await task

    run(scenario())


def test_a_missing_static_dir_is_an_error(tmp_path):
    async def scenario():
        server = WebSocketServer(port=0, host="127.0.0.1")
        server.static_dir = tmp_path / "missing"
        with pytest.raises(OSError, match="static directory"):
            await server.start()

    run(scenario())


def test_a_static_dir_is_served(tmp_path):
    (tmp_path / "index.html").write_text("<p>mine</p>")

    async def scenario():
        server = WebSocketServer(port=0, host="127.0.0.1")
        server.static_dir = tmp_path
        async with serving(server):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.local_port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            response = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"<p>mine</p>")

    run(scenario())


def test_cancelling_the_start_task_stops_the_server():
    async def scenario():
        server = WebSocketServer(port=0, host="127.0.0.1")
        task = await started(server)
        port = server.local_port
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert server.local_port is None
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)

    run(scenario())


def test_run_forever_returns_after_stop():
    async def scenario():
        server = WebSocketServer(port=0, host="127.0.0.1")
        task = asyncio.create_task(server.run_forever())
        while server.local_port is None:
            await asyncio.sleep(0.01)
        await server.stop()
        await asyncio.wait_for(task, 5)

    run(scenario())


def test_ctrl_c_under_asyncio_run_stops_the_server_and_the_interpreter_exits():
    code = textwrap.dedent(
        """
        import asyncio, os, signal, threading
        from d_back.server import WebSocketServer

        async def main():
            server = WebSocketServer(port=0, host="127.0.0.1")
            async def servers():
                return {"1": {"id": "x", "name": "X", "default": True}}
            server.on_get_server_data(servers)
            loop = asyncio.get_running_loop()
            async def interrupt():
                while server.local_port is None:
                    await asyncio.sleep(0.01)
                print("listening", flush=True)
                os.kill(os.getpid(), signal.SIGINT)
            asyncio.create_task(interrupt())
            await server.run_forever()

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == ["listening", "interrupted"], done.stderr
    assert done.returncode == 0


def test_a_server_abandoned_with_its_loop_stops_listening_when_collected():
    import gc
    import time

    loop = asyncio.new_event_loop()
    server = WebSocketServer(port=0, host="127.0.0.1")
    task = loop.create_task(server.start())

    async def listening():
        while server.local_port is None:
            await asyncio.sleep(0.01)

    loop.run_until_complete(asyncio.wait_for(listening(), 5))
    port = server.local_port
    loop.close()  # without stopping the server or finishing the task
    del task, server
    gc.collect()
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return
        except ConnectionResetError:
            pass  # shutting down: accepted, then dropped
        time.sleep(0.05)
    raise AssertionError("the abandoned server still listens")


def test_ctrl_c_while_browsers_join_and_callbacks_run_ends_the_interpreter_cleanly():
    code = textwrap.dedent(
        """
        import asyncio, json, os, signal
        import websockets
        from d_back.server import WebSocketServer

        async def main():
            server = WebSocketServer(port=0, host="127.0.0.1")
            async def servers():
                await asyncio.sleep(0.001)
                return {"1": {"id": "x", "name": "X", "default": True}}
            server.on_get_server_data(servers)
            task = asyncio.create_task(server.start())
            while server.local_port is None:
                await asyncio.sleep(0.01)
            joins = 0
            async def browse():
                nonlocal joins
                while True:
                    async with websockets.connect(f"ws://127.0.0.1:{server.local_port}/") as ws:
                        await ws.recv()
                        await ws.send(json.dumps({"type": "connect", "data": {}}))
                        await ws.recv()
                        await server.broadcast_message("1", "7", "hi", "c")
                        joins += 1
                        if joins == 50:
                            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.gather(task, *(browse() for _ in range(4)))

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["interrupted"], done.stderr
    assert done.returncode == 0
