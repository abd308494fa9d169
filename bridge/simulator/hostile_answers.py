"""Answers a broken PVS (or whatever answers in its place) could send, for the fault modes
that test how the bridge reads: bodies too long to hold, redirects, 429s, answers unasked.

- `huge_body`: the DeviceList (or whatever was asked) padded with JSON whitespace to
  `size` bytes (100 MB by default), its Content-Length announced;
- `endless_body`: the same, chunked, never ending: only the client hanging up stops it;
- `redirect`: 302 to `location`;
- `too_many`: 429 with `Retry-After: retry_after`;
- `unsolicited`: the right answer, then, a moment later on the same kept-alive
  connection, a second complete answer nobody asked for (`{"unsolicited": true}`): a
  client that reuses the connection reads it as the answer to its next request.

Bytes of body actually written and unsolicited answers sent (or dropped because the
client had closed the connection) are counted, so a test can see what the client read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HOSTILE_MODES = ("huge_body", "endless_body", "redirect", "too_many", "unsolicited")
FILL = b" " * (64 * 1024)  # JSON whitespace: what pads a body to any length
UNSOLICITED_BODY = b'{"unsolicited": true, "result": "succeed"}'
UNSOLICITED_DELAY = 0.05  # seconds: late enough that the client has read the real answer


@dataclass(frozen=True)
class HostileParams:
    """What the modes are told: body size, Retry-After seconds, redirect target."""

    size: int
    retry_after: float
    location: str


@dataclass
class HostileCounts:
    """What the modes did, for GET /_sim/faults."""

    body_bytes_sent: int = 0
    unsolicited_sent: int = 0
    unsolicited_dropped: int = 0


async def hostile_answer(
    mode: str,
    request: web.Request,
    handler: Handler,
    params: HostileParams,
    counts: HostileCounts,
) -> web.StreamResponse:
    """The answer `mode` gives to `request` (`handler` gives the right one)."""
    if mode == "redirect":
        return web.Response(status=302, headers={"Location": params.location}, text="moved\n")
    if mode == "too_many":
        seconds = str(max(0, round(params.retry_after)))
        return web.json_response(
            {"error": "too many requests"}, status=429, headers={"Retry-After": seconds}
        )
    right = await handler(request)
    if mode == "unsolicited":
        _answer_again_later(request, counts)
        return right
    body = right.body if isinstance(right, web.Response) else None
    if not isinstance(body, bytes) or len(body) < 2:
        return right
    endless = mode == "endless_body"
    return await _padded(request, body, None if endless else params.size, counts)


async def _padded(
    request: web.Request, body: bytes, size: int | None, counts: HostileCounts
) -> web.StreamResponse:
    """`body` with whitespace before its last byte: `size` bytes long, or chunked forever."""
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    if size is None:
        response.enable_chunked_encoding()
    else:
        response.content_length = max(size, len(body))
    try:
        await response.prepare(request)
        await _write(response, body[:-1], counts)
        padding = None if size is None else max(0, size - len(body))
        while padding is None or padding > 0:
            piece = FILL if padding is None else FILL[: min(padding, len(FILL))]
            await _write(response, piece, counts)
            if padding is not None:
                padding -= len(piece)
        await _write(response, body[-1:], counts)
    except ConnectionError:
        pass  # the client hung up: the point of the exercise
    return response


async def _write(response: web.StreamResponse, data: bytes, counts: HostileCounts) -> None:
    await response.write(data)
    counts.body_bytes_sent += len(data)


def _answer_again_later(request: web.Request, counts: HostileCounts) -> None:
    """Once the real answer has gone, write a second one on the same connection."""
    transport = request.transport
    extra = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(UNSOLICITED_BODY),
        UNSOLICITED_BODY,
    )

    def send() -> None:
        if transport is None or transport.is_closing():
            counts.unsolicited_dropped += 1
            return
        transport.write(extra)
        counts.unsolicited_sent += 1

    asyncio.get_running_loop().call_later(UNSOLICITED_DELAY, send)
