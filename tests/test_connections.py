"""Connection hygiene: idle and slow connections cannot lock out a well-behaved client.

Before: aiohttp kept an idle connection for about an hour, gave a request head all the
time it wanted, and accepted connections until no file descriptor was left; 1,200 idle
connections locked out every client. Attack connections come from other loopback
addresses (127.0.0.2 and up) than the polite client's 127.0.0.1, as on a LAN.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from bridge.web.client_trouble import ClientTrouble
from bridge.web.connections import ConnectionTable
from tests.support import DEVICE_LIST, ServeFactory, Sim, bridge_config, until

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
PARTIAL_HEAD = b"GET /cgi-bin/dl_cgi?Command=DeviceList HTTP/1.1\r\nHost: 127.0.0.1\r\n"
HEAD = PARTIAL_HEAD + b"\r\n"


@contextlib.contextmanager
def open_files(wanted: int) -> Iterator[None]:
    """The test process's soft RLIMIT_NOFILE raised to `wanted` if below, then restored."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.asynccontextmanager
async def connections() -> AsyncIterator[list[Streams]]:
    """Attack connections, all closed at the end."""
    opened: list[Streams] = []
    try:
        yield opened
    finally:
        for _reader, writer in opened:
            writer.transport.abort()


async def connect(port: int, source: str) -> Streams:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def open_many(
    opened: list[Streams], port: int, count: int, first_address: int, send: bytes = b""
) -> None:
    """`count` connections, 40 per source address from 127.0.0.<first_address> on, each
    sending `send` (bounded: batches of 100)."""

    async def one(n: int) -> None:
        reader, writer = await connect(port, f"127.0.0.{first_address + n // 40}")
        opened.append((reader, writer))
        if send:
            writer.write(send)
            await writer.drain()

    for start in range(0, count, 100):
        await asyncio.gather(*(one(n) for n in range(start, min(count, start + 100))))


async def closed_by_bridge(reader: asyncio.StreamReader) -> bool:
    """Whether the bridge closed the connection (EOF or reset) without answering more."""
    try:
        return await asyncio.wait_for(reader.read(1 << 16), 0.5) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def polite_reads(url: str, count: int) -> list[int]:
    """`count` DeviceList reads, half on fresh connections, half kept alive."""
    statuses = []
    async with aiohttp.ClientSession() as kept_alive:
        for n in range(count):
            if n % 2:
                async with kept_alive.get(url + DEVICE_LIST) as response:
                    statuses.append(response.status)
                    await response.read()
            else:
                async with (
                    aiohttp.ClientSession() as fresh,
                    fresh.get(url + DEVICE_LIST) as response,
                ):
                    statuses.append(response.status)
                    await response.read()
    return statuses


async def test_a_polite_client_is_served_through_1200_idle_and_400_slow_connections(
    simulator: Sim, serve_bridge: ServeFactory
) -> None:
    with open_files(8192):
        bridge = await serve_bridge(simulator.url)
        table = bridge.runner.connections  # type: ignore[attr-defined]
        assert await polite_reads(bridge.url, 2) == [200, 200]
        async with connections() as opened:
            await open_many(opened, bridge.port, 600, first_address=2, send=HEAD)
            await open_many(opened, bridge.port, 600, first_address=20)  # never a byte
            await open_many(opened, bridge.port, 400, first_address=40, send=PARTIAL_HEAD)
            for _reader, writer in opened[-400:]:  # slowloris: a byte now and then
                if not writer.is_closing():
                    writer.write(b"X")
            assert await polite_reads(bridge.url, 40) == [200] * 40
            assert len(table) <= 1024
            assert table.trouble.counts["idle_closed"] >= 1600 - 1024
            assert table.trouble.counts["refused"] == 0


async def test_a_slow_request_head_is_closed_after_header_timeout(
    simulator: Sim, serve_bridge: ServeFactory
) -> None:
    bridge = await serve_bridge(simulator.url, server={"header_timeout": 1})
    trouble = bridge.runner.connections.trouble  # type: ignore[attr-defined]
    async with connections() as opened:
        await open_many(opened, bridge.port, 10, first_address=2, send=PARTIAL_HEAD)
        await open_many(opened, bridge.port, 5, first_address=3)  # connected, silent
        for _ in range(8):  # a byte every 0.2 s does not keep a head alive
            for _reader, writer in opened[:10]:
                if not writer.is_closing():
                    writer.write(b"X")
            await asyncio.sleep(0.2)
        await until(lambda: trouble.counts["slow_head"] == 15)
        assert all([await closed_by_bridge(reader) for reader, _writer in opened])
    assert await polite_reads(bridge.url, 2) == [200, 200]


async def test_an_idle_kept_alive_connection_is_closed_after_keepalive_timeout(
    simulator: Sim, serve_bridge: ServeFactory
) -> None:
    bridge = await serve_bridge(simulator.url, server={"keepalive_timeout": 1})
    async with connections() as opened:
        reader, writer = await connect(bridge.port, "127.0.0.2")
        opened.append((reader, writer))
        writer.write(HEAD)
        answer = await reader.readuntil(b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")
        length = int(answer.lower().partition(b"content-length:")[2].split(b"\r\n")[0])
        await reader.readexactly(length)
        # Idle now: closed within a few looks (aiohttp's default would keep it an hour).
        for _ in range(10):
            if await closed_by_bridge(reader):
                break
        else:
            raise AssertionError("the idle connection was never closed")


async def test_past_the_per_address_cap_the_oldest_idle_connection_gives_way(
    simulator: Sim, serve_bridge: ServeFactory
) -> None:
    bridge = await serve_bridge(simulator.url, server={"max_connections_per_address": 4})
    table = bridge.runner.connections  # type: ignore[attr-defined]
    async with connections() as opened:
        for _ in range(6):
            opened.append(await connect(bridge.port, "127.0.0.7"))
            await asyncio.sleep(0.05)  # in order: the first is the oldest
        await until(lambda: table.open_from("127.0.0.7") == 4)
        assert [await closed_by_bridge(reader) for reader, _writer in opened] == [
            True, True, False, False, False, False,
        ]  # fmt: skip
        assert table.trouble.counts["idle_closed"] == 2
    # Another address is not affected.
    assert await polite_reads(bridge.url, 2) == [200, 200]


@dataclass(eq=False)
class Busy:
    """A connection being answered (never closed by the table)."""

    address: str
    idle: bool = False
    closed: bool = False

    def is_idle(self) -> bool:
        return self.idle

    def force_close(self) -> None:
        self.closed = True


def test_a_new_connection_is_refused_only_when_none_is_idle() -> None:
    server = bridge_config("http://127.0.0.1:1").server
    table = ConnectionTable(server, ClientTrouble(), open_files=64 + 16)
    assert table.max_total == 16  # held below what the open-files limit leaves room for
    busy = [Busy(f"10.0.0.{n}") for n in range(15)]
    idle = Busy("10.0.0.99", idle=True)
    for connection in [*busy, idle]:
        assert table.admit(connection)
    newcomer = Busy("10.0.0.100")
    assert table.admit(newcomer)  # the idle one gave way
    assert idle.closed and not any(connection.closed for connection in busy)
    assert not table.admit(Busy("10.0.0.101"))  # everything busy: refused
    assert table.trouble.counts == {"idle_closed": 1, "refused": 1}
    table.forget(busy[0])
    assert table.admit(Busy("10.0.0.102"))
    assert len(table) == 16


def test_a_websocket_leaves_its_address_count_but_not_the_total() -> None:
    server = bridge_config("http://127.0.0.1:1", server={"max_connections_per_address": 2}).server
    table = ConnectionTable(server, ClientTrouble())
    sockets = [Busy("10.0.0.1") for _ in range(5)]
    for websocket in sockets:  # each upgraded before the next connects, as clients do
        assert table.admit(websocket)
        table.upgraded(websocket)
    assert table.open_from("10.0.0.1") == 0 and len(table) == 5
    table.forget(sockets[0])
    assert len(table) == 4
