"""The one upstream WebSocket feed: the PVS's live `power` frames, relayed unchanged.

One client connection to the PVS's feed (`ws://HOST:9002/`, docs/pvs-api.md section 7),
whatever the number of the bridge's own listeners: every text frame goes to `on_frame`
as it came, in order, and is merged into `state` for late joiners and /health. It has
its own client session: the HTTP client's connector holds the gate's one slot, and a
socket that lives for minutes must not take it. On 2025 firmware the feed starts off,
so the telemetry switch (feed_switch.py) is written before connecting, when the open
feed stays silent while the PVS answers HTTP, and after a reboot.

A socket the PVS closes (it does so about every 10 minutes) is reopened at once, at most
once per RECONNECT_SPACING; a connect that fails follows its own Backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp

from bridge.clock import Clock
from bridge.pvs.backoff import Backoff
from bridge.pvs.client import ssl_context
from bridge.pvs.feed_connect import open_session, shown_url
from bridge.pvs.feed_switch import Enable, TelemetrySwitch
from bridge.site.live import LiveState, merge, parse_frame

log = logging.getLogger(__name__)

RECONNECT_SPACING = 10.0  # seconds between two connects after a normal close
WATCH_TICK = 5.0  # seconds between two looks at an open feed's silence (at most)
HEARTBEAT = 30.0  # aiohttp pings after this much quiet; no pong within half of it: closed
MAX_FRAME = 1 << 20  # a power frame is a few hundred bytes


class UpstreamFeed:
    """Keeps one WebSocket connection to the PVS feed while `run()` runs."""

    def __init__(
        self,
        url: str | None,
        clock: Clock,
        backoff: Backoff,
        on_frame: Callable[[str], None],
        *,
        enable: Enable | None,
        pvs_answering: Callable[[], bool],
        silence: float = 90.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.clock = clock
        self.backoff = backoff
        self._on_frame = on_frame
        self.silence = silence
        self.connect_timeout = connect_timeout
        self.switch = TelemetrySwitch(clock, enable, pvs_answering, window=silence)
        self._answering = pvs_answering
        self.state = LiveState()  # every field seen, for a newly connected client
        self.phase = "off" if url is None else "connecting"
        self.last_frame_at: float | None = None  # monotonic
        self.connects = self.drops = self.connect_failures = self.frames = 0
        self._opened_at = 0.0
        self._last_connect: float | None = None
        self._ssl = ssl_context(False)
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    async def run(self) -> None:
        """Connect, read, reconnect, until cancelled or closed (the app runs it as a task)."""
        if self.url is None or self._closed:
            self.phase = "off"
            return
        self._runner = asyncio.current_task()
        self._session = open_session(self.connect_timeout)
        try:
            while not self._closed:
                await self._wait_for_turn()
                ws = await self._connect(self.url)
                if ws is not None:
                    await self._follow(ws)
        finally:
            await self.close()

    async def _wait_for_turn(self) -> None:
        if self.backoff.consecutive_failures:
            self.phase = "backing_off"
            await self.clock.sleep(self.backoff.wait_seconds())
        elif self._last_connect is not None:
            # A PVS that closes every socket at once must not see a connect storm.
            self.phase = "connecting"
            await self.clock.sleep(self._last_connect + RECONNECT_SPACING - self.clock.monotonic())

    async def _connect(self, url: str) -> aiohttp.ClientWebSocketResponse | None:
        """Switch telemetry on if due, then open the socket (None when that failed)."""
        self.phase = "connecting"
        self.switch.want("before connecting")
        writing = self.switch.poke()
        if writing is not None:
            await writing  # so the first frames follow the write, as clients do it
        assert self._session is not None
        self._last_connect = self.clock.monotonic()
        try:
            ws = await self._session.ws_connect(
                url,
                heartbeat=HEARTBEAT,
                ssl=self._ssl,  # wss: the PVS's certificate is self-signed, not checked
                max_msg_size=MAX_FRAME,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            delay = self.backoff.failed()
            self.connect_failures += 1
            self.phase = "backing_off"
            # The first failure of a streak is worth a warning; the rest (a PVS5 has no
            # feed at all) only for debugging, so the log is not a metronome.
            first = self.backoff.consecutive_failures == 1
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "PVS feed %s: connect failed (%s); next attempt in %.0f s",
                shown_url(url),
                str(error) or type(error).__name__,
                delay,
            )
            return None
        self.backoff.succeeded()
        self.connects += 1
        self._opened_at = self.clock.monotonic()
        self.phase = "open"
        log.info("PVS feed %s open (connect %d)", shown_url(url), self.connects)
        return ws

    async def _follow(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read frames until the socket ends; a watcher minds the silence meanwhile."""
        self._ws = ws
        watcher = asyncio.create_task(self._watch())
        try:
            async for message in ws:  # ends on a close frame or a lost socket
                if message.type is aiohttp.WSMsgType.TEXT:
                    self._frame(message.data)
                elif message.type is aiohttp.WSMsgType.ERROR:
                    break  # a heartbeat without pong, a broken frame: drop and reopen
        finally:
            self._ws = None
            watcher.cancel()
            await asyncio.wait({watcher})
            await ws.close()
        if not self._closed:
            self.drops += 1
            self.phase = "connecting"
            log.info(
                "PVS feed closed (code %s, exception %s) after %d frames in all; reopening",
                ws.close_code,
                ws.exception(),
                self.frames,
            )

    def _frame(self, text: str) -> None:
        self.frames += 1
        self.last_frame_at = self.clock.monotonic()
        self.switch.feed_is_on()
        params = parse_frame(text)
        if params is not None:  # the state keeps power frames; on_frame gets every frame
            self.state = merge(self.state, params)
        try:
            self._on_frame(text)
        except Exception:  # a relay bug must not cost the one upstream socket
            log.exception("PVS feed: on_frame failed")

    async def _watch(self) -> None:
        """While open: a feed silent for `silence` s while the PVS answers HTTP is switched
        off (a reboot did it, or nobody ever wrote it): write it on again."""
        tick = min(WATCH_TICK, self.silence / 4)
        while True:
            await self.clock.sleep(tick)
            quiet = self.clock.monotonic() - max(self._opened_at, self.last_frame_at or 0.0)
            if quiet >= self.silence and self._answering():
                self.switch.want(f"feed silent for {quiet:.0f} s")
            self.switch.poke()

    def pvs_rebooted(self, uptime: float | None = None) -> None:
        """The PVS rebooted (its uptime went down): 2025 firmware switched the feed off.

        With `uptime` (seconds since the boot), a frame or a write since that boot proves
        the switch already on again, and nothing is written.
        """
        if uptime is not None:
            booted = self.clock.monotonic() - uptime
            seen = [self.last_frame_at, self.switch.last_success_at]
            if any(moment is not None and moment > booted for moment in seen):
                return
        self.switch.want("the PVS rebooted")
        if self.phase == "open":
            self.switch.poke()

    def last_frame_age(self) -> float | None:
        """Seconds since the last frame (None before any)."""
        if self.last_frame_at is None:
            return None
        return max(0.0, self.clock.monotonic() - self.last_frame_at)

    def describe(self) -> dict[str, object]:
        """What /health shows of the feed."""
        age = self.last_frame_age()
        return {
            "state": self.phase,
            "url": shown_url(self.url),
            "connects": self.connects,
            "drops": self.drops,
            "connect_failures": self.connect_failures,
            "next_connect_in_s": round(self.backoff.wait_seconds(), 1),
            "telemetry_switch": self.switch.mode,
            "enables": self.switch.enables,
            "enable_failures": self.switch.failures,
            "frames": self.frames,
            "last_frame_age_s": None if age is None else round(age, 1),
        }

    async def close(self) -> None:
        """Close the socket and the session; stops `run()` (idempotent)."""
        self._closed = True
        self.phase = "off"
        runner, self._runner = self._runner, None
        if runner is not None and runner is not asyncio.current_task() and not runner.done():
            runner.cancel()
            await asyncio.wait({runner})  # its own finally comes back here and closes all
        await self.switch.close()
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()
