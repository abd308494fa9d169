"""The AppRunner `serve` uses: hardened HTTP parser limits, and JSON for what the parser refuses.

The parser's refusals (malformed lines, bad methods, duplicate Host, oversized lines)
are normally plain text written by aiohttp's RequestHandler.handle_error, which no
handler or middleware sees; requests no route can even match (`CONNECT host:443`)
never reach a handler either. Both are answered in JSON here.

Each connection is also tracked (head deadline, connection caps: see `connections`), and
what a client does wrong (a malformed request, hanging up mid-body) is counted for the
summary line and logged at debug: under attack there are thousands, and none is the
bridge's fault.
"""

from __future__ import annotations

import json
import logging
import resource
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from bridge.aiohttp_private import swap_server_class
from bridge.config import ServerConfig
from bridge.web import keys
from bridge.web.client_trouble import ClientTrouble
from bridge.web.connections import Connection, ConnectionTable
from bridge.web.errors import from_http_exception
from bridge.web.hostile import MAX_BODY_DEFAULT, MAX_FIELD, MAX_HEADERS, MAX_LINE, refuse_hostile

log = logging.getLogger(__name__)

RawHandler = Callable[[BaseRequest], Awaitable[web.StreamResponse]]


def runner_options(server: ServerConfig) -> dict[str, Any]:
    """Keyword arguments for the AppRunner (production and tests use the same ones)."""
    return {
        "access_log": None,
        "keepalive_timeout": server.keepalive_timeout,
        "max_line_size": MAX_LINE,
        "max_field_size": MAX_FIELD,
        "max_headers": MAX_HEADERS,
        "shutdown_timeout": server.shutdown_grace,
        "handle_signals": False,
    }


def make_runner(
    app: web.Application,
    server: ServerConfig,
    connections: ConnectionTable | None = None,
) -> BridgeRunner:
    """The runner `serve` uses: hardened parser limits, JSON parser errors, connections
    tracked in `connections` (shared by the listeners of one process; when None, a new
    table counting into the application's Metrics)."""
    if connections is None:
        trouble = app[keys.METRICS].trouble if keys.METRICS in app else ClientTrouble()
        connections = ConnectionTable(server, trouble, open_files_limit())
    return BridgeRunner(app, connections, **runner_options(server))


def open_files_limit() -> int | None:
    """The process's open-files limit (soft), or None when it has none."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class _JsonErrorRequestHandler(Connection):
    """aiohttp's connection handler, with parser-level refusals written as JSON."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if self.transport is None:
            # The client hung up (mid-body, most often): nobody is left to answer. (Only
            # the connection's own state says so: a ConnectionError may be a bug's.)
            self.trouble.count("hung_up")
            log.debug("client %s hung up mid-request: %r", request.remote, exc)
            return web.Response(status=status)
        if request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:
            self.trouble.count("malformed")
            log.debug("refused a malformed request from %s: %s", request.remote, exc)
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
    connection_table: ConnectionTable

    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(
            self, loop=self._loop, table=self.connection_table, **self._kwargs
        )


class BridgeRunner(web.AppRunner):
    """An AppRunner whose connections are tracked in a ConnectionTable and answer even
    malformed requests with JSON."""

    def __init__(self, app: web.Application, connections: ConnectionTable, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.connections = connections

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        swap_server_class(server, _JsonErrorServer)
        cast(_JsonErrorServer, server).connection_table = self.connections
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
