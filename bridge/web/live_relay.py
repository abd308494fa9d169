"""`LiveRelay`, the clients' half of `live.LiveHub`: every frame to every client, in order.

One task, started with the first client and ended with the last, relays the frames the
hub hands it (`relay`, synchronous): a new client first gets one frame with every field
known, as of the frame relayed last, then each frame after it. A send never waits for a
client (see `live_clients`): a client whose send queue is full is dropped, and the
others never notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from aiohttp import web

from bridge.site.live import LiveState
from bridge.web.live_clients import Client, Frame

log = logging.getLogger(__name__)

QUEUE_BYTES = 16 * 1024  # a client's send queue: about 64 full PVS frames (~250 bytes)
CLOSE_TIMEOUT = 2.0  # seconds close() gives clients to answer a WebSocket close


@dataclass
class LiveCounts:
    """What the hub has done since it started (for /health)."""

    clients_total: int = 0  # clients admitted
    frames_relayed: int = 0  # frames published (each sent to every client then connected)
    dropped_slow: int = 0  # clients dropped because their send queue was full
    refused_full: int = 0  # connections refused with 503: max_clients already connected


class LiveRelay:
    """The clients of the live feed and the task that relays frames to them."""

    def __init__(
        self,
        *,
        max_clients: int = 256,
        queue_bytes: int = QUEUE_BYTES,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self.max_clients = max_clients
        self.queue_bytes = queue_bytes
        self.close_timeout = close_timeout
        self.counts = LiveCounts()
        self._delivered = LiveState()  # the state as of the last frame the relay took
        self._pending: deque[tuple[Frame, LiveState]] = deque()
        self._clients: set[Client] = set()
        self._joining: list[Client] = []
        self._opening = 0  # admitted, handshake under way
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def relay(self, text: str, state: LiveState) -> None:
        """Send `text` to every client, byte for byte; `state` is the state after it (what
        a client joining after this frame gets first). Never waits for a client."""
        self.counts.frames_relayed += 1
        if self._task is None:  # nobody to relay to
            self._delivered = state
            return
        self._pending.append((Frame(text), state))
        self._wake.set()

    @property
    def clients(self) -> int:
        """Clients connected now."""
        return len(self._clients) + len(self._joining)

    @property
    def full(self) -> bool:
        """Whether max_clients are connected or connecting."""
        return self.clients + self._opening >= self.max_clients

    @property
    def closed(self) -> bool:
        """Whether close() was called (new clients are refused)."""
        return self._closed

    @contextlib.contextmanager
    def opening(self) -> Iterator[None]:
        """While a client's handshake runs: its place is held."""
        self._opening += 1
        try:
            yield
        finally:
            self._opening -= 1

    def join(self, client: Client) -> bool:
        """A client whose handshake is done: relayed to from now on (False once closed)."""
        if self._closed:
            return False
        self.counts.clients_total += 1
        self._joining.append(client)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()
        return True

    def leave(self, client: Client) -> None:
        """A client whose connection ended."""
        client.ended.set()
        self._clients.discard(client)
        with contextlib.suppress(ValueError):
            self._joining.remove(client)
        self._wake.set()

    async def _run(self) -> None:
        try:
            while self._clients or self._joining or self._pending:
                if not self._joining and not self._pending:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._welcome()
                if self._pending:
                    frame, self._delivered = self._pending.popleft()
                    await self._fan_out(frame, tuple(self._clients))
        finally:
            self._task = None

    async def _welcome(self) -> None:
        """New clients: one frame with every field known, as of the frame relayed last."""
        joining, self._joining = self._joining, []
        self._clients.update(joining)
        known = self._delivered
        if joining and (known.fields or known.time is not None):
            await self._fan_out(Frame(known.frame()), joining)

    async def _fan_out(self, frame: Frame, clients: Iterable[Client]) -> None:
        """`frame` to each client with room for it in its queue; those without are dropped.
        The hot loop: kept flat, as a bare broadcast's is."""
        connected, size = self._clients, frame.size
        for client in clients:
            if client not in connected:
                continue  # left while this frame was relayed
            transport = client.transport
            buffered = transport.get_write_buffer_size()
            if transport.is_closing():
                self.leave(client)
            elif buffered and buffered + size > client.queue_bytes:  # any frame fits if empty
                self._drop_slow(client)
            else:
                try:
                    await client.send(frame)
                except (ConnectionError, RuntimeError):  # it closed meanwhile
                    self.leave(client)
                except Exception:
                    log.exception("live feed: a send to a %s client failed", client.kind)
                    self.leave(client)
                    client.abort()

    def _drop_slow(self, client: Client) -> None:
        self.counts.dropped_slow += 1
        log.info(
            "live feed: dropped a %s client that does not keep up (%s)",
            client.kind,
            client.transport.get_extra_info("peername"),
        )
        self.leave(client)
        client.abort()

    async def close(self) -> None:
        """End every client (WebSocket close 1001 "going away"; SSE streams end); refuse
        new ones from now on. Bounded by `close_timeout`."""
        self._closed = True
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        clients = [*self._clients, *self._joining]
        self._clients.clear()
        self._joining.clear()
        if self._pending:
            self._delivered = self._pending[-1][1]
            self._pending.clear()
        if clients:
            ending = asyncio.gather(
                *(client.going_away() for client in clients), return_exceptions=True
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ending, self.close_timeout + 1.0)

    async def on_shutdown(self, _app: web.Application) -> None:
        """For an application's on_shutdown signal."""
        await self.close()
