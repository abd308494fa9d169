"""Client connections: a deadline for each request head, and caps on how many are open.

aiohttp closes a kept-alive connection left idle for `keepalive_timeout` (the runner sets
it from server.keepalive_timeout; aiohttp's own default is an hour), but it gives a
client that sends its request head a byte at a time (slowloris) all the time it wants,
and accepts connections until the process has no file descriptor left, which locks out
every client. So here:

- a request head must be complete within server.header_timeout of its first byte (of
  the connection's start, for a new one), or the connection is closed;
- at most server.max_connections_per_address connections from one address and
  server.max_connections in all (never more than the open-files limit leaves room for):
  when a new one would pass a cap, the oldest idle connection (between requests, nothing
  being answered) is closed to make room; the new one is refused only when none is idle.

Connections being answered (a WebSocket of the live feed included) are never closed
here. Everything closed or refused is counted (`ClientTrouble`), never logged above debug.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, Protocol

from aiohttp.web_protocol import RequestHandler

from bridge.aiohttp_private import awaiting_request
from bridge.config import ServerConfig
from bridge.web.client_trouble import ClientTrouble

log = logging.getLogger(__name__)

# File descriptors kept for everything but client connections: the PVS, the state files,
# the listeners, MQTT, the event loop's own.
RESERVED_FDS = 64
# What a refused connection reads before it is closed (no request was parsed to answer).
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 5\r\nConnection: close\r\nContent-Length: 90\r\n\r\n"
    b'{"error": "too_many_connections", "message": "too many open connections", "status": 503}\n'
)


class Tracked(Protocol):
    """What the table needs of a connection."""

    address: str

    def is_idle(self) -> bool: ...

    def force_close(self) -> None: ...


class ConnectionTable:
    """The open client connections of every listener, oldest activity first."""

    def __init__(
        self, server: ServerConfig, trouble: ClientTrouble, open_files: int | None = None
    ) -> None:
        self.header_timeout = server.header_timeout
        self.max_total = server.max_connections
        if open_files is not None:
            self.max_total = max(1, min(self.max_total, open_files - RESERVED_FDS))
        self.max_per_address = server.max_connections_per_address
        self.trouble = trouble
        self._all: OrderedDict[Tracked, None] = OrderedDict()
        self._by_address: dict[str, OrderedDict[Tracked, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def open_from(self, address: str) -> int:
        """How many connections `address` has open."""
        return len(self._by_address.get(address, ()))

    def admit(self, connection: Tracked) -> bool:
        """Track a new connection, closing idle ones to make room; False when refused."""
        mine = self._by_address.setdefault(connection.address, OrderedDict())
        if len(mine) >= self.max_per_address and not self._close_oldest_idle(mine):
            return self._refuse(connection)
        if len(self._all) >= self.max_total and not self._close_oldest_idle(self._all):
            return self._refuse(connection)
        mine[connection] = None
        self._all[connection] = None
        return True

    def touch(self, connection: Tracked) -> None:
        """The client sent something: its connection is now the youngest."""
        if connection in self._all:
            self._all.move_to_end(connection)
            mine = self._by_address.get(connection.address)
            if mine is not None and connection in mine:
                mine.move_to_end(connection)

    def upgraded(self, connection: Tracked) -> None:
        """A WebSocket now: counted in all, no longer per address (the live feed's
        server.ws_max_clients bounds them, and a LAN host may hold many)."""
        self._leave_address(connection)

    def forget(self, connection: Tracked) -> None:
        """The connection is closed (idempotent)."""
        if self._all.pop(connection, False) is None:
            self._leave_address(connection)

    def _leave_address(self, connection: Tracked) -> None:
        mine = self._by_address.get(connection.address)
        if mine is not None and mine.pop(connection, False) is None and not mine:
            del self._by_address[connection.address]

    def _close_oldest_idle(self, connections: OrderedDict[Tracked, None]) -> bool:
        for candidate in connections:
            if candidate.is_idle():
                self.forget(candidate)
                candidate.force_close()
                self.trouble.count("idle_closed")
                return True
        return False

    def _refuse(self, connection: Tracked) -> bool:
        mine = self._by_address.get(connection.address)
        if mine is not None and not mine:
            del self._by_address[connection.address]
        self.trouble.count("refused")
        log.debug("refused a connection from %s: every open one is busy", connection.address)
        return False


class Connection(RequestHandler):
    """aiohttp's connection handler, tracked in a ConnectionTable, with a head deadline."""

    __slots__ = ("_head_deadline", "_table", "address")

    def __init__(self, manager: Any, *, table: ConnectionTable, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._table = table
        self.address = ""
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if not self._table.admit(self):
            if self.transport is not None:
                self.transport.write(REFUSED)
            self.force_close()
            return
        self._start_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if awaiting_request(self):
            # Part of a request head: it has header_timeout from now (from the connection's
            # start, for a new one). A head that came whole, as almost every one does,
            # costs no timer at all.
            if self._head_deadline is None and data:
                self._start_head_deadline()
        elif self._head_deadline is not None:
            self._stop_head_deadline()  # the head is complete: a request is being answered
        self._table.touch(self)

    def set_parser(self, parser: Any, data_received_cb: Any = None) -> None:
        """aiohttp's hook when the connection becomes a WebSocket."""
        super().set_parser(parser, data_received_cb)
        self._table.upgraded(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_deadline()
        self._table.forget(self)
        super().connection_lost(exc)

    @property
    def trouble(self) -> ClientTrouble:
        """Where this connection counts what its client did wrong."""
        return self._table.trouble

    def is_idle(self) -> bool:
        """Between requests: nothing is being answered on this connection."""
        return self.transport is not None and awaiting_request(self)

    def _start_head_deadline(self) -> None:
        loop = asyncio.get_running_loop()
        self._head_deadline = loop.call_later(self._table.header_timeout, self._head_too_slow)

    def _stop_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.transport is not None and awaiting_request(self):
            self._table.trouble.count("slow_head")
            log.debug("closed a connection from %s: request head too slow", self.address)
            self.force_close()
