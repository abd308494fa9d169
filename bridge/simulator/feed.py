"""The PVS6 WebSocket live feed (`ws://HOST:9002/`), simulated; see docs/pvs-api.md section 7.

Plain WebSocket, no login, text frames `{"notification":"power","params":{...}}` carrying
`time` and the livedata fields that changed since the previous frame on that connection.
The values are the site model's at meter resolution, checked every `ws_interval` seconds
of the simulator's clock, so steady output (night, or between meter readings) sends
nothing. Each connection is dropped after `ws_drop` seconds. On 2025 firmware the feed
stays silent until a logged-in client writes `set=/sys/telemetryws/enable=1`, and every
reboot switches it off again. A PVS5 has no feed. `POST /_sim/feed {"jitter": true}` makes
the power values change on every tick, so tests see frames without waiting for the sun.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, web

from bridge.simulator.faults import _reset

if TYPE_CHECKING:
    from bridge.simulator.server import Simulator, SimulatorOptions

TELEMETRY_VAR = "/sys/telemetryws/enable"
CLOSE_TIMEOUT = 2.0  # seconds to wait for a client's answer to our close frame


def check_options(options: SimulatorOptions) -> None:
    """Refuse feed options the simulator cannot honour (ValueError)."""
    if options.ws_time not in ("s", "ms"):
        raise ValueError(f"ws_time must be 's' or 'ms', not {options.ws_time!r}")
    for name in ("ws_drop", "ws_interval"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{name} must be a number > 0")


def feed_values(livedata: dict[str, float], sent: int, jitter: bool) -> dict[str, Any]:
    """The frame fields at meter resolution (W, 10 Wh).

    Jitter offsets the power by 1 or 2 W, alternating with each frame sent on the
    connection, so the power always differs from the previous frame's.
    """
    values: dict[str, Any] = {
        name: round(value, 2 if name.endswith("_en") else 4) for name, value in livedata.items()
    }
    if jitter:
        step = 0.001 * (sent % 2 + 1)
        values["pv_p"] = round(values["pv_p"] + step, 4)
        values["net_p"] = round(values["net_p"] - step, 4)
    values["backupTimeRemaining"] = 0
    values["midstate"] = ""  # no transfer switch on this PV-only site (the value is a guess)
    return values


def changed(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The fields whose value differs from the previous frame's (all of them at first)."""
    return {name: value for name, value in current.items() if previous.get(name) != value}


class Feed:
    """The feed's listener, its open connections and the telemetry switch."""

    def __init__(self, simulator: Simulator) -> None:
        check_options(simulator.options)
        self.sim = simulator
        self.supported = not simulator.options.model.upper().startswith("PVS5")
        self.requires_enable = False  # 2025 firmware: off until the varserver write
        self.jitter = simulator.options.ws_jitter
        self.url = ""
        self.connections: dict[web.WebSocketResponse, web.Request] = {}
        self._enabled_boot: int | None = None  # the boot in which the switch was turned on
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._address: tuple[str, int] | None = None

    @property
    def telemetry(self) -> bool:
        """Whether frames flow: always on legacy firmware; on 2025 only once enabled."""
        if not self.requires_enable:
            return True
        return self._enabled_boot == self.sim.site.boots

    def set_telemetry(self, on: bool) -> None:
        """The varserver write `set=/sys/telemetryws/enable=1` (or `=0`)."""
        self._enabled_boot = self.sim.site.boots if on else None

    def describe(self) -> dict[str, Any]:
        """The `GET /_sim/feed` document."""
        return {
            "supported": self.supported,
            "url": self.url,
            "telemetry": self.telemetry,
            "jitter": self.jitter,
            "connections": len(self.connections),
        }

    def install(self, app: web.Application) -> None:
        """Add `GET/POST /_sim/feed` to the simulator's app; close the feed at its shutdown."""
        app.router.add_get("/_sim/feed", self._show)
        app.router.add_post("/_sim/feed", self._control)
        app.on_shutdown.append(self._shutdown)

    async def _show(self, _request: web.Request) -> web.Response:
        return web.json_response(self.describe())

    async def _control(self, request: web.Request) -> web.Response:
        try:
            document = json.loads(await request.read() or b"null")
        except ValueError:
            document = None
        if not isinstance(document, dict) or set(document) - {"jitter"}:
            return _bad('expected a JSON object such as {"jitter": true}')
        if "jitter" in document:
            if not isinstance(document["jitter"], bool):
                return _bad("jitter must be true or false")
            self.jitter = document["jitter"]
        return web.json_response(self.describe())

    # -- the listener ---------------------------------------------------------------------

    async def start(self, host: str, port: int) -> str:
        """Listen on its own port (0 = a free one); returns the feed URL ("" on a PVS5)."""
        if not self.supported:
            return ""
        app = web.Application()
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await self._site.start()
        sockets = getattr(self._site._server, "sockets", None) or []
        bound = int(sockets[0].getsockname()[1]) if sockets else port
        self._address = (host, bound)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"ws://{shown}:{bound}/"
        return self.url

    async def go_down(self) -> None:
        """The PVS goes down: refuse new connections, reset open ones, switch telemetry off."""
        self._enabled_boot = None
        if self._site is not None:
            await self._site.stop()
            self._site = None
        for request in list(self.connections.values()):
            if request.transport is not None:
                _reset(request.transport)

    async def come_up(self) -> None:
        """Listen again on the same address."""
        if self._runner is not None and self._site is None and self._address is not None:
            self._site = web.TCPSite(self._runner, *self._address, reuse_address=True)
            await self._site.start()

    async def _shutdown(self, _app: web.Application) -> None:
        """Close every feed connection (going away), then the listener."""
        await asyncio.gather(
            *(ws.close(code=WSCloseCode.GOING_AWAY) for ws in list(self.connections)),
            return_exceptions=True,
        )
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None

    # -- one connection -------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(timeout=CLOSE_TIMEOUT)
        if not ws.can_prepare(request).ok:
            return web.Response(status=426, text="Upgrade Required\n")
        await ws.prepare(request)
        stats = self.sim.stats
        stats.ws_connections_total += 1
        self.connections[ws] = request
        reader = asyncio.create_task(_drain(ws))
        try:
            if await self._push(ws, reader):
                await ws.close(code=WSCloseCode.GOING_AWAY)  # the PVS's ~10-minute drop
        finally:
            self.connections.pop(ws, None)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        return ws

    async def _push(self, ws: web.WebSocketResponse, reader: asyncio.Task[None]) -> bool:
        """Send changes every tick until the client leaves (False) or it is time to drop."""
        clock, options = self.sim.clock, self.sim.options
        opened = clock.monotonic()
        previous: dict[str, Any] = {}
        sent = 0  # frames sent on this connection
        while not ws.closed:
            remaining = options.ws_drop - (clock.monotonic() - opened)
            if remaining <= 0:
                return True
            if self.telemetry:
                try:
                    sent += await self._send_changes(ws, previous, sent)
                except ConnectionError:  # the client went away mid-send
                    return False
            sleeper = asyncio.ensure_future(clock.sleep(min(options.ws_interval, remaining)))
            done, _ = await asyncio.wait({reader, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                sleeper.cancel()
                return False
        return False

    async def _send_changes(
        self, ws: web.WebSocketResponse, previous: dict[str, Any], sent: int
    ) -> int:
        """Send the fields that changed, if any; 1 if a frame went out, else 0."""
        wall = self.sim.clock.wall()
        current = feed_values(self.sim.site.livedata(wall), sent, self.jitter)
        params = changed(previous, current)
        if not params:
            return 0  # steady output: silence
        stamp = int(wall * 1000) if self.sim.options.ws_time == "ms" else int(wall)
        frame = {"notification": "power", "params": {"time": stamp, **params}}
        await ws.send_str(json.dumps(frame, separators=(",", ":")))
        previous.update(params)
        self.sim.stats.ws_frames += 1
        return 1


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends, so its close is noticed."""
    async for _message in ws:
        pass


def _bad(message: str) -> web.Response:
    return web.json_response({"error": "bad_feed", "message": message}, status=400)
