"""Refresh-ahead: REFRESH-class entries (the device list) are renewed on a fixed schedule.

One loop per entry, started by the first client that reads it and ended once clients
have been quiet for `idle_after`: a refresh starts one interval after the last read
started (never two within an interval), and never while the backoff holds attempts.
The answer it replaces stays fresh while the refresh is on its way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bridge.cache.entries import Entry
from bridge.clock import Clock
from bridge.pvs.errors import UpstreamError
from bridge.pvs.requests import ProxyRequest

log = logging.getLogger(__name__)


class RefreshAhead:
    """The background loops that keep REFRESH entries fresh while clients ask for them."""

    def __init__(
        self,
        clock: Clock,
        entry_for: Callable[[str], Entry | None],
        refresh: Callable[[ProxyRequest], Awaitable[object]],
        *,
        idle_after: float,
        backoff_wait: Callable[[], float],
    ) -> None:
        self.clock = clock
        self._entry_for = entry_for
        self._refresh = refresh
        self.idle_after = idle_after
        self._backoff_wait = backoff_wait
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._last_start: dict[str, float] = {}
        self.closed = False

    def ensure(self, entry: Entry) -> None:
        """Start the loop for `entry` unless it runs already."""
        key = entry.request.target
        if self.closed or key in self._loops:
            return
        task = asyncio.create_task(self._loop(entry.request), name=f"refresh {key}")
        self._loops[key] = task
        task.add_done_callback(lambda _t: self._loops.pop(key, None))

    def __contains__(self, key: str) -> bool:
        return key in self._loops

    async def _loop(self, request: ProxyRequest) -> None:
        """Keep one entry fresh while clients ask for it; stop once they have gone quiet."""
        key = request.target
        while not self.closed:
            entry = self._entry_for(key)
            now = self.clock.monotonic()
            if entry is None or now - entry.last_access > self.idle_after:
                log.debug("refresh-ahead of %s stops: no client asked recently", request.name)
                return
            due = self.due(entry, now)
            if due > now:
                await self.clock.sleep(due - now)
                continue
            self._last_start[key] = now
            try:
                await self._refresh(request)
            except UpstreamError:
                pass  # counted by the upstream and the backoff; the loop waits them out
            except Exception:
                # A bug must not end refresh-ahead for good; the next try is a TTL away.
                log.exception("refresh of %s failed unexpectedly", request.name)

    def due(self, entry: Entry, now: float) -> float:
        """When the next refresh starts: one interval after the last read started.

        Start to start, never closer: the PVS sees one read per interval. No lead is
        taken off it: while the refresh is on its way the held answer stays fresh for as
        long as refreshes are known to take (see `Entry.fresh_until`).
        """
        last_start = max(
            entry.answer.fetched_at, self._last_start.get(entry.request.target, float("-inf"))
        )
        due = last_start + entry.ttl
        wait = self._backoff_wait()
        return max(due, now + wait) if wait > 0 else due

    def next_in(self) -> float | None:
        """Seconds until the soonest background refresh (None when none is scheduled)."""
        now = self.clock.monotonic()
        waits = [
            self.due(entry, now) - now
            for key in list(self._loops)
            if (entry := self._entry_for(key)) is not None
        ]
        return max(0.0, min(waits)) if waits else None

    async def close(self) -> None:
        """Stop every loop."""
        self.closed = True
        tasks = list(self._loops.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
