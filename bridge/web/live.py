"""The live feed for clients: the PVS's WebSocket feed (`ws://HOST:9002/`, plain, no login,
as the PVS serves it) and the same frames as Server-Sent Events (`GET /live`).

`LiveHub` takes the frames in: `publish(text)`, synchronous, for every frame of the
upstream feed (the PVS's own text, relayed byte for byte), and `publish_derived` where
there is no feed (a frame built from a refreshed snapshot's totals). It keeps the merged
state, so a new client first gets one frame with every field known, and where its data
comes from. `live_relay.LiveRelay` relays the frames to the clients, bounded;
`live_app` serves them (`feed_app`, `add_live_route`, re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict
from typing import Literal

from aiohttp import web

from bridge.clock import Clock
from bridge.site.live import LiveState, changed, from_totals, merge, parse_frame, power_frame
from bridge.site.model import LiveTotals
from bridge.web.cors import CorsPolicy
from bridge.web.errors import json_error
from bridge.web.guard import shutting_down
from bridge.web.live_app import add_live_route, feed_app, stream_handler
from bridge.web.live_clients import sse_client, websocket_client
from bridge.web.live_relay import CLOSE_TIMEOUT, QUEUE_BYTES, LiveCounts, LiveRelay

__all__ = ["LiveCounts", "LiveHub", "Source", "add_live_route", "feed_app", "stream_handler"]

Source = Literal["feed", "derived"]
MAX_CLIENT_FRAME = 4 * 1024  # a client frame larger than this closes that client (1009)
SSE_CHECK = 5.0  # seconds between checks that an idle event stream's client is still there
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # a reverse proxy in front must not hold events back
}


class LiveHub(LiveRelay):
    """The live feed: frames in (`publish`, `publish_derived`), clients out (`websocket`,
    `sse`), `describe()` for /health, `close()` at shutdown."""

    def __init__(
        self,
        clock: Clock,
        *,
        max_clients: int = 256,
        silence: float = 90.0,
        queue_bytes: int = QUEUE_BYTES,
        max_client_frame: int = MAX_CLIENT_FRAME,
        close_timeout: float = CLOSE_TIMEOUT,
        sse_check: float = SSE_CHECK,
    ) -> None:
        super().__init__(
            max_clients=max_clients, queue_bytes=queue_bytes, close_timeout=close_timeout
        )
        self.clock = clock
        self.silence = silence  # a feed frame older than this no longer makes source "feed"
        self.max_client_frame = max_client_frame
        self.sse_check = sse_check
        self._state = LiveState()
        self._last_at: float | None = None
        self._feed_at: float | None = None
        self._derived = False

    @property
    def state(self) -> LiveState:
        """Every field known, merged from every frame published."""
        return self._state

    def publish(self, text: str, source: Source = "feed") -> None:
        """Relay one frame to every client, byte for byte; never waits for a client."""
        params = parse_frame(text)
        if params is not None:
            self._state = merge(self._state, params)
        self._last_at = now = self.clock.monotonic()
        if source == "feed":
            self._feed_at = now
        else:
            self._derived = True
        self.relay(text, self._state)

    def publish_derived(self, totals: LiveTotals, time: float) -> bool:
        """Publish the frame a refreshed snapshot's totals make (only changed fields, and
        `time`). Skipped (False) while the PVS's own feed is live: it is the better data."""
        if self.source == "feed":
            return False
        self.publish(power_frame(changed(self._state, from_totals(totals, time))), "derived")
        return True

    @property
    def source(self) -> str:
        """ "feed" (a PVS frame within `silence`), "derived", or "none"."""
        if self._feed_at is not None and self.clock.monotonic() - self._feed_at <= self.silence:
            return "feed"
        return "derived" if self._derived else "none"

    @property
    def age(self) -> float | None:
        """Seconds since the last frame was published (None before the first)."""
        return None if self._last_at is None else self.clock.monotonic() - self._last_at

    def describe(self) -> dict[str, object]:
        """The live feed for /health."""
        age = self.age
        return {
            "source": self.source,
            "last_frame_age_s": None if age is None else round(age, 1),
            "clients": self.clients,
            "max_clients": self.max_clients,
            **asdict(self.counts),
        }

    def refusal(self) -> web.Response | None:
        """The answer to a new client when it cannot be served (full, or shutting down)."""
        if self.closed:
            return shutting_down()
        if self.full:
            self.counts.refused_full += 1
            return json_error(
                503,
                "too_many_clients",
                f"the live feed already serves {self.max_clients} clients",
                retry_after=30,
            )
        return None

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """The feed listener's `/`: every frame as a WebSocket text frame, the full one first.
        Clients' own frames are ignored; aiohttp answers their pings, and one larger than
        `max_client_frame` closes that client (1009)."""
        # aiohttp refuses a message of max_msg_size bytes or more: one more lets exactly
        # max_client_frame through.
        ws = web.WebSocketResponse(
            compress=False, max_msg_size=self.max_client_frame + 1, timeout=self.close_timeout
        )
        if not ws.can_prepare(request).ok:
            return json_error(
                426,
                "websocket_expected",
                "this is the PVS live feed: connect with a WebSocket",
                headers={"Upgrade": "websocket"},
            )
        refusal = self.refusal()
        if refusal is not None:
            return refusal
        with self.opening():
            await ws.prepare(request)
        transport = request.transport
        if transport is None:
            return ws
        client = websocket_client(ws, transport, self.queue_bytes)
        if not self.join(client):
            await client.going_away()
            return ws
        try:
            async for _message in ws:
                pass
        finally:
            self.leave(client)
        return ws

    async def sse(
        self, request: web.Request, *, cors: CorsPolicy | None = None
    ) -> web.StreamResponse:
        """`GET /live`: every frame as a Server-Sent Event (`data: <frame>`), the full one
        first, until the client leaves or the hub closes."""
        if request.method == "HEAD":
            return web.Response(headers=SSE_HEADERS)
        refusal = self.refusal()
        if refusal is not None:
            return refusal
        response = web.StreamResponse(headers=SSE_HEADERS)
        if cors is not None:  # before prepare: the guard's own CORS comes too late here
            cors.decorate(request, response)
        with self.opening():
            await response.prepare(request)
        transport = request.transport
        if transport is None:
            return response
        client = sse_client(response, transport, self.queue_bytes)
        if self.join(client):
            try:
                while not client.gone:  # a client that left is seen here, or at a send
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(client.ended.wait(), self.sse_check)
            finally:
                self.leave(client)
        return response
