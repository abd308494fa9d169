"""A small hostile PVS on loopback: a raw asyncio server whose answers a test scripts.

aiohttp's server cannot misbehave at the byte level (answer twice, ignore
`Connection: close`, send a body that never ends); this one does exactly what its
`behaviour` writes, and counts what it did: the requests it read, the most it was ever
serving at once, and the bytes of answer body it managed to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

PIECE = b" " * (64 * 1024)  # JSON whitespace: pads a body to any length


@dataclass(frozen=True)
class Asked:
    """One request as the hostile PVS read it."""

    method: str
    target: str
    headers: dict[str, str]

    @property
    def command(self) -> str:
        """The dl_cgi `Command`, or the path."""
        split = urlsplit(self.target)
        return parse_qs(split.query).get("Command", [split.path])[0]


Behaviour = Callable[
    ["HostilePVS", Asked, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]
]


@dataclass
class HostilePVS:
    """The server; `behaviour` writes each answer (and may do worse)."""

    behaviour: Behaviour
    asked: list[Asked] = field(default_factory=list)
    body_bytes_sent: int = 0
    serving: int = 0
    max_serving: int = 0
    url: str = ""
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def send(self, writer: asyncio.StreamWriter, data: bytes, *, body: bool = True) -> None:
        """Write and drain; body bytes are counted once the socket has taken them."""
        writer.write(data)
        await writer.drain()
        if body:
            self.body_bytes_sent += len(data)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:  # a small send buffer: what was sent is close to what was read
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        self.writers.add(writer)
        try:
            while True:
                asked = await _read_request(reader)
                if asked is None:
                    return
                self.asked.append(asked)
                self.serving += 1
                self.max_serving = max(self.max_serving, self.serving)
                try:
                    await self.behaviour(self, asked, reader, writer)
                finally:
                    self.serving -= 1
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client hung up: what a cut-off answer is about
        finally:
            self.writers.discard(writer)
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Asked | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if length:
        await reader.readexactly(length)
    return Asked(method, target, headers)


def answer(status: int, body: bytes, *headers: tuple[str, str]) -> bytes:
    """A complete HTTP/1.1 answer with a Content-Length (and Connection: keep-alive, as a
    PVS that ignores the client's `Connection: close` would say)."""
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: keep-alive"]
    head += [f"{name}: {value}" for name, value in headers]
    if not any(name.lower() == "content-type" for name, _ in headers):
        head.append("Content-Type: application/json")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


async def closed_by_client(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the client closes the connection within `within` seconds (real time; only
    a bridge that misbehaves makes a test wait it out)."""
    try:
        return await asyncio.wait_for(reader.read(1), within) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def pad_forever(
    pvs: HostilePVS, writer: asyncio.StreamWriter, limit: int, *, chunked: bool
) -> None:
    """Whitespace until the client hangs up, or `limit` bytes (the test's own bound)."""
    while pvs.body_bytes_sent < limit:
        if chunked:
            writer.write(b"%x\r\n" % len(PIECE))
            await pvs.send(writer, PIECE)
            await pvs.send(writer, b"\r\n", body=False)
        else:
            await pvs.send(writer, PIECE)


@contextlib.asynccontextmanager
async def hostile_pvs(behaviour: Behaviour) -> AsyncIterator[HostilePVS]:
    """The hostile PVS on a free loopback port (`pvs.url`), closed afterwards."""
    pvs = HostilePVS(behaviour)
    server = await asyncio.start_server(pvs._connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pvs.url = f"http://127.0.0.1:{port}"
    try:
        yield pvs
    finally:
        server.close()
        for writer in list(pvs.writers):
            writer.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5.0)
