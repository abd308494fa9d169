"""The simulator's HTTP side: dl_cgi as the PVS serves it, plus `/_sim/*` for tests.

It behaves like the device where clients can notice: lighttpd's Server header, the
cJSON print layout, a slow DeviceList, a 403 JSON body for commands it does not know.
`GET /_sim/stats` counts what it received and the most requests it was ever serving at
once, which is how tests prove the bridge never sends the PVS two requests together.
Like the device, it keeps working on a request whose client hung up (a CGI that runs on):
such a request counts as being served, in `current` and `max_concurrent`, until its
answer is ready (`finish_abandoned`, on by default).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bridge import cjson
from bridge.clock import Clock
from bridge.simulator import legacy
from bridge.simulator.faults import FaultInjector
from bridge.simulator.feed import Feed
from bridge.simulator.model import Site

SERVER_HEADER = "lighttpd/1.4.35"
WRITE_COMMANDS = ("GridProfileRefresh", "SetCellPurchased", "StartDiscovery", "CancelDiscovery")
FORBIDDEN_BODY = b'{ "status":403, "error" : "Unauthorized", "path":"" }\n'
NOT_FOUND_PAGE = (
    '<?xml version="1.0" encoding="iso-8859-1"?>\n<html><body>404 - Not Found</body></html>\n'
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class SimulatorOptions:
    """How the simulated PVS looks and behaves."""

    inverters: int = 12
    latency: float = 2.0  # DeviceList; other commands take a tenth of it
    firmware: str = "legacy"
    serial: str = "ZT01234567890ABCDE"
    model: str = "PVS6"
    swver: str = "2024.6, Build 61707"
    build: int = 61707
    session_ttl: float = 300.0
    # Latency on the simulator's own clock (a FakeClock in tests) instead of real time, so
    # a test can play minutes of a slow PVS in fake time, exactly.
    latency_on_clock: bool = False
    # 2025: what the login's body carries beside the cookie: "session" (as the PVS does),
    # "empty-object" ({}) or "none" (no body at all): the cookie alone must be enough.
    login_body: str = "session"
    # Path-style endpoints this PVS lacks (older firmware): answered with lighttpd's 404.
    missing_paths: tuple[str, ...] = ()
    # The WebSocket live feed (bridge/simulator/feed.py), served when start() gets a ws_port.
    ws_time: str = "s"  # the frames' `time`: seconds ("s") or milliseconds ("ms") since 1970
    ws_drop: float = 600.0  # seconds after which each feed connection is closed
    ws_interval: float = 1.0  # seconds between value checks (and frames, while values change)
    ws_jitter: bool = False  # move the power values on every tick (tests); POST /_sim/feed too
    # Keep working on a request whose client hung up, as the PVS does (False: stop at once).
    finish_abandoned: bool = True


@dataclass
class Stats:
    """What the simulator received: per command/path, in total, at most at once, how paced.

    `min_gap_s` is the smallest gap between the arrivals of two consecutive requests
    (`/_sim/*` excluded), on the simulator's clock: the evidence that a bridge paces the PVS.
    The `ws_*` counters and `telemetry_enables` are the live feed's (feed.py).
    `abandoned` counts requests whose client hung up while they were being worked on.
    """

    requests: Counter[str] = field(default_factory=Counter)
    total: int = 0
    current: int = 0
    max_concurrent: int = 0
    last_arrival: float | None = None
    min_gap_s: float | None = None
    abandoned: int = 0
    ws_connections_total: int = 0
    ws_frames: int = 0
    telemetry_enables: int = 0

    def arrived(self, now: float) -> None:
        """Note a request's arrival (monotonic seconds) and the gap since the previous one."""
        if self.last_arrival is not None:
            gap = max(0.0, now - self.last_arrival)
            self.min_gap_s = gap if self.min_gap_s is None else min(self.min_gap_s, gap)
        self.last_arrival = now

    def as_json(self) -> dict[str, Any]:
        """The `/_sim/stats` document."""
        return {
            "requests": dict(self.requests),
            "total": self.total,
            "max_concurrent": self.max_concurrent,
            "current": self.current,
            "min_gap_s": None if self.min_gap_s is None else round(self.min_gap_s, 6),
            "abandoned": self.abandoned,
            "ws_connections_total": self.ws_connections_total,
            "ws_frames": self.ws_frames,
            "telemetry_enables": self.telemetry_enables,
        }


def pvs_json(document: Any, status: int = 200) -> web.Response:
    """An answer as the PVS prints it: cJSON layout, application/json."""
    return web.Response(
        status=status, body=cjson.dumps(document).encode(), content_type="application/json"
    )


def request_name(request: web.Request) -> str:
    """What /_sim/stats counts a request as: its Command, its dl_cgi path, or its path."""
    if request.path == "/cgi-bin/dl_cgi":
        return request.query.get("Command", "(no command)")
    prefix = "/cgi-bin/dl_cgi/"
    if request.path.startswith(prefix):
        return request.path[len(prefix) :]
    return request.path


class Simulator:
    """A fake PVS: build with options, then serve `app()`."""

    def __init__(self, options: SimulatorOptions | None = None, clock: Clock | None = None) -> None:
        self.options = options or SimulatorOptions()
        self.clock = clock or Clock()
        self.site = Site(
            self.clock, self.options.inverters, serial=self.options.serial, model=self.options.model
        )
        self.stats = Stats()
        self.faults = FaultInjector(self.clock)
        self.control_url = ""  # a side port for /_sim/* that stays open while `down`
        self.feed = Feed(self)  # the WebSocket live feed; listens once start() gets a ws_port
        self.faults.companions.append(self.feed)  # `down` and reboots take the feed along
        self.faults.on_boot = self.site.reboot  # coming back up from `down` is a reboot
        self._abandoned: set[asyncio.Task[web.StreamResponse]] = set()  # still worked on

    @property
    def feed_url(self) -> str:
        """The live feed's `ws://HOST:PORT/`, or "" when it is not served (or on a PVS5)."""
        return self.feed.url

    def app(self) -> web.Application:
        """The aiohttp application serving this simulated PVS."""
        middlewares = [self._count, self.faults.middleware, self._finish_abandoned]
        app = web.Application(middlewares=middlewares)
        app.on_shutdown.append(self._drop_abandoned)
        self.faults.install(app)
        self.feed.install(app)
        app.on_response_prepare.append(_server_header)
        app.router.add_get("/_sim/stats", self._stats)
        app.router.add_post("/_sim/stats/reset", self._reset_stats)
        app.router.add_route("*", "/cgi-bin/dl_cgi", self._dl_cgi)
        app.router.add_route("*", "/cgi-bin/dl_cgi/{tail:.*}", self._dl_cgi_path)
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count every non-control request and how many are being served at once."""
        if request.path.startswith("/_sim/"):
            return await handler(request)
        stats = self.stats
        stats.arrived(self.clock.monotonic())
        stats.requests[request_name(request)] += 1
        stats.total += 1
        stats.current += 1
        stats.max_concurrent = max(stats.max_concurrent, stats.current)
        try:
            return await handler(request)
        finally:
            stats.current -= 1

    @web.middleware
    async def _finish_abandoned(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run the handler (the PVS's work on a request) to its end even when the client
        hangs up, counted as being served until then. Innermost: a fault that holds the
        connection itself (`hang`, `slow`, a reset) still ends with it."""
        if request.path.startswith("/_sim/") or not self.options.finish_abandoned:
            return await handler(request)
        work = asyncio.ensure_future(handler(request))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            if not work.done():
                self._abandon(work)
            raise

    def _abandon(self, work: asyncio.Task[web.StreamResponse]) -> None:
        """Count `work` as being served until it ends (`_count` stops counting its request
        when the client's hang-up cancels it)."""
        stats = self.stats  # the counters it joined, even if a test resets them meanwhile
        stats.abandoned += 1
        stats.current += 1
        self._abandoned.add(work)

        def ended(done: asyncio.Task[web.StreamResponse]) -> None:
            stats.current -= 1
            self._abandoned.discard(done)
            if not done.cancelled():
                done.exception()  # retrieved: nobody awaits an abandoned answer

        work.add_done_callback(ended)

    async def _drop_abandoned(self, _app: web.Application) -> None:
        """At stop, stop the work nobody waits for."""
        still = list(self._abandoned)
        for work in still:
            work.cancel()
        await asyncio.gather(*still, return_exceptions=True)

    def stats_document(self) -> dict[str, Any]:
        """The `/_sim/stats` document: the counters plus the feed connections open now."""
        document = self.stats.as_json()
        document["ws_connections"] = len(self.feed.connections)
        return document

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats_document())

    async def _reset_stats(self, _request: web.Request) -> web.Response:
        self.stats = Stats()
        return web.json_response(self.stats_document())

    async def _delay(self, slow: bool) -> None:
        latency = self.options.latency if slow else self.options.latency / 10
        if latency > 0 and self.options.latency_on_clock:
            await self.clock.sleep(latency)
        elif latency > 0:
            await asyncio.sleep(latency)

    async def _dl_cgi(self, request: web.Request) -> web.Response:
        command = request.query.get("Command", "")
        opts, site = self.options, self.site
        await self._delay(command == "DeviceList")
        answers: dict[str, Callable[[], Any]] = {
            "DeviceList": lambda: legacy.device_list(site, opts.swver),
            "Start": lambda: legacy.start(site, opts.swver),
            "Stop": lambda: {"result": "succeed"},
            "Get_Comm": lambda: legacy.get_comm(site),
            "CheckFW": lambda: {"url": "none"},
            "GridProfileGet": legacy.grid_profile,
            "GetDiscoveryProgress": lambda: legacy.discovery_progress(site),
            "GetCellPurchased": lambda: {"result": "succeed", "cellpurchased": False},
            # Writes: the simulator accepts them so a bridge with writes enabled can be tested.
            **dict.fromkeys(WRITE_COMMANDS, lambda: {"result": "succeed"}),
        }
        if command == "DeviceDetails":
            found = legacy.device_details(site, request.query.get("SerialNumber", ""), opts.swver)
            if found is None:
                return pvs_json({"result": "error", "msg": "Device not found"})
            return pvs_json(found)
        if command in answers:
            return pvs_json(answers[command]())
        return web.Response(status=403, body=FORBIDDEN_BODY, content_type="application/json")

    async def _dl_cgi_path(self, request: web.Request) -> web.Response:
        tail = request.match_info["tail"]
        opts, site = self.options, self.site
        await self._delay(tail == "devices/list")
        answers: dict[str, Callable[[], Any]] = {
            "supervisor/info": lambda: legacy.supervisor_info(site, opts.swver, opts.build),
            "communication/interfaces": lambda: {
                "result": "succeed",
                "interfaces": legacy.get_comm(site)["networkstatus"]["interfaces"],
            },
            "devices/list": lambda: legacy.device_list(site, opts.swver),
            "energy-storage-system/status": lambda: {
                "result": "succeed",
                "ess_report": {"battery_status": [], "ess_status": [], "hub_plus_status": {}},
            },
            "network/interfaces": lambda: {
                "result": "succeed",
                "interfaces": legacy.get_comm(site)["networkstatus"]["interfaces"],
            },
            "network/powerProduction": lambda: {
                "result": "succeed",
                "power_production": "on" if site.production_kw(site.clock.wall()) else "off",
            },
        }
        if tail in answers and tail not in opts.missing_paths:
            return pvs_json(answers[tail]())
        return web.Response(
            status=404,
            text=NOT_FOUND_PAGE,
            content_type="text/html",
        )


def build(options: SimulatorOptions, clock: Clock | None = None) -> Simulator:
    """The simulator for the options' firmware."""
    if options.firmware == "2025":
        from bridge.simulator.firmware2025 import Simulator2025, options_for_2025

        return Simulator2025(options_for_2025(options), clock)
    return Simulator(options, clock)


async def _server_header(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_HEADER


async def start(
    simulator: Simulator,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    ws_host: str | None = None,
    ws_port: int | None = None,
) -> tuple[web.AppRunner, str]:
    """Serve the simulator; returns the runner (for cleanup) and its base URL.

    Handlers are cancelled when a client hangs up (`handler_cancellation`), so a fault
    that holds the connection ends with it; the PVS's work on the request itself runs on
    (see `Simulator._finish_abandoned`), counted as concurrent until its answer is ready.
    With `ws_port` (0 = a free one) the WebSocket live feed listens too, on `ws_host`
    (default: `host`), at `simulator.feed_url`; the runner's cleanup closes it.
    """
    runner = web.AppRunner(simulator.app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
    await site.start()
    bound_port = _bound_port(site, port)
    control = web.TCPSite(runner, host, 0)
    await control.start()
    simulator.faults.attach(runner, site, host, bound_port, ssl_context)
    shown = f"[{host}]" if ":" in host else host
    simulator.control_url = f"http://{shown}:{_bound_port(control, 0)}"
    if ws_port is not None:
        await simulator.feed.start(ws_host or host, ws_port)
    scheme = "https" if ssl_context is not None else "http"
    return runner, f"{scheme}://{shown}:{bound_port}"


def _bound_port(site: web.TCPSite, port: int) -> int:
    server = site._server  # the bound socket, to learn an OS-chosen port
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else port


def stats_from(body: bytes) -> dict[str, Any]:
    """Parse a `/_sim/stats` body (a helper for tests and benchmarks)."""
    document: dict[str, Any] = json.loads(body)
    return document
