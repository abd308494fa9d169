"""The guard around every route's handler: hostile input refused, JSON errors, clean shutdown.

`Guards.wrap(handler)` is what each route is registered with (see `routes`), so the
handler in the route table is the code that runs. It refuses hostile requests (see
`hostile`), refuses a `Host` the route group does not answer (the session API and writes,
see `hosts`), turns aiohttp's own refusals into JSON, adds CORS headers for browsers, and
answers requests still waiting on the PVS when the bridge stops with a clean 503 rather
than a dropped connection. A wrapper and no middleware, because with any middleware at
all aiohttp adds a chain lookup per request, which costs more than a cache hit.

A handler may come with an `at_once` part: a synchronous answer (a cache hit) that needs
nothing awaited. The guard runs it first, untracked: it awaits nothing, so shutdown has
nothing to cancel, and the cache-hit path skips two coroutines. The Host check comes
after it: an `at_once` answer is a read from memory, which any Host may have, so the
cache-hit path never pays for it; a write is never answered at once.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web

from bridge.web.cors import CorsPolicy
from bridge.web.errors import from_http_exception, json_error
from bridge.web.hostile import refuse_at_once, refuse_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A handler's synchronous part: an answer that needs nothing awaited, or None.
AtOnce = Callable[[web.Request], web.StreamResponse | None]
# A check before the handler runs (the Host names, see `hosts`): a refusal, or None.
Check = Callable[[web.Request], web.Response | None]


@dataclass
class Lifecycle:
    """Whether the bridge is stopping, and the client requests it may still have to answer."""

    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: set[asyncio.Task[Any]] = field(default_factory=set)

    async def begin_shutdown(self, _app: web.Application) -> None:
        """on_shutdown: answer every request still waiting with 503, refuse new ones."""
        self.stopping.set()
        for task in list(self.in_flight):
            task.cancel("pvs-bridge is shutting down")


@dataclass(frozen=True)
class Guards:
    """Builds the guarded handlers of one application."""

    lifecycle: Lifecycle
    max_body: int

    def wrap(
        self,
        handler: Handler,
        *,
        cors: CorsPolicy | None = None,
        at_once: AtOnce | None = None,
        hosts: Check | None = None,
    ) -> Handler:
        """`handler` guarded; with `at_once`, that part is tried first, and `hosts` checks
        what `at_once` left before anything else happens (see module doc)."""
        lifecycle, max_body = self.lifecycle, self.max_body

        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            response: web.StreamResponse | None = refuse_at_once(request)
            if response is None and request.body_exists:
                response = await refuse_body(request, max_body)
            if response is None and at_once is not None and not lifecycle.stopping.is_set():
                response = at_once(request)
            if response is None and hosts is not None:
                response = hosts(request)
            if response is None:
                response = await tracked(request)
            if cors is not None and hdrs.ORIGIN in request.headers:
                cors.decorate(request, response)
            return response

        async def tracked(request: web.Request) -> web.StreamResponse:
            task = asyncio.current_task()
            if lifecycle.stopping.is_set() or task is None:
                return shutting_down()
            lifecycle.in_flight.add(task)
            try:
                return await handler(request)
            except web.HTTPException as exc:
                answer = from_http_exception(exc, request)
                if answer is None:
                    raise
                return answer
            except asyncio.CancelledError:
                # Cancelled by begin_shutdown (not by the client leaving): answer instead.
                if not lifecycle.stopping.is_set() or task.cancelling() != 1:
                    raise
                task.uncancel()
                return shutting_down()
            finally:
                lifecycle.in_flight.discard(task)

        return guarded


async def not_found(request: web.Request) -> web.Response:
    """Whatever no route serves (safe methods only: the guard refused the others)."""
    return json_error(404, "not_found", f"{request.path} is not an endpoint the bridge serves")


def shutting_down() -> web.Response:
    """The answer while the bridge stops: ask again in a moment."""
    response = json_error(
        503, "shutting_down", "the bridge is restarting; ask again in a moment", retry_after=1
    )
    response.force_close()
    return response
