"""Faults the simulated PVS can be told to show, switched at run time by `POST /_sim/faults`.

Each mode is something a real PVS has been seen doing: answering slowly, never answering,
500s when dl_cgi crashes, spurious 403s, dropped connections, half a body, refusing
connections while it reboots, a DeviceList whose meters vanished, a random mix of those,
and `fragile`: the device itself, which copes with one request at a time at a modest
rate and otherwise starts failing and then reboots. The modes that test how a client reads
an answer (`huge_body`, `endless_body`, `redirect`, `too_many`, `unsolicited`) are in
hostile_answers.

The control endpoint is also served on a side port that stays open while the simulated
PVS is `down` (see `Simulator.control_url`), so a test can bring it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import ssl
import struct
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

from aiohttp import web

from bridge import cjson
from bridge.clock import Clock
from bridge.simulator.hostile_answers import (
    HOSTILE_MODES,
    HostileCounts,
    HostileParams,
    hostile_answer,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MODES = (
    "ok",
    "slow",
    "hang",
    "error500",
    "error403",
    "reset",
    "truncate",
    "down",
    "nometers",
    "flaky",
    "fragile",
    *HOSTILE_MODES,
)
# What `flaky` picks from when a request is chosen to fail.
FLAKY_KINDS = ("error500", "error403", "reset", "truncate", "hang")
FORBIDDEN_BODY = b'{ "status":403, "error" : "Unauthorized", "path":"" }\n'
ERROR_PAGE = (
    '<?xml version="1.0" encoding="iso-8859-1"?>\n'
    "<html><body>500 - Internal Server Error</body></html>\n"
)


class FaultError(ValueError):
    """A control request the simulator cannot apply (unknown mode or bad parameter)."""


@dataclass
class FaultSettings:
    """The mode in force and the parameters the modes use."""

    mode: str = "ok"
    latency: float = 5.0  # slow: seconds added to every answer
    fraction: float = 0.3  # flaky: share of requests that fail
    kinds: list[str] = field(default_factory=lambda: list(FLAKY_KINDS))  # flaky picks from
    seed: int | None = None  # flaky: for a repeatable sequence
    declare: str = "full"  # truncate: Content-Length of the "full" body, or of the "half" sent
    seconds: float | None = None  # down: come back (as `ok`) after this long; None = stay down
    max_concurrent: int = 1  # fragile: more requests at once than this strains it
    rate: int = 6  # fragile: more requests than this within `window` strains it
    window: float = 10.0
    strain_limit: int = 3  # fragile: strained requests before it reboots
    reboot_seconds: float = 5.0  # fragile: how long a reboot refuses connections
    size: int = 100_000_000  # huge_body: bytes of the padded answer
    retry_after: float = 30.0  # too_many: the Retry-After it sends
    location: str = "http://198.51.100.7/elsewhere"  # redirect: where to (TEST-NET-2)

    @classmethod
    def parse(cls, document: object) -> FaultSettings:
        """Validate a control document such as `{"mode": "slow", "latency": 3}`."""
        if not isinstance(document, dict):
            raise FaultError('expected a JSON object such as {"mode": "ok"}')
        mode = document.get("mode")
        if mode not in MODES:
            raise FaultError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(document) - known)
        if unknown:
            raise FaultError(f"unknown parameter(s): {', '.join(unknown)}")
        settings = cls(**document)
        settings._check()
        return settings

    def _check(self) -> None:
        numbers = {
            "latency": self.latency,
            "fraction": self.fraction,
            "window": self.window,
            "reboot_seconds": self.reboot_seconds,
            "max_concurrent": self.max_concurrent,
            "rate": self.rate,
            "strain_limit": self.strain_limit,
            "size": self.size,
            "retry_after": self.retry_after,
        }
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise FaultError(f"{name} must be a number >= 0")
        if self.fraction > 1:
            raise FaultError("fraction must be between 0 and 1")
        if self.seconds is not None and (
            isinstance(self.seconds, bool) or not isinstance(self.seconds, int | float)
        ):
            raise FaultError("seconds must be a number or null")
        if not isinstance(self.kinds, list) or not set(self.kinds) <= set(FLAKY_KINDS):
            raise FaultError(f"kinds must be a list drawn from {', '.join(FLAKY_KINDS)}")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise FaultError("size must be a whole number of bytes")
        if not isinstance(self.location, str):
            raise FaultError("location must be a string")
        if self.declare not in ("full", "half"):
            raise FaultError('declare must be "full" or "half"')


@dataclass
class FaultStats:
    """What the faults did: per mode requests seen, faults injected, strain and reboots."""

    by_mode: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    overloads: int = 0
    reboots: int = 0
    hostile: HostileCounts = field(default_factory=HostileCounts)


class Companion(Protocol):
    """Another listener of the simulated PVS (the live feed) that goes down and up with it."""

    async def go_down(self) -> None:
        """Refuse connections and drop the open ones."""

    async def come_up(self) -> None:
        """Listen again."""


class FaultInjector:
    """Middleware and control endpoint that make a Simulator misbehave on request."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.settings = FaultSettings()
        self.stats = FaultStats()
        self.is_down = False
        self._random = random.Random()
        self._in_flight = 0
        self._recent: deque[float] = deque()
        self._strain = 0
        self._last_overload = float("-inf")
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._host = "127.0.0.1"
        self._port = 0
        self._timer: asyncio.Task[None] | None = None
        self.companions: list[Companion] = []  # down and up together with the HTTP listener
        self.on_boot: Callable[[], None] | None = None  # called when it comes back up

    # -- wiring ---------------------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        """Add `GET/POST /_sim/faults` to the simulator's app; stop timers at its cleanup."""
        app.router.add_get("/_sim/faults", self._show)
        app.router.add_post("/_sim/faults", self._set)
        app.on_cleanup.append(self._cleanup)

    async def _cleanup(self, _app: web.Application) -> None:
        self._cancel_timer()

    def attach(
        self,
        runner: web.AppRunner,
        site: web.TCPSite,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Know the listening site, so `down` and reboots can close and reopen it as it was."""
        self._runner, self._site, self._host, self._port = runner, site, host, port
        self._ssl_context = ssl_context

    def describe(self) -> dict[str, Any]:
        """The `GET /_sim/faults` document."""
        return {
            "mode": self.settings.mode,
            "settings": asdict(self.settings),
            "down": self.is_down,
            "by_mode": dict(self.stats.by_mode),
            "injected": dict(self.stats.injected),
            "overloads": self.stats.overloads,
            "reboots": self.stats.reboots,
            **asdict(self.stats.hostile),
        }

    async def apply(self, settings: FaultSettings) -> None:
        """Put a mode in force (also what `--faults MODE` does at start)."""
        self._cancel_timer()
        self.settings = settings
        self._random = random.Random(settings.seed)
        self._recent.clear()
        self._strain = 0
        if settings.mode == "down":
            await self.go_down()
            if settings.seconds is not None:
                self._timer = asyncio.create_task(self._recover_after(settings.seconds))
        elif self.is_down:
            await self.come_up()

    async def _show(self, _request: web.Request) -> web.Response:
        return web.json_response(self.describe())

    async def _set(self, request: web.Request) -> web.Response:
        try:
            settings = FaultSettings.parse(json.loads(await request.read() or b"null"))
        except (ValueError, TypeError) as error:  # FaultError and JSONDecodeError are ValueErrors
            return web.json_response({"error": "bad_fault", "message": str(error)}, status=400)
        await self.apply(settings)
        return web.json_response(self.describe())

    # -- the listening socket -------------------------------------------------------------

    async def go_down(self) -> None:
        """Refuse connections, as a rebooting PVS does, and drop the ones that are open."""
        self.is_down = True
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            for handler in self._runner.server.connections:
                transport = handler.transport
                if transport is not None and _local_port(transport) == self._port:
                    _reset(transport)
        for companion in self.companions:
            await companion.go_down()

    async def come_up(self) -> None:
        """Listen again on the same address: after being down, that is a reboot."""
        if self.is_down and self.on_boot is not None:
            self.on_boot()
        if self._runner is not None and self._site is None:
            site = web.TCPSite(
                self._runner,
                self._host,
                self._port,
                reuse_address=True,
                ssl_context=self._ssl_context,
            )
            await site.start()
            self._site = site
        for companion in self.companions:
            await companion.come_up()
        self.is_down = False

    async def _recover_after(self, seconds: float) -> None:
        await self.clock.sleep(seconds)
        self.settings = FaultSettings(mode="ok")
        await self.come_up()

    async def _reboot(self, seconds: float) -> None:
        """Fragile: go down for a while, then come back in the same (fragile) mode."""
        self.stats.reboots += 1
        await self.go_down()
        await self.clock.sleep(seconds)
        self._strain = 0
        self._recent.clear()
        await self.come_up()

    def _cancel_timer(self) -> None:
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        self._timer = None

    # -- the requests ---------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Apply the mode in force to every dl_cgi request (never to `/_sim/*`)."""
        if request.path.startswith("/_sim/"):
            return await handler(request)
        mode = self.settings.mode
        self.stats.by_mode[mode] += 1
        self._in_flight += 1
        try:
            if mode == "flaky":
                if self._random.random() >= self.settings.fraction:
                    return await handler(request)
                mode = self._random.choice(self.settings.kinds or list(FLAKY_KINDS))
            elif mode == "fragile":
                if self._strained():
                    mode = "error500"
                else:
                    return await handler(request)
            return await self._inject(mode, request, handler)
        finally:
            self._in_flight -= 1

    def _strained(self) -> bool:
        """Fragile: whether this request pushes the device over its limits."""
        settings, now = self.settings, self.clock.monotonic()
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - settings.window:
            self._recent.popleft()
        if now - self._last_overload > settings.window:
            self._strain = 0  # a quiet spell lets the device recover
        if self._in_flight <= settings.max_concurrent and len(self._recent) <= settings.rate:
            return False
        self.stats.overloads += 1
        self._strain += 1
        self._last_overload = now
        if self._strain >= settings.strain_limit and self._timer is None:
            self._timer = asyncio.create_task(self._reboot_then_clear(settings.reboot_seconds))
        return True

    async def _reboot_then_clear(self, seconds: float) -> None:
        try:
            await self._reboot(seconds)
        finally:
            self._timer = None

    async def _inject(
        self, mode: str, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if mode != "ok":
            self.stats.injected[mode] += 1
        if mode == "slow":
            await asyncio.sleep(self.settings.latency)
            return await handler(request)
        if mode == "hang":
            # Never answers; the handler is cancelled when the client hangs up.
            await asyncio.Future()
        if mode == "error500":
            return web.Response(status=500, text=ERROR_PAGE, content_type="text/html")
        if mode == "error403":
            return web.Response(status=403, body=FORBIDDEN_BODY, content_type="application/json")
        if mode in ("reset", "down"):
            return await _hang_up(request)
        if mode == "truncate":
            return await self._truncate(request, await handler(request))
        if mode == "nometers":
            return _without_meters(await handler(request))
        if mode in HOSTILE_MODES:
            settings = self.settings
            params = HostileParams(settings.size, settings.retry_after, settings.location)
            return await hostile_answer(mode, request, handler, params, self.stats.hostile)
        return await handler(request)

    async def _truncate(self, request: web.Request, full: web.StreamResponse) -> web.StreamResponse:
        body = full.body if isinstance(full, web.Response) else None
        if not isinstance(body, bytes) or len(body) < 2:
            return full
        half = body[: len(body) // 2]
        if self.settings.declare == "half":
            # A complete HTTP answer whose body is cut: 200 with JSON that does not parse.
            return web.Response(status=full.status, body=half, content_type=full.content_type)
        response = web.StreamResponse(status=full.status)
        response.content_type = full.content_type
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(half)
        return await _hang_up(request)


def _without_meters(response: web.StreamResponse) -> web.StreamResponse:
    """A DeviceList from which the power meters vanished (seen until a PVS reboot)."""
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes):
        return response
    try:
        document = json.loads(body)
    except ValueError:
        return response
    devices = document.get("devices") if isinstance(document, dict) else None
    if not isinstance(devices, list):
        return response
    document["devices"] = [d for d in devices if d.get("DEVICE_TYPE") != "Power Meter"]
    return web.Response(
        status=response.status, body=cjson.dumps(document).encode(), content_type="application/json"
    )


async def _hang_up(request: web.Request) -> web.StreamResponse:
    """Drop the connection with a TCP reset; the handler is then cancelled."""
    transport = request.transport
    if transport is not None:
        _reset(transport)
    await asyncio.Future()  # cancelled by aiohttp once it notices the connection is gone
    raise AssertionError("unreachable")  # pragma: no cover


def _reset(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _local_port(transport: asyncio.BaseTransport) -> int | None:
    name = transport.get_extra_info("sockname")
    return name[1] if isinstance(name, tuple) and len(name) >= 2 else None
