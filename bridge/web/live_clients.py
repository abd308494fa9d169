"""The live feed's clients: one WebSocket or Server-Sent Events stream each, and the frames
they are sent.

A client's send queue is its socket's write buffer, bounded at `queue_bytes`: the relay
sends a frame only when it fits (buffered bytes + `Frame.size` <= `queue_bytes`), so a
send never waits for the client, and a client whose buffer is full is dropped rather
than waited for. The buffer's high and low water marks are both set to that bound, so
the transport pauses writing exactly when the buffer holds more than it (which that
check never lets happen): aiohttp's writers await a drain only while paused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, web

# Header bytes a frame costs on the wire beyond its text (WebSocket header, or the SSE
# "data: " lines and a chunk header): an upper bound, for the room check.
FRAME_OVERHEAD = 32
GOING_AWAY = b"going away"


class Frame:
    """One frame as every client gets it: the text, and its SSE event (built once)."""

    __slots__ = ("_sse", "size", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.size = len(text) + FRAME_OVERHEAD
        self._sse: bytes | None = None

    @property
    def sse(self) -> bytes:
        """The frame as one Server-Sent Event (`data:` lines and a blank line)."""
        if self._sse is None:
            self._sse = sse_event(self.text)
        return self._sse


def sse_event(text: str) -> bytes:
    """`text` as an SSE event: one `data:` line per line of it, then a blank line."""
    if "\n" in text or "\r" in text:
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    else:
        lines = [text]
    return "".join(f"data: {line}\n" for line in lines).encode() + b"\n"


@dataclass(eq=False)
class Client:
    """One connected client of the live feed."""

    kind: str  # "websocket" or "sse"
    transport: asyncio.Transport
    send: Callable[[Frame], Awaitable[None]]
    going_away: Callable[[], Awaitable[None]]  # what close() does to it
    queue_bytes: int
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.transport.set_write_buffer_limits(high=self.queue_bytes, low=self.queue_bytes)

    @property
    def gone(self) -> bool:
        """The connection is closed or closing: nothing more can be sent."""
        return self.ended.is_set() or self.transport.is_closing()

    def abort(self) -> None:
        """Drop the client at once: its connection and whatever waits in its queue."""
        self.ended.set()
        self.transport.abort()


def websocket_client(
    ws: web.WebSocketResponse, transport: asyncio.Transport, queue_bytes: int
) -> Client:
    """A prepared WebSocket as a client of the feed."""

    def send(frame: Frame) -> Awaitable[None]:
        return ws.send_str(frame.text)

    async def going_away() -> None:
        await ws.close(code=WSCloseCode.GOING_AWAY, message=GOING_AWAY, drain=False)

    return Client("websocket", transport, send, going_away, queue_bytes)


def sse_client(
    response: web.StreamResponse, transport: asyncio.Transport, queue_bytes: int
) -> Client:
    """A prepared event stream as a client of the feed (its handler ends it when `ended`)."""

    def send(frame: Frame) -> Awaitable[None]:
        return response.write(frame.sse)

    async def going_away() -> None:
        client.ended.set()

    client = Client("sse", transport, send, going_away, queue_bytes)
    return client
