"""Hostile input: refuse what no PVS client sends, before routing, in JSON, every time.

Three layers, outermost first:
- the HTTP parser's own limits (`runner_options`): request line, header size and count;
  its refusals (malformed lines, bad methods, duplicate Host, oversized lines) are
  normally plain text written by aiohttp's RequestHandler.handle_error, which no
  middleware sees, so `BridgeRunner` serves them through a handler that answers JSON;
- `refuse_hostile`, a middleware that checks what the parser lets through: only
  origin-form targets (`/path`, never `http://host/...` nor `host:port`), no dot
  segments or encoded slashes, a sane Host, UTF-8 headers, bounded bodies, safe methods;
- the policy (`bridge.policy`), which validates each command's parameters.

`shutdown_guard` answers requests still waiting on the PVS when the bridge stops,
so a client gets a clean 503 rather than a dropped connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from bridge.config import Config
from bridge.errors import json_error

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_LINE = 2048  # request line: the longest allowed query is 1024 bytes
MAX_FIELD = 4096  # one header line
MAX_HEADERS = 48
MAX_QUERY = 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The 2025 API's varserver takes its query as a POST body (at most 1024 bytes on the
# PVS); the application's client_max_size bounds what the handler reads of it.
BODY_ROUTES = frozenset({("POST", "/vars")})
_HOST = re.compile(
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}"
    r"[A-Za-z0-9_])?)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Lifecycle:
    """Whether the bridge is stopping, and the client requests it may still have to answer."""

    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: set[asyncio.Task[Any]] = field(default_factory=set)


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)


def runner_options(config: Config) -> dict[str, Any]:
    """Keyword arguments for the AppRunner (production and tests use the same ones)."""
    return {
        "access_log": None,
        "max_line_size": MAX_LINE,
        "max_field_size": MAX_FIELD,
        "max_headers": MAX_HEADERS,
        "shutdown_timeout": config["server"]["shutdown_grace"],
        "handle_signals": False,
    }


def make_runner(app: web.Application, config: Config) -> web.AppRunner:
    """The runner `serve` uses: hardened parser limits, JSON parser errors."""
    return BridgeRunner(app, **runner_options(config))


class _JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, with parser-level refusals written as JSON."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:
            log.info("refused a malformed request from %s: %s", request.remote, exc)
        error, status = _parser_error(status, exc)
        detail = message.splitlines()[0] if message else HTTPStatus(status).phrase
        body = {"error": error, "message": detail[:200], "status": status}
        response = web.Response(
            status=status,
            text=json.dumps(body, indent=1) + "\n",
            content_type="application/json",
        )
        response.force_close()
        return response


def _parser_error(status: int, exc: BaseException | None) -> tuple[str, int]:
    if isinstance(exc, LineTooLong):
        # The parser says only which limit was hit; the two limits differ on purpose.
        return "request_too_large", 431 if f"more than {MAX_FIELD} " in str(exc) else 414
    if status >= 500:
        return "internal_error", status
    return "malformed_request", status


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class BridgeRunner(web.AppRunner):
    """An AppRunner whose connections answer even malformed requests with JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Same state, another protocol factory: aiohttp has no public hook for the
        # handler class (tests/test_hostile.py fails loudly if this stops working).
        server.__class__ = _JsonErrorServer
        return server


def _refuse(status: int, error: str, message: str) -> web.Response:
    response = json_error(status, error, message)
    response.force_close()
    return response


def _bad_path(raw_path: str) -> str | None:
    """Why a raw origin-form path is refused (None when it is fine)."""
    path = raw_path.partition("?")[0]
    if not path.startswith("/") or path.startswith("//"):
        return "the request target must be a path on this bridge"
    try:
        decoded = unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return "the path is not valid UTF-8"
    if _CONTROL.search(decoded) or "\\" in decoded:
        return "the path contains control characters or backslashes"
    lowered = path.lower()
    if "%2f" in lowered or "%5c" in lowered or "//" in decoded:
        return "the path contains an encoded or empty segment"
    if any(segment in (".", "..") for segment in decoded.split("/")):
        return "the path contains a dot segment"
    return None


def _bad_headers(request: web.Request) -> str | None:
    hosts = request.headers.getall("Host", [])
    if len(hosts) > 1:
        return "more than one Host header"
    if hosts and not _HOST.fullmatch(hosts[0]):
        return "the Host header is not a host name or address with an optional port"
    for name, value in request.headers.items():
        if any("\udc80" <= char <= "\udcff" for char in name + value):
            return f"header {name.encode('utf-8', 'replace').decode()!r} is not valid UTF-8"
        if _CONTROL.search(value.replace("\t", " ")):
            return "a header contains control characters"
    return None


def hostile_input(config: Config) -> Middleware:
    """The middleware that refuses hostile requests before routing (see module doc)."""
    max_body = config["server"]["max_request_bytes"]

    @web.middleware
    async def refuse_hostile(request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = request.raw_path
        if not raw.startswith("/"):
            return _refuse(
                400, "absolute_target", "only paths on this bridge are served, never other hosts"
            )
        why = _bad_path(raw)
        if why is not None:
            return _refuse(400, "bad_path", why)
        if len(request.query_string) > MAX_QUERY:
            return _refuse(414, "query_too_long", f"query longer than {MAX_QUERY} bytes")
        why = _bad_headers(request)
        if why is not None:
            return _refuse(400, "bad_header", why)
        if (request.method, request.path) in BODY_ROUTES:
            return await handler(request)
        if request.method not in SAFE_METHODS:
            response = _refuse(
                405,
                "method_not_allowed",
                f"method {request.method} is not allowed; the bridge is read-only "
                "(GET, HEAD, OPTIONS)",
            )
            response.headers["Allow"] = "GET, HEAD, OPTIONS"
            return response
        if request.body_exists and await _body_too_large(request, max_body):
            return _refuse(413, "body_too_large", f"request body over {max_body} bytes")
        return await handler(request)

    return refuse_hostile


async def _body_too_large(request: web.Request, limit: int) -> bool:
    """Read (and drop) a body nobody needs, stopping as soon as it passes `limit`."""
    if request.content_length is not None and request.content_length > limit:
        return True
    seen = 0
    while not request.content.at_eof():
        chunk = await request.content.read(limit + 1 - seen)
        if not chunk:
            break
        seen += len(chunk)
        if seen > limit:
            return True
    return False


@web.middleware
async def shutdown_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """While stopping, answer requests still waiting on the PVS with a clean JSON 503."""
    lifecycle = request.app[LIFECYCLE]
    task = asyncio.current_task()
    if lifecycle.stopping.is_set() or task is None:
        return _shutting_down()
    lifecycle.in_flight.add(task)
    try:
        return await handler(request)
    except asyncio.CancelledError:
        # Cancelled by _begin_shutdown (not by the client leaving): answer instead.
        if not lifecycle.stopping.is_set() or task.cancelling() != 1:
            raise
        task.uncancel()
        return _shutting_down()
    finally:
        lifecycle.in_flight.discard(task)


def _shutting_down() -> web.Response:
    response = json_error(
        503, "shutting_down", "the bridge is restarting; ask again in a moment", retry_after=1
    )
    response.force_close()
    return response


async def _begin_shutdown(app: web.Application) -> None:
    lifecycle = app[LIFECYCLE]
    lifecycle.stopping.set()
    for task in list(lifecycle.in_flight):
        task.cancel("pvs-bridge is shutting down")


def install(app: web.Application, config: Config) -> None:
    """Add the hostile-input and shutdown middlewares (outermost) and their signal."""
    app[LIFECYCLE] = Lifecycle()
    app.on_shutdown.append(_begin_shutdown)
    app.middlewares[0:0] = [hostile_input(config), shutdown_guard]
