"""Reading a PVS answer's body without letting the PVS decide how much memory it takes.

A DeviceList of a large site is a few hundred kilobytes; `upstream.max_body_bytes`
(8 MiB by default) is far above any real answer. A longer body, whether announced by its
Content-Length (refused before a byte of it is read) or sent chunked or until the
connection closes (cut once the cap is passed), is a PVS gone wrong: the connection is
closed, the partial body dropped, and the attempt fails like any other.
"""

from __future__ import annotations

import aiohttp

from bridge.pvs.errors import TooLarge

READ_PIECE = 64 * 1024  # aiohttp's own read buffer size: no bigger piece is ever held


async def read_capped(response: aiohttp.ClientResponse, cap: int, name: str) -> bytes:
    """The whole body of `response`, or TooLarge once it is known to exceed `cap` bytes."""
    declared = response.content_length
    if declared is not None and declared > cap:
        response.close()  # never read: the connection goes, and the body with it
        raise TooLarge(f"PVS announced a {name} answer of {declared} bytes (cap {cap})")
    pieces: list[bytes] = []
    total = 0
    async for piece in response.content.iter_chunked(READ_PIECE):
        total += len(piece)
        if total > cap:
            response.close()
            raise TooLarge(f"PVS sent a {name} answer longer than {cap} bytes; cut off")
        pieces.append(piece)
    return b"".join(pieces)
