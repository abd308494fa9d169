"""CORS, so a browser page (a dashboard, a `file://` page) may read what the bridge serves.

Each group of routes has its own policy: the read-only legacy API, `/health`, `/metrics`
and `/live` follow `cors.origins` (`*` for all, `null` for `file://` pages); the 2025
session API (`/auth`, `/vars`, GET and POST) only `cors.api_origins`, none by default, so
a page from elsewhere gets no CORS headers there and its preflight is refused. The guard
adds the headers to answers for browsers only (requests with an `Origin`), and each route
gets a preflight route of its own, guarded like any other. No credentials are ever
allowed: the API's session cookie stays with same-origin code.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import hdrs, web

from bridge.web.errors import json_error

EXPOSED = "Age, X-Cache, Cache-Control, Warning, Retry-After"
ALLOWED_HEADERS = frozenset({"authorization", "content-type"})
READ_METHODS = ("GET", "HEAD")
API_METHODS = ("GET", "POST")  # the varserver takes its query as a POST body too


@dataclass(frozen=True)
class CorsPolicy:
    """Which origins may read a group of routes, and with which methods."""

    origins: frozenset[str]
    methods: tuple[str, ...] = READ_METHODS

    def allowed_origin(self, request: web.BaseRequest) -> str | None:
        """The value of Access-Control-Allow-Origin for this request, or None."""
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None:
            return None
        if "*" in self.origins:
            return "*"
        return origin if origin in self.origins else None

    def decorate(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """Add the CORS headers to an answer for a browser whose origin is allowed."""
        allowed = self.allowed_origin(request)
        if allowed is None or response.prepared:
            return
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = allowed
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSED
        if allowed != "*":
            response.headers.add(hdrs.VARY, "Origin")

    async def preflight(self, request: web.Request) -> web.Response:
        """OPTIONS: a browser asks whether it may send its request."""
        if hdrs.ORIGIN not in request.headers:
            return web.Response(
                status=204, headers={"Allow": ", ".join((*self.methods, "OPTIONS"))}
            )
        method = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD, "")
        asked = {
            name.strip().lower()
            for name in request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "").split(",")
            if name.strip()
        }
        allowed = self.allowed_origin(request)
        if allowed is None or method not in self.methods or not asked <= ALLOWED_HEADERS:
            return json_error(
                403, "cors_refused", "this origin, method or header is not allowed here"
            )
        headers = {
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: allowed,
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(self.methods),
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: "Authorization, Content-Type",
            hdrs.ACCESS_CONTROL_MAX_AGE: "3600",
        }
        if allowed != "*":
            headers[hdrs.VARY] = "Origin"
        return web.Response(status=200, headers=headers)
