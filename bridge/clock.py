"""Time for everything that schedules: the cache, the refresher, the rate limiter, the breaker.

Production uses the event loop's monotonic clock; tests use FakeClock and move time by
hand, so no test has to sleep to see an entry expire or a backoff pass.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager


class Clock:
    """The real clock: monotonic seconds for intervals, wall time for display."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        return time.monotonic()

    def wall(self) -> float:
        """Seconds since the epoch, for timestamps shown to people."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Wait this long (or not at all for zero or less)."""
        await asyncio.sleep(max(0.0, seconds))

    def deadline(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """A block that raises TimeoutError once `seconds` have passed on this clock."""
        return asyncio.timeout(max(0.0, seconds))


class FakeClock(Clock):
    """A clock that moves only when a test calls advance()."""

    def __init__(self, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        """How many sleepers are waiting for time to move (cancelled ones not counted)."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    @asynccontextmanager
    async def deadline(self, seconds: float) -> AsyncIterator[None]:
        """TimeoutError in the block once fake time passes `seconds` (as asyncio.timeout)."""
        task = asyncio.current_task()
        assert task is not None, "deadline() needs a task"
        expired = False

        async def expire() -> None:
            nonlocal expired
            await self.sleep(seconds)
            expired = True
            task.cancel()

        watcher = asyncio.create_task(expire())
        try:
            yield
        except asyncio.CancelledError:
            if expired and task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            watcher.cancel()

    def jump(self, seconds: float) -> None:
        """Move time forward without waking anyone: plain time travel, for code that only
        reads the clock (a sleeper whose deadline passed wakes at the next advance())."""
        self._now += seconds

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline passes, in order."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
            await settle()
        self._now = target
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let ready tasks run a few event-loop turns (tests use it after moving a FakeClock)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
