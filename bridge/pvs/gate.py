"""The gate in front of the PVS: one request at a time, paced, with a bounded queue.

Everything that reaches the PVS (client misses, background refreshes, logins) takes a
turn here. Waiters queue in FIFO order up to `queue_limit`; beyond that a caller gets
GateFull at once. Between the end of one request and the start of the next the gate
waits `min_interval`, so the PVS never sees two arrivals closer than that, whoever asks.
The backoff is checked on entry and again when a turn comes, so a queue of waiters does
not turn into a burst against a sick PVS. After a request timed out, no request starts
for `after_timeout`: the PVS is most likely still working on the one the bridge gave up
on, and a second one would be two at once for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bridge.clock import Clock
from bridge.pvs.backoff import Backoff
from bridge.pvs.errors import BackingOff, GateFull


class Gate:
    """One turn at a time at the PVS, at most `queue_limit` waiting, `min_interval` apart."""

    def __init__(
        self,
        clock: Clock,
        backoff: Backoff,
        *,
        queue_limit: int,
        min_interval: float,
    ) -> None:
        self._clock = clock
        self.backoff = backoff
        self.queue_limit = queue_limit
        self.min_interval = min_interval
        self._lock = asyncio.Lock()
        self._last_end = float("-inf")
        self.waiting = 0
        self.in_flight = 0
        self.max_in_flight = 0

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for the PVS's turn; refuses at once when the queue is full or backing off."""
        self._check_backoff()
        if self._lock.locked() and self.waiting >= self.queue_limit:
            raise GateFull(f"{self.waiting} requests already wait for the PVS", retry_after=5.0)
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        try:
            await self._pace()
            self._check_backoff()  # a failure while we queued pushes the attempt out
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1
                self._last_end = self._clock.monotonic()
        finally:
            self._lock.release()

    @property
    def busy(self) -> bool:
        """Whether a request holds or waits for the PVS now."""
        return self._lock.locked()

    async def _pace(self) -> None:
        wait = self._last_end + self.min_interval - self._clock.monotonic()
        if self.min_interval > 0 and wait > 0:
            await self._clock.sleep(wait)

    def _check_backoff(self) -> None:
        wait = self.backoff.wait_seconds()
        if wait > 0:
            self.backoff.attempts_refused += 1
            raise BackingOff(
                f"PVS failed {self.backoff.consecutive_failures} time(s) in a row; "
                f"next attempt in {wait:.0f} s",
                retry_after=wait,
            )
