"""The day's budget of PVS requests (`upstream.daily_budget`): a last guard for the PVS.

Paced polling sends a few thousand requests a day at most; a day that goes far past that
means something asks too much (a client that defeats the cache, a loop after a bug), and
the PVS, whose flash and CPU are small, pays for it. Counted from local midnight to
midnight on the clock's wall time. Past the budget only the device read goes on (it is
what every client's data comes from, and its pace is fixed); every other request is
refused before it reaches the gate: `OverBudget`, a 503 with Retry-After until midnight,
answered from memory where the cache still holds an answer.

The device read marks itself with `essential()` (a context variable, so the logins and
firmware checks it makes on its way count as part of it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import date, datetime, time, timedelta

from bridge.clock import Clock
from bridge.pvs.errors import UpstreamError

log = logging.getLogger(__name__)

_ESSENTIAL: ContextVar[bool] = ContextVar("pvs_request_essential", default=False)


@contextlib.contextmanager
def essential() -> Iterator[None]:
    """Requests made inside this block go on past the daily budget (the device read)."""
    token = _ESSENTIAL.set(True)
    try:
        yield
    finally:
        _ESSENTIAL.reset(token)


class OverBudget(UpstreamError):
    """The day's budget of PVS requests is spent; this request waits for midnight."""

    status = 503
    kind = "over_budget"


def local_day(wall: float) -> date:
    """The local calendar day of a wall-clock time."""
    return datetime.fromtimestamp(wall).date()


def seconds_to_midnight(wall: float) -> float:
    """Seconds from `wall` to the next local midnight."""
    tomorrow = datetime.combine(local_day(wall) + timedelta(days=1), time())
    return max(1.0, tomorrow.timestamp() - wall)


class DailyBudget:
    """Requests sent to the PVS today, against `limit` (None: no limit)."""

    def __init__(self, clock: Clock, limit: int | None) -> None:
        self.clock = clock
        self.limit = limit
        self.day = local_day(clock.wall())
        self.sent = 0
        self.refused = 0

    def _today(self) -> None:
        day = local_day(self.clock.wall())
        if day != self.day:
            if self.over:
                log.info(
                    "a new day: the PVS request budget is open again (%d refused)", self.refused
                )
            self.day, self.sent, self.refused = day, 0, 0

    @property
    def over(self) -> bool:
        """Whether today's budget is spent."""
        return self.limit is not None and self.sent >= self.limit

    def check(self, name: str) -> None:
        """Refuse `name` (OverBudget) when the budget is spent, unless it is essential."""
        self._today()
        if not self.over or _ESSENTIAL.get():
            return
        self.refused += 1
        raise OverBudget(
            f"the bridge has sent the PVS its {self.limit} requests for today "
            f"(upstream.daily_budget); {name} waits until midnight, only the device list goes on",
            retry_after=seconds_to_midnight(self.clock.wall()),
        )

    def spend(self) -> None:
        """One request sent to the PVS (counted as it goes out)."""
        self._today()
        self.sent += 1
        if self.limit is not None and self.sent == self.limit:
            log.warning(
                "%d requests sent to the PVS today: the daily budget is spent; only the "
                "device list goes on until midnight",
                self.sent,
            )

    def describe(self) -> dict[str, object]:
        """For /health: sent today, the budget, whether it is spent, refused, the reset."""
        self._today()
        wall = self.clock.wall()
        return {
            "sent": self.sent,
            "budget": self.limit,
            "over_budget": self.over,
            "refused": self.refused,
            "resets_in_s": round(seconds_to_midnight(wall)),
        }

    def problems(self) -> list[str]:
        """The degraded reason while the budget is spent."""
        self._today()
        if not self.over:
            return []
        return [
            f"daily budget of {self.limit} PVS requests spent; only the device list goes on "
            f"for {seconds_to_midnight(self.clock.wall()) / 3600:.1f} h, until midnight"
        ]
