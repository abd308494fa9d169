"""Hostile input: refuse what no PVS client sends, before routing, in JSON, every time.

Three layers, outermost first:
- the HTTP parser's own limits (`runner_options`): request line, header size and count;
  its refusals (malformed lines, bad methods, duplicate Host, oversized lines) are
  normally plain text written by aiohttp's RequestHandler.handle_error, which no
  middleware sees, so `BridgeRunner` serves them through a handler that answers JSON;
- `guard`, around every route's handler (`seal` wraps them all and adds a fallback
  route for everything else): `refuse_hostile` checks what the parser lets through
  (only origin-form targets, never `http://host/...` nor `host:port`; no dot segments
  or encoded slashes; a sane Host; UTF-8 headers; bounded bodies; safe methods),
  aiohttp's own refusals (413, aiohttp-cors's 403) are turned into JSON, and requests
  still waiting on the PVS when the bridge stops get a clean 503 rather than a dropped
  connection. A wrapper and no middleware, because each layer costs on the hot path;
- the policy (`bridge.policy`), which validates each command's parameters.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote_to_bytes

from aiohttp import HttpVersion10, HttpVersion11, hdrs, web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from bridge.config import Config
from bridge.errors import from_http_exception, json_error

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[object]]
RawHandler = Callable[[BaseRequest], Awaitable[web.StreamResponse]]
# A handler's synchronous part: an answer that needs nothing awaited, or None.
AtOnce = Callable[[web.Request], web.StreamResponse | None]

MAX_LINE = 2048  # request line: the longest allowed query is 1024 bytes
MAX_FIELD = 4096  # one header line
MAX_HEADERS = 48
MAX_QUERY = 1024
MAX_BODY_DEFAULT = 4096  # for requests refused before any app (and its config) is involved
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The 2025 API's varserver takes its query as a POST body (at most 1024 bytes on the
# PVS); the application's client_max_size bounds what the handler reads of it.
BODY_ROUTES = frozenset({("POST", "/vars")})
_HOST = re.compile(
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}"
    r"[A-Za-z0-9_])?)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is allowed in a value


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
        server.request_handler = _unroutable_as_json(server.request_handler)
        return server


def _unroutable_as_json(handle: RawHandler) -> RawHandler:
    """Requests no route can even match (`CONNECT host:443`) are refused in JSON too."""

    async def handle_routed(raw_request: BaseRequest) -> web.StreamResponse:
        try:
            return await handle(raw_request)
        except web.HTTPException as exc:
            request = cast(web.Request, raw_request)  # the application made a web.Request
            refusal = await refuse_hostile(request, MAX_BODY_DEFAULT)
            answer = refusal or from_http_exception(exc, request)
            if answer is None:
                raise
            return answer

    return handle_routed


def _refuse(status: int, error: str, message: str) -> web.Response:
    response = json_error(status, error, message)
    response.force_close()
    return response


# Clients repeat the same few paths and header sets for ever, so the verdicts are
# memoised (bounded: a client varying them only evicts older verdicts).
@functools.lru_cache(maxsize=1024)
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


@functools.lru_cache(maxsize=256)
def _bad_headers(raw_headers: tuple[tuple[bytes, bytes], ...]) -> str | None:
    """Why a request's raw header lines are refused (None when they are fine)."""
    hosts = [value for name, value in raw_headers if name.lower() == b"host"]
    if len(hosts) > 1:
        return "more than one Host header"
    for name, value in raw_headers:
        try:
            name.decode("utf-8")
            value.decode("utf-8")
        except UnicodeDecodeError:
            shown = name.decode("utf-8", "replace")
            return f"header {shown!r} is not valid UTF-8"
        if _CONTROL_BYTES.search(value):
            return "a header contains control characters"
    if hosts and not _HOST.fullmatch(hosts[0].decode("utf-8")):
        return "the Host header is not a host name or address with an optional port"
    return None


LIMITS = web.AppKey("request_body_limit", int)
SPLITS = web.AppKey("handler_splits", dict[Handler, tuple[AtOnce, Handler]])


def answer_at_once(app: web.Application, handler: Handler, at_once: AtOnce, rest: Handler) -> None:
    """Declare that `handler` is `at_once(request) or await rest(request)`.

    The guard then runs `at_once` itself, skipping two coroutines and the shutdown
    bookkeeping on the path every cache hit takes; `rest` gets what it leaves.
    """
    app[SPLITS][handler] = (at_once, rest)


def guard(
    handler: Handler,
    lifecycle: Lifecycle,
    max_body: int,
    browser_hooks: tuple[ResponseHook, ...] = (),
    split: tuple[AtOnce, Handler] | None = None,
) -> Handler:
    """Wrap a route handler: refuse hostile input, answer in JSON, answer at shutdown.

    A wrapper per route rather than a middleware: with any middleware at all aiohttp
    adds a second one of its own and looks the chain up per request, which cost more
    than the whole cache-hit path. With `split` (see `answer_at_once`) the synchronous
    part runs first, untracked: it awaits nothing, so shutdown has nothing to cancel.
    """
    at_once, the_long_way = split if split is not None else (None, handler)

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse | None = refuse_at_once(request)
        if response is None and request.body_exists:
            response = await refuse_body(request, max_body)
        if response is None and at_once is not None and not lifecycle.stopping.is_set():
            response = at_once(request)
        if response is None:
            response = await tracked(request)
        if browser_hooks and hdrs.ORIGIN in request.headers:
            for hook in browser_hooks:
                await hook(request, response)
        return response

    async def tracked(request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if lifecycle.stopping.is_set() or task is None:
            return _shutting_down()
        lifecycle.in_flight.add(task)
        try:
            return await the_long_way(request)
        except web.HTTPException as exc:
            answer = from_http_exception(exc, request)
            if answer is None:
                raise
            return answer
        except asyncio.CancelledError:
            # Cancelled by _begin_shutdown (not by the client leaving): answer instead.
            if not lifecycle.stopping.is_set() or task.cancelling() != 1:
                raise
            task.uncancel()
            return _shutting_down()
        finally:
            lifecycle.in_flight.discard(task)

    return guarded


async def refuse_hostile(request: web.Request, max_body: int) -> web.Response | None:
    """A JSON refusal for a request no PVS client sends, or None to let it through."""
    refusal = refuse_at_once(request)
    if refusal is None and request.body_exists:
        refusal = await refuse_body(request, max_body)
    return refusal


def refuse_at_once(request: web.Request) -> web.Response | None:
    """The checks that need no reading: target, path, query, headers, method."""
    raw = request.raw_path
    if not raw.startswith("/"):
        if request.version < HttpVersion10:
            _answer_as_http11(request)
        return _refuse(
            400, "absolute_target", "only paths on this bridge are served, never other hosts"
        )
    why = _bad_path(raw)
    if why is not None:
        return _refuse(400, "bad_path", why)
    path, _, query = raw.partition("?")
    if len(query) > MAX_QUERY:
        return _refuse(414, "query_too_long", f"query longer than {MAX_QUERY} bytes")
    why = _bad_headers(request.raw_headers)
    if why is not None:
        return _refuse(400, "bad_header", why)
    method = request.method
    if (method, path) in BODY_ROUTES:
        return None
    if method not in SAFE_METHODS:
        response = _refuse(
            405,
            "method_not_allowed",
            f"method {method} is not allowed; the bridge is read-only (GET, HEAD, OPTIONS)",
        )
        response.headers["Allow"] = "GET, HEAD, OPTIONS"
        return response
    return None


def _answer_as_http11(request: web.Request) -> None:
    """A request line without a target parses as HTTP/0.9, and aiohttp would answer with
    an "HTTP/0.9 400" status line no client can read: answer it as HTTP/1.1 instead.
    (No public API sets a request's version; tests/test_hostile.py pins this.)"""
    request._version = HttpVersion11
    request._cache.pop("version", None)


async def refuse_body(request: web.Request, max_body: int) -> web.Response | None:
    """A body no read needs must still be small (POST /vars bodies are read by their handler)."""
    if (request.method, request.raw_path.partition("?")[0]) in BODY_ROUTES:
        return None
    if await _body_too_large(request, max_body):
        return _refuse(413, "body_too_large", f"request body over {max_body} bytes")
    return None


async def _not_found(request: web.Request) -> web.Response:
    """Whatever no route serves (safe methods only: the guard refused the others)."""
    return json_error(404, "not_found", f"{request.path} is not an endpoint the bridge serves")


def seal(app: web.Application) -> None:
    """Guard every route, aiohttp-cors's preflight routes included, and add the fallback.

    Call once, after the last route: no request then reaches a handler unguarded.
    """
    app.router.add_route("*", "/{anything:.*}", _not_found)
    lifecycle, max_body, splits = app[LIFECYCLE], app[LIMITS], app[SPLITS]
    # aiohttp-cors adds its headers in a response-prepare hook that first looks up the
    # route's CORS config, for every response; only browsers send Origin, so the guard
    # runs the hook for them alone and aiohttp's signal stays empty (and free).
    browser_hooks = tuple(app.on_response_prepare)
    app.on_response_prepare.clear()
    for route in app.router.routes():
        # aiohttp has no public way to wrap a registered route's handler (aiohttp-cors
        # makes its own); tests/test_hostile.py fails loudly if this stops working.
        route._handler = guard(  # type: ignore[assignment]
            route.handler, lifecycle, max_body, browser_hooks, splits.get(route.handler)
        )


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
    """Set up what `guard` needs: the body limit, the shutdown state and its signal."""
    app[LIFECYCLE] = Lifecycle()
    app[LIMITS] = config["server"]["max_request_bytes"]
    app[SPLITS] = {}
    app.on_shutdown.append(_begin_shutdown)
