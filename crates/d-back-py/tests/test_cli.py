"""``python -m d_back`` and the ``d_back`` console script."""

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import websockets

import d_back
from conftest import run

BIN = os.path.join(os.path.dirname(sys.executable), "d_back")


def test_version_and_help():
    for command in ([sys.executable, "-m", "d_back"], [BIN]):
        shown = subprocess.run(command + ["--version"], capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0
        assert shown.stdout.strip() == f"d_back {d_back.__version__}"
    helped = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=30)
    for flag in ("--port", "--host", "--static-dir", "--version", "--log-level"):
        assert flag in helped.stdout


def test_the_console_script_serves_the_built_in_world_until_ctrl_c():
    assert shutil.which(BIN), "the d_back script is installed beside python"

    async def scenario():
        process = await asyncio.create_subprocess_exec(
            BIN, "--port", "0", "--host", "127.0.0.1", "--log-level", "warn",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
            port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as socket:
                listed = json.loads(await asyncio.wait_for(socket.recv(), 5))
                assert listed["type"] == "server-list" and len(listed["data"]) == 4
                await socket.send(json.dumps({"type": "connect", "data": {"server": "repos"}}))
                joined = json.loads(await asyncio.wait_for(socket.recv(), 5))
                assert len(joined["data"]["users"]) == 21
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), 10) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    run(scenario())


def test_sigterm_stops_python_m_d_back_cleanly():
    async def scenario():
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "d_back", "--port", "0", "--host", "127.0.0.1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            assert b"serving" in await asyncio.wait_for(process.stdout.readline(), 20)
            process.terminate()
            assert await asyncio.wait_for(process.wait(), 10) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    run(scenario())


def test_start_up_problems_end_with_one_line_and_exit_code_1(tmp_path):
    missing = tmp_path / "nowhere"
    done = subprocess.run([BIN, "--port", "0", "--static-dir", str(missing)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 1
    assert done.stderr.startswith("d_back: error: static directory") and str(missing) in done.stderr
    assert "Traceback" not in done.stderr
    bad = subprocess.run([BIN, "--log-level", "=#!"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
