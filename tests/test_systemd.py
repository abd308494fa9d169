"""Under systemd: READY=1 once listening, WATCHDOG=1 from the event loop, STOPPING=1, and
journald priorities on every log line.

`pvs-bridge serve` runs as a real process with $NOTIFY_SOCKET pointing at a real AF_UNIX
datagram socket of the test's, as systemd would (Type=notify, WatchdogSec=).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.host.systemd import Notifier, watchdog_interval
from tests.support import Sim, free_port, serve_process

WATCHDOG_USEC = 200_000  # pings every 0.1 s: a few in a short test


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """The datagram socket systemd listens on, bound in tmp_path, non-blocking."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


async def receive(sock: socket.socket, limit: float = 10.0) -> str:
    loop = asyncio.get_running_loop()
    data = await asyncio.wait_for(loop.sock_recv(sock, 4096), limit)
    return data.decode()


async def test_serve_says_ready_then_pings_the_watchdog_then_says_stopping(
    simulator: Sim, notify_socket: socket.socket, tmp_path: Path
) -> None:
    env = {
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "JOURNAL_STREAM": "8:12345",
        "WATCHDOG_PID": "",  # as if systemd had not set it (an empty value names no PID)
    }
    process = await serve_process(
        simulator.url, tmp_path / "state", free_port(), env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        ready = await receive(notify_socket)
        assert ready.splitlines()[0] == "READY=1"
        assert ready.splitlines()[1].startswith("STATUS=serving http://127.0.0.1:")
        pings = [await receive(notify_socket) for _ in range(8)]
        assert all(ping.splitlines()[0] == "WATCHDOG=1" for ping in pings)
        # The PVS's health rides along whenever it changes (waiting, then ok).
        statuses = [line for ping in pings for line in ping.splitlines()[1:]]
        assert statuses and all(line.startswith("STATUS=PVS ") for line in statuses)
        assert len(statuses) < len(pings)  # only on a change
        process.send_signal(signal.SIGTERM)
        messages = []
        for _ in range(20):  # bounded: the pings that came before the stop, then it
            messages.append(await receive(notify_socket))
            if messages[-1].startswith("STOPPING=1"):
                break
        assert messages[-1] == "STOPPING=1\nSTATUS=shutting down"
        assert await asyncio.wait_for(process.wait(), 15) == 0
        assert process.stderr is not None
        lines = (await process.stderr.read()).decode().splitlines()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert any(line.startswith("<6>INFO bridge: pvs-bridge ") for line in lines)
    assert lines and all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in lines)


def test_an_abstract_notify_socket_is_reached() -> None:
    name = f"pvs-bridge-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify("READY=1", "STATUS=ok")
        assert sock.recv(100) == b"READY=1\nSTATUS=ok"


def test_without_systemd_nothing_is_sent_and_nothing_fails() -> None:
    assert not Notifier({}).notify("READY=1")
    assert not Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"}).notify("READY=1")


def test_the_watchdog_interval_is_for_this_process_only() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({}) is None
    mine = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(mine) == 30.0
    assert watchdog_interval({**mine, "WATCHDOG_PID": "1"}) is None
