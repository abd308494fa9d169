"""The telemetry switch of the PVS's WebSocket feed: when to write it on, and how often.

On 2025 firmware the feed is off by default and off again after every reboot: the PVS
accepts the connection and sends nothing until a logged-in client writes
`set=/sys/telemetryws/enable=1` (docs/pvs-api.md section 7). The write itself is the
app's (`enable`, through the gate with the bridge's one session); this class decides when
it goes: only when wanted (before connecting, a silent feed, a reboot), only while the PVS
answers HTTP, at most one attempt per `window` seconds, never again once the firmware
said it has no such variable, and one at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bridge.clock import Clock

log = logging.getLogger(__name__)

TELEMETRY_VAR = "/sys/telemetryws/enable"

Enable = Callable[[], Awaitable[bool]]


class TelemetrySwitch:
    """Wanted writes of the feed's switch, rate limited, one in flight at most."""

    def __init__(
        self,
        clock: Clock,
        enable: Enable | None,
        pvs_answering: Callable[[], bool],
        *,
        window: float,
    ) -> None:
        self._clock = clock
        self._enable = enable
        self._answering = pvs_answering
        self.window = window
        self.wanted: str | None = None  # why a write is wanted (None: not wanted)
        self.unsupported = False  # the firmware has no such variable: never write again
        self.enables = 0
        self.failures = 0
        self.last_attempt_at: float | None = None  # monotonic
        self.last_success_at: float | None = None  # monotonic
        self._task: asyncio.Task[None] | None = None

    @property
    def mode(self) -> str:
        """For /health: `off` (ws_enable false), `unsupported` or `on`."""
        if self._enable is None:
            return "off"
        return "unsupported" if self.unsupported else "on"

    def want(self, reason: str) -> None:
        """Ask for a write (kept until it succeeds, the feed speaks, or it is refused)."""
        if self._enable is not None and not self.unsupported and self.wanted is None:
            self.wanted = reason

    def feed_is_on(self) -> None:
        """A frame arrived: the switch is evidently on, so a pending write is moot."""
        self.wanted = None

    def wait_seconds(self) -> float:
        """How long until the next attempt may go, by the rate limit alone."""
        if self.last_attempt_at is None:
            return 0.0
        return max(0.0, self.last_attempt_at + self.window - self._clock.monotonic())

    def poke(self) -> asyncio.Task[None] | None:
        """Start the write if it is wanted and allowed now; returns the write in flight."""
        if self._task is not None and self._task.done():
            self._task = None
        if self._task is None and self._allowed():
            reason, self.wanted = self.wanted or "", None
            self.last_attempt_at = self._clock.monotonic()
            self._task = asyncio.create_task(self._write(reason))
        return self._task

    def _allowed(self) -> bool:
        # The PVS's own health decides too: while it does not answer HTTP a write can
        # only fail, and silence then is the outage, not the switch.
        return (
            self.wanted is not None
            and self._enable is not None
            and not self.unsupported
            and self.wait_seconds() <= 0
            and self._answering()
        )

    async def _write(self, reason: str) -> None:
        assert self._enable is not None  # _allowed() checked it
        try:
            switched = await self._enable()
        except Exception as error:  # whatever the app's write raised: retried later
            self.failures += 1
            self.wanted = self.wanted or reason
            log.warning(
                "PVS feed: writing %s=1 (%s) failed: %s; next try in %.0f s at the earliest",
                TELEMETRY_VAR,
                reason,
                str(error) or type(error).__name__,
                self.window,
            )
            return
        if not switched:
            # Legacy firmware or a PVS5 answers 400: there is nothing to switch.
            self.unsupported = True
            self.wanted = None
            log.warning(
                "PVS feed: the PVS has no %s (legacy firmware or a PVS5); not writing it again",
                TELEMETRY_VAR,
            )
            return
        self.enables += 1
        self.last_success_at = self._clock.monotonic()
        log.info("PVS feed: wrote %s=1 (%s); enable %d", TELEMETRY_VAR, reason, self.enables)

    async def close(self) -> None:
        """Cancel a write in flight (at shutdown)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
