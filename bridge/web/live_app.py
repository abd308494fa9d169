"""Where the live feed is served: the feed listener's application and `/live` on the main
one (`bridge.web.live` re-exports both).

Both handlers are guarded like every route (hostile input refused, 503 while stopping),
but an open stream is ended by `LiveHub.close` (WebSocket close 1001, the event stream's
end), never cancelled by `Lifecycle.begin_shutdown`: a 503 cannot follow a 101 or an
event stream's headers.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

from aiohttp import web

from bridge.web.cors import CorsPolicy
from bridge.web.guard import Guards, Handler, not_found

if TYPE_CHECKING:
    from bridge.web.live import LiveHub


def stream_handler(guards: Guards, handler: Handler, *, cors: CorsPolicy | None = None) -> Handler:
    """`handler` guarded, but left out of the shutdown bookkeeping (see the module doc)."""
    lifecycle = guards.lifecycle

    @functools.wraps(handler)
    async def stream(request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            lifecycle.in_flight.discard(task)
        return await handler(request)

    return guards.wrap(stream, cors=cors)


def feed_app(hub: LiveHub, guards: Guards) -> web.Application:
    """The application of the feed listener (`server.listen_ws`): `/` is the WebSocket
    feed, anything else a JSON 404; its shutdown closes the hub."""
    app = web.Application(client_max_size=guards.max_body)
    app.router.add_get("/", stream_handler(guards, hub.websocket))
    app.router.add_route("*", "/{anything:.*}", guards.wrap(not_found))
    app.on_shutdown.append(hub.on_shutdown)
    return app


def add_live_route(
    app: web.Application, hub: LiveHub, guards: Guards, cors: CorsPolicy, path: str = "/live"
) -> None:
    """Register `GET /live` (Server-Sent Events, CORS for browsers) and its preflight; the
    application's shutdown closes the hub (its streams would hold the shutdown up)."""

    async def live(request: web.Request) -> web.StreamResponse:
        return await hub.sse(request, cors=cors)

    app.router.add_get(path, stream_handler(guards, live, cors=cors))
    app.router.add_route("OPTIONS", path, guards.wrap(cors.preflight))
    app.on_shutdown.append(hub.on_shutdown)
